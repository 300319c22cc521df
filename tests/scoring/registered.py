"""A real registered model for the scoring tests: trained by the project's training steps on days of
the session's validated lake, logged by the recorder's own call, registered with its
``artifact_sha256`` tag and (optionally) given ``@champion``, as mlops_train and mlops_deploy do."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

import pandas as pd

from mlops_pipeline.config import TrainSettings

TRAIN_DAYS = ("2026-01-01", "2026-01-02", "2026-01-03")
SETTINGS = TrainSettings(tune_trials=3, tune_folds=2, calibration_folds=3, min_split_rows=50)


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    artifact_sha256: str
    flavor: str


def register(lake_uri: str, tracking_uri: str, model_name: str, *, candidate: str = "xgboost", champion: bool = True) -> Registered:
    import mlflow
    from mlflow import MlflowClient

    from mlops_pipeline.contracts.tags import ARTIFACT_SHA256, CHAMPION
    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.registry.lineage import register_version
    from mlops_pipeline.training import steps
    from mlops_pipeline.training.data import PartitionRef, TrainingWindow
    from mlops_pipeline.training.recorder import _log_model

    dataset = load_dataset_spec("churn")
    lake = Lake(lake_uri)
    frame = pd.concat([lake.read_frame("validated", ds) for ds in TRAIN_DAYS], ignore_index=True)
    frame[dataset.time_column] = pd.to_datetime(frame[dataset.time_column], utc=True)
    frame = frame.sort_values([dataset.time_column, dataset.id_column], kind="mergesort").reset_index(drop=True)
    parts = tuple(PartitionRef(ds, lake.partition_uri("validated", ds), ("0" * 64,), 2000) for ds in TRAIN_DAYS)
    next_day = date.fromisoformat(TRAIN_DAYS[-1]).toordinal() + 1
    window = TrainingWindow(lake_uri, date.fromordinal(next_day).isoformat(), len(TRAIN_DAYS), parts)
    prepared = steps.split(frame, dataset, window, SETTINGS)
    fitted = steps.fit(candidate, prepared.splits, prepared.spec, {}, seed=7, nthread=1)
    calibrated, _ = steps.calibrate(fitted, prepared.splits.valid, SETTINGS.calibration_folds)
    winner = steps.evaluate(calibrated, prepared.splits).candidate
    client = MlflowClient(tracking_uri)
    # The fluent API's URI, set and left (the env already names this server); restoring an unset URI
    # would remove MLFLOW_TRACKING_URI from the environment the settings read.
    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = client.create_experiment(f"scoring-{uuid.uuid4().hex[:10]}")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = _log_model(winner, prepared.splits.train)
        version = register_version(client, model_name, info, run.info.run_id, tags={}, description="scoring test")
    if champion:
        client.set_registered_model_alias(model_name, CHAMPION, str(version.version))
    return Registered(model_name, str(version.version), version.tags[ARTIFACT_SHA256], winner.flavor)
