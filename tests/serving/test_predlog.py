"""Prediction log writer unit tests (the reader's side: tests/monitoring/test_predictions.py)."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from mlops_pipeline.monitoring.predictions import LogLayout, ReadReport, iter_log_rows, log_files
from mlops_serving import predlog
from mlops_serving.predlog import PredictionLogger

LAYOUT = LogLayout("cid", "t", ("a", "c"), ("b",))


def _logger(directory: Path, **kw) -> PredictionLogger:  # type: ignore[no-untyped-def]
    return PredictionLogger(directory, model_name="m", model_version="3", **kw)


def _response(probs: np.ndarray, labels: list[int]) -> bytes:
    """As the app answers /predict."""
    predictions = [{"probability": p, "label": lab} for p, lab in zip(probs, labels, strict=True)]
    return orjson.dumps(
        {"model_name": "m", "model_version": "3", "request_id": "rid-1", "predictions": predictions},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def _log_predict(
    log: PredictionLogger, records: list[dict], probs: np.ndarray, labels: list[int], **kw
) -> None:  # type: ignore[no-untyped-def]
    args = {"request_id": "r", "ts": time.time(), "source": "client", **kw}
    body = orjson.dumps({"records": records})
    log.log(
        "predict",
        args["request_id"],
        args["ts"],
        args["source"],
        records,
        probs,
        labels,
        body,
        _response(probs, labels),
    )


def _rows(directory: Path) -> list[dict]:
    report = ReadReport()
    rows = list(iter_log_rows(log_files(directory), LAYOUT, report))
    assert report.bad_lines == 0 and report.incomplete_tails == [], report
    return rows


class _Untouchable(list):
    """Records the writer must not look at: the request body holds them."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the prediction log iterated the records")

    def __getitem__(self, index):  # type: ignore[no-untyped-def]
        raise AssertionError("the prediction log indexed the records")


def test_rows_have_the_documented_fields(tmp_path: Path) -> None:
    log = _logger(tmp_path)
    log.start()
    records = [
        {"a": 1, "b": "x", "c": None},
        {"a": 2.5, "b": "y", "c": 3, "cid": "c-1", "t": "2024-01-01T00:00:00Z"},
        {"b": "z", "c": 1, "cid": 7},  # optional 'a' omitted
    ]
    probs = np.array([0.25, 0.5, 0.9999], dtype=np.float32)
    _log_predict(log, records, probs, [0, 1, 1], request_id="rid-1", ts=1714564800.123, source="demo")
    log.close()
    rows = _rows(tmp_path)
    assert [r["row"] for r in rows] == [0, 1, 2]
    assert rows[0] == {
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
    files = list(tmp_path.glob("ds=2024-05-01/predictions-*.requests.jsonl"))
    assert len(files) == 1


def test_a_predict_line_holds_the_body_and_the_response_as_they_are(tmp_path: Path) -> None:
    log = _logger(tmp_path)
    log.start()
    records = [{"a": 1, "b": "x", "c": 2.0}, {"a": 3, "b": "y\nz", "c": None}]
    body = b'{\n  "records": [{"a": 1, "b": "x", "c": 2.0},\r\n {"a": 3, "b": "y\\nz", "c": null}]\n}'  # pretty-printed
    probs = np.array([0.1, 0.2], dtype=np.float32)
    response = _response(probs, [0, 0])
    log.log("predict", "r", 1714564800.0, "client", _Untouchable(records), probs, [0, 0], body, response)
    log.close()
    (path,) = log_files(tmp_path)
    (line,) = path.read_bytes().splitlines()
    assert body.replace(b"\n", b" ").replace(b"\r", b" ") in line and response in line
    assert orjson.loads(line)["input"] == {"records": records}
    assert [r["features"]["b"] for r in _rows(tmp_path)] == ["x", "y\nz"]


def test_other_payloads_are_logged_as_their_records_and_outputs(tmp_path: Path) -> None:
    log = _logger(tmp_path)
    log.start()
    records = [{"a": 1.0, "b": "x", "c": 2}, {"a": float("nan"), "b": "y", "c": 3}]  # NaN: the lenient parser
    log.log("invocations", "r", time.time(), "client", records, np.array([0.5, 0.75], np.float32), [1, 1])
    log.close()
    rows = _rows(tmp_path)
    assert [(r["endpoint"], r["features"]["a"], r["probability"], r["label"]) for r in rows] == [
        ("invocations", 1.0, 0.5, 1),
        ("invocations", None, 0.75, 1),
    ]


def test_flushes_in_background_and_partitions_by_day(tmp_path: Path) -> None:
    log = _logger(tmp_path, flush_seconds=0.05)
    log.start()
    day1, day2 = 1714564800.0, 1714564800.0 + 86400
    for ts in (day1, day2, day1):
        _log_predict(log, [{"a": 1, "b": "x", "c": 2}], np.array([0.1], np.float32), [0], ts=ts)
    deadline = time.monotonic() + 10
    while len(list(iter_log_rows(log_files(tmp_path), LAYOUT))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(p.name for p in tmp_path.glob("ds=*")) == ["ds=2024-05-01", "ds=2024-05-02"]
    log.close()
    assert log.written_rows == 3 and log.pending_rows == 0


def test_the_request_thread_wakes_the_writer_once_per_drain(tmp_path: Path) -> None:
    """Rows stay pending until written, so every request queued while the writer drains is past the
    flush size; each waking it again (a lock and a notify) cost the requests more CPU than the
    writer's own work."""
    log = _logger(tmp_path, flush_seconds=60, flush_rows=4)
    wakes = []
    log._wake.set = lambda: wakes.append(1)  # type: ignore[method-assign]  # no writer thread here
    for i in range(30):
        _log_predict(log, [{"a": i, "b": "x", "c": 2}] * 2, np.full(2, 0.5, np.float32), [1, 1])
    assert len(wakes) == 1  # until the writer's drain is over
    log._drain()
    log._signalled = False  # as the writer does after a drain
    for i in range(3):
        _log_predict(log, [{"a": i, "b": "x", "c": 2}] * 2, np.full(2, 0.5, np.float32), [1, 1])
    assert len(wakes) == 2 and len(_rows(tmp_path)) == 60


def test_a_started_writer_writes_every_row_with_a_small_flush_size(tmp_path: Path) -> None:
    log = _logger(tmp_path, flush_seconds=60, flush_rows=3)
    log.start()
    for i in range(500):  # each request past the flush size on its own
        _log_predict(log, [{"a": i, "b": "x", "c": 2}] * 4, np.full(4, 0.5, np.float32), [1] * 4)
    deadline = time.monotonic() + 10
    while log.written_rows < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.written_rows == 2000  # woken by the requests alone (flush_seconds=60), nothing left behind
    log.close()
    assert len(_rows(tmp_path)) == 2000


def test_close_writes_everything_queued_then_drops(tmp_path: Path) -> None:
    dropped: list[tuple[int, str]] = []
    log = _logger(tmp_path, flush_seconds=60, on_dropped=lambda n, reason: dropped.append((n, reason)))
    log.start()
    for i in range(50):
        _log_predict(
            log, [{"a": i, "b": "x", "c": 2}] * 2, np.full(2, 0.5, np.float32), [1, 1], request_id=f"r{i}"
        )
    log.close()  # what shutdown (SIGTERM) does
    assert len(_rows(tmp_path)) == 100 and log.written_rows == 100
    _log_predict(log, [{"a": 1, "b": "x", "c": 2}], np.array([0.1], np.float32), [0])
    assert dropped == [(1, "closed")]


def test_unwritable_directory_drops_and_reports(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    dropped: list[tuple[int, str]] = []
    log = _logger(blocker / "logs", on_dropped=lambda n, reason: dropped.append((n, reason)))
    log.start()
    _log_predict(log, [{"a": 1, "b": "x", "c": 2}] * 4, np.zeros(4, np.float32), [0] * 4)
    log.close()
    assert dropped == [(4, "write_error")] and log.written_rows == 0


def test_a_failed_write_is_cut_back_to_the_last_whole_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills up in the middle of a write: the partial write is removed, the rows are
    counted as dropped, and the next write goes on after the last whole line."""
    dropped: list[tuple[int, str]] = []
    log = _logger(tmp_path, flush_seconds=60, on_dropped=lambda n, reason: dropped.append((n, reason)))
    records = [{"a": 1, "b": "x", "c": 2}] * 3

    def flush() -> None:
        log._wake.set()  # noqa: SLF001
        deadline = time.monotonic() + 10
        while log.pending_rows and time.monotonic() < deadline:
            time.sleep(0.01)

    log.start()
    _log_predict(log, records, np.full(3, 0.5, np.float32), [1] * 3, request_id="first")
    flush()
    real_writev = os.writev

    def disk_full(fd: int, buffers: list) -> int:  # type: ignore[type-arg]
        os.write(fd, bytes(buffers[0])[:10])  # some bytes made it, then the disk was full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(predlog.os, "writev", disk_full)
    _log_predict(log, records, np.full(3, 0.5, np.float32), [1] * 3, request_id="lost")
    flush()
    monkeypatch.setattr(predlog.os, "writev", real_writev)
    _log_predict(log, records, np.full(3, 0.5, np.float32), [1] * 3, request_id="after")
    log.close()
    assert dropped == [(3, "write_error")]
    assert [r["request_id"] for r in _rows(tmp_path)] == ["first"] * 3 + ["after"] * 3


def test_partial_line_is_not_glued_to_the_next(tmp_path: Path) -> None:
    log = _logger(tmp_path)
    day_dir = tmp_path / "ds=2024-05-01"
    day_dir.mkdir()
    (day_dir / log.filename).write_bytes(b'{"truncated": ')
    log.start()
    _log_predict(log, [{"a": 1, "b": "x", "c": 2}], np.array([0.1], np.float32), [0], ts=1714564800.0)
    log.close()
    lines = (day_dir / log.filename).read_text().splitlines()
    assert lines[0] == '{"truncated": ' and json.loads(lines[1])["request_id"] == "r"


def test_large_batches_are_written_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More buffers than one ``writev`` takes, and short writes: every byte lands, in order."""
    monkeypatch.setattr(predlog, "_IOV_MAX", 16)
    real_writev = os.writev

    def short_writev(fd: int, buffers: list) -> int:  # type: ignore[type-arg]
        return real_writev(fd, buffers[:3]) if len(buffers) > 3 else real_writev(fd, buffers)

    monkeypatch.setattr(predlog.os, "writev", short_writev)
    log = _logger(tmp_path, flush_seconds=60)
    log.start()
    for i in range(40):
        _log_predict(
            log,
            [{"a": i, "b": "x", "c": j} for j in range(3)],
            np.full(3, 0.5, np.float32),
            [1] * 3,
            request_id=f"r{i}",
        )
    log.close()
    rows = _rows(tmp_path)
    assert [(r["request_id"], r["features"]["c"]) for r in rows] == [
        (f"r{i}", j) for i in range(40) for j in range(3)
    ]


def test_written_pages_are_dropped_from_the_page_cache_step_by_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each time a file passes a step, the kernel is advised to drop its last steps (those it has
    written back); the advice never covers bytes past the end, and a refusal loses no row."""
    step = 4096
    monkeypatch.setattr(predlog, "DROP_CACHE_BYTES", step)
    advice: list[tuple[int, int, int, int]] = []  # (offset, length, advice, file size then)
    real_fadvise = os.posix_fadvise

    def recording_fadvise(fd: int, offset: int, length: int, how: int) -> None:
        advice.append((offset, length, how, os.fstat(fd).st_size))
        real_fadvise(fd, offset, length, how)
        if len(advice) % 2:
            raise OSError(errno.EINVAL, "refused")  # every other one: as a filesystem may

    monkeypatch.setattr(predlog.os, "posix_fadvise", recording_fadvise)
    log = _logger(tmp_path, flush_seconds=60, flush_rows=1)
    records = [{"a": i, "b": "x" * 50, "c": i} for i in range(20)]  # a line of about 2.5 KB
    for i in range(40):
        _log_predict(log, records, np.full(20, 0.5, np.float32), [1] * 20, request_id=f"r{i}")
        log._drain()  # noqa: SLF001 - one write per request, no writer thread
    log.close()
    size = sum(f.stat().st_size for f in log_files(tmp_path))
    assert len(_rows(tmp_path)) == 40 * 20 and log.dropped_rows == 0
    assert size // step - 1 <= len(advice) <= size // step  # once per step passed
    for offset, length, how, file_size in advice:
        assert how == os.POSIX_FADV_DONTNEED
        assert offset + length == file_size  # up to what was written
        assert offset % step == 0 and 0 < length <= (predlog.DROP_CACHE_SPAN + 1) * step


@pytest.mark.parametrize("rows", [1, 2, 100])
def test_outputs_built_by_the_writer_read_like_a_response(rows: int) -> None:
    """Without a response to copy, the writer serialises the outputs itself: the same JSON as the
    app's response would hold (shortest float32 decimals, NaN as null)."""
    probs = np.random.default_rng(rows).uniform(0, 1, (rows, 2)).astype(np.float32)[:, 1]  # a column: not contiguous
    probs[-1] = np.nan if rows > 1 else probs[-1]
    labels = (probs >= 0.5).astype(np.int8).tolist()
    expected = orjson.dumps(
        {"predictions": [{"probability": p, "label": lab} for p, lab in zip(probs, labels, strict=True)]},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    assert predlog.output_json(None, probs, labels) == expected
    assert predlog.output_json(_response(probs, labels), probs, labels) == _response(probs, labels)
