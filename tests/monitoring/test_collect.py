"""One pass over the log for a window (no services): which partitions, which rows, replayed traffic."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from mlops_pipeline.config import MonitorSettings
from mlops_pipeline.data.synthetic import generate_day
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.ingest import Window
from mlops_pipeline.monitoring.pipeline import read_window
from mlops_pipeline.monitoring.reference import ChampionReference
from tests.monitoring.logs import log_lines, write_log

SPEC = load_dataset_spec("churn")
WINDOW = Window(datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC))


@pytest.fixture(scope="module")
def reference() -> ChampionReference:
    frame = generate_day(date(2026, 1, 2), seed=42, rows=3000)
    return ChampionReference("churn", "4", "run-1", frame, 0.8, 0.4, "runs:/run-1/data/reference_sample.parquet")


def _log(log_dir, day: date, partition: str, version: str = "4", rows: int = 600) -> None:
    frame = generate_day(day, seed=42, rows=rows)
    predicted_at = datetime(2026, 11, 20, 12, tzinfo=UTC) if partition != day.isoformat() else datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    write_log(log_dir, partition, log_lines(frame, np.full(rows, 0.3), SPEC, model_version=version, predicted_at=predicted_at))


def test_window_rows_and_labelled_rows_in_one_pass(tmp_path, reference):
    _log(tmp_path, date(2026, 1, 9), "2026-01-09")
    _log(tmp_path, date(2026, 1, 7), "2026-01-07", rows=300)  # the labelled day (label delay 3)
    _log(tmp_path, date(2026, 1, 9), "2026-01-09", version="5", rows=100)  # a canary's rows
    _log(tmp_path, date(2026, 1, 3), "2026-01-03")  # outside both: not read
    data = read_window(WINDOW, SPEC, MonitorSettings(report_sample_rows=200), reference, np.full(3000, 0.3), log_dir=tmp_path)
    assert data.drift["rows"] == 700 and data.drift["model_versions"] == {"4": 600, "5": 100}
    assert data.drift["prediction"]["rows"] == 600  # only the champion's outputs
    assert len(data.labelled) == 300 and set(data.labelled.columns) == {"id", "time", "ts", "version", "probability"}
    assert data.sample.num_rows == 200
    assert data.read["files"] == 2 and data.read["labelled_days"] == ["2026-01-07"]
    assert data.read["partitions_scanned"] == "window"


@pytest.mark.parametrize(("scan", "rows"), [("auto", 600), ("window", 0), ("all", 600)])
def test_traffic_replayed_later_is_found_by_event_time(tmp_path, reference, scan, rows):
    _log(tmp_path, date(2026, 1, 9), "2026-11-20")  # served on 2026-11-20 for events of 2026-01-09
    data = read_window(WINDOW, SPEC, MonitorSettings(log_scan=scan), reference, None, log_dir=tmp_path)
    assert data.drift["rows"] == rows
    assert data.read["partitions_scanned"] == ("window" if scan == "window" else "all")
