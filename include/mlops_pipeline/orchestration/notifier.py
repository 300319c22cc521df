"""Alerts out of Airflow: always to the log; to a webhook and/or by e-mail when configured.

* webhook: ``MLOPS_MONITOR_ALERT_WEBHOOK_CONN_ID`` names an Airflow HTTP connection whose URL
  (schema = scheme, host with the path, port; extra = request headers) receives the alert POSTed as JSON
  ``{"title", "severity", "message", "details"}``, e.g. a Slack or Teams incoming webhook relay.
* e-mail: ``MLOPS_MONITOR_ALERT_EMAIL_TO`` (comma-separated) through the SMTP connection
  ``MLOPS_MONITOR_ALERT_SMTP_CONN_ID`` (default ``smtp_default``).

Credentials live in the connections, never here. A channel that fails is logged and the others
still run: an alert never fails the task that raised it. :class:`MonitorNotifier` is the Airflow
notifier: a callback (``on_failure_callback=MonitorNotifier()``), or called with a task's context
and a ready message; :func:`notify` sends a ready :class:`~mlops_pipeline.monitoring.alerting.Alert`
from inside a task. A task that fails on purpose after alerting raises :class:`AlertedFailure`, so
the failure callback does not send the same incident twice. Imports only ``airflow.sdk`` at module
level, so DAG files may use it.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from mlops_pipeline.config import MonitorSettings
    from mlops_pipeline.monitoring.alerting import Alert

log = logging.getLogger("mlops_pipeline.monitoring.alerts")


class AlertedFailure(AirflowFailException):
    """Fails the task without retries after its alert was sent (with the details only the task knows):
    :class:`MonitorNotifier` as the failure callback does not send a second one."""

    alert_sent = True


def task_details(ti: Any) -> dict[str, Any]:
    """Where an alert comes from: the task instance's DAG, task, run and try."""
    return {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
    }


def notify(alert: Alert, ti: Any = None, settings: MonitorSettings | None = None) -> list[str]:
    """Deliver ``alert`` from inside a task, with where it comes from added to its details."""
    from mlops_pipeline.monitoring.alerting import Alert

    details = {**task_details(ti), **alert.details} if ti is not None else dict(alert.details)
    return send_alert(Alert(title=alert.title, message=alert.message, severity=alert.severity, details=details), settings)


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
        from mlops_pipeline.monitoring.alerting import Alert

        ti = context.get("ti")
        where = task_details(ti)
        exception = context.get("exception")
        if getattr(exception, "alert_sent", False):
            log.info("%s.%s failed after sending its own alert: %s", where["dag_id"], where["task_id"], exception)
            return
        title = self.title or f"{where['dag_id']}.{where['task_id']} failed ({where['run_id']})"
        if self.message:
            message = self.message
        elif exception is not None:
            message = f"{type(exception).__name__}: {exception}"
        else:
            message = title
        send_alert(Alert(title=title, message=message, severity=self.severity, details={**where, **self.details}))


def send_alert(alert: Alert, settings: MonitorSettings | None = None) -> list[str]:
    """Deliver ``alert`` on every configured channel; returns the channels that took it."""
    from mlops_pipeline.config import get_settings

    settings = settings or get_settings().monitor
    level = logging.ERROR if alert.severity == "error" else logging.WARNING if alert.severity == "warning" else logging.INFO
    log.log(level, "ALERT [%s] %s: %s", alert.severity, alert.title, alert.message)
    delivered = ["log"]
    if settings.alert_webhook_conn_id:
        try:
            post_webhook(settings.alert_webhook_conn_id, alert)
            delivered.append(f"webhook:{settings.alert_webhook_conn_id}")
        except Exception as exc:  # an unreachable receiver must not fail the task
            log.error("alert webhook via connection %r failed: %s", settings.alert_webhook_conn_id, exc)
    if settings.alert_email_to:
        try:
            send_email(settings.alert_smtp_conn_id, settings.alert_email_to, alert)
            delivered.append(f"email:{settings.alert_smtp_conn_id}")
        except Exception as exc:
            log.error("alert e-mail via connection %r failed: %s", settings.alert_smtp_conn_id, exc)
    return delivered


def webhook_url(host: str, port: int | None, scheme: str | None) -> str:
    """The URL of an HTTP connection whose host may carry a path (``hooks.example.com/services/T0``)
    or be a whole URL (``https://hooks.example.com/services/T0``)."""
    if "://" in host:
        return host
    name, _, path = host.partition("/")
    return f"{scheme or 'https'}://{name}{f':{port}' if port else ''}/{path}"


def post_webhook(conn_id: str, alert: Alert) -> None:
    import urllib.request

    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    if not connection.host:
        raise ValueError(f"connection {conn_id!r} has no host to post alerts to")
    url = webhook_url(connection.host, connection.port, connection.schema)
    headers = {"Content-Type": "application/json", **{k: str(v) for k, v in (connection.extra_dejson or {}).items()}}
    request = urllib.request.Request(url, data=json.dumps(alert.to_dict(), default=str).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def send_email(conn_id: str, to: list[str], alert: Alert) -> None:
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    body = f"<p>{html.escape(alert.message)}</p><pre>{html.escape(json.dumps(dict(alert.details), indent=2, default=str))}</pre>"
    with SmtpHook(smtp_conn_id=conn_id) as hook:
        hook.send_email_smtp(to=to, subject=f"[{alert.severity}] {alert.title}", html_content=body)
