"""Reading the prediction log that the serving app writes, in bounded memory.

The serving app (``serving/mlops_serving/predlog.py``) writes one JSON line per *request* under
``<log dir>/ds=YYYY-MM-DD/predictions-<host>-<pid>-<start>.requests.jsonl``, partitioned by the
UTC day of the prediction::

    {"request_id", "ts", "model_name", "model_version", "traffic_source", "endpoint",
     "input": {"records": [{<features>, "<id column>", "<time column>"}, ...]},
     "output": {"predictions": [{"probability", "label"}, ...], ...}}

For ``/predict``, ``input`` is the request body as the client sent it and ``output`` the response
(other keys of either are ignored); other endpoints log their records and outputs in the same
shape. Record ``i`` was predicted ``output.predictions[i]``. Files written before that
format (plain ``*.jsonl``, one line per row: the request fields, ``row``, the id and time columns,
``features``, ``probability``, ``label``) are read too. Every reader goes through this module:
:func:`iter_log_tables` flattens either format into the same Arrow tables (one row per record,
the dataset's columns), :func:`iter_log_rows` gives the per-row records themselves.

A row belongs to a monitoring window by its *event time* (the dataset's time column, as the
client sent it), or by its prediction time ``ts`` when it carries none: replayed or late traffic
is then judged by when the event happened, like the labels it is joined with.

Files are read in blocks of whole lines (``block_bytes``), each parsed by Arrow's JSON reader
against the schema the dataset implies and flattened with Arrow's list kernels, so memory stays
bounded whatever the window's size. A block Arrow rejects (a torn line from a crashed writer, a
number where a string belongs) is read again line by line: good lines are kept (values coerced),
bad ones are counted and reported with ``path:line``; the files themselves are never changed. A
file's unterminated last line (the writer may be in the middle of it) is left for the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from mlops_pipeline.datasets import DatasetSpec

log = logging.getLogger(__name__)

# Column names of the flattened tables; features keep their own names (no collision is possible:
# the service columns start with an underscore, which dataset columns never need).
TS = "_ts"
VERSION = "_model_version"
ROW_ID = "_id"
EVENT_TIME = "_event_time"
PROBABILITY = "_probability"
SERVICE_COLUMNS = (TS, VERSION, ROW_ID, EVENT_TIME, PROBABILITY)

# The serving app's files (one line per request); any other ``*.jsonl`` is the older one-line-per-row format.
REQUESTS_SUFFIX = ".requests.jsonl"
# The fields of a request line that every one of its rows carries.
REQUEST_FIELDS = ("request_id", "ts", "model_name", "model_version", "traffic_source", "endpoint")
# Requests that are not traffic: a new server's warm-up before it takes any (see deploy.steps); the
# reader leaves them out, so no window, drift statistic or label join ever sees them.
NOT_TRAFFIC = frozenset({"warmup", "smoke", "shadow"})  # a new server's warm-up; a blue-green smoke test (deploy.smoke); a shadow's copies (deploy.shadow)

DEFAULT_BLOCK_BYTES = 16 << 20
PARSE_CHUNK_BYTES = 2 << 20  # Arrow parses a block in chunks of this size, on all cores
MAX_REPORTED_BAD_LINES = 20


class PredictionLogError(ValueError):
    """The prediction log cannot be read as the dataset describes it."""


@dataclass(frozen=True)
class LogLayout:
    """Which keys a dataset's prediction log lines carry."""

    id_column: str | None
    time_column: str | None
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]

    @classmethod
    def for_dataset(cls, spec: DatasetSpec) -> LogLayout:
        return cls(spec.id_column, spec.time_column, tuple(spec.numeric_features), tuple(spec.categorical_features))

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric_features, *self.categorical_features)

    def request_json_schema(self) -> pa.Schema:
        """The schema Arrow parses a request line with (unknown keys are ignored, missing ones are null)."""
        import pyarrow as pa

        record = [
            *[pa.field(n, pa.float64()) for n in self.numeric_features],
            *[pa.field(n, pa.string()) for n in self.categorical_features],
        ]
        if self.id_column:
            record.append(pa.field(self.id_column, pa.string()))
        if self.time_column:
            record.append(pa.field(self.time_column, pa.timestamp("ns", tz="UTC")))
        prediction = pa.struct([pa.field("probability", pa.float64())])
        return pa.schema(
            [
                pa.field("ts", pa.timestamp("ns", tz="UTC")),
                pa.field("model_version", pa.string()),
                pa.field("traffic_source", pa.string()),
                pa.field("input", pa.struct([pa.field("records", pa.list_(pa.struct(record)))])),
                pa.field("output", pa.struct([pa.field("predictions", pa.list_(prediction))])),
            ]
        )

    def json_schema(self) -> pa.Schema:
        """The schema Arrow parses a line of the older one-line-per-row format with."""
        import pyarrow as pa

        # Nanoseconds: Arrow then accepts any number of fractional digits (clients send 0 to 9).
        fields = [
            pa.field("ts", pa.timestamp("ns", tz="UTC")),
            pa.field("model_version", pa.string()),
            pa.field("probability", pa.float64()),
            pa.field(
                "features",
                pa.struct(
                    [pa.field(n, pa.float64()) for n in self.numeric_features]
                    + [pa.field(n, pa.string()) for n in self.categorical_features]
                ),
            ),
        ]
        if self.id_column:
            fields.append(pa.field(self.id_column, pa.string()))
        if self.time_column:
            fields.append(pa.field(self.time_column, pa.timestamp("ns", tz="UTC")))
        return pa.schema(fields)

    def table_schema(self) -> pa.Schema:
        """The schema of the flattened tables :func:`iter_log_tables` yields."""
        import pyarrow as pa

        return pa.schema(
            [
                pa.field(TS, pa.timestamp("ms", tz="UTC")),
                pa.field(VERSION, pa.string()),
                pa.field(ROW_ID, pa.string()),
                pa.field(EVENT_TIME, pa.timestamp("ms", tz="UTC")),
                pa.field(PROBABILITY, pa.float64()),
                *[pa.field(n, pa.float64()) for n in self.numeric_features],
                *[pa.field(n, pa.string()) for n in self.categorical_features],
            ]
        )


@dataclass
class ReadReport:
    """What a read saw: files, rows, and the lines (or rows of a request line) it had to skip, with
    where they are."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    bad_lines: int = 0
    bad_examples: list[str] = field(default_factory=list)
    incomplete_tails: list[str] = field(default_factory=list)

    def bad(self, where: str, why: str) -> None:
        self.bad_lines += 1
        if len(self.bad_examples) < MAX_REPORTED_BAD_LINES:
            self.bad_examples.append(f"{where}: {why}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": len(self.files),
            "rows": self.rows,
            "bad_lines": self.bad_lines,
            "bad_examples": self.bad_examples,
            "incomplete_tails": self.incomplete_tails,
        }


# --- which files ----------------------------------------------------------------------------------


def partition_day(path: Path) -> date | None:
    name = path.name
    if not name.startswith("ds="):
        return None
    try:
        return date.fromisoformat(name[3:])
    except ValueError:
        return None


def log_files(log_dir: Path, days: Iterable[date] | None = None) -> list[Path]:
    """The ``*.jsonl`` files (either format) of the ``ds=`` partitions for ``days`` (every partition
    when None), sorted."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return []
    wanted = None if days is None else set(days)
    found: list[Path] = []
    for partition in sorted(log_dir.iterdir()):
        day = partition_day(partition)
        if day is None or not partition.is_dir() or (wanted is not None and day not in wanted):
            continue
        found.extend(sorted(p for p in partition.glob("*.jsonl") if p.is_file()))
    return found


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def is_request_log(path: Path) -> bool:
    """Whether ``path`` holds one line per request (else: the older one line per row)."""
    return Path(path).name.endswith(REQUESTS_SUFFIX)


# --- reading --------------------------------------------------------------------------------------


def iter_log_tables(
    files: Iterable[Path],
    layout: LogLayout,
    report: ReadReport | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    read_ahead: int = 0,
) -> Iterator[pa.Table]:
    """Flattened tables (see :meth:`LogLayout.table_schema`) of every complete line of ``files``.

    With ``read_ahead`` > 0, up to that many blocks are read and parsed in a thread of their own
    while the caller works on the current one (Arrow and NumPy release the GIL, so the parse of the
    next block and the statistics of this one share the cores); ``report`` is complete once the
    iteration is. Memory grows by ``read_ahead`` parsed blocks."""
    if read_ahead > 0:
        return _read_ahead(iter_log_tables(files, layout, report, block_bytes), read_ahead)
    return _iter_log_tables(files, layout, report if report is not None else ReadReport(), block_bytes)


def _iter_log_tables(files: Iterable[Path], layout: LogLayout, report: ReadReport, block_bytes: int) -> Iterator[pa.Table]:
    for path in files:
        report.files.append(str(path))
        parse = _parse_request_block if is_request_log(path) else _parse_block
        for block in _line_blocks(Path(path), block_bytes, report):
            table = parse(block, layout, report)
            if table.num_rows:
                report.rows += table.num_rows
                yield table


def _read_ahead(tables: Iterator[pa.Table], depth: int) -> Iterator[pa.Table]:
    """``tables``, produced by a thread up to ``depth`` items ahead of the consumer. An error in the
    producer is raised to the consumer; a consumer that stops early stops the producer."""
    import queue
    import threading

    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for table in tables:
                if not put(("table", table)):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))
            return
        put(("end", None))

    producer = threading.Thread(target=produce, name="prediction-log-reader", daemon=True)
    producer.start()
    try:
        while True:
            kind, item = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        producer.join()


def iter_log_rows(
    files: Iterable[Path],
    layout: LogLayout,
    report: ReadReport | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> Iterator[dict[str, Any]]:
    """Every row of ``files`` as a dict: the request fields (:data:`REQUEST_FIELDS`), ``row`` (its
    position in the request), the id and time columns, ``features``, ``probability``, ``label``;
    values as logged. For inspection and tests; the monitor reads :func:`iter_log_tables`."""
    report = report if report is not None else ReadReport()
    for path in files:
        report.files.append(str(path))
        lines = _request_rows if is_request_log(path) else _row_lines
        for block in _line_blocks(Path(path), block_bytes, report, count_lines=True):
            for _, row in lines(block, layout, report):
                report.rows += 1
                yield row


def request_rows(request: Any, layout: LogLayout) -> list[dict[str, Any]]:
    """The rows of one parsed request line, in the shape :func:`iter_log_rows` gives. Raises
    ``ValueError`` for a line that is not a request with one prediction per record."""
    if not isinstance(request, dict):
        raise ValueError(f"a JSON {type(request).__name__}, not an object")
    records = _member(request, "input", "records")
    predictions = _member(request, "output", "predictions")
    if not isinstance(records, list) or not isinstance(predictions, list):
        raise ValueError("no 'input.records' or 'output.predictions' list")
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    head = {name: request.get(name) for name in REQUEST_FIELDS}
    passthrough = {column for column in (layout.id_column, layout.time_column) if column}
    rows = []
    for position, (record, prediction) in enumerate(zip(records, predictions, strict=True)):
        if not isinstance(record, dict) or not isinstance(prediction, dict):
            raise ValueError(f"record {position} or its prediction is not an object")
        row = {**head, "row": position}
        for column in (layout.id_column, layout.time_column):
            if column:
                row[column] = record.get(column)
        features: dict[str, Any] = dict.fromkeys(layout.features)
        features.update((name, value) for name, value in record.items() if name not in passthrough)
        row["features"] = features
        row["probability"] = prediction.get("probability")
        row["label"] = prediction.get("label")
        rows.append(row)
    return rows


def _member(obj: dict[str, Any], outer: str, inner: str) -> Any:
    value = obj.get(outer)
    return value.get(inner) if isinstance(value, dict) else None


class _Block:
    """Whole lines of ``path`` starting at byte ``offset``.

    The number of the block's first line is counted only when asked for (by the messages about
    bad lines), from the file itself: counting every block's line ends up front would be another
    pass over every byte for a number the fast path never uses."""

    __slots__ = ("_first_line", "data", "offset", "path")

    def __init__(self, path: Path, offset: int, data: bytearray, first_line: int | None = None):
        self.path, self.offset, self.data, self._first_line = path, offset, data, first_line

    @property
    def first_line(self) -> int:
        if self._first_line is None:
            self._first_line = 1 + _line_ends_before(self.path, self.offset)
        return self._first_line


def _line_ends_before(path: Path, offset: int, chunk_bytes: int = 16 << 20) -> int:
    count = 0
    with open(path, "rb") as handle:
        while offset > 0:
            chunk = handle.read(min(chunk_bytes, offset))
            if not chunk:
                break
            count += chunk.count(b"\n")
            offset -= len(chunk)
    return count


def _line_blocks(path: Path, block_bytes: int, report: ReadReport, *, count_lines: bool = False) -> Iterator[_Block]:
    """Blocks of whole lines; with ``count_lines``, each block's first line number is counted as it
    is read (for readers that need it for every line, not only for a bad one).

    Each block is read straight into its own buffer, with the previous block's unfinished line in
    front and its own unfinished line cut off the end in place: no copy of the block is made."""
    offset = 0  # of the first byte of ``carry``
    line = 1
    carry = b""
    with open(path, "rb", buffering=0) as handle:
        while True:
            buffer = bytearray(len(carry) + block_bytes)
            buffer[: len(carry)] = carry
            with memoryview(buffer) as view:
                size = len(carry) + _read_into(handle, view[len(carry) :])
            if size == len(carry):
                break
            cut = buffer.rfind(b"\n", 0, size)
            if cut < 0:  # a line longer than a block so far
                carry = bytes(buffer[:size])
                continue
            carry = bytes(buffer[cut + 1 : size])
            del buffer[cut + 1 :]
            yield _Block(path, offset, buffer, line if count_lines else None)
            offset += cut + 1
            if count_lines:
                line += buffer.count(b"\n")
    if carry.strip():
        line = line if count_lines else 1 + _line_ends_before(path, offset)
        report.incomplete_tails.append(f"{path}:{line}")
        log.info("%s:%d has no line end yet (a writer may be in the middle of it): left for the next run", path, line)


def _read_into(handle: Any, view: memoryview) -> int:
    """Fill ``view`` from ``handle`` as far as the file goes; the number of bytes read."""
    filled = 0
    while filled < len(view):
        read = handle.readinto(view[filled:])
        if not read:
            break
        filled += read
    return filled


class _Inconsistent(ValueError):
    """A block whose lines Arrow parsed but that do not pair every record with a prediction."""


def _read_json(block: bytearray, schema: pa.Schema) -> pa.Table:
    import pyarrow as pa
    import pyarrow.json as pj

    return pj.read_json(
        pa.BufferReader(pa.py_buffer(block)),  # zero-copy, and read without the GIL
        read_options=pj.ReadOptions(block_size=PARSE_CHUNK_BYTES),  # chunks parse in parallel
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
    )


def _parse_request_block(block: _Block, layout: LogLayout, report: ReadReport) -> pa.Table:
    import pyarrow as pa

    try:
        return _flatten_requests(_read_json(block.data, layout.request_json_schema()), layout)
    except (pa.ArrowInvalid, pa.ArrowTypeError, _Inconsistent) as exc:
        log.warning("%s (lines from %d): %s; reading this block line by line", block.path, block.first_line, str(exc).splitlines()[0])
        return _rows_table(_request_rows(block, layout, report), layout, report)


def _flatten_requests(parsed: pa.Table, layout: LogLayout) -> pa.Table:
    """One row per record: the request's ts and version repeated, the record's columns, its probability."""
    import pyarrow as pa
    import pyarrow.compute as pc

    source = parsed.column("traffic_source")
    warmup = pc.is_in(source, value_set=pa.array(sorted(NOT_TRAFFIC)))
    if pc.any(warmup).as_py():
        parsed = parsed.filter(pc.invert(pc.fill_null(warmup, False)))
    records = pc.struct_field(parsed.column("input").combine_chunks(), "records")
    predictions = pc.struct_field(parsed.column("output").combine_chunks(), "predictions")
    if records.null_count or predictions.null_count:
        raise _Inconsistent("a line without 'input.records' or 'output.predictions'")
    if pc.any(pc.not_equal(pc.list_value_length(records), pc.list_value_length(predictions))).as_py():
        raise _Inconsistent("a line whose records and predictions differ in number")
    rows = records.flatten()
    request_of_row = pc.list_parent_indices(records)
    n = len(rows)
    millis = pa.timestamp("ms", tz="UTC")

    def request_column(name: str) -> Any:
        return parsed.column(name).combine_chunks().take(request_of_row)

    columns: dict[str, Any] = {
        TS: pc.cast(request_column("ts"), millis, safe=False),
        VERSION: request_column("model_version"),
        ROW_ID: pc.struct_field(rows, layout.id_column) if layout.id_column else pa.nulls(n, pa.string()),
        EVENT_TIME: pc.cast(pc.struct_field(rows, layout.time_column), millis, safe=False) if layout.time_column else pa.nulls(n, millis),
        PROBABILITY: pc.struct_field(predictions.flatten(), "probability"),
    }
    for name in layout.features:
        columns[name] = pc.struct_field(rows, name)
    return pa.table(columns, schema=layout.table_schema())


def _parse_block(block: _Block, layout: LogLayout, report: ReadReport) -> pa.Table:
    """A block of the older one-line-per-row format."""
    import pyarrow as pa

    try:
        parsed = _read_json(block.data, layout.json_schema())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        log.warning("%s (lines from %d): %s; reading this block line by line", block.path, block.first_line, str(exc).splitlines()[0])
        return _rows_table(_row_lines(block, layout, report), layout, report)
    return _flatten(parsed, layout)


def _flatten(parsed: pa.Table, layout: LogLayout) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    n = parsed.num_rows
    millis = pa.timestamp("ms", tz="UTC")
    features = parsed.column("features").combine_chunks()
    columns: dict[str, Any] = {
        TS: pc.cast(parsed.column("ts"), millis, safe=False),
        VERSION: parsed.column("model_version"),
        ROW_ID: parsed.column(layout.id_column) if layout.id_column else pa.nulls(n, pa.string()),
        EVENT_TIME: pc.cast(parsed.column(layout.time_column), millis, safe=False) if layout.time_column else pa.nulls(n, millis),
        PROBABILITY: parsed.column("probability"),
    }
    for name in layout.features:
        columns[name] = features.field(name)
    return pa.table(columns, schema=layout.table_schema())


# --- the slow, forgiving path: one line at a time ---------------------------------------------------


def _lines(block: _Block, report: ReadReport) -> Iterator[tuple[str, Any]]:
    """``(path:line, parsed JSON)`` of every non-empty line; lines that are not JSON are reported."""
    import orjson

    for offset, raw in enumerate(block.data.split(b"\n")):
        if not raw.strip():
            continue
        where = f"{block.path}:{block.first_line + offset}"
        try:
            yield where, orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            report.bad(where, str(exc)[:200])


def _row_lines(
    block: _Block, layout: LogLayout, report: ReadReport
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows of a block of the older format: each line is one."""
    for where, record in _lines(block, report):
        if isinstance(record, dict):
            yield where, record
        else:
            report.bad(where, f"a JSON {type(record).__name__}, not an object")


def _request_rows(
    block: _Block, layout: LogLayout, report: ReadReport
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows of a block of request lines; a line that is not a whole request is reported."""
    for where, request in _lines(block, report):
        if isinstance(request, dict) and request.get("traffic_source") in NOT_TRAFFIC:
            continue
        try:
            rows = request_rows(request, layout)
        except ValueError as exc:
            report.bad(where, str(exc)[:200])
            continue
        for row in rows:
            yield f"{where} record {row['row']}", row


def _rows_table(rows: Iterable[tuple[str, dict[str, Any]]], layout: LogLayout, report: ReadReport) -> pa.Table:
    """Per-row records (the older line shape) as a flattened table; values are coerced, a row
    whose values cannot be is reported and skipped."""
    import math

    import pandas as pd
    import pyarrow as pa

    columns: dict[str, list[Any]] = {name: [] for name in layout.table_schema().names}
    for where, record in rows:
        try:
            features = record.get("features") or {}
            if not isinstance(features, dict):
                raise ValueError("'features' is not an object")
            probability = _number(record.get("probability"))
            numeric = [_number(features.get(n)) for n in layout.numeric_features]
        except (ValueError, TypeError) as exc:
            report.bad(where, str(exc)[:200])
            continue
        columns[TS].append(record.get("ts"))
        columns[VERSION].append(None if record.get("model_version") is None else str(record["model_version"]))
        columns[ROW_ID].append(_text(record.get(layout.id_column)) if layout.id_column else None)
        columns[EVENT_TIME].append(record.get(layout.time_column) if layout.time_column else None)
        columns[PROBABILITY].append(probability)
        for name, value in zip(layout.numeric_features, numeric, strict=True):
            columns[name].append(value)
        for name in layout.categorical_features:
            columns[name].append(_text(features.get(name)))
    for name in (TS, EVENT_TIME):
        parsed = pd.to_datetime(pd.Series(columns[name], dtype="object"), utc=True, errors="coerce", format="ISO8601")
        columns[name] = list(parsed.dt.floor("ms").astype("datetime64[ms, UTC]"))
    schema = layout.table_schema()
    arrays = {}
    for name in schema.names:
        values = columns[name]
        if schema.field(name).type == pa.float64():
            values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
        arrays[name] = pa.array(values, type=schema.field(name).type, from_pandas=True)
    return pa.table(arrays, schema=schema)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bool, int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        return None if text == "" else float(text)  # a ValueError marks the line bad
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# --- selecting rows -------------------------------------------------------------------------------


def row_times(table: pa.Table) -> pa.ChunkedArray:
    """Each row's time for window membership: its event time, else its prediction time."""
    import pyarrow.compute as pc

    return pc.coalesce(table.column(EVENT_TIME), table.column(TS))


def in_range(table: pa.Table, start: datetime, end: datetime) -> pa.Table:
    """The rows whose time (see :func:`row_times`) lies in [start, end)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    times = row_times(table)
    kind = pa.timestamp("ms", tz="UTC")
    mask = pc.and_(
        pc.greater_equal(times, pa.scalar(start.astimezone(UTC), type=kind)),
        pc.less(times, pa.scalar(end.astimezone(UTC), type=kind)),
    )
    mask = pc.fill_null(mask, False)
    if pc.all(mask).as_py():  # the usual block: all of it in the window, and filtering would copy it all
        return table
    return table.filter(mask)
