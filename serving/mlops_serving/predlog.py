"""Prediction log: each scored request as received and its response as sent, written off the request path.

One JSON line per *request*, appended by a background thread to

    <dir>/ds=YYYY-MM-DD/predictions-<hostname>-<pid>-<starttime>.requests.jsonl

partitioned by the UTC day of the prediction::

    {"request_id": "4f1c...-1a", "ts": "2024-05-01T12:00:00.123Z", "model_name": "churn-model",
     "model_version": "3", "traffic_source": "demo", "endpoint": "predict",
     "input": {"records": [{"customer_id": "c-1", "event_time": "...", "tenure_months": 12, ...}, ...]},
     "output": {"model_name": ..., "request_id": ..., "predictions": [{"probability": 0.8312, "label": 1}, ...]}}

Record ``i`` of ``input.records`` was predicted ``output.predictions[i]``. For ``/predict``,
``input`` is the request body byte for byte (line breaks, which JSON allows only between tokens,
become spaces) and ``output`` the response body the client got. Other requests (``/invocations``
payloads, bodies that needed the lenient NaN parser) are logged as ``{"records": [...]}`` of their
validated records and ``{"predictions": [...]}`` of their outputs, each serialised by one orjson call.
The monitor's reader (``mlops_pipeline.monitoring.predictions``) flattens lines into one row per
record (request fields, the id/time columns, the features, probability, label) in batches, with
Arrow.

Why this shape: a ``/predict`` request already holds its body and its response as bytes, so it
hands the writer references to them (a deque append: no copy, no I/O, no serialisation). The
writer's work is the same for 1 row or 10,000: a timestamp and a small header per request (the
model's fields are serialised once), and ``writev`` of header, body and response, which the kernel
copies without the GIL. Flattening costs per row, so it happens in the monitor, with Arrow's
multi-threaded JSON parser, rather than in a process whose event loop shares the GIL with the
writer. JSON lines rather than Arrow files keep the serving image free of pyarrow and its start-up
cost, keep the files readable with ``head`` and ``jq``, and make a torn write easy to contain: a
line is a whole request or nothing.

Writes go to a file opened with ``O_APPEND``. A write that fails (full disk, I/O error) is cut back
to the last whole line, so a file only ever holds whole lines, plus at most one unterminated line
if the process dies in the middle of a write; the reader leaves that one aside and reads everything
before it. Failures never reach the request: rows are dropped, ``on_dropped(rows, reason)`` is
called (a metric) and a warning is logged at most once a minute. :meth:`PredictionLogger.close`
(on shutdown, after the last request) writes everything queued so far.
"""

from __future__ import annotations

import atexit
import collections
import errno
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import orjson

log = logging.getLogger("mlops_serving.predlog")

# Read by mlops_pipeline.monitoring.predictions, which tells this format from the older one (one
# line per row, plain ``.jsonl``) by it.
FILE_SUFFIX = ".requests.jsonl"

# The writer formats at most this many requests (a few microseconds each) before it sleeps for
# YIELD_SECONDS without the GIL, so the event loop never waits for it longer than one such chunk
# (a bare ``time.sleep(0)`` releases the GIL, but the writer usually takes it straight back: the
# event loop thread is still waking up). Even so the writer keeps up with tens of thousands of
# requests a second. It writes to disk (without the GIL) once this many bytes are formatted.
YIELD_EVERY_REQUESTS = 32
YIELD_SECONDS = 0.0005
WRITE_CHUNK_BYTES = 4 << 20
# Each time a file has grown by this much, the log asks the kernel to write its recent pages back
# and to drop from the page cache those already written (``POSIX_FADV_DONTNEED``). Nothing reads the
# log back soon (the monitor reads a day's files once, hours later), and a busy server writes
# gigabytes a day: left to itself, that fills the page cache and counts against a container's
# memory limit, and every write takes a page not used before instead of one just freed. Measured
# on 2 cores (a VM), 100-row requests at c=8: once 4 GB of log had been written, the server's
# kernel time per request doubled (60 to 120 µs) and its throughput fell by a seventh; with the
# drop it stayed at 60 µs, and the whole page cache under 0.4 GB.
DROP_CACHE_BYTES = 8 << 20
DROP_CACHE_SPAN = 4  # each drop covers the last this many steps: pages still dirty last time are clean now

_NUMPY = orjson.OPT_SERIALIZE_NUMPY
try:
    _IOV_MAX = max(16, min(1024, os.sysconf("SC_IOV_MAX")))
except (ValueError, OSError):  # pragma: no cover
    _IOV_MAX = 1024


def _safe_hostname() -> str:
    host = socket.gethostname() or "host"
    return re.sub(r"[^A-Za-z0-9._-]", "_", host)[:64]


class LineFormat:
    """Lines of one server's log. The fields every line of it shares are serialised once; a line
    is then a few small ``orjson.dumps`` and one bytes template, whatever its number of rows."""

    def __init__(self, model_name: str, model_version: str) -> None:
        self._model = orjson.dumps({"model_name": model_name, "model_version": model_version})[1:-1]

    def parts(
        self,
        request_id: str,
        ts_json: bytes,
        traffic_source: str,
        endpoint: str,
        input_json: bytes,
        output_json: bytes,
    ) -> tuple[bytes, ...]:
        """The buffers of one line, to write one after the other: the input and the output are
        not copied. ``ts_json``: the timestamp as a JSON string (quotes included)."""
        dumps = orjson.dumps
        head = b'{"request_id":%b,"ts":%b,%b,"traffic_source":%b,"endpoint":%b,"input":' % (
            dumps(request_id),
            ts_json,
            self._model,
            dumps(traffic_source),
            dumps(endpoint),
        )
        return (head, input_json, b',"output":', output_json, b"}\n")


def line_parts(
    *,
    request_id: str,
    ts: str,
    model_name: str,
    model_version: str,
    traffic_source: str,
    endpoint: str,
    input_json: bytes,
    output_json: bytes,
) -> tuple[bytes, ...]:
    """One line of the log as buffers (see :meth:`LineFormat.parts`); ``input_json`` and
    ``output_json``: see :func:`input_json` and :func:`output_json`."""
    return LineFormat(model_name, model_version).parts(
        request_id, orjson.dumps(ts), traffic_source, endpoint, input_json, output_json
    )


def request_line(**fields: Any) -> bytes:
    """One line of the log, joined (see :func:`line_parts` for the fields)."""
    return b"".join(line_parts(**fields))


def input_json(body: bytes | None, records: list[dict[str, Any]] | None) -> bytes:
    """The ``input`` of a line: ``body`` as received (a JSON object ``{"records": [...]}``), or
    ``records`` serialised when there is no such body."""
    if body is None:
        return orjson.dumps({"records": records})
    if b"\n" in body or b"\r" in body:
        # Valid JSON has raw line breaks only between tokens (inside strings they are escaped).
        body = body.replace(b"\n", b" ").replace(b"\r", b" ")
    return body


def output_json(response: bytes | None, probabilities: Any, labels: Any) -> bytes:
    """The ``output`` of a line: the ``/predict`` response as sent (a JSON object with
    ``"predictions": [{"probability": p, "label": l}, ...]``), or that list built from the outputs
    when the response had another shape: by C-level iteration over the serialised vectors, so no
    Python runs per row. A float32 probability is written as the shortest decimal that reads back
    as that float32, as in the response."""
    if response is not None:
        return response
    if not len(labels):
        return b'{"predictions":[]}'
    # orjson serialises C-contiguous arrays only (a column of a 2-D array is not).
    probability = orjson.dumps(np.ascontiguousarray(probabilities), option=_NUMPY)[1:-1].split(b",")
    label = orjson.dumps(np.ascontiguousarray(labels), option=_NUMPY)[1:-1].split(b",")
    if len(probability) != len(label):
        raise ValueError(f"{len(probability)} probabilities but {len(label)} labels")
    pairs = zip(repeat(b'{"probability":'), probability, repeat(b',"label":'), label, repeat(b"}"))
    return b"".join((b'{"predictions":[', b",".join(map(b"".join, pairs)), b"]}"))


class PredictionLogger:
    def __init__(
        self,
        directory: Path,
        *,
        model_name: str,
        model_version: str,
        flush_seconds: float = 1.0,
        flush_rows: int = 2000,
        max_queue_rows: int = 200_000,
        on_dropped: Callable[[int, str], None] | None = None,
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.model_name = model_name
        self.model_version = model_version
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.max_queue_rows = max_queue_rows
        self._on_dropped = on_dropped
        self._on_written = on_written
        started = datetime.now(UTC)
        stamp = started.strftime("%Y%m%dT%H%M%S") + f"{started.microsecond // 1000:03d}Z"
        self.filename = f"predictions-{_safe_hostname()}-{os.getpid()}-{stamp}{FILE_SUFFIX}"
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        # Each counter has a single writer: enqueued by the request thread, consumed by the
        # writer thread (or by close() once that thread has stopped).
        self._enqueued = 0
        self._consumed = 0
        self.written_rows = 0
        self.dropped_rows = 0
        self._wake = threading.Event()
        self._signalled = False  # set by the request thread when it wakes the writer, reset by the writer
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._files: dict[str, int] = {}  # day -> file descriptor
        self._last_warning = 0.0
        self._format = LineFormat(model_name, model_version)
        self._ts_second = -1
        self._ts_day = ""
        self._ts_prefix = b""
        self._closed = False
        self._close_lock = threading.Lock()

    # ----------------------------------------------------------------- control
    def start(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._warn(
                f"prediction log directory {self.directory} is not usable ({exc}); rows will be dropped"
            )
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the writer after writing everything queued so far. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._drain()  # anything appended after the thread's last pass
            self._close_files()
        try:
            atexit.unregister(self.close)
        except Exception:  # pragma: no cover
            pass

    @property
    def pending_rows(self) -> int:
        return self._enqueued - self._consumed

    # ---------------------------------------------------------------- hot path
    def log(
        self,
        endpoint: str,
        request_id: str,
        ts: float,
        source: str,
        records: list[dict[str, Any]],
        probs: Any,
        labels: Any,
        body: bytes | None = None,
        response: bytes | None = None,
    ) -> None:
        """Queue one scored request: references to what the request already holds, no copy.

        ``body``: the raw request body when it is exactly ``{"records": records}`` as the client
        sent it (``/predict``), else the writer serialises ``records``. ``response``: the response
        body when it holds ``"predictions": [{"probability", "label"}, ...]`` (``/predict``), else
        the writer builds that list from ``probs`` and ``labels``.
        """
        n = len(records)
        if self._closed or self._enqueued - self._consumed + n > self.max_queue_rows:
            self._drop(n, "closed" if self._closed else "queue_full")
            return
        self._queue.append(
            (
                endpoint,
                request_id,
                ts,
                source,
                n,
                # Checked here, where the body is still in the CPU cache, not by the writer.
                None if body is None else input_json(body, None),
                None if body is not None else records,  # the body holds them: let them go
                response,
                None if response is not None else (probs, labels),
            )
        )
        self._enqueued += n
        if not self._signalled and self._enqueued - self._consumed >= self.flush_rows:
            # A lock and a notify: once per drain, not once per request. Rows count as pending until
            # the writer has written them, so without the flag every request queued during a drain
            # would signal again.
            self._signalled = True
            self._wake.set()

    # ------------------------------------------------------------------ writer
    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self._drain()
            except Exception as exc:  # never let the writer die
                self._warn(f"prediction log writer error: {exc!r}")
            self._signalled = False  # after the drain: a request may signal the next one
            if self._enqueued - self._consumed >= self.flush_rows:
                self._wake.set()  # queued after the drain's last look, before the line above
            if self._stopping.is_set():
                try:
                    self._drain()
                finally:
                    self._close_files()
                return

    def _timestamp(self, ts: float) -> tuple[str, bytes]:
        """The UTC day and the JSON string of ``ts`` (milliseconds, ``Z``); formatted once a second."""
        sec = int(ts)
        if sec != self._ts_second:
            dt = datetime.fromtimestamp(sec, tz=UTC)
            self._ts_day = dt.strftime("%Y-%m-%d")
            self._ts_prefix = dt.strftime('"%Y-%m-%dT%H:%M:%S').encode()
            self._ts_second = sec
        return self._ts_day, b'%b.%03dZ"' % (self._ts_prefix, min(999, round((ts - sec) * 1000)))

    def _drain(self) -> None:
        queue = self._queue
        line = self._format.parts
        pending: dict[str, _Pending] = {}
        pending_bytes = 0
        since_yield = 0
        while True:
            try:
                item = queue.popleft()
            except IndexError:
                break
            endpoint, request_id, ts, source, n, body, records, response, outputs = item
            try:
                day, ts_json = self._timestamp(ts)
                parts = line(
                    request_id,
                    ts_json,
                    source,
                    endpoint,
                    body if body is not None else input_json(None, records),
                    output_json(response, *(outputs or ((), ()))),
                )
            except Exception as exc:
                self._consumed += n
                self._drop(n, "serialize_error")
                self._warn(f"cannot serialise prediction log rows: {exc!r}")
                continue
            batch = pending.get(day)
            if batch is None:
                batch = pending[day] = _Pending()
            batch.parts.extend(parts)
            batch.rows += n
            pending_bytes += len(parts[1]) + len(parts[3])
            if pending_bytes >= WRITE_CHUNK_BYTES:
                self._write_pending(pending)
                pending_bytes = 0
            since_yield += 1
            if since_yield >= YIELD_EVERY_REQUESTS and not self._stopping.is_set():
                # Let the event loop run between chunks of work rather than make it wait for the
                # interpreter's switch interval (tail latency). On shutdown: as fast as possible.
                time.sleep(YIELD_SECONDS)
                since_yield = 0
        self._write_pending(pending)

    def _write_pending(self, pending: dict[str, _Pending]) -> None:
        for day, batch in pending.items():
            if batch.rows:
                self._write(day, batch.parts, batch.rows)
            self._consumed += batch.rows
        pending.clear()

    def _open(self, day: str) -> int:
        fd = self._files.get(day)
        if fd is not None:
            return fd
        part = self.directory / f"ds={day}"
        part.mkdir(parents=True, exist_ok=True)
        path = part / self.filename
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # Only after a failed write that could not be cut back: end that line, so the
                # next one stays readable (the reader reports the broken one).
                _write_all(fd, [b"\n"])
        except OSError:
            os.close(fd)
            raise
        self._files[day] = fd
        for old in sorted(self._files)[:-2]:  # keep today's and yesterday's open
            self._close_one(old)
        return fd

    def _write(self, day: str, parts: list[bytes], rows: int) -> None:
        fd = end = None
        try:
            fd = self._open(day)
            end = os.lseek(fd, 0, os.SEEK_END)
            size = _write_all(fd, parts)
        except OSError as exc:
            if fd is not None and end is not None:
                try:
                    os.ftruncate(fd, end)  # no torn line: the file ends with its last whole line
                except OSError:
                    pass
            self._close_one(day)
            self._drop(rows, "write_error")
            self._warn(f"cannot write prediction log under {self.directory}: {exc}; dropped {rows} rows")
            return
        self.written_rows += rows
        if self._on_written is not None:
            self._on_written(rows)
        if (end + size) // DROP_CACHE_BYTES != end // DROP_CACHE_BYTES:
            _drop_cache(fd, end + size)

    def _close_one(self, day: str) -> None:
        fd = self._files.pop(day, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _close_files(self) -> None:
        for day in list(self._files):
            self._close_one(day)

    # ----------------------------------------------------------------- helpers
    def _drop(self, rows: int, reason: str) -> None:
        self.dropped_rows += rows
        if self._on_dropped is not None:
            try:
                self._on_dropped(rows, reason)
            except Exception:  # pragma: no cover - metrics must not break logging
                pass
        if reason == "queue_full":
            self._warn(f"prediction log queue full ({self.max_queue_rows} rows); dropping rows")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 60.0 or self._last_warning == 0.0:
            self._last_warning = now
            log.warning(message)


class _Pending:
    """Lines formatted for one day's file, not written yet."""

    __slots__ = ("parts", "rows")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.rows = 0


def _drop_cache(fd: int, end: int) -> None:
    """Start writing back the last steps of a file that ends at ``end``, and drop those of its pages
    the kernel has written already from the page cache (see ``DROP_CACHE_BYTES``). Advice only: a
    system without it, or a refusal, changes nothing that was written."""
    fadvise = getattr(os, "posix_fadvise", None)
    if fadvise is None:  # pragma: no cover - not on macOS
        return
    start = max(0, (end // DROP_CACHE_BYTES - DROP_CACHE_SPAN) * DROP_CACHE_BYTES)
    try:
        fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def _write_all(fd: int, buffers: list[bytes]) -> int:
    """Write ``buffers`` one after the other with as few ``writev`` calls as the system allows;
    returns the number of bytes written."""
    parts: list[bytes | memoryview] = list(buffers)
    total = 0
    start = 0
    while start < len(parts):
        batch = parts[start : start + _IOV_MAX]
        written = os.writev(fd, batch)
        if written == 0 and any(batch):
            raise OSError(errno.EIO, "writev wrote nothing")
        total += written
        for buf in batch:
            size = len(buf)
            if written < size:
                parts[start] = memoryview(buf)[written:]
                break
            written -= size
            start += 1
    return total
