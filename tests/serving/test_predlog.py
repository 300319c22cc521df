"""Prediction log writer unit tests."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from mlops_serving.predlog import PredictionLogger

FEATURES = ("a", "b", "c")


def _logger(directory: Path, **kw) -> PredictionLogger:  # type: ignore[no-untyped-def]
    return PredictionLogger(
        directory,
        model_name="m",
        model_version="3",
        feature_names=FEATURES,
        id_column="cid",
        time_column="t",
        **kw,
    )


def _read(directory: Path) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted(directory.glob("ds=*/*.jsonl"))
        for line in f.read_text().splitlines()
    ]


def test_lines_have_the_documented_fields(tmp_path: Path) -> None:
    log = _logger(tmp_path)
    log.start()
    records = [
        {"a": 1, "b": "x", "c": None},
        {"a": 2.5, "b": "y", "c": 3, "cid": "c-1", "t": "2024-01-01T00:00:00Z"},
        {"b": "z", "c": 1, "cid": 7},  # optional 'a' omitted
    ]
    probs = np.array([0.25, 0.5, 0.9999], dtype=np.float32)
    ts = 1714564800.123  # 2024-05-01T12:00:00.123Z
    log.log("predict", "rid-1", ts, "demo", records, probs, [0, 1, 1])
    log.close()
    rows = _read(tmp_path)
    assert [r["row"] for r in rows] == [0, 1, 2]
    first = rows[0]
    assert first == {
        "request_id": "rid-1",
        "ts": "2024-05-01T12:00:00.123Z",
        "model_name": "m",
        "model_version": "3",
        "traffic_source": "demo",
        "endpoint": "predict",
        "row": 0,
        "cid": None,
        "t": None,
        "features": {"a": 1, "b": "x", "c": None},
        "probability": 0.25,
        "label": 0,
    }
    assert rows[1]["cid"] == "c-1" and rows[1]["features"] == {"a": 2.5, "b": "y", "c": 3}
    assert rows[2]["cid"] == 7 and rows[2]["features"] == {"a": None, "b": "z", "c": 1}
    assert rows[2]["probability"] == 0.9999  # shortest float32 repr
    files = list(tmp_path.glob("ds=2024-05-01/predictions-*.jsonl"))
    assert len(files) == 1


def test_flushes_in_background_and_partitions_by_day(tmp_path: Path) -> None:
    log = _logger(tmp_path, flush_seconds=0.05)
    log.start()
    day1, day2 = 1714564800.0, 1714564800.0 + 86400
    for ts in (day1, day2, day1):
        log.log("predict", "r", ts, "client", [{"a": 1, "b": "x", "c": 2}], np.array([0.1], np.float32), [0])
    deadline = time.monotonic() + 10
    while len(_read(tmp_path)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(p.name for p in tmp_path.glob("ds=*")) == ["ds=2024-05-01", "ds=2024-05-02"]
    log.close()
    assert log.written_rows == 3 and log.pending_rows == 0


def test_unwritable_directory_drops_and_reports(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    dropped: list[tuple[int, str]] = []
    log = _logger(blocker / "logs", on_dropped=lambda n, reason: dropped.append((n, reason)))
    log.start()
    log.log(
        "predict",
        "r",
        time.time(),
        "client",
        [{"a": 1, "b": "x", "c": 2}] * 4,
        np.zeros(4, np.float32),
        [0] * 4,
    )
    log.close()
    assert dropped == [(4, "write_error")] and log.written_rows == 0


def test_partial_line_is_not_glued_to_the_next(tmp_path: Path) -> None:
    log = _logger(tmp_path)
    day_dir = tmp_path / "ds=2024-05-01"
    day_dir.mkdir()
    (day_dir / log.filename).write_bytes(b'{"truncated": ')
    log.start()
    log.log(
        "predict", "r", 1714564800.0, "client", [{"a": 1, "b": "x", "c": 2}], np.array([0.1], np.float32), [0]
    )
    log.close()
    lines = (day_dir / log.filename).read_text().splitlines()
    assert lines[0] == '{"truncated": ' and json.loads(lines[1])["request_id"] == "r"
