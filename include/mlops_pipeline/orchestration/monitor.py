"""The adapter of ``mlops_monitor``: one function per task, context values in, XCom-able dicts out.

* :func:`monitor`   the window's reports (:func:`~mlops_pipeline.monitoring.pipeline.run_monitor`);
* :func:`decide`    the decision and its record (:func:`~mlops_pipeline.monitoring.decision.decide_window`),
  and the branch to follow;
* :func:`no_retrain` the quiet branch;
* :func:`finalize`  after either branch: the triggered run in the record, the alerts, and the failure
  of a window without prediction rows (recorded first, so the Grid shows the incident).

Thresholds are the monitor settings with Airflow Variable overrides, read inside each task at run
time (see :mod:`mlops_pipeline.config`), so a changed Variable applies to the next run without a
deploy; a run's ``retrain_on_backfill`` Param wins over both for that run. Missing inputs (no labels
yet, no ``@champion`` yet) are findings, not failures; bad input fails at once; an unreachable
MLflow or lake fails the task, and Airflow's retries apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlops_pipeline.orchestration.context import (
    MlflowIdentity,
    bad_input_fails_at_once,
    refuse_before_start,
    run_type_of,
    scoped,
    window_of,
)

if TYPE_CHECKING:
    from mlops_pipeline.config import MonitorSettings

log = logging.getLogger(__name__)

# The DAG's on_execute_callback: its tasks talk to MLflow as the user of Airflow connection mlflow_monitor.
MLFLOW_IDENTITY = MlflowIdentity("monitor")

DAG_ID = "mlops_monitor"
TRAIN_DAG_ID = "mlops_train"
MONITOR_TASK_ID = "monitor"
DECIDE_TASK_ID = "decide"
TRIGGER_TASK_ID = "trigger_retrain"
NO_RETRAIN_TASK_ID = "no_retrain"
FINALIZE_TASK_ID = "finalize"
DECISION_XCOM = "decision"
TRIGGER_CONF_XCOM = "trigger_conf"
TRIGGER_RUN_ID_XCOM = "trigger_run_id"  # what TriggerDagRunOperator pushes
RETRAIN_ON_BACKFILL = "retrain_on_backfill"  # the DAG's Param: may this backfill run trigger? (None: the setting)
RESULT_KEYS = (
    "action", "reason", "trigger", "blocked_by", "triggered", "train_run_id", "summary", "report",
    "data_status", "rows", "min_rows", "change_start", "post_change_days", "min_post_change_days", "backfill_rule",
    "estimated_roc_auc", "estimated_accuracy", "estimated_days",
)


def variable_overrides(get_variable: Callable[[str], str | None]) -> dict[str, str]:
    """The monitor settings overridden through ``get_variable(name)`` (None or empty = not set)."""
    from mlops_pipeline.config import MONITOR_VARIABLES

    found = {}
    for field_name, variable in MONITOR_VARIABLES.items():
        value = get_variable(variable)
        if value is not None and str(value).strip() != "":
            found[field_name] = value
    return found


def _airflow_variable(name: str) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(name, default=None)


def effective_settings(params: Mapping[str, Any] | None = None) -> tuple[MonitorSettings, str]:
    """The monitor settings with the Airflow Variables that are set applied on top, and the run's
    ``retrain_on_backfill`` Param on top of those; with the rule that decides whether a backfill run
    may trigger (the Param, the Variable or the setting)."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.monitoring.decision import RULE_PARAM, RULE_SETTING, RULE_VARIABLE

    overrides: dict[str, Any] = dict(variable_overrides(_airflow_variable))
    if overrides:
        log.info("Airflow Variables override monitor settings: %s", overrides)
    rule = RULE_VARIABLE if "trigger_on_backfill" in overrides else RULE_SETTING
    param = (params or {}).get(RETRAIN_ON_BACKFILL)
    if param is not None:
        overrides["trigger_on_backfill"] = param
        rule = RULE_PARAM
    return get_settings().monitor.with_overrides(overrides), rule


def monitor(data_interval_start: datetime, data_interval_end: datetime, *, run_id: str | None) -> dict[str, Any]:
    """Reports for the window [start, end); returns the findings the decision needs (no Evidently payload)."""
    from mlops_pipeline.monitoring.pipeline import headline, run_monitor

    refuse_before_start(scoped(DAG_ID), data_interval_start)
    window = window_of(data_interval_start, data_interval_end)
    with bad_input_fails_at_once(f"{scoped(DAG_ID)} cannot monitor ds={window.ds}"):
        # Bad input (a reference sample without a feature, a dataset spec that does not match the
        # log ...) stays bad on a retry.
        summary = run_monitor(window, monitor=effective_settings()[0], dag_run_id=run_id)
    log.info("findings for ds=%s: %s; report %s", window.ds, headline(summary), summary.get("report"))
    return summary


def decide(
    findings: Mapping[str, Any],
    *,
    data_interval_start: datetime,
    data_interval_end: datetime,
    dag_run: Any,
    params: Mapping[str, Any] | None,
    ti: Any,
) -> str:
    """Decide, record ``decision.json`` beside the report, push the record and the trigger conf, and
    name the branch to follow."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.monitoring.decision import decide_window

    settings, rule = effective_settings(params)
    window = window_of(data_interval_start, data_interval_end)
    record = decide_window(
        findings,
        window,
        monitor=settings,
        settings=get_settings(),
        run_type=run_type_of(dag_run),
        dag_run_id=getattr(dag_run, "run_id", None) or getattr(ti, "run_id", None),
        backfill_rule_source=rule,
    )
    log.info("decision for ds=%s: %s", window.ds, record["summary"])
    log.info("decision numbers: %s", json.dumps(record["numbers"], default=str, sort_keys=True))
    labelled = record.get("labelled") or {}
    if labelled.get("realised_roc_auc") is not None:
        log.info(
            "labelled day(s) %s: realised ROC AUC %.4f, estimated %s on the same %d rows",
            ", ".join(labelled.get("days") or []), labelled["realised_roc_auc"], labelled.get("estimated_roc_auc"), labelled.get("rows", 0),
        )
    for note in record["notes"]:
        log.info("note: %s", note)
    ti.xcom_push(key=DECISION_XCOM, value=record)
    ti.xcom_push(key=TRIGGER_CONF_XCOM, value=record["conf"] or {})
    return TRIGGER_TASK_ID if record["trigger"] else NO_RETRAIN_TASK_ID


def no_retrain(ti: Any) -> str:
    record = ti.xcom_pull(task_ids=DECIDE_TASK_ID, key=DECISION_XCOM) or {}
    log.info("no retraining for ds=%s: %s", (record.get("window") or {}).get("ds"), record.get("summary"))
    return str(record.get("summary", ""))


def finalize(ti: Any) -> dict[str, Any]:
    """After either branch: record the triggered run, send the window's alerts, and fail a window
    without a single prediction row (after recording and alerting: a model without traffic, or whose
    prediction log stopped, is an incident the Grid must show). Too few rows end successfully and
    say so in the result."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.monitoring.alerting import window_alerts
    from mlops_pipeline.monitoring.decision import NO_DATA, NOT_ENOUGH_DATA, record_triggered
    from mlops_pipeline.orchestration.notifier import AlertedFailure, notify
    from mlops_pipeline.storage import open_lake

    record = dict(ti.xcom_pull(task_ids=DECIDE_TASK_ID, key=DECISION_XCOM) or {})
    if not record:
        raise RuntimeError(f"no decision from task {DECIDE_TASK_ID!r} in XCom: nothing to finalize")
    ds = str((record.get("window") or {}).get("ds"))
    settings = get_settings()
    if record.get("trigger"):
        train_run_id = ti.xcom_pull(task_ids=TRIGGER_TASK_ID, key=TRIGGER_RUN_ID_XCOM)
        if train_run_id:
            record = record_triggered(open_lake(settings), settings.monitor.reports_prefix, record, str(train_run_id))
            log.info("ds=%s: %s run %s triggered (%s)", ds, TRAIN_DAG_ID, train_run_id, record.get("reason"))
    for alert in window_alerts(record, ds, record.get("report")):
        notify(alert, ti, settings.monitor)
    result = {key: record.get(key) for key in RESULT_KEYS}
    if record.get("data_status") == NOT_ENOUGH_DATA:
        log.warning("ds=%s: %s", ds, record.get("summary"))
    if record.get("data_status") == NO_DATA:
        raise AlertedFailure(f"{scoped(DAG_ID)} ds={ds}: {record.get('summary')} (recorded in {record.get('report') or 'decision.json'})")
    return result
