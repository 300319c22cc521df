"""Reading the prediction log: the serving app's own files, blocks, bad lines, torn writes, the older
format, window membership."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from mlops_pipeline.data.synthetic import generate_day
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.monitoring.predictions import (
    EVENT_TIME,
    PROBABILITY,
    ROW_ID,
    TS,
    VERSION,
    LogLayout,
    ReadReport,
    in_range,
    iter_log_rows,
    iter_log_tables,
    log_files,
)
from tests.monitoring.logs import legacy_log_lines, log_lines, write_log

LAYOUT = LogLayout("cid", "t", ("a", "b"), ("c",))
REQUESTS = "predictions-a-1-20260105T000000000Z.requests.jsonl"


def _record(**fields) -> dict:
    return {"cid": "c-1", "t": "2026-01-05T10:00:00Z", "a": 1.0, "b": 2, "c": "x", **fields}


def _request(*records: dict, probabilities=None, **fields) -> bytes:
    """A request line as the server writes it (``input``: the body; ``output``: the response)."""
    records = records or (_record(),)
    probabilities = probabilities if probabilities is not None else [0.25] * len(records)
    line = {
        "request_id": "r", "ts": "2026-01-05T12:00:00.000Z", "model_name": "m", "model_version": "3",
        "traffic_source": "client", "endpoint": "predict",
        "input": {"records": list(records)},
        "output": {"model_name": "m", "predictions": [{"probability": p, "label": int(p >= 0.5)} for p in probabilities]},
    }
    line.update(fields)
    return orjson.dumps(line) + b"\n"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _read(paths, block_bytes=1 << 20, layout=LAYOUT):
    report = ReadReport()
    tables = list(iter_log_tables(paths, layout, report, block_bytes=block_bytes))
    return (pa.concat_tables(tables) if tables else layout.table_schema().empty_table()), report


def _serving_logger(directory: Path, **kw):
    from mlops_serving.predlog import PredictionLogger  # on sys.path through tests.monitoring.logs

    return PredictionLogger(directory, model_name="m", model_version="7", **kw)


def test_files_of_the_serving_app_are_read_back(tmp_path):
    logger = _serving_logger(tmp_path)
    logger.start()
    records = [{"cid": f"c-{i}", "t": "2026-01-05T10:00:00+00:00", "a": float(i), "b": 2, "c": "x"} for i in range(5)]
    probs = np.array([0.1, 0.2, 0.3, 0.4, 0.5], dtype="float32")
    labels = [0, 0, 0, 0, 1]
    body = orjson.dumps({"records": records})
    response = orjson.dumps(
        {"model_name": "m", "predictions": [{"probability": p, "label": lab} for p, lab in zip(probs, labels, strict=True)]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    logger.log("predict", "req-1", time.time(), "client", records, probs, labels, body, response)
    logger.log("invocations", "req-2", time.time(), "client", records[:2], probs[:2], labels[:2])  # no body: records
    logger.close()
    files = log_files(tmp_path)
    assert [f.name for f in files] == [logger.filename] and logger.filename.endswith(".requests.jsonl")
    table, report = _read(files)
    assert table.num_rows == 7 and report.bad_lines == 0 and report.incomplete_tails == []
    assert table.column(ROW_ID).to_pylist() == [f"c-{i}" for i in range(5)] + ["c-0", "c-1"]
    assert table.column("a").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 1.0]
    assert table.column(VERSION).to_pylist() == ["7"] * 7
    assert table.column(PROBABILITY).to_numpy() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.1, 0.2], abs=1e-6)
    assert table.column(EVENT_TIME)[0].as_py() == datetime(2026, 1, 5, 10, tzinfo=UTC)
    rows = list(iter_log_rows(files, LAYOUT))
    assert [(r["request_id"], r["endpoint"], r["row"], r["label"]) for r in rows] == [
        *[("req-1", "predict", i, labels[i]) for i in range(5)],
        ("req-2", "invocations", 0, 0),
        ("req-2", "invocations", 1, 0),
    ]
    assert rows[0]["features"] == {"a": 0.0, "b": 2, "c": "x"} and rows[0]["probability"] == 0.1


def test_the_new_format_gives_the_rows_of_the_old_one(tmp_path):
    """Parity: the same requests, logged one line per row (before) and one line per request (now),
    read back as the same flattened rows and the same per-row records."""
    spec = load_dataset_spec("churn")
    frame = generate_day(date(2026, 1, 5), seed=7, rows=250).drop(columns=[spec.target])
    frame.loc[frame.index[:10], "avg_session_minutes"] = np.nan  # optional values missing
    probabilities = np.random.default_rng(3).uniform(0, 1, len(frame)).astype("float32").astype(float)
    kw = {"model_version": "4", "predicted_at": datetime(2026, 1, 5, 23, tzinfo=UTC), "request_rows": 100}
    new = write_log(tmp_path / "new", "2026-01-05", log_lines(frame, probabilities, spec, **kw))
    old = write_log(tmp_path / "old", "2026-01-05", legacy_log_lines(frame, probabilities, spec, **kw), name="predictions-old.jsonl")
    layout = LogLayout.for_dataset(spec)
    (new_table, new_report), (old_table, old_report) = _read([new], layout=layout), _read([old], layout=layout)
    assert new_table.num_rows == old_table.num_rows == 250 and new_report.bad_lines == old_report.bad_lines == 0
    assert new_table.equals(old_table)
    assert len(new.read_bytes().splitlines()) == 3  # one line per request of up to 100 rows
    assert list(iter_log_rows([new], layout)) == list(iter_log_rows([old], layout))


def test_old_and_new_files_side_by_side(tmp_path):
    old = b"".join(
        orjson.dumps({"ts": "2026-01-05T12:00:00.000Z", "model_version": "2", "row": 0, "cid": f"old-{i}", "t": None,
                      "features": {"a": 1.0, "b": 1, "c": "y"}, "probability": 0.5, "label": 1}) + b"\n"
        for i in range(3)
    )
    _write(tmp_path / "ds=2026-01-05" / "predictions-a-1-20260101T000000000Z.jsonl", old)
    _write(tmp_path / "ds=2026-01-05" / REQUESTS, _request(_record(cid="new-0"), _record(cid="new-1")))
    table, report = _read(log_files(tmp_path))
    assert sorted(table.column(ROW_ID).to_pylist()) == ["new-0", "new-1", "old-0", "old-1", "old-2"]
    assert report.rows == 5 and report.bad_lines == 0 and len(report.files) == 2


def test_partitions_are_chosen_by_day_and_sorted(tmp_path):
    for day in ("2026-01-04", "2026-01-05", "2026-01-06"):
        _write(tmp_path / f"ds={day}" / "predictions-b.requests.jsonl", _request())
        _write(tmp_path / f"ds={day}" / "predictions-a.requests.jsonl", _request())
    (tmp_path / "ds=not-a-day").mkdir()
    (tmp_path / "_prometheus").mkdir()
    chosen = log_files(tmp_path, [date(2026, 1, 5), date(2026, 1, 6)])
    assert [p.relative_to(tmp_path).as_posix() for p in chosen] == [
        "ds=2026-01-05/predictions-a.requests.jsonl", "ds=2026-01-05/predictions-b.requests.jsonl",
        "ds=2026-01-06/predictions-a.requests.jsonl", "ds=2026-01-06/predictions-b.requests.jsonl",
    ]
    assert len(log_files(tmp_path)) == 6 and log_files(tmp_path / "missing") == []


def test_blocks_keep_lines_whole_and_count_every_row(tmp_path):
    data = b"".join(
        _request(*[_record(cid=f"c-{i}-{j}", a=float(i * 3 + j)) for j in range(3)], probabilities=[0.1, 0.2, 0.3])
        for i in range(700)
    )
    path = _write(tmp_path / "ds=2026-01-05" / REQUESTS, data)
    table, report = _read([path], block_bytes=4096)  # many blocks, cut mid-line
    assert table.num_rows == 2100 == report.rows
    assert table.column("a").to_pylist() == [float(i) for i in range(2100)]
    assert table.column(PROBABILITY).to_pylist() == [0.1, 0.2, 0.3] * 700


def test_reading_ahead_gives_the_same_tables_and_report_and_raises_the_readers_error(tmp_path, monkeypatch):
    data = b"".join(_request(*[_record(cid=f"c-{i}-{j}", a=float(i * 3 + j)) for j in range(3)]) for i in range(700))
    data += b'{"request_id": "torn", "ts": "2026-01-05T12:\n' + _request(_record(cid="last"))
    path = _write(tmp_path / "ds=2026-01-05" / REQUESTS, data)
    plain, plain_report = _read([path], block_bytes=4096)
    ahead_report = ReadReport()
    ahead = list(iter_log_tables([path], LAYOUT, ahead_report, block_bytes=4096, read_ahead=2))
    assert len(ahead) > 10
    assert pa.concat_tables(ahead).equals(plain)
    assert ahead_report.to_dict() == plain_report.to_dict() and ahead_report.bad_lines == 1
    # a consumer that stops early stops the reader's thread
    threads = threading.active_count()
    tables = iter_log_tables([path], LAYOUT, block_bytes=4096, read_ahead=1)
    next(tables)
    tables.close()
    assert threading.active_count() == threads
    # an error while reading reaches the consumer as it is
    import mlops_pipeline.monitoring.predictions as predictions

    def broken(*args, **kwargs):
        raise OSError(f"{path}: input/output error")

    monkeypatch.setattr(predictions, "_parse_request_block", broken)
    with pytest.raises(OSError, match="input/output error"):
        list(iter_log_tables([path], LAYOUT, read_ahead=1))


def test_bad_lines_are_skipped_and_reported_with_where_they_are(tmp_path):
    data = (
        _request(_record(cid="good-1"))
        + b'{"request_id": "torn", "ts": "2026-01-05T12:\n'  # a writer crashed mid-line
        + _request(_record(cid=17), model_version=3)  # numbers where strings belong: coerced
        + _request(_record(cid="good-2"), _record(cid="bad-number", a="not a number"))  # one bad record
        + b"[1, 2]\n"
        + _request(_record(cid="lost"), probabilities=[0.1, 0.2])  # not one prediction per record
        + _request(_record(cid="good-3", t=None))
        + b'{"request_id": "still being written'
    )
    path = _write(tmp_path / "ds=2026-01-05" / REQUESTS, data)
    table, report = _read([path])
    assert table.column(ROW_ID).to_pylist() == ["good-1", "17", "good-2", "good-3"]
    assert table.column(VERSION).to_pylist() == ["3"] * 4
    assert table.column(EVENT_TIME).to_pylist()[3] is None
    assert report.bad_lines == 4
    assert report.bad_examples[0].startswith(f"{path}:2: ")
    assert report.bad_examples[1].startswith(f"{path}:4 record 1: ")
    assert report.bad_examples[2].startswith(f"{path}:5: ")
    assert report.bad_examples[3].startswith(f"{path}:6: 1 records but 2 predictions")
    assert report.incomplete_tails == [f"{path}:8"]


def test_a_write_cut_anywhere_leaves_every_complete_line_readable(tmp_path):
    """A process killed in the middle of a write leaves a file whose complete lines all read."""
    logger = _serving_logger(tmp_path / "log")
    logger.start()
    for i in range(4):
        records = [_record(cid=f"c-{i}-{j}") for j in range(3)]
        logger.log("predict", f"r{i}", time.time(), "client", records, np.full(3, 0.5, "float32"), [1, 1, 1], orjson.dumps({"records": records}))
    logger.close()
    (written,) = log_files(tmp_path / "log")
    data = written.read_bytes()
    last_line_start = data.rindex(b"\n", 0, len(data) - 1) + 1
    for cut in range(last_line_start, len(data), 7):
        torn = _write(tmp_path / f"cut-{cut}" / "ds=2026-01-05" / REQUESTS, data[:cut])
        table, report = _read([torn])
        assert table.num_rows == 9 and report.bad_lines == 0, cut
        assert report.incomplete_tails == ([] if cut == last_line_start else [f"{torn}:4"])


def test_window_membership_is_by_event_time_else_prediction_time(tmp_path):
    data = (
        _request(_record(cid="in", t="2026-01-05T23:59:59.999Z"), ts="2026-01-06T00:00:02.000Z")  # predicted after midnight
        + _request(_record(cid="before", t="2026-01-04T23:59:59.999Z"))
        + _request(_record(cid="no-event-time", t=None), ts="2026-01-05T08:00:00.000Z")
        + _request(_record(cid="after", t="2026-01-06T00:00:00Z"), ts="2026-01-05T12:00:00.000Z")
    )
    table, _ = _read([_write(tmp_path / "ds=2026-01-05" / REQUESTS, data)])
    window = in_range(table, datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC))
    assert window.column(ROW_ID).to_pylist() == ["in", "no-event-time"]
    assert window.column(TS).to_pylist()[0] == datetime(2026, 1, 6, 0, 0, 2, tzinfo=UTC)


def test_layout_follows_the_dataset():
    layout = LogLayout.for_dataset(load_dataset_spec("churn"))
    assert layout.id_column == "customer_id" and layout.time_column == "event_time"
    assert "plan" in layout.categorical_features and "tenure_months" in layout.numeric_features
    assert layout.table_schema().names[:5] == ["_ts", "_model_version", "_id", "_event_time", "_probability"]


def test_a_new_servers_warm_up_requests_are_not_traffic(tmp_path):
    """A canary's warm-up requests (traffic source ``warmup``) never reach a window, in a clean block
    or in one read line by line."""
    lines = [
        _request(_record(cid="warm-1"), _record(cid="warm-2"), traffic_source="warmup"),
        _request(_record(cid="client-1")),
        _request(_record(cid="warm-3"), traffic_source="warmup"),
    ]
    path = _write(tmp_path / "ds=2026-01-05" / REQUESTS, b"".join(lines))
    table, _ = _read([path])
    assert table.column(ROW_ID).to_pylist() == ["client-1"]
    torn = _write(tmp_path / "torn" / "ds=2026-01-05" / REQUESTS, b"".join(lines) + b'{"ts": "2026-01-05T1\n')
    table, report = _read([torn])
    assert table.column(ROW_ID).to_pylist() == ["client-1"] and report.bad_lines == 1
