"""Drift reports in the lake: the latest ones with their decision, and the one way to read a file of one.

The monitor writes ``<reports prefix>/ds=YYYY-MM-DD/`` with ``report.html``, ``quality.html`` (when
labels exist), ``report.json`` and ``decision.json``. The view links to those files; the plugin
serves them through :func:`read_report_file`, which accepts only ``ds=YYYY-MM-DD/<file>.html|json``
below the reports prefix: no other folder, no ``..``, no absolute path, and (on a local lake) no
symlink that leads out of the reports folder.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.data.lake import Lake

# What the plugin serves, by suffix: the pages and their numbers, nothing else of the lake.
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json"}
# Shown first, in this order, when a report folder has them.
KNOWN_FILES = ("report.html", "quality.html", "report.json", "decision.json")
DECISION_FILE = "decision.json"
SUMMARY_FILE = "report.json"
MAX_SUMMARY_BYTES = 2_000_000  # a report.json beyond this is linked, not read for the table

_DS_FOLDER = re.compile(r"^ds=(\d{4}-\d{2}-\d{2})$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")


class ReportPathError(ValueError):
    """A requested path is not a file of a drift report (another folder, ``..``, another type)."""


class ReportNotFound(LookupError):
    """The path is well formed, but the lake has no such report file."""


@dataclass(frozen=True)
class DriftReport:
    """One ``ds=`` folder of reports, with what its decision (or report.json) says."""

    ds: str
    files: list[str]
    status: str | None = None
    action: str | None = None  # retrain | none (the decision), None before it is taken
    triggered: bool = False
    summary: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)

    def relative_path(self, name: str) -> str:
        return f"ds={self.ds}/{name}"

    @property
    def main_file(self) -> str | None:
        """The page a person opens first: the drift report, else whatever the folder has."""
        return next((name for name in self.files if name.endswith(".html")), self.files[0] if self.files else None)


def check_report_path(relative: str) -> tuple[str, str]:
    """``(ds, file name)`` of ``ds=YYYY-MM-DD/<name>.html|json``; :class:`ReportPathError` for anything else."""
    if not isinstance(relative, str) or not relative or len(relative) > 200:
        raise ReportPathError("a report path is ds=YYYY-MM-DD/<file>")
    if any(char in relative for char in ("\\", "\x00", "%", "?", "#")) or relative.startswith("/"):
        raise ReportPathError(f"not a report path: {relative!r}")
    parts = relative.split("/")
    if len(parts) != 2:
        raise ReportPathError(f"not a report path: {relative!r} (expected ds=YYYY-MM-DD/<file>)")
    folder, name = parts
    match = _DS_FOLDER.match(folder)
    if match is None:
        raise ReportPathError(f"not a report folder: {folder!r} (expected ds=YYYY-MM-DD)")
    try:
        date.fromisoformat(match.group(1))
    except ValueError:
        raise ReportPathError(f"not a date: {match.group(1)!r}") from None
    if not _FILE_NAME.match(name) or ".." in name:
        raise ReportPathError(f"not a report file name: {name!r}")
    if os.path.splitext(name)[1].lower() not in MEDIA_TYPES:
        raise ReportPathError(f"only {sorted(MEDIA_TYPES)} files of a report are served, not {name!r}")
    return match.group(1), name


def media_type(name: str) -> str:
    return MEDIA_TYPES[os.path.splitext(name)[1].lower()]


def _is_local(lake: Lake) -> bool:
    protocol = lake.fs.protocol
    return bool({"file", "local"} & set(protocol if isinstance(protocol, tuple | list) else (protocol,)))


def report_file_path(lake: Lake, reports_prefix: str, relative: str) -> str:
    """The lake path of a report file, checked to lie in the reports folder (see :func:`check_report_path`)."""
    ds, name = check_report_path(relative)
    root = lake.path(reports_prefix)
    path = lake.path(reports_prefix, f"ds={ds}", name)
    if _is_local(lake):
        # The name cannot climb out; a symlink placed in the reports folder still could.
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
            raise ReportPathError(f"{relative!r} leads out of the reports folder")
    return path


def read_report_file(lake: Lake, reports_prefix: str, relative: str) -> tuple[bytes, str]:
    """The bytes and media type of one report file; :class:`ReportNotFound` when it does not exist."""
    path = report_file_path(lake, reports_prefix, relative)
    try:
        if not lake.fs.isfile(path):
            raise ReportNotFound(f"no report file {relative} in {lake.uri_of(reports_prefix)}")
        return lake.read_bytes(path), media_type(path)
    except FileNotFoundError:
        raise ReportNotFound(f"no report file {relative} in {lake.uri_of(reports_prefix)}") from None


def _base_name(entry: str) -> str:
    return entry.rstrip("/").rsplit("/", 1)[-1]


def report_days(lake: Lake, reports_prefix: str) -> list[str]:
    """Every ``ds`` with a report folder, newest first."""
    root = lake.path(reports_prefix)
    if not lake.exists(root):
        return []
    days = []
    for entry in lake.fs.ls(root, detail=False):
        match = _DS_FOLDER.match(_base_name(entry))
        if match:
            days.append(match.group(1))
    return sorted(days, reverse=True)


def _read_json(lake: Lake, path: str, limit: int = MAX_SUMMARY_BYTES) -> dict[str, Any] | None:
    try:
        if lake.fs.size(path) > limit:
            return None
        data = json.loads(lake.read_bytes(path))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _ordered(names: list[str]) -> list[str]:
    known = [name for name in KNOWN_FILES if name in names]
    return known + sorted(name for name in names if name not in KNOWN_FILES)


def describe_report(ds: str, files: list[str], decision: dict[str, Any] | None, summary: dict[str, Any] | None) -> DriftReport:
    """A :class:`DriftReport` from a folder's file names and its parsed decision / report.json."""
    numbers: dict[str, Any] = {}
    status = None
    if summary:
        status = summary.get("status")
        drift = summary.get("drift") or {}
        numbers.update(
            rows=drift.get("rows"),
            drift_share=drift.get("drift_share"),
            drifted_features=drift.get("drifted_features"),
            prediction_drift=(drift.get("prediction") or {}).get("value"),
        )
        metrics = (summary.get("quality") or {}).get("metrics") or {}
        numbers["roc_auc"] = metrics.get("roc_auc")
    if decision:
        numbers.update({k: v for k, v in (decision.get("numbers") or {}).items() if v is not None})
    return DriftReport(
        ds=ds,
        files=_ordered(files),
        status=status,
        action=(decision or {}).get("action"),
        triggered=bool((decision or {}).get("triggered")),
        summary=(decision or {}).get("summary") or (summary or {}).get("message"),
        numbers={k: v for k, v in numbers.items() if v is not None},
    )


def latest_reports(lake: Lake, reports_prefix: str, limit: int = 10) -> list[DriftReport]:
    """The newest ``limit`` report folders, each with its files and its decision's headline."""
    reports = []
    for ds in report_days(lake, reports_prefix)[:limit]:
        folder = lake.path(reports_prefix, f"ds={ds}")
        names = [_base_name(entry) for entry in lake.fs.ls(folder, detail=False)]
        served = [name for name in names if _FILE_NAME.match(name) and os.path.splitext(name)[1].lower() in MEDIA_TYPES]
        decision = _read_json(lake, f"{folder}/{DECISION_FILE}") if DECISION_FILE in served else None
        summary = _read_json(lake, f"{folder}/{SUMMARY_FILE}") if SUMMARY_FILE in served else None
        reports.append(describe_report(ds, served, decision, summary))
    return reports


@dataclass(frozen=True)
class MonitoredWindow:
    """What the charts show of one monitored window: its drift share and its quality, estimated and realised.

    ``estimated_roc_auc`` is the estimate on the window's own rows before labels; ``realised_roc_auc``
    is measured on the same rows once their labels arrive (written back into the window's
    ``decision.json`` by a later window), so the newest windows have an estimate only.
    """

    ds: str
    drift_share: float | None = None
    estimated_roc_auc: float | None = None
    realised_roc_auc: float | None = None
    drift_detected: bool = False
    action: str | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value else None  # NaN is no number to draw


def monitored_window(ds: str, decision: dict[str, Any] | None, summary: dict[str, Any] | None) -> MonitoredWindow | None:
    """A window's numbers from its ``decision.json`` (and ``report.json`` for a window not yet decided);
    None when neither has a drift share or a quality number."""
    decision = decision or {}
    numbers = decision.get("numbers") or {}
    drift_share = _number(numbers.get("drift_share"))
    if drift_share is None and summary:
        drift_share = _number((summary.get("drift") or {}).get("drift_share"))
    estimated = _number(decision.get("estimated_roc_auc"))
    if estimated is None:
        estimated = _number(numbers.get("estimated_roc_auc"))
    realised = _number(decision.get("realised_roc_auc"))
    if drift_share is None and estimated is None and realised is None:
        return None
    return MonitoredWindow(
        ds=ds,
        drift_share=drift_share,
        estimated_roc_auc=estimated,
        realised_roc_auc=realised,
        drift_detected=bool(decision.get("drift_detected")),
        action=decision.get("action"),
    )


def monitored_windows(lake: Lake, reports_prefix: str, limit: int = 60) -> list[MonitoredWindow]:
    """The newest ``limit`` monitored windows with a number to draw, oldest first. ``report.json`` is
    read only for a window without ``decision.json`` (the decision holds the same drift share)."""
    windows = []
    for ds in report_days(lake, reports_prefix)[: max(limit, 0)]:
        folder = lake.path(reports_prefix, f"ds={ds}")
        decision = _read_json(lake, f"{folder}/{DECISION_FILE}")
        summary = _read_json(lake, f"{folder}/{SUMMARY_FILE}") if decision is None else None
        window = monitored_window(ds, decision, summary)
        if window is not None:
            windows.append(window)
    return sorted(windows, key=lambda window: window.ds)
