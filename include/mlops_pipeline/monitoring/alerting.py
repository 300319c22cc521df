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
