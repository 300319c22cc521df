"""Everything the view shows, gathered section by section: :func:`gather`.

Each section (registry, router, audit log, drift reports, monitored windows) runs in its own thread under one
deadline. A section that fails or runs out of time carries a message saying what was unreachable
and where (``MLflow unreachable at http://...``); the others are shown as usual.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.config import Settings

VERSIONS, ROUTER, AUDIT, REPORTS, HISTORY = "versions", "router", "audit", "reports", "history"


@dataclass
class Section:
    name: str
    value: Any = None
    error: str | None = None
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Overview:
    model_name: str
    tracking_uri: str
    lake_uri: str
    reports_prefix: str
    generated_at: str
    sections: dict[str, Section] = field(default_factory=dict)
    drift_share_threshold: float | None = None  # the configured one, drawn on the drift share chart
    dataset: str | None = None  # the dataset shown, when the installation has several (the picker's choice)
    choices: list[dict[str, Any]] = field(default_factory=list)  # every dataset: name, model, primary, error

    def __getitem__(self, name: str) -> Section:
        return self.sections[name]


class UnknownDataset(LookupError):
    """The picker named a dataset this installation does not have (or whose file is broken)."""


def choose(dataset: str | None) -> tuple[Settings, str | None, list[dict[str, Any]]]:
    """The settings of the dataset the view shows (``dataset``: a name; None: the primary one), its name,
    and every dataset of the installation for the picker."""
    from mlops_pipeline.config import dataset_entries, get_settings, settings_for

    entries = dataset_entries()
    choices = [
        {"dataset": e.name, "primary": e.primary, "error": e.error, "path": str(e.path)} for e in entries
    ]
    if not dataset:
        return get_settings(), None, choices
    known = {e.name: e for e in entries}
    entry = known.get(dataset)
    if entry is None:
        raise UnknownDataset(f"query parameter dataset: unknown dataset {dataset!r}; this installation has {sorted(known)}")
    if entry.error:
        raise UnknownDataset(f"query parameter dataset: dataset {dataset!r} cannot be shown: {entry.error}")
    if entry.primary:
        return get_settings(), dataset, choices
    return settings_for(entry.path), dataset, choices


def _model_name(settings: Settings) -> str:
    try:
        return settings.registered_model_name
    except Exception as exc:  # a broken dataset spec must not take the page down
        return f"(unknown: {exc})"


def _versions(settings: Settings, model_name: str) -> Any:
    from mlops_pipeline.ui.versions import alias_versions, registry_client

    return alias_versions(registry_client(settings), model_name)


def _reports(settings: Settings, reports_prefix: str, limit: int) -> Any:
    from mlops_pipeline.storage import open_lake
    from mlops_pipeline.ui.reports import latest_reports

    return latest_reports(open_lake(settings), reports_prefix, limit)


def _history(settings: Settings, reports_prefix: str, limit: int) -> Any:
    from mlops_pipeline.storage import open_lake
    from mlops_pipeline.ui.reports import monitored_windows

    return monitored_windows(open_lake(settings), reports_prefix, limit)


def _audit(settings: Settings, limit: int) -> Any:
    from mlops_pipeline.storage import open_lake
    from mlops_pipeline.ui.deployment import recent_events

    return recent_events(open_lake(settings), limit)


def _router(settings: Settings) -> Any:
    from mlops_pipeline.ui.deployment import router_state

    return router_state(settings)


def describe_error(section: str, exc: BaseException, overview: Overview) -> str:
    """What a person needs to read when ``section`` failed: what was unreachable, and where."""
    from mlops_pipeline.registry.client import RegistryUnavailable

    if section == VERSIONS:
        if isinstance(exc, RegistryUnavailable):
            return f"MLflow unreachable at {overview.tracking_uri}: {exc}"
        return f"MLflow at {overview.tracking_uri} failed: {type(exc).__name__}: {exc}"
    if section in (AUDIT, REPORTS, HISTORY):
        return f"lake {overview.lake_uri} not readable: {type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def gather(
    settings: Settings | None = None,
    *,
    timeout: float = 10.0,
    audit_limit: int = 50,
    report_limit: int = 10,
    history_limit: int = 60,
    sections: dict[str, Callable[[], Any]] | None = None,
) -> Overview:
    """Gather every section within ``timeout`` seconds; ``sections`` replaces the collectors (tests)."""
    from mlops_pipeline.config import get_settings

    settings = settings or get_settings()
    monitor = settings.monitor
    reports_prefix = monitor.reports_prefix
    model_name = _model_name(settings)
    overview = Overview(
        model_name=model_name,
        tracking_uri=settings.mlflow_tracking_uri,
        lake_uri=settings.lake_uri,
        reports_prefix=reports_prefix,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        drift_share_threshold=monitor.drift_share_threshold,
    )
    collectors = sections or {
        VERSIONS: lambda: _versions(settings, model_name),
        ROUTER: lambda: _router(settings),
        AUDIT: lambda: _audit(settings, audit_limit),
        REPORTS: lambda: _reports(settings, reports_prefix, report_limit),
        HISTORY: lambda: _history(settings, reports_prefix, history_limit),
    }
    pool = ThreadPoolExecutor(max_workers=len(collectors), thread_name_prefix="mlops-ui")
    try:
        futures = {name: pool.submit(_timed, collect) for name, collect in collectors.items()}
        wait(futures.values(), timeout=timeout)  # _timed returns errors as values: all complete or time out
        for name, future in futures.items():
            if not future.done():
                what = {VERSIONS: f"MLflow at {overview.tracking_uri}", ROUTER: "the router"}.get(name, f"the lake {overview.lake_uri}")
                overview.sections[name] = Section(name, error=f"{what} did not answer within {timeout:.0f}s")
                continue
            value, error, seconds = future.result()
            message = describe_error(name, error, overview) if error is not None else None
            overview.sections[name] = Section(name, value=value, error=message, seconds=seconds)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung section must not hold the page
    return overview


def _timed(collect: Callable[[], Any]) -> tuple[Any, BaseException | None, float]:
    started = time.monotonic()
    try:
        return collect(), None, round(time.monotonic() - started, 3)
    except Exception as exc:
        return None, exc, round(time.monotonic() - started, 3)
