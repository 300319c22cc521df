"""Plain objects standing in for Airflow's task context in adapter tests: a task instance with an XCom
store, a DAG run, and the settings environment of one test."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import pytest


class RunType(Enum):
    """Like Airflow's DagRunType: the adapters read ``run_type.value``."""

    MANUAL = "manual"
    SCHEDULED = "scheduled"
    BACKFILL = "backfill"


@dataclass
class FakeDagRun:
    run_id: str = "manual__2026-01-09T00:00:00+00:00"
    run_type: RunType = RunType.MANUAL
    conf: dict[str, Any] = field(default_factory=dict)
    dag_id: str = "mlops_monitor"
    run_after: datetime | None = None
    triggering_user_name: str | None = None


@dataclass
class FakeTaskInstance:
    """``xcom_push``/``xcom_pull`` on a dict keyed by (task_id, key), like Airflow's for one run."""

    task_id: str = "decide"
    dag_id: str = "mlops_monitor"
    run_id: str = "manual__2026-01-09T00:00:00+00:00"
    try_number: int = 1
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.xcoms.get((task_ids, key))

    def as_task(self, task_id: str) -> FakeTaskInstance:
        """The task instance of another task of the same run (sharing the run's XComs)."""
        return FakeTaskInstance(task_id=task_id, dag_id=self.dag_id, run_id=self.run_id, xcoms=self.xcoms)


def day(value: date | str) -> tuple[datetime, datetime]:
    """The data interval [start, end) of one UTC day."""
    first = date.fromisoformat(value) if isinstance(value, str) else value
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def use_settings(monkeypatch: pytest.MonkeyPatch, lake_dir: Path, **env: str) -> str:
    """Point the settings at a fresh lake with ``env`` (``MLOPS_...``) and nothing else of the caller's."""
    import os

    from mlops_pipeline.config import get_settings

    for name in list(os.environ):
        if name.startswith(("MLOPS_", "AIRFLOW_VAR_")) and name != "MLOPS_HOME":
            monkeypatch.delenv(name)
    lake_uri = lake_dir.as_uri()
    monkeypatch.setenv("MLOPS_LAKE_URI", lake_uri)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return lake_uri


FEATURES = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]


def findings(
    *, drifted: Iterable[str] = (), rows: int = 2000, status: str = "ok", roc_auc: float = 0.8, labelled: int = 800, ds: str = "2026-01-09"
) -> dict[str, Any]:
    """What the monitor task returns for a window, reduced to what the decision reads."""
    if status == "no_champion":
        return {"status": status, "message": "churn has no @champion version to monitor yet", "report": f"file:///r/ds={ds}/report.json"}
    drifted = set(drifted)
    return {
        "status": status,
        "report": f"file:///r/ds={ds}/report.html",
        "reference": {"version": "3"},
        "drift": {
            "rows": rows,
            "features": {name: {"value": 0.3 if name in drifted else 0.02} for name in FEATURES},
            "prediction": {"value": 0.02},
        },
        "quality": {"rows": labelled, "metrics": {"roc_auc": roc_auc}, "champion_holdout_roc_auc": 0.82},
    }
