"""Reading the prediction log: the serving app's own files, blocks, bad lines, window membership."""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import orjson
import pytest

from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.monitoring.predictions import (
    EVENT_TIME,
    PROBABILITY,
    ROW_ID,
    VERSION,
    LogLayout,
    ReadReport,
    in_range,
    iter_log_tables,
    log_files,
)

REPO = Path(__file__).resolve().parents[2]
LAYOUT = LogLayout("cid", "t", ("a", "b"), ("c",))


def _line(**fields) -> bytes:
    record = {
        "request_id": "r", "ts": "2026-01-05T12:00:00.000Z", "model_name": "m", "model_version": "3",
        "traffic_source": "client", "endpoint": "predict", "row": 0, "cid": "c-1", "t": "2026-01-05T10:00:00Z",
        "features": {"a": 1.0, "b": 2, "c": "x"}, "probability": 0.25, "label": 0,
    }
    record.update(fields)
    return orjson.dumps(record) + b"\n"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _read(paths, block_bytes=1 << 20):
    report = ReadReport()
    tables = list(iter_log_tables(paths, LAYOUT, report, block_bytes=block_bytes))
    import pyarrow as pa

    return (pa.concat_tables(tables) if tables else LAYOUT.table_schema().empty_table()), report


def test_files_of_the_serving_app_are_read_back(tmp_path):
    sys.path.insert(0, str(REPO / "serving"))
    try:
        from mlops_serving.predlog import PredictionLogger
    finally:
        sys.path.remove(str(REPO / "serving"))
    logger = PredictionLogger(tmp_path, model_name="m", model_version="7", feature_names=("a", "b", "c"), id_column="cid", time_column="t")
    logger.start()
    records = [{"cid": f"c-{i}", "t": "2026-01-05T10:00:00+00:00", "a": float(i), "b": 2, "c": "x"} for i in range(5)]
    logger.log("predict", "req-1", time.time(), "client", records, np.array([0.1, 0.2, 0.3, 0.4, 0.5], dtype="float32"), [0, 0, 0, 0, 1])
    logger.close()
    table, report = _read(log_files(tmp_path))
    assert table.num_rows == 5 and report.bad_lines == 0
    assert table.column(ROW_ID).to_pylist() == [f"c-{i}" for i in range(5)]
    assert table.column("a").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert table.column(VERSION).to_pylist() == ["7"] * 5
    assert table.column(PROBABILITY).to_numpy() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-6)
    assert table.column(EVENT_TIME)[0].as_py() == datetime(2026, 1, 5, 10, tzinfo=UTC)


def test_partitions_are_chosen_by_day_and_sorted(tmp_path):
    for day in ("2026-01-04", "2026-01-05", "2026-01-06"):
        _write(tmp_path / f"ds={day}" / "predictions-b.jsonl", _line())
        _write(tmp_path / f"ds={day}" / "predictions-a.jsonl", _line())
    (tmp_path / "ds=not-a-day").mkdir()
    chosen = log_files(tmp_path, [date(2026, 1, 5), date(2026, 1, 6)])
    assert [p.relative_to(tmp_path).as_posix() for p in chosen] == [
        "ds=2026-01-05/predictions-a.jsonl", "ds=2026-01-05/predictions-b.jsonl",
        "ds=2026-01-06/predictions-a.jsonl", "ds=2026-01-06/predictions-b.jsonl",
    ]
    assert len(log_files(tmp_path)) == 6 and log_files(tmp_path / "missing") == []


def test_blocks_keep_lines_whole_and_count_every_row(tmp_path):
    data = b"".join(_line(cid=f"c-{i}", features={"a": float(i), "b": 1, "c": "x"}) for i in range(2000))
    path = _write(tmp_path / "ds=2026-01-05" / "p.jsonl", data)
    table, report = _read([path], block_bytes=4096)  # many blocks, cut mid-line
    assert table.num_rows == 2000 == report.rows
    assert table.column("a").to_pylist() == [float(i) for i in range(2000)]


def test_bad_lines_are_skipped_and_reported_with_where_they_are(tmp_path):
    data = (
        _line(cid="good-1")
        + b'{"request_id": "torn", "ts": "2026-01-05T12:\n'  # a writer crashed mid-line
        + _line(cid=17, model_version=3)  # numbers where strings belong: coerced
        + _line(cid="bad-number", features={"a": "not a number", "b": 1, "c": "x"})
        + b"[1, 2]\n"
        + _line(cid="good-2", t=None)
        + b'{"request_id": "still being written'
    )
    path = _write(tmp_path / "ds=2026-01-05" / "p.jsonl", data)
    table, report = _read([path])
    assert table.column(ROW_ID).to_pylist() == ["good-1", "17", "good-2"]
    assert table.column(VERSION).to_pylist() == ["3", "3", "3"]
    assert table.column(EVENT_TIME).to_pylist()[2] is None
    assert report.bad_lines == 3
    assert report.bad_examples[0].startswith(f"{path}:2: ")
    assert report.bad_examples[1].startswith(f"{path}:4: ")
    assert report.incomplete_tails == [f"{path}:7"]


def test_window_membership_is_by_event_time_else_prediction_time():
    from mlops_pipeline.monitoring.predictions import _parse_block

    data = (
        _line(cid="in", t="2026-01-05T23:59:59.999Z", ts="2026-01-06T00:00:02.000Z")  # predicted after midnight
        + _line(cid="before", t="2026-01-04T23:59:59.999Z")
        + _line(cid="no-event-time", t=None, ts="2026-01-05T08:00:00.000Z")
        + _line(cid="after", t="2026-01-06T00:00:00Z", ts="2026-01-05T12:00:00.000Z")
    )
    table = _parse_block(data, LAYOUT, Path("x"), 1, ReadReport())
    window = in_range(table, datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC))
    assert window.column(ROW_ID).to_pylist() == ["in", "no-event-time"]


def test_layout_follows_the_dataset():
    layout = LogLayout.for_dataset(load_dataset_spec("churn"))
    assert layout.id_column == "customer_id" and layout.time_column == "event_time"
    assert "plan" in layout.categorical_features and "tenure_months" in layout.numeric_features
    assert layout.table_schema().names[:5] == ["_ts", "_model_version", "_id", "_event_time", "_probability"]
