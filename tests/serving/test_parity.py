"""Training and serving answer the same: every registered flavour, trained by the project's training
steps on a small frame, logged to MLflow the way the recorder logs a winner, then scored on the
same rows by training's ``predict_proba`` and by a running ``python -m mlops_serving`` on the
downloaded model directory. The probabilities agree to 1e-6 with the calibration map applied,
for both maps training can choose (isotonic, Platt); the labels, the MLflow-protocol answer, the
prediction log and the probability histogram carry the same calibrated numbers.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.config import TrainSettings
from mlops_pipeline.contracts.calibration import ISOTONIC, PLATT
from mlops_pipeline.data.synthetic import generate_day
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.training import steps
from mlops_pipeline.training.calibration import FITTERS
from mlops_pipeline.training.candidates import FLAVORS, Candidate
from mlops_pipeline.training.data import PartitionRef, TrainingWindow

from .conftest import ServerProcess, start_server, wait_for, wait_until_ready

pytestmark = pytest.mark.timeout(900)

DAYS = 4
SETTINGS = TrainSettings(tune_trials=3, tune_folds=2, calibration_folds=3, min_split_rows=50)
TOLERANCE = 1e-6
SINGLE_REQUESTS = 25  # rows 0-24 hold the nulls and unseen categories of scored_rows
# Nulls in training make these optional in the signature, so requests may carry nulls there too.
NULLABLE_NUMERIC, NULLABLE_CATEGORICAL = "avg_session_minutes", "payment_method"
CASES = [(name, method) for name in FLAVORS for method in (ISOTONIC, PLATT)]


def training_frame() -> pd.DataFrame:
    dataset = load_dataset_spec("churn")
    frames = [generate_day(date(2026, 1, 1) + timedelta(days=i), seed=42, rows=500) for i in range(DAYS)]
    frame = pd.concat(frames, ignore_index=True)
    frame[dataset.time_column] = pd.to_datetime(frame[dataset.time_column], utc=True)
    frame = frame.sort_values([dataset.time_column, dataset.id_column], kind="mergesort").reset_index(drop=True)
    rng = np.random.default_rng(3)
    frame.loc[rng.random(len(frame)) < 0.05, NULLABLE_NUMERIC] = np.nan
    frame.loc[rng.random(len(frame)) < 0.05, NULLABLE_CATEGORICAL] = None
    return frame


def window() -> TrainingWindow:
    parts = tuple(
        PartitionRef(f"2026-01-{i + 1:02d}", f"file:///lake/validated/ds=2026-01-{i + 1:02d}", ("0" * 64,), 500)
        for i in range(DAYS)
    )
    return TrainingWindow("file:///lake", f"2026-01-{DAYS + 1:02d}", DAYS, parts)


def scored_rows(holdout: pd.DataFrame) -> pd.DataFrame:
    """Holdout rows plus the odd ones a server sees: nulls where allowed, unseen categories."""
    rows = holdout.head(300).copy().reset_index(drop=True)
    rows.loc[0:9, NULLABLE_NUMERIC] = np.nan
    rows.loc[5:14, NULLABLE_CATEGORICAL] = None
    rows.loc[10:19, "plan"] = "enterprise"
    rows.loc[20:24, "region"] = "atlantis"
    return rows


def as_records(rows: pd.DataFrame, candidate: Candidate) -> list[dict[str, Any]]:
    """The rows as JSON request records: the features, the id and the event time; null for missing."""
    spec = candidate.spec
    records = []
    for row in rows.to_dict("records"):
        record: dict[str, Any] = {}
        for name in spec.names:
            value = row[name]
            record[name] = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        record[spec.id_column] = str(row[spec.id_column])
        record[spec.time_column] = row[spec.time_column].isoformat()
        records.append(record)
    return records


def log_like_the_recorder(candidate: Candidate, train: pd.DataFrame, tracking_uri: str, dest: Path) -> Path:
    """The model directory a deployment downloads: the candidate logged by the recorder's own call."""
    import mlflow
    import mlflow.artifacts
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from mlops_pipeline.training.recorder import _log_model

    with _use_tracking_uri(tracking_uri):
        experiment_id = mlflow.MlflowClient().create_experiment(f"parity-{uuid.uuid4().hex[:10]}")
        with mlflow.start_run(experiment_id=experiment_id):
            info = _log_model(candidate, train)
        local = mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(dest))
    return Path(local)


@dataclass
class Served:
    candidate: Candidate
    rows: pd.DataFrame
    records: list[dict[str, Any]]
    server: ServerProcess
    log_dir: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mlflow_server) -> Iterator[dict[tuple[str, str], Served]]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("parity")
    dataset = load_dataset_spec("churn")
    prepared = steps.split(training_frame(), dataset, window(), SETTINGS)
    splits = prepared.splits
    rows = scored_rows(splits.holdout)
    valid_labels = splits.valid[dataset.target].to_numpy()
    started: dict[tuple[str, str], Served] = {}
    try:
        for name in FLAVORS:
            fitted = steps.fit(name, splits, prepared.spec, {}, seed=7, nthread=1)
            chosen, _ = steps.calibrate(fitted, splits.valid, SETTINGS.calibration_folds)
            for method in (ISOTONIC, PLATT):
                if chosen.spec.calibration is not None and chosen.spec.calibration["method"] == method:
                    calibrated = chosen  # the map training chose
                else:
                    block = FITTERS[method](fitted.raw_proba(splits.valid), valid_labels)
                    calibrated = fitted.with_spec(fitted.spec.with_calibration(block))
                candidate = steps.evaluate(calibrated, splits).candidate  # the threshold on calibrated valid
                model_dir = log_like_the_recorder(candidate, splits.train, mlflow_server.uri, tmp / f"{name}-{method}")
                log_dir = tmp / f"log-{name}-{method}"
                server = start_server(
                    tmp, model_dir, log_dir, {"MLOPS_PREDICTION_LOG_FLUSH_SECONDS": "0.2"}, wait_ready=False
                )
                started[(name, method)] = Served(candidate, rows, as_records(rows, candidate), server, log_dir)
        for case in started.values():
            wait_until_ready(case.server)
        yield started
    finally:
        for case in started.values():
            case.server.stop()


def _histogram_sum(metrics_text: str) -> float:
    match = re.search(r"^mlops_serving_prediction_probability_sum ([0-9.e+-]+)$", metrics_text, re.M)
    assert match, "no probability histogram in /metrics"
    return float(match.group(1))


@pytest.mark.parametrize(("name", "method"), CASES)
def test_the_server_serves_what_training_predicts(served: dict[tuple[str, str], Served], name: str, method: str) -> None:
    case = served[(name, method)]
    spec = case.candidate.spec
    assert spec.calibration is not None and spec.calibration["method"] == method
    trained = case.candidate.predict_proba(case.rows)
    raw = case.candidate.raw_proba(case.rows)
    assert np.max(np.abs(trained - raw)) > 1e-3, "the calibration map changes nothing: the test would prove little"

    with httpx.Client(base_url=case.server.url, timeout=30) as client:
        response = client.post("/predict", json={"records": case.records})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        served_proba = np.array([p["probability"] for p in predictions])
        difference = float(np.max(np.abs(served_proba - trained)))
        assert difference <= TOLERANCE, f"{name}/{method}: served vs trained differ by up to {difference:.3g}"
        assert [p["label"] for p in predictions] == [int(p >= spec.threshold) for p in served_proba]
        assert sum(p["label"] for p in predictions) not in (0, len(predictions))
        # One record per request takes the server's other encoding path (record by record).
        singles = [
            client.post("/predict", json={"records": [record]}).json()["predictions"][0]["probability"]
            for record in case.records[:SINGLE_REQUESTS]
        ]
        np.testing.assert_allclose(singles, trained[:SINGLE_REQUESTS], rtol=0, atol=TOLERANCE)

        invocations = client.post("/invocations", json={"dataframe_records": case.records[:50]})
        assert invocations.status_code == 200, invocations.text
        if case.candidate.flavor == "xgboost":  # MLflow's answer for a booster: the probabilities
            np.testing.assert_allclose(invocations.json()["predictions"], trained[:50], rtol=0, atol=TOLERANCE)
        else:  # for a pipeline: its class labels (its own argmax), not the calibrated threshold's
            assert invocations.json()["predictions"] == [int(p > 0.5) for p in raw[:50]]
        # The histogram counts the calibrated probability of every row scored on either endpoint.
        counted = float(trained.sum() + trained[:SINGLE_REQUESTS].sum() + trained[:50].sum())
        assert _histogram_sum(client.get("/metrics").text) == pytest.approx(counted, abs=TOLERANCE * len(case.rows))

    def logged() -> list[dict[str, Any]]:
        lines = [json.loads(line) for f in case.log_dir.glob("ds=*/*.jsonl") for line in f.read_text().splitlines()]
        return [line for line in lines if line["endpoint"] == "predict"]

    assert wait_for(lambda: len(logged()) == 1 + SINGLE_REQUESTS, timeout=10)
    whole = [line for line in logged() if len(line["input"]["records"]) == len(case.records)]
    assert len(whole) == 1 and whole[0]["output"]["predictions"] == predictions
