"""Build a small, real MLflow model directory for the serving tests and benchmarks.

``build_model_dir(path, flavor="xgboost", shift=0.0)`` trains a tiny churn-like
model on synthetic data and saves it the way training does: an MLflow model
directory (``MLmodel`` with signature and ``metadata.mlops`` spec) plus a
``model_info.json``. The matrix the booster learns from is the project's contract
encoding (:mod:`mlops_pipeline.contracts.features`). ``shift`` builds a deliberately
different model whose predictions are pushed far away from the normal one (a "bad
canary"). Models trained by the project's own training code are in test_parity.py.

Only the project venv is needed (mlflow, xgboost, scikit-learn, pandas).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mlops_pipeline.contracts.features import ModelSpec

NUMERIC_FEATURES: list[str] = [
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "num_support_tickets",
    "avg_session_minutes",
    "days_since_last_login",
    "num_devices",
    "discount_pct",
    "late_payments",
]
CATEGORICAL_FEATURES: dict[str, list[str]] = {
    "plan": ["basic", "standard", "premium"],
    "contract": ["month_to_month", "one_year", "two_year"],
    "payment_method": ["card", "bank_transfer", "paypal", "invoice"],
}
# Model input order: numerics first, categoricals interleaved to exercise ordering.
FEATURE_ORDER: list[str] = [
    "tenure_months",
    "plan",
    "monthly_charges",
    "total_charges",
    "contract",
    "num_support_tickets",
    "avg_session_minutes",
    "days_since_last_login",
    "payment_method",
    "num_devices",
    "discount_pct",
    "late_payments",
]
# Signature types; ``num_support_tickets``/``num_devices``/``late_payments`` are integers.
SIGNATURE_TYPES: dict[str, str] = {
    "tenure_months": "double",
    "monthly_charges": "double",
    "total_charges": "double",
    "num_support_tickets": "long",
    "avg_session_minutes": "double",
    "days_since_last_login": "double",
    "num_devices": "long",
    "discount_pct": "double",
    "late_payments": "long",
    "plan": "string",
    "contract": "string",
    "payment_method": "string",
}
# Nullable (``required: false``) features.
OPTIONAL_FEATURES: frozenset[str] = frozenset(
    {"avg_session_minutes", "days_since_last_login", "payment_method"}
)
ID_COLUMN = "customer_id"
TIME_COLUMN = "event_time"
TARGET = "churned"
THRESHOLD = 0.5
MODEL_NAME = "churn-model"


def mlops_spec() -> dict[str, Any]:
    """The ``metadata.mlops`` block written into MLmodel."""
    features: list[dict[str, Any]] = []
    for name in FEATURE_ORDER:
        if name in CATEGORICAL_FEATURES:
            features.append(
                {"name": name, "kind": "categorical", "categories": list(CATEGORICAL_FEATURES[name])}
            )
        else:
            features.append({"name": name, "kind": "numeric"})
    return {
        "features": features,
        "id_column": ID_COLUMN,
        "time_column": TIME_COLUMN,
        "target": TARGET,
        "threshold": THRESHOLD,
    }


def make_records(n: int, seed: int = 0, with_ids: bool = False, nulls: bool = False) -> list[dict[str, Any]]:
    """Synthetic request records (raw feature values, JSON-ready)."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, n)
    monthly = np.round(rng.uniform(10, 120, n), 2)
    total = np.round(monthly * np.maximum(tenure, 1) * rng.uniform(0.8, 1.1, n), 2)
    tickets = rng.poisson(1.2, n)
    session = np.round(rng.gamma(2.0, 15.0, n), 1)
    last_login = np.round(rng.exponential(7.0, n), 1)
    devices = rng.integers(1, 6, n)
    discount = np.round(rng.choice([0.0, 5.0, 10.0, 20.0], n), 1)
    late = rng.poisson(0.5, n)
    plan = rng.choice(CATEGORICAL_FEATURES["plan"], n, p=[0.5, 0.3, 0.2])
    contract = rng.choice(CATEGORICAL_FEATURES["contract"], n, p=[0.55, 0.25, 0.2])
    payment = rng.choice(CATEGORICAL_FEATURES["payment_method"], n)
    records: list[dict[str, Any]] = []
    for i in range(n):
        rec: dict[str, Any] = {
            "tenure_months": float(tenure[i]),
            "plan": str(plan[i]),
            "monthly_charges": float(monthly[i]),
            "total_charges": float(total[i]),
            "contract": str(contract[i]),
            "num_support_tickets": int(tickets[i]),
            "avg_session_minutes": float(session[i]),
            "days_since_last_login": float(last_login[i]),
            "payment_method": str(payment[i]),
            "num_devices": int(devices[i]),
            "discount_pct": float(discount[i]),
            "late_payments": int(late[i]),
        }
        if nulls and i % 7 == 3:
            rec["avg_session_minutes"] = None
            rec["payment_method"] = None
        if with_ids:
            rec[ID_COLUMN] = f"c-{seed}-{i:06d}"
            rec[TIME_COLUMN] = f"2024-01-{1 + i % 28:02d}T12:00:00Z"
        records.append(rec)
    return records


def _labels(records: list[dict[str, Any]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    logit = np.array(
        [
            -1.0
            - 0.05 * r["tenure_months"]
            + 0.02 * r["monthly_charges"]
            + 0.5 * r["num_support_tickets"]
            + 0.08 * (r["days_since_last_login"] or 0.0)
            + 0.6 * r["late_payments"]
            + {"month_to_month": 1.2, "one_year": 0.0, "two_year": -1.0}[r["contract"]]
            + {"basic": 0.3, "standard": 0.0, "premium": -0.4}[r["plan"]]
            for r in records
        ]
    )
    return (rng.uniform(size=len(records)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int32)


def contract() -> ModelSpec:
    """The fixture's ``metadata.mlops`` block read by the project's contract."""
    return ModelSpec.from_metadata(mlops_spec())


def encode_matrix(records: list[dict[str, Any]]) -> np.ndarray:
    """The model matrix of ``records``, encoded by the contract (what training and serving build)."""
    return contract().encoder.encode_records(records)


def feature_types() -> list[str]:
    return contract().feature_types


def _signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    cols = [ColSpec(SIGNATURE_TYPES[n], n, required=n not in OPTIONAL_FEATURES) for n in FEATURE_ORDER]
    return ModelSignature(inputs=Schema(cols), outputs=Schema([ColSpec("double")]))


def _train_booster(records: list[dict[str, Any]], y: np.ndarray, shift: float) -> Any:
    import xgboost as xgb

    x = encode_matrix(records)
    dtrain = xgb.DMatrix(
        x, label=y, feature_names=list(FEATURE_ORDER), feature_types=feature_types(), enable_categorical=True
    )
    if shift:
        # Trees are fitted on top of a margin of -shift; served without it, every
        # prediction moves by +shift in logit space.
        dtrain.set_base_margin(np.full(len(records), -shift, dtype=np.float32))
    params = {
        "objective": "binary:logistic",
        "max_depth": 4,
        "eta": 0.3,
        "nthread": 1,
        "tree_method": "hist",
        "max_cat_to_onehot": 1,
        "seed": 7,
    }
    return xgb.train(params, dtrain, num_boost_round=25)


def _train_pipeline(records: list[dict[str, Any]], y: np.ndarray, shift: float) -> Any:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame.from_records(records, columns=FEATURE_ORDER)
    cats = list(CATEGORICAL_FEATURES)
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC_FEATURES),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="__missing__"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                cats,
            ),
        ]
    )
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))])
    pipe.fit(frame, y)
    if shift:
        pipe.named_steps["clf"].intercept_ = pipe.named_steps["clf"].intercept_ + shift
    return pipe


def build_model_dir(path: Path, flavor: str = "xgboost", shift: float = 0.0) -> Path:
    """Train a small churn model and save it as an MLflow model directory at ``path``.

    ``path`` must not exist yet (or be an empty directory). Returns ``path``.
    """
    path = Path(path)
    if path.exists():
        if any(path.iterdir()):
            raise FileExistsError(f"{path} is not empty")
        path.rmdir()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    logging.getLogger("mlflow").setLevel(logging.ERROR)

    records = make_records(1500, seed=42, nulls=True)
    y = _labels(records, seed=42)
    import pandas as pd

    example = pd.DataFrame.from_records(records[:3], columns=FEATURE_ORDER)
    metadata = {"mlops": mlops_spec()}
    if flavor == "xgboost":
        import mlflow.xgboost

        booster = _train_booster(records, y, shift)
        mlflow.xgboost.save_model(
            booster,
            str(path),
            signature=_signature(),
            input_example=example,
            metadata=metadata,
            model_format="ubj",
            pip_requirements=["xgboost", "numpy"],
        )
        artifact = path / "model.ubj"
    elif flavor == "sklearn":
        import mlflow.sklearn

        pipe = _train_pipeline(records, y, shift)
        mlflow.sklearn.save_model(
            pipe,
            str(path),
            signature=_signature(),
            input_example=example,
            metadata=metadata,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE,
            pip_requirements=["scikit-learn", "pandas", "numpy"],
        )
        artifact = path / "model.pkl"
    else:
        raise ValueError(f"unknown flavor {flavor!r}")

    info = {
        "model_name": MODEL_NAME,
        "model_version": "2" if shift else "1",
        "run_id": hashlib.sha1(f"{flavor}-{shift}".encode()).hexdigest()[:32],
        "artifact_sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
    }
    (path / "model_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return path


if __name__ == "__main__":  # pragma: no cover - manual helper
    import sys

    out = build_model_dir(Path(sys.argv[1]), *(sys.argv[2:3] or ["xgboost"]))
    print(out)
