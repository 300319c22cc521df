"""A bare FastAPI + xgboost app: the "bare" baseline of bench_serving.py.

Deliberately minimal: parse the JSON body, encode records into a float32
matrix (categoricals by index), ``Booster.inplace_predict``, return the
probabilities. No validation, logging or metrics.

Run: ``BARE_MODEL_DIR=<mlflow model dir> uvicorn bare_app:app --workers 2``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import orjson
import xgboost as xgb
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import Response

MODEL_DIR = Path(os.environ.get("BARE_MODEL_DIR", "/model"))
_mlmodel = yaml.safe_load((MODEL_DIR / "MLmodel").read_text())
_features = _mlmodel["metadata"]["mlops"]["features"]
_booster = xgb.Booster(model_file=str(MODEL_DIR / _mlmodel["flavors"]["xgboost"]["data"]))
_cats = {
    f["name"]: {c: i for i, c in enumerate(f["categories"])} for f in _features if f["kind"] == "categorical"
}
_names = [f["name"] for f in _features]

app = FastAPI()


def _value(name: str, value: object) -> float:
    if value is None:
        return np.nan
    cats = _cats.get(name)
    if cats is not None:
        return cats.get(value, np.nan)
    return float(value)


@app.post("/predict")
async def predict(request: Request) -> Response:
    records = orjson.loads(await request.body())["records"]
    x = np.array([[_value(n, r.get(n)) for n in _names] for r in records], dtype=np.float32)
    probs = _booster.inplace_predict(x)
    return Response(orjson.dumps({"predictions": probs.tolist()}), media_type="application/json")
