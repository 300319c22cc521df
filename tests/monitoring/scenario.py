"""A champion and prediction logs for monitoring tests (shared by the library and the DAG tests).

The champion is a real training run (the baseline candidate, a few seconds) on the session's lake
of validated days, promoted to ``@champion``. Logs hold the champion's predictions for:

* the labelled day (window day - label delay + 1): the lake's own rows, so their labels join;
* the window day: the lake's rows (no drift) or the synthetic source's covariate-drift rows.

:func:`add_labelled_day` and :func:`write_day_log` put any generated day (a scenario's rows with
their labels) into a lake copy and the log, for windows whose labels must join.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from mlops_pipeline.data.lake import DataFile, Lake, frame_to_parquet_bytes
from mlops_pipeline.data.synthetic import Scenario, generate_day
from mlops_pipeline.datasets import load_dataset_spec
from tests.monitoring.logs import log_lines, write_log

WINDOW_DAY = date(2026, 1, 9)


def train_champion(as_of: date) -> dict:
    from mlops_pipeline.registry import promote
    from mlops_pipeline.training.pipeline import TrainRequest, train_and_register

    result = train_and_register(TrainRequest(as_of=as_of, reason="monitor-test", candidates=["baseline"]))
    promote(result["version"])
    return result


def copy_lake(uri: str, target: Path) -> str:
    """A private copy of a ``file://`` lake (the session's lake is shared and read-only)."""
    shutil.copytree(urlparse(uri).path, target)
    return target.as_uri()


def write_scenario_logs(log_dir: Path, lake_uri: str, champion: dict, *, drift: bool, window_day: date = WINDOW_DAY) -> None:
    from mlops_pipeline.registry.models import load_model

    spec = load_dataset_spec("churn")
    lake = Lake(lake_uri)
    model = load_model(champion["model_uri"])
    labelled_day = window_day - timedelta(days=spec.label_delay_days - 1)
    days: list[tuple[date, pd.DataFrame]] = [(labelled_day, lake.read_frame("validated", labelled_day.isoformat()))]
    if drift:
        window_rows = generate_day(window_day, seed=42, rows=2000, scenarios={Scenario.COVARIATE_DRIFT}).drop(columns=[spec.target])
    else:
        window_rows = lake.read_frame("validated", window_day.isoformat())
    days.append((window_day, window_rows))
    for day, frame in days:
        predicted_at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=23)
        lines = log_lines(frame, model.predict_proba(frame), spec, model_version=champion["version"], predicted_at=predicted_at)
        write_log(log_dir, day.isoformat(), lines)


def scenario_day(day: date, scenario: Scenario | None, rows: int, seed: int = 42) -> pd.DataFrame:
    """The synthetic source's events of ``day`` under ``scenario`` (None: normal), labels included."""
    return generate_day(day, seed=seed, rows=rows, scenarios=set() if scenario is None else {scenario})


def add_labelled_day(lake_uri: str, day: date, frame: pd.DataFrame) -> None:
    """``frame`` (with its target column) as the validated partition of ``day``: where labels are read."""
    data = frame_to_parquet_bytes(frame)
    Lake(lake_uri).write_partition("validated", day.isoformat(), [DataFile("part-00000", ".parquet", data, rows=len(frame))], {})


def write_day_log(log_dir: Path, champion: dict, day: date, frame: pd.DataFrame, model=None) -> None:
    """The champion's predictions of ``frame``, logged as the server logs them, on the evening of ``day``."""
    from mlops_pipeline.registry.models import load_model

    spec = load_dataset_spec("churn")
    model = model or load_model(champion["model_uri"])
    rows = frame.drop(columns=[spec.target], errors="ignore")
    predicted_at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=23)
    lines = log_lines(rows, model.predict_proba(rows), spec, model_version=champion["version"], predicted_at=predicted_at)
    write_log(log_dir, day.isoformat(), lines)
