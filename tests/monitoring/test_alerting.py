"""Alerts: the log always; a webhook connection when configured; a failing channel never fails the caller."""

from __future__ import annotations

import http.server
import json
import logging
import threading

import pytest

from mlops_pipeline.config import MonitorSettings
from mlops_pipeline.monitoring.alerting import Alert, data_alert, finding_alert, window_alerts
from mlops_pipeline.orchestration.notifier import (
    AlertedFailure,
    MonitorNotifier,
    notify,
    send_alert,
    webhook_url,
)


@pytest.fixture
def receiver():
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the handler API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "token": self.headers.get("X-Token"), "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, received
    server.shutdown()


def test_by_default_an_alert_goes_to_the_log(caplog):
    with caplog.at_level(logging.WARNING, logger="mlops_pipeline.monitoring.alerts"):
        assert send_alert(Alert("drift", "3 features drifted"), MonitorSettings()) == ["log"]
    assert "ALERT [warning] drift: 3 features drifted" in caplog.text


def test_a_webhook_connection_receives_the_alert_as_json(receiver, monkeypatch):
    port, received = receiver
    connection = {"conn_type": "http", "host": "127.0.0.1/hooks/T0", "port": port, "schema": "http", "extra": {"X-Token": "secret-1"}}
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_ALERTS", json.dumps(connection))
    channels = send_alert(Alert("drift", "plan drifted", details={"ds": "2026-01-09"}), MonitorSettings(alert_webhook_conn_id="mlops_alerts"))
    assert channels == ["log", "webhook:mlops_alerts"]
    assert received == [
        {
            "path": "/hooks/T0",
            "token": "secret-1",
            "body": {"title": "drift", "severity": "warning", "message": "plan drifted", "details": {"ds": "2026-01-09"}},
        }
    ]


def test_an_unreachable_webhook_is_logged_not_raised(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_ALERTS", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": 9, "schema": "http"}))
    with caplog.at_level(logging.ERROR, logger="mlops_pipeline.monitoring.alerts"):
        assert send_alert(Alert("x", "y"), MonitorSettings(alert_webhook_conn_id="mlops_alerts")) == ["log"]
    assert "alert webhook via connection 'mlops_alerts' failed" in caplog.text


@pytest.mark.parametrize(
    ("host", "port", "scheme", "url"),
    [
        ("hooks.example.com/services/T0", None, None, "https://hooks.example.com/services/T0"),
        ("localhost", 8080, "http", "http://localhost:8080/"),
        ("https://hooks.example.com/x", None, "http", "https://hooks.example.com/x"),
    ],
)
def test_webhook_url(host, port, scheme, url):
    assert webhook_url(host, port, scheme) == url


def test_findings_become_an_alert_with_the_outcome():
    decision = {
        "signals": [{"kind": "drift", "message": "8 of 14 features drifted"}, {"kind": "prediction", "message": "prediction drift 0.6"}],
        "trigger": False,
        "blocked_by": "cooldown",
    }
    alert = finding_alert(decision, "2026-01-09", "file:///lake/reports/drift/ds=2026-01-09/report.html")
    assert alert is not None and alert.title == "mlops_monitor ds=2026-01-09: drift + prediction"
    assert "retrain not triggered (cooldown)" in alert.message and alert.message.endswith("report.html")
    assert finding_alert({"signals": []}, "2026-01-09", None) is None


def test_the_notifier_describes_a_failed_task(caplog):
    class TaskInstance:
        dag_id, task_id, run_id, try_number = "mlops_monitor", "monitor", "scheduled__2026-01-09", 3

    with caplog.at_level(logging.ERROR, logger="mlops_pipeline.monitoring.alerts"):
        MonitorNotifier().notify({"ti": TaskInstance(), "exception": RuntimeError("MLflow is down")})
    assert "mlops_monitor.monitor failed (scheduled__2026-01-09): RuntimeError: MLflow is down" in caplog.text


@pytest.mark.parametrize(
    ("status", "rows", "severity", "title"),
    [("no_data", 0, "error", "no prediction data"), ("not_enough_data", 120, "warning", "not enough prediction data")],
)
def test_a_window_without_enough_rows_is_an_alert(status, rows, severity, title):
    decision = {"data_status": status, "rows": rows, "min_rows": 500, "summary": f"{status}: ...", "signals": []}
    alert = data_alert(decision, "2026-01-09", None)
    assert alert is not None and alert.severity == severity
    assert alert.title == f"mlops_monitor ds=2026-01-09: {title}"
    assert f"has {rows} prediction row" in alert.message and "min_rows 500" in alert.message
    assert (alert.details["rows"], alert.details["min_rows"]) == (rows, 500)
    assert data_alert({"data_status": "ok", "rows": 2000}, "2026-01-09", None) is None
    both = window_alerts({**decision, "signals": [{"kind": "performance", "message": "ROC AUC 0.6"}]}, "2026-01-09", None)
    assert [a.title.rsplit(": ", 1)[1] for a in both] == [title, "performance"]


def test_an_alert_sent_from_a_task_names_the_task(caplog):
    class TaskInstance:
        dag_id, task_id, run_id, try_number = "mlops_monitor", "finalize", "scheduled__2026-01-09", 1

    with caplog.at_level(logging.ERROR, logger="mlops_pipeline.monitoring.alerts"):
        assert notify(Alert("no data", "0 rows", severity="error", details={"rows": 0}), TaskInstance(), MonitorSettings()) == ["log"]
    assert "ALERT [error] no data: 0 rows" in caplog.text


def test_the_notifier_sends_nothing_more_for_a_failure_that_alerted_itself(caplog):
    class TaskInstance:
        dag_id, task_id, run_id, try_number = "mlops_monitor", "finalize", "scheduled__2026-01-09", 1

    with caplog.at_level(logging.INFO, logger="mlops_pipeline.monitoring.alerts"):
        MonitorNotifier().notify({"ti": TaskInstance(), "exception": AlertedFailure("no data for ds=2026-01-09")})
    assert "ALERT" not in caplog.text and "failed after sending its own alert" in caplog.text
