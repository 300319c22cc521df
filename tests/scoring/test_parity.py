"""Batch and online answer the same: the partition ``score_partition`` writes holds, row by row, the
probabilities and labels the model server (``serving/mlops_serving``, built in-process on the same
verified model directory) answers for those rows, to 1e-6; for both flavours training registers."""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.deploy.artifacts import download_verified
from mlops_pipeline.registry.client import mlflow_client
from mlops_pipeline.scoring.batch import (
    LABEL,
    PROBABILITY,
    load_verified,
    read_predictions,
    resolve_model,
    score_partition,
)
from tests.scoring.registered import register

SERVING_SRC = Path(__file__).resolve().parents[2] / "serving"
if str(SERVING_SRC) not in sys.path:
    sys.path.insert(0, str(SERVING_SRC))

TOLERANCE = 1e-6
DAY = "2026-01-05"
REQUEST_ROWS = 500


def as_records(frame: pd.DataFrame, names: list[str], id_column: str, time_column: str) -> list[dict[str, Any]]:
    """The rows as JSON request records: the features, the id and the event time; null for missing."""
    records = []
    for row in frame.to_dict("records"):
        record: dict[str, Any] = {}
        for name in names:
            value = row[name]
            record[name] = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        record[id_column] = str(row[id_column])
        record[time_column] = row[time_column].isoformat()
        records.append(record)
    return records


def served_probabilities(model_dir: Path, log_dir: Path, records: list[dict[str, Any]]) -> tuple[np.ndarray, list[int], str]:
    from fastapi.testclient import TestClient

    from mlops_serving.app import create_app
    from mlops_serving.settings import Settings

    app = create_app(Settings(model_dir=model_dir, prediction_log_dir=log_dir))
    probabilities: list[float] = []
    labels: list[int] = []
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while app.state_obj.model is None:
            assert app.state_obj.status != "failed" and time.monotonic() < deadline, "the server did not load the model"
            time.sleep(0.02)
        for first in range(0, len(records), REQUEST_ROWS):
            response = client.post("/predict", json={"records": records[first : first + REQUEST_ROWS]})
            assert response.status_code == 200, response.text
            body = response.json()
            probabilities += [p["probability"] for p in body["predictions"]]
            labels += [p["label"] for p in body["predictions"]]
    return np.asarray(probabilities, dtype=np.float64), labels, body["model_version"]


@pytest.mark.parametrize("candidate", ["xgboost", "baseline"])
def test_the_predictions_partition_matches_the_server_row_by_row(candidate, champion, scoring_env, tmp_path):
    from mlops_pipeline.data.lake import Lake

    if candidate == "xgboost":
        version = champion.version
    else:  # a second version, scored as the model_version Param pins it
        version = register(scoring_env.lake.uri, scoring_env.tracking_uri, scoring_env.model_name,
                           candidate=candidate, champion=False).version  # fmt: skip
    client = mlflow_client()
    ref = resolve_model(client, scoring_env.model_name, None if candidate == "xgboost" else version)
    assert ref.version == version
    # A copy of the day, so the module's lake stays as it was for the other tests.
    source_folder = Path(Lake(scoring_env.lake.uri).partition_path("validated", DAY))
    shutil.copytree(source_folder, tmp_path / "lake" / "validated" / f"ds={DAY}")
    private = Lake(str(tmp_path / "lake"))
    source = private.read_manifest("validated", DAY)

    model = load_verified(client, ref, tmp_path / "batch-model")
    manifest = score_partition(private, DAY, model, ref, dataset="churn", chunk_rows=600)
    predictions = read_predictions(private, DAY).to_pandas()
    assert len(predictions) == manifest["row_count"] == source["row_count"]

    frame = private.read_frame("validated", DAY)
    spec = model.spec
    records = as_records(frame, spec.names, spec.id_column, spec.time_column)
    model_dir = Path(download_verified(client, ref.name, ref.version, tmp_path / "served-model").model_dir)
    served, served_labels, served_version = served_probabilities(model_dir, tmp_path / "predlog", records)
    assert served_version == ref.version

    assert predictions[spec.id_column].astype(str).tolist() == [r[spec.id_column] for r in records]
    difference = np.abs(predictions[PROBABILITY].to_numpy() - served)
    assert difference.max() <= TOLERANCE, f"row {int(difference.argmax())} differs by {difference.max():.3g}"
    assert predictions[LABEL].tolist() == served_labels
    assert 0.0 < served.min() < served.max() < 1.0  # real, varied answers, not a constant
