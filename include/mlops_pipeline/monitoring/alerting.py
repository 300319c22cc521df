"""Alerts as data: what the monitor's findings say, in a form every channel can deliver.

Delivery (the log always; a webhook or e-mail through Airflow connections when configured) is the
orchestration layer's job: :mod:`mlops_pipeline.orchestration.notifier`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Alert:
    title: str
    message: str
    severity: str = "warning"  # info | warning | error
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "severity": self.severity, "message": self.message, "details": dict(self.details)}


def finding_alert(decision: Mapping[str, Any], window_ds: str, report: str | None) -> Alert | None:
    """The alert for a window's findings (drift, prediction drift, performance), or None when all is well."""
    signals = decision.get("signals") or []
    if not signals:
        return None
    kinds = sorted({s["kind"] for s in signals})
    outcome = "retraining triggered" if decision.get("trigger") else (
        f"retrain not triggered ({decision['blocked_by']})" if decision.get("blocked_by") else "no retrain"
    )
    return Alert(
        title=f"mlops_monitor ds={window_ds}: {' + '.join(kinds)}",
        message="; ".join(s["message"] for s in signals) + f". Decision: {outcome}. Report: {report or '-'}",
        severity="warning",
        details={"window": window_ds, "report": report, "decision": dict(decision)},
    )


def data_alert(decision: Mapping[str, Any], window_ds: str, report: str | None) -> Alert | None:
    """The alert for a window without enough prediction rows to judge, or None.

    A model with no traffic, or whose prediction log stopped, is an incident: zero rows is an error;
    fewer than ``min_rows`` a warning (the window got no drift verdict)."""
    from mlops_pipeline.monitoring.decision import NO_DATA, NOT_ENOUGH_DATA

    status = decision.get("data_status")
    if status not in (NO_DATA, NOT_ENOUGH_DATA):
        return None
    rows, min_rows = decision.get("rows", 0), decision.get("min_rows")
    if status == NO_DATA:
        title = f"mlops_monitor ds={window_ds}: no prediction data"
        message = (
            f"window ds={window_ds} has 0 prediction rows (min_rows {min_rows}): the model got no traffic or its "
            "prediction log stopped; nothing was judged"
        )
    else:
        title = f"mlops_monitor ds={window_ds}: not enough prediction data"
        message = f"window ds={window_ds} has {rows} prediction row(s), fewer than min_rows {min_rows}: no drift verdict"
    return Alert(
        title=title,
        message=f"{message}. Decision: {decision.get('summary')}. Report: {report or '-'}",
        severity="error" if status == NO_DATA else "warning",
        details={"window": window_ds, "report": report, "rows": rows, "min_rows": min_rows, "decision": dict(decision)},
    )


def window_alerts(decision: Mapping[str, Any], window_ds: str, report: str | None) -> list[Alert]:
    """Every alert a window's decision raises: missing data first, then the findings."""
    return [a for a in (data_alert(decision, window_ds, report), finding_alert(decision, window_ds, report)) if a is not None]
