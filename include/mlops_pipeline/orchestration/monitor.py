"""Airflow glue for ``mlops_monitor``: task context in, library calls, decisions and XComs out.

Thresholds are the monitor settings with Airflow Variable overrides, read inside each task at run
time (see :mod:`mlops_pipeline.config`), so a changed Variable applies to the next
run without a deploy. Missing inputs (no prediction log, no labels yet) are findings, not
failures; an unreachable MLflow or lake fails the task, and Airflow's retries apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.config import MonitorSettings

log = logging.getLogger(__name__)

TRAIN_DAG_ID = "mlops_train"
TRIGGER_TASK_ID = "trigger_retrain"
NO_RETRAIN_TASK_ID = "no_retrain"
DECIDE_TASK_ID = "decide"
DECISION_XCOM = "decision"
TRIGGER_CONF_XCOM = "trigger_conf"
TRIGGER_RUN_ID_XCOM = "trigger_run_id"  # what TriggerDagRunOperator pushes


def variable_overrides(get_variable: Callable[[str], str | None]) -> dict[str, str]:
    """The monitor settings overridden through ``get_variable(name)`` (None or empty = not set)."""
    from mlops_pipeline.config import MONITOR_VARIABLES

    found = {}
    for field_name, variable in MONITOR_VARIABLES.items():
        value = get_variable(variable)
        if value is not None and str(value).strip() != "":
            found[field_name] = value
    return found


def effective_settings() -> MonitorSettings:
    """The monitor settings with the Airflow Variables that are set applied on top."""
    from airflow.sdk import Variable

    from mlops_pipeline.config import get_settings

    def get(name: str) -> str | None:
        return Variable.get(name, default=None)

    overrides = variable_overrides(get)
    if overrides:
        log.info("Airflow Variables override monitor settings: %s", overrides)
    return get_settings().monitor.with_overrides(overrides)


def _window(start: datetime, end: datetime):
    from mlops_pipeline.ingest import Window

    return Window(start, end)


def monitor_task(start: datetime, end: datetime, *, dag_run_id: str | None) -> dict[str, Any]:
    """Reports for the window [start, end); returns the findings the decision needs (no Evidently payload)."""
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_pipeline.monitoring.pipeline import headline, run_monitor

    try:
        summary = run_monitor(_window(start, end), monitor=effective_settings(), dag_run_id=dag_run_id)
    except ValueError as exc:
        # Bad input (a reference sample without a feature, a dataset spec that does not match the
        # log ...) stays bad on a retry: fail now with the reason.
        raise AirflowFailException(f"mlops_monitor cannot monitor {start.date()}: {exc}") from exc
    log.info("findings for ds=%s: %s; report %s", summary["window"]["ds"], headline(summary), summary.get("report"))
    return summary


def decide_task(findings: Mapping[str, Any], *, start: datetime, end: datetime, run_type: str | None, ti: Any) -> str:
    """Decide, record ``decision.json`` beside the report, and name the branch to follow."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.monitoring.decision import (
        Thresholds,
        decide,
        decision_path,
        latest_retrain,
        read_decision,
    )
    from mlops_pipeline.storage import open_lake

    monitor = effective_settings()
    settings = get_settings()
    lake = open_lake(settings)
    window = _window(start, end)
    previous = read_decision(lake, monitor.reports_prefix, window.ds) or {}
    already = previous.get("train_run_id") if previous.get("triggered") else None
    retrains = _past_retrains(lake, monitor, settings, window, findings)
    last = latest_retrain(retrains, window.end)
    decision = decide(
        findings, Thresholds.from_settings(monitor), window_end=window.end, run_type=run_type,
        last_retrain=last, already_triggered=already,
    )
    window_info = {"ds": window.ds, "start": window.start.isoformat(), "end": window.end.isoformat()}
    conf = {"reason": decision.reason, "report": findings.get("report"), "window": window_info} if decision.trigger else None
    record = {
        **decision.to_dict(),
        "window": window_info,
        "report": findings.get("report"),
        "run_type": run_type,
        "dag_run_id": getattr(ti, "run_id", None),
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "conf": conf,
        "triggered": bool(already),
        "train_run_id": already,
    }
    lake.write_json_atomic(decision_path(lake, monitor.reports_prefix, window.ds), record)
    _tag_monitoring_run(findings, record, settings)
    log.info("decision for ds=%s: %s", window.ds, decision.summary)
    log.info("decision numbers: %s", json.dumps(decision.numbers, default=str, sort_keys=True))
    for note in decision.notes:
        log.info("note: %s", note)
    ti.xcom_push(key=DECISION_XCOM, value=record)
    ti.xcom_push(key=TRIGGER_CONF_XCOM, value=conf or {})
    return TRIGGER_TASK_ID if decision.trigger else NO_RETRAIN_TASK_ID


def no_retrain_task(ti: Any) -> str:
    record = ti.xcom_pull(task_ids=DECIDE_TASK_ID, key=DECISION_XCOM) or {}
    log.info("no retraining for ds=%s: %s", (record.get("window") or {}).get("ds"), record.get("summary"))
    return str(record.get("summary", ""))


def finalize_task(context: Mapping[str, Any]) -> dict[str, Any]:
    """After either branch: record whether the retrain was triggered, and alert on findings."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.monitoring.alerting import finding_alert
    from mlops_pipeline.monitoring.decision import decision_path
    from mlops_pipeline.orchestration.notifier import MonitorNotifier
    from mlops_pipeline.storage import open_lake

    ti = context["ti"]
    record = dict(ti.xcom_pull(task_ids=DECIDE_TASK_ID, key=DECISION_XCOM) or {})
    ds = str((record.get("window") or {}).get("ds"))
    if record.get("trigger"):
        train_run_id = ti.xcom_pull(task_ids=TRIGGER_TASK_ID, key=TRIGGER_RUN_ID_XCOM)
        if train_run_id:
            monitor = effective_settings()
            lake = open_lake(get_settings())
            record.update(triggered=True, train_run_id=train_run_id, triggered_at=datetime.now(UTC).isoformat(timespec="seconds"))
            lake.write_json_atomic(decision_path(lake, monitor.reports_prefix, ds), record)
            log.info("ds=%s: %s run %s triggered (%s)", ds, TRAIN_DAG_ID, train_run_id, record.get("reason"))
    alert = finding_alert(record, ds, record.get("report"))
    if alert is not None:
        MonitorNotifier(alert.title, alert.message, severity=alert.severity, details=alert.details)(context)  # type: ignore[arg-type]
    return {k: record.get(k) for k in ("action", "reason", "trigger", "blocked_by", "triggered", "train_run_id", "summary", "report")}


def _past_retrains(lake: Any, monitor: MonitorSettings, settings: Any, window: Any, findings: Mapping[str, Any]) -> list[Any]:
    from mlops_pipeline.monitoring.decision import lake_retrains, mlflow_retrains

    if monitor.cooldown_days <= 0:
        return []
    since = window.end - timedelta(days=monitor.cooldown_days)
    retrains = lake_retrains(lake, monitor.reports_prefix, since=since, exclude_ds=window.ds)
    if findings.get("status") == "no_champion":
        return retrains
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.registry.client import mlflow_client

    experiment = get_settings().train.experiment_name or settings.registered_model_name
    retrains += mlflow_retrains(mlflow_client(settings), experiment, monitor.cooldown_reasons, exclude_ds=window.ds)
    return retrains


def _tag_monitoring_run(findings: Mapping[str, Any], record: Mapping[str, Any], settings: Any) -> None:
    run_id = findings.get("mlflow_run_id")
    if not run_id:
        return
    from mlops_pipeline.monitoring.tracking import tag_decision
    from mlops_pipeline.registry.client import mlflow_client

    tag_decision(mlflow_client(settings), str(run_id), record)
