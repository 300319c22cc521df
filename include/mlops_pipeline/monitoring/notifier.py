"""An Airflow notifier for the monitor: task failures and findings go out through :mod:`.alerting`.

Use it as a callback (``on_failure_callback=MonitorNotifier()``) or call it with a task's
context and a ready message. Imports only ``airflow.sdk`` at module level, so DAG files may use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseNotifier


class MonitorNotifier(BaseNotifier):
    """Log (always), webhook or e-mail (when configured: see :mod:`mlops_pipeline.monitoring.alerting`).

    Without ``title``/``message`` it describes the task failure in the context it is called with.
    """

    template_fields = ("title", "message")

    def __init__(
        self,
        title: str | None = None,
        message: str | None = None,
        *,
        severity: str = "error",
        details: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.title = title
        self.message = message
        self.severity = severity
        self.details = dict(details or {})

    def notify(self, context: Any) -> None:
        from mlops_pipeline.monitoring.alerting import Alert, send_alert

        ti = context.get("ti")
        where = {
            "dag_id": getattr(ti, "dag_id", None),
            "task_id": getattr(ti, "task_id", None),
            "run_id": getattr(ti, "run_id", None),
            "try_number": getattr(ti, "try_number", None),
        }
        exception = context.get("exception")
        title = self.title or f"{where['dag_id']}.{where['task_id']} failed ({where['run_id']})"
        if self.message:
            message = self.message
        elif exception is not None:
            message = f"{type(exception).__name__}: {exception}"
        else:
            message = title
        send_alert(Alert(title=title, message=message, severity=self.severity, details={**where, **self.details}))
