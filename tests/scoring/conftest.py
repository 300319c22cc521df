"""A lake of validated days and a registered ``@champion`` for the scoring tests.

The days are written straight into ``validated/`` (synthetic churn rows, typed, one parquet file per
day as ingest writes them): scoring reads the zone and needs none of the ingest steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.mlflow_fixtures import (
    MlflowServer,
    MlopsEnv,
    ValidatedLake,
    _clear_settings_caches,
    _point_settings_at,
)
from tests.scoring.registered import Registered, register

FIRST_DAY = date(2026, 1, 1)
DAYS = 5
ROWS = 2000


def write_validated_days(root: Path, first_day: date = FIRST_DAY, days: int = DAYS, rows: int = ROWS) -> ValidatedLake:
    import pandas as pd

    from mlops_pipeline.data.lake import DataFile, Lake, frame_to_parquet_bytes
    from mlops_pipeline.data.synthetic import generate_day
    from mlops_pipeline.datasets import load_dataset_spec

    spec = load_dataset_spec("churn")
    lake = Lake(root.as_uri())
    written = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        frame = generate_day(day, seed=42, rows=rows)
        frame[spec.time_column] = pd.to_datetime(frame[spec.time_column], utc=True)
        data = frame_to_parquet_bytes(frame)
        lake.write_partition("validated", day.isoformat(), [DataFile("part-00000", ".parquet", data, rows=len(frame))], {})
        written.append(day.isoformat())
    return ValidatedLake(lake.uri, written)


@pytest.fixture(scope="module")
def scoring_env(tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer) -> Iterator[MlopsEnv]:
    """Settings pointing at a lake of validated days and the session's MLflow server (a model name of the module's own)."""
    import mlflow

    lake = write_validated_days(tmp_path_factory.mktemp("scoring-lake"))
    previous_uri = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _point_settings_at(monkeypatch, mlflow_server, lake)
    mlflow.set_tracking_uri(previous_uri)
    _clear_settings_caches()


@pytest.fixture(scope="module")
def champion(scoring_env: MlopsEnv) -> Registered:
    """An XGBoost version trained on the lake's first days, registered and made ``@champion``."""
    return register(scoring_env.lake.uri, scoring_env.tracking_uri, scoring_env.model_name)
