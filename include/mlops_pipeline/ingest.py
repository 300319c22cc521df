"""The ingestion steps behind the ``mlops_ingest`` DAG: extract a window, validate it, publish it.

extract:  source -> ``raw/ds=...`` (bytes as the source gave them) + manifest
validate: raw -> parse -> gate suite (+ the window check) and watch suite -> Data Docs ->
          gate passes: ``validated/ds=...`` (typed parquet, byte-identical on a re-run) + manifest
          gate fails: ``quarantine/ds=...`` (raw bytes + validation result) and :class:`BatchRejected`
          The watch suite's findings go into either manifest (``watch``); they never quarantine.
A window that passes removes any earlier quarantine of the same day and vice versa, so a day is in
exactly one of validated/ and quarantine/.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_pipeline.data.lake import DataFile, Lake, frame_to_parquet_bytes

if TYPE_CHECKING:
    import pandas as pd

    from mlops_pipeline.config import Settings
    from mlops_pipeline.datasets import DatasetSpec

log = logging.getLogger(__name__)

DATA_DOCS_ZONE = "data_docs"


class BatchRejected(RuntimeError):
    """A batch failed validation and was quarantined; retrying will not help."""

    def __init__(self, message: str, quarantine_uri: str, failures: list[str]):
        super().__init__(message)
        self.quarantine_uri = quarantine_uri
        self.failures = failures


class SourceMissing(FileNotFoundError):
    pass


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"window bounds must be timezone-aware, got {self.start!r}, {self.end!r}")
        if self.end <= self.start:
            raise ValueError(f"empty window: start {self.start.isoformat()} is not before end {self.end.isoformat()}")

    @property
    def ds(self) -> str:
        return self.start.astimezone(UTC).date().isoformat()

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def _scenario_schedule(spec: DatasetSpec, settings: Settings):
    from mlops_pipeline.datasets import ScenarioSchedule, SyntheticSource

    assert isinstance(spec.source, SyntheticSource)
    base = spec.source.scenarios
    return ScenarioSchedule(
        covariate_drift_from=settings.covariate_drift_from or base.covariate_drift_from,
        concept_drift_from=settings.concept_drift_from or base.concept_drift_from,
        bad_batch_days=settings.bad_batch_days if settings.bad_batch_days is not None else base.bad_batch_days,
    )


def extract(
    lake: Lake,
    spec: DatasetSpec,
    window: Window,
    settings: Settings,
    *,
    scenario: str | None = None,
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """Copy the window's batch from the source into ``raw/ds=...``; returns the raw manifest."""
    from mlops_pipeline.datasets import FileSource, SyntheticSource

    if isinstance(spec.source, SyntheticSource):
        from mlops_pipeline.data.synthetic import Scenario, generate_window, scenarios_for_day

        forced = Scenario(scenario) if scenario else None
        schedule = _scenario_schedule(spec, settings)
        rows_per_day = settings.synthetic_rows_per_day or spec.source.rows_per_day
        frame = generate_window(
            window.start, window.end, seed=spec.source.seed, rows_per_day=rows_per_day, schedule=schedule, forced=forced
        )
        files = [DataFile("part-00000", ".parquet", frame_to_parquet_bytes(frame), rows=len(frame))]
        active = sorted(s.value for s in scenarios_for_day(window.start.date(), schedule, forced))
        source = {"kind": "synthetic", "seed": spec.source.seed, "rows_per_day": rows_per_day, "scenarios": active}
        fmt = "parquet"
    elif isinstance(spec.source, FileSource):
        from mlops_pipeline.storage import read_source_bytes

        if scenario and scenario != "normal":
            raise ValueError(f"scenario {scenario!r} applies to the synthetic source only; dataset {spec.name} reads files")
        uri = spec.source.path_for(window.ds)
        try:
            data = read_source_bytes(uri, settings, spec.source.aws_conn_id)
        except FileNotFoundError as exc:
            raise SourceMissing(f"dataset {spec.name}: no source file for ds={window.ds} at {uri}") from exc
        fmt = spec.source.format_for(uri)
        files = [DataFile("source", f".{fmt}", data)]
        source = {"kind": "file", "uri": uri}
    else:  # pragma: no cover - the spec's discriminator admits no other kind
        raise TypeError(f"unsupported source {spec.source!r}")
    return lake.write_partition(
        "raw",
        window.ds,
        files,
        {"dataset": spec.name, "format": fmt, "source": source, "window": window.as_dict(), "dag_run_id": dag_run_id},
    )


def _raw_batch(lake: Lake, window: Window) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    from mlops_pipeline.data.lake import LakeError

    manifest = lake.read_manifest("raw", window.ds)
    if manifest is None:
        raise LakeError(f"no raw partition for ds={window.ds} in {lake.uri}: run the extract step first")
    return manifest, [(entry, lake.read_partition_file("raw", window.ds, entry)) for entry in manifest["files"]]


def _publish_docs(lake: Lake, ds: str, docs_dir: Path | None, status: str, page: str | None) -> str | None:
    if docs_dir is None:
        return None
    target = lake.path(DATA_DOCS_ZONE, f"ds={ds}")
    if lake.fs.exists(target):
        lake.fs.rm(target, recursive=True)
    lake.fs.makedirs(target, exist_ok=True)
    files = _docs_files(docs_dir)
    names = [path.relative_to(docs_dir).as_posix() for path in files]
    for folder in sorted({name.rpartition("/")[0] for name in names} - {""}):
        lake.fs.makedirs(f"{target}/{folder}", exist_ok=True)
    lake.fs.put([str(path) for path in files], [f"{target}/{name}" for name in names])
    lake.write_json_atomic(f"{target}/_status.json", {"ds": ds, "status": status, "page": page})
    _rebuild_docs_index(lake)
    shutil.rmtree(docs_dir, ignore_errors=True)
    return lake.uri_of(DATA_DOCS_ZONE, f"ds={ds}", page or "index.html")


def _docs_files(docs_dir: Path) -> list[Path]:
    """Every file of a batch's Data Docs site: its pages, and the few of GX's static assets they use
    (the site builder copies only those: :class:`mlops_pipeline.validation.docs_view.LinkedAssetsSiteBuilder`)."""
    return sorted(path for path in docs_dir.rglob("*") if path.is_file())


# How many times a window writes the Data Docs index before it leaves the rest to later windows.
_INDEX_WRITES = 20


def _rebuild_docs_index(lake: Lake) -> None:
    """The lake's Data Docs index: a row per day, from each day's ``_status.json``.

    The windows of a backfill publish at the same time, and one may read the days before another's
    status lands and write its index after the other's, dropping that day. So a window reads the days
    again after each write, and writes again until the index it wrote is current. The last write
    then comes from a window whose read followed every status written before it.
    """
    target = lake.path(DATA_DOCS_ZONE, "index.html")
    written: bytes | None = None
    for _ in range(_INDEX_WRITES):
        html = _docs_index_html(lake)
        if html == written:
            return
        lake.write_bytes_atomic(target, html)
        written = html
    log.warning("Data Docs index %s: days kept landing while it was written %d times; later windows complete it",
                target, _INDEX_WRITES)  # fmt: skip


def _docs_index_html(lake: Lake) -> bytes:
    days = {}
    for entry in sorted(lake.fs.ls(lake.path(DATA_DOCS_ZONE), detail=False)):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("ds="):
            days[name] = lake.fs._strip_protocol(f"{entry.rstrip('/')}/_status.json")
    # One call for all the days' statuses: on S3, concurrent GETs rather than one after another.
    found = lake.fs.cat(list(days.values()), on_error="return") if days else {}
    rows = []
    for name, path in days.items():
        data = found.get(path, FileNotFoundError(path))
        if isinstance(data, FileNotFoundError):
            continue  # a day being published: its status comes last
        if isinstance(data, BaseException):
            raise data
        status = json.loads(data)
        page = status.get("page") or "index.html"
        rows.append(f'<tr><td><a href="{name}/{page}">{name[3:]}</a></td><td class="{status["status"]}">{status["status"]}</td></tr>')
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Data Docs by day</title>"
        "<style>body{font-family:sans-serif}td{padding:2px 12px}.validated{color:#080}.quarantined{color:#b00}</style>"
        "</head><body><h1>Validation results by day</h1><table><tr><th>day</th><th>status</th></tr>"
        + "".join(rows)
        + "</table></body></html>\n"
    )
    return html.encode()


def validate(
    lake: Lake,
    spec: DatasetSpec,
    window: Window,
    *,
    dag_run_id: str | None = None,
    build_docs: bool = True,
) -> dict[str, Any]:
    """Validate the raw partition of ``window``; publish it or quarantine it (then raise BatchRejected)."""
    from mlops_pipeline.validation.gx_runner import new_docs_dir, run_suites, window_expectation
    from mlops_pipeline.validation.parsing import BatchParseError, normalise_for_validation, read_batch
    from mlops_pipeline.validation.suites import load_dataset_suites

    # A suite that is unreadable or contradicts the dataset file fails the task before any data moves.
    suites = load_dataset_suites(spec)
    raw_manifest, raw_files = _raw_batch(lake, window)
    where = f"batch ds={window.ds} of dataset {spec.name}"
    common = {"dataset": spec.name, "window": window.as_dict(), "dag_run_id": dag_run_id, "source": raw_manifest.get("source")}
    frames: list[pd.DataFrame] = []
    failures: list[str] = []
    try:
        for entry, data in raw_files:
            frames.append(normalise_for_validation(read_batch(data, raw_manifest["format"], where=f"{where} ({entry['path']})"), spec.time_column))
    except BatchParseError as exc:
        failures = [str(exc)]

    outcome = None
    docs_uri = None
    watch: dict[str, Any] = {"suite": None, "success": None, "findings": [], "note": "the batch could not be read"}
    if not failures:
        import pandas as pd

        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        docs_dir = new_docs_dir() if build_docs else None
        run = run_suites(
            frame,
            suites.gate,
            suites.watch,
            extra_expectations=[window_expectation(spec.time_column, window.start, window.end)],
            run_name=f"ds={window.ds}",
            docs_dir=docs_dir,
        )
        outcome = run.gate
        failures = outcome.failures
        watch = run.watch_summary(suites.watch_note)
        if watch["findings"]:
            log.warning("%s: watch suite noted %d change(s): %s", where, len(watch["findings"]),
                        "; ".join(f"{f['kind']}({f['column']})" for f in watch["findings"]))  # fmt: skip
        docs_uri = _publish_docs(lake, window.ds, docs_dir, "validated" if outcome.success else "quarantined", outcome.docs_page)

    if not failures:
        ordered = frame[spec.columns]
        data_file = DataFile("part-00000", ".parquet", frame_to_parquet_bytes(ordered), rows=len(ordered))
        manifest = lake.write_partition(
            "validated",
            window.ds,
            [data_file],
            {
                **common,
                "status": "validated",
                "schema": [{"name": c, "type": str(ordered[c].dtype)} for c in ordered.columns],
                "suite": outcome.suite_name if outcome else None,
                "statistics": outcome.statistics if outcome else None,
                "watch": watch,
                "data_docs": docs_uri,
                "raw_files": [e["sha256"] for e in raw_manifest["files"]],
            },
        )
        lake.delete_partition("quarantine", window.ds)
        log.info("%s: validated, %d rows -> %s", where, len(ordered), lake.partition_uri("validated", window.ds))
        return {
            "status": "validated", "ds": window.ds, "rows": len(ordered), "uri": lake.partition_uri("validated", window.ds),
            "manifest": manifest, "data_docs": docs_uri,
            "watch": {"success": watch["success"], "findings": [f"{f['kind']}({f['column']})" for f in watch["findings"]]},
        }  # fmt: skip

    message = f"{where} failed {len(failures)} check(s): " + "; ".join(failures)
    result_doc = {
        "ds": window.ds,
        "dataset": spec.name,
        "message": message,
        "failures": failures,
        "statistics": outcome.statistics if outcome else None,
        "gx_result": outcome.result if outcome else None,
        "watch": watch,
        "data_docs": docs_uri,
    }
    quarantine_files = [
        DataFile(Path(entry["path"]).stem.rsplit("-", 1)[0], Path(entry["path"]).suffix, data) for entry, data in raw_files
    ]
    quarantine_files.append(DataFile("validation_result", ".json", json.dumps(result_doc, indent=2, default=str).encode()))
    # The validated copy goes first: from here on no reader may see this day as good.
    lake.delete_partition("validated", window.ds)
    lake.write_partition(
        "quarantine",
        window.ds,
        quarantine_files,
        {**common, "status": "quarantined", "format": raw_manifest["format"], "failures": failures, "watch": watch, "data_docs": docs_uri},
    )
    quarantine_uri = lake.partition_uri("quarantine", window.ds)
    log.error("%s -> quarantined at %s", message, quarantine_uri)
    raise BatchRejected(f"{message} (quarantined at {quarantine_uri})", quarantine_uri, failures)
