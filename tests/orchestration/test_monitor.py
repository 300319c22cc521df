"""The monitor adapter with a fake context: the branch it names, the record it writes, what it pushes to
XCom, the alerts it sends and the windows that fail."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlops_pipeline.orchestration import monitor
from mlops_pipeline.orchestration.notifier import AlertedFailure
from tests.orchestration.fakes import (
    FEATURES,
    FakeDagRun,
    FakeTaskInstance,
    RunType,
    day,
    findings,
    use_settings,
)


class NoRuns:
    """An MLflow client whose training experiment does not exist yet: no retrain recorded there."""

    def get_experiment_by_name(self, name):
        return None


@pytest.fixture
def lake_dir(monkeypatch, tmp_path) -> Path:
    use_settings(monkeypatch, tmp_path / "lake", MLOPS_MODEL_NAME="churn-test")
    monkeypatch.setattr("mlops_pipeline.registry.client.mlflow_client", lambda settings: NoRuns())
    return tmp_path / "lake"


def run_window(ds: str, found: dict, *, run_type: RunType = RunType.SCHEDULED, params: dict | None = None, trigger_run_id: str | None = None):
    """decide -> (the branch) -> finalize for one window, as the DAG wires them; returns the branch,
    the decide task's XComs and what finalize returned or raised."""
    start, end = day(ds)
    dag_run = FakeDagRun(run_id=f"{run_type.value}__{ds}", run_type=run_type)
    ti = FakeTaskInstance(task_id=monitor.DECIDE_TASK_ID, run_id=dag_run.run_id)
    branch = monitor.decide(found, data_interval_start=start, data_interval_end=end, dag_run=dag_run, params=params or {}, ti=ti)
    if branch == monitor.TRIGGER_TASK_ID and trigger_run_id:
        ti.as_task(monitor.TRIGGER_TASK_ID).xcom_push(monitor.TRIGGER_RUN_ID_XCOM, trigger_run_id)
    try:
        result: dict | Exception = monitor.finalize(ti.as_task(monitor.FINALIZE_TASK_ID))
    except AirflowFailException as exc:
        result = exc
    return branch, ti.xcoms, result


def recorded(lake_dir: Path, ds: str) -> dict:
    return json.loads((lake_dir / "reports" / "drift" / f"ds={ds}" / "decision.json").read_text())


def test_the_monitor_task_refuses_a_window_before_the_start_date(monkeypatch, tmp_path):
    use_settings(monkeypatch, tmp_path / "lake", MLOPS_START_DATE="2013-01-01")
    monkeypatch.setattr("mlops_pipeline.monitoring.pipeline.run_monitor", lambda *a, **k: pytest.fail("must not monitor"))
    with pytest.raises(AirflowFailException, match=r"mlops_monitor for 2012-12-31 is before the configured start date 2013-01-01"):
        monitor.monitor(*day("2012-12-31"), run_id="manual__2012-12-31")


def test_the_monitor_task_returns_the_findings_and_fails_at_once_on_bad_input(monkeypatch, lake_dir):
    calls = []

    def run_monitor(window, *, monitor, dag_run_id):
        calls.append((window.ds, monitor.min_rows, dag_run_id))
        return findings(ds=window.ds)

    monkeypatch.setenv("AIRFLOW_VAR_MLOPS_MONITOR_MIN_ROWS", "50")  # a Variable overrides the setting
    monkeypatch.setattr("mlops_pipeline.monitoring.pipeline.run_monitor", run_monitor)
    assert monitor.monitor(*day("2026-01-09"), run_id="scheduled__2026-01-09")["status"] == "ok"
    assert calls == [("2026-01-09", 50, "scheduled__2026-01-09")]

    def bad(window, **kwargs):
        raise ValueError("the reference sample lacks feature 'plan'")

    monkeypatch.setattr("mlops_pipeline.monitoring.pipeline.run_monitor", bad)
    with pytest.raises(AirflowFailException, match=r"mlops_monitor cannot monitor ds=2026-01-09: the reference sample lacks feature 'plan'"):
        monitor.monitor(*day("2026-01-09"), run_id="scheduled__2026-01-09")


def test_a_quiet_window_takes_the_quiet_branch_and_records_why(lake_dir):
    branch, xcoms, result = run_window("2026-01-08", findings(ds="2026-01-08"))
    assert branch == monitor.NO_RETRAIN_TASK_ID
    record = xcoms[(monitor.DECIDE_TASK_ID, monitor.DECISION_XCOM)]
    assert record == recorded(lake_dir, "2026-01-08")
    assert (record["action"], record["trigger"], record["conf"]) == ("none", False, None)
    assert xcoms[(monitor.DECIDE_TASK_ID, monitor.TRIGGER_CONF_XCOM)] == {}
    assert record["summary"] == "no retrain: no drift and no performance loss"
    assert result["action"] == "none" and result["data_status"] == "ok"
    assert monitor.no_retrain(FakeTaskInstance(task_id=monitor.NO_RETRAIN_TASK_ID, xcoms=xcoms)) == record["summary"]


def test_drift_waits_for_post_change_data_then_triggers_with_the_change_start(lake_dir):
    branches = []
    for ds in ("2026-01-09", "2026-01-10", "2026-01-11"):
        branch, xcoms, result = run_window(ds, findings(drifted=FEATURES, ds=ds), trigger_run_id=f"mlops_monitor__{ds}")
        branches.append(branch)
    assert branches == [monitor.NO_RETRAIN_TASK_ID, monitor.NO_RETRAIN_TASK_ID, monitor.TRIGGER_TASK_ID]
    first = recorded(lake_dir, "2026-01-09")
    assert (first["action"], first["trigger"], first["blocked_by"]) == ("retrain", False, "waiting_for_post_change_data")
    assert "drift since 2026-01-09: 1 of 3 post-change days; retrain when 3 days exist" in first["summary"]
    assert recorded(lake_dir, "2026-01-10")["post_change_days"] == 2
    conf = xcoms[(monitor.DECIDE_TASK_ID, monitor.TRIGGER_CONF_XCOM)]
    assert conf["reason"] == "drift" and conf["change_start"] == "2026-01-09" and conf["window"]["ds"] == "2026-01-11"
    assert conf["report"] == "file:///r/ds=2026-01-11/report.html"
    third = recorded(lake_dir, "2026-01-11")
    assert third["triggered"] and third["train_run_id"] == "mlops_monitor__2026-01-11"  # written by finalize
    assert (result["triggered"], result["change_start"], result["post_change_days"]) == (True, "2026-01-09", 3)


@pytest.mark.parametrize(
    ("param", "variable", "triggers", "source"),
    [
        (None, None, False, "setting trigger_on_backfill"),
        (True, None, True, "run Param retrain_on_backfill"),
        (None, "true", True, "Airflow Variable mlops_monitor_trigger_on_backfill"),
        (False, "true", False, "run Param retrain_on_backfill"),
    ],
)
def test_a_backfill_triggers_only_when_its_param_the_variable_or_the_setting_allow_it(monkeypatch, lake_dir, param, variable, triggers, source):
    monkeypatch.setenv("MLOPS_MONITOR_MIN_POST_CHANGE_DAYS", "1")
    if variable is not None:
        monkeypatch.setenv("AIRFLOW_VAR_MLOPS_MONITOR_TRIGGER_ON_BACKFILL", variable)
    from mlops_pipeline.config import get_settings

    get_settings.cache_clear()
    branch, _, _ = run_window(
        "2026-01-09", findings(drifted=FEATURES), run_type=RunType.BACKFILL, params={monitor.RETRAIN_ON_BACKFILL: param}
    )
    record = recorded(lake_dir, "2026-01-09")
    assert (branch == monitor.TRIGGER_TASK_ID) is triggers
    assert record["backfill_rule"] == {"trigger_on_backfill": triggers, "source": source}
    assert record["run_type"] == "backfill" and record["blocked_by"] == (None if triggers else "backfill")


def test_a_window_without_rows_is_recorded_alerted_and_then_fails(lake_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="mlops_pipeline.monitoring.alerts"):
        branch, _, result = run_window("2026-01-12", findings(rows=0, labelled=0, ds="2026-01-12"))
    assert branch == monitor.NO_RETRAIN_TASK_ID
    assert isinstance(result, AlertedFailure)
    assert "mlops_monitor ds=2026-01-12: no data: 0 prediction rows in the window (min_rows 500)" in str(result)
    record = recorded(lake_dir, "2026-01-12")
    assert (record["action"], record["data_status"], record["rows"], record["min_rows"]) == ("no_data", "no_data", 0, 500)
    assert "ALERT [error] mlops_monitor ds=2026-01-12: no prediction data" in caplog.text


def test_too_few_rows_say_so_and_alert_but_the_run_succeeds(lake_dir, caplog):
    with caplog.at_level(logging.WARNING):
        branch, _, result = run_window("2026-01-13", findings(rows=120, labelled=0, ds="2026-01-13"))
    assert branch == monitor.NO_RETRAIN_TASK_ID
    assert isinstance(result, dict) and (result["action"], result["rows"], result["min_rows"]) == ("not_enough_data", 120, 500)
    assert result["summary"].startswith("not enough data: 120 prediction row(s) in the window, fewer than min_rows 500")
    assert "ALERT [warning] mlops_monitor ds=2026-01-13: not enough prediction data" in caplog.text
    assert "ds=2026-01-13: not enough data" in caplog.text  # the task log says so too


def test_no_champion_yet_is_a_reason_not_a_failure(lake_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="mlops_pipeline.monitoring.alerts"):
        branch, _, result = run_window("2026-01-09", findings(status="no_champion"))
    assert branch == monitor.NO_RETRAIN_TASK_ID and isinstance(result, dict)
    assert result["action"] == "none" and result["summary"].startswith("nothing to compare: churn has no @champion")
    assert result["data_status"] == "no_champion" and "ALERT" not in caplog.text


def with_estimate(found: dict, roc_auc: float, *, calibration: str | None = "isotonic") -> dict:
    """Findings with the window's estimated performance, as run_monitor reports it."""
    estimate = {
        "days": [found["report"].split("ds=")[1][:10]], "rows": found["drift"]["rows"], "roc_auc": roc_auc, "accuracy": 0.7,
        "roc_auc_error_bound": 1e-6, "threshold": 0.4, "calibration": calibration, "champion_holdout_roc_auc": 0.82,
    }  # fmt: skip
    return {**found, "estimate": estimate}


def test_an_estimated_performance_loss_triggers_at_once_with_its_reason(lake_dir):
    branch, xcoms, result = run_window(
        "2026-01-09", with_estimate(findings(ds="2026-01-09"), 0.64), trigger_run_id="mlops_monitor__2026-01-09"
    )
    assert branch == monitor.TRIGGER_TASK_ID  # no waiting for post-change data
    conf = xcoms[(monitor.DECIDE_TASK_ID, monitor.TRIGGER_CONF_XCOM)]
    assert conf["reason"] == "estimated_performance" and conf["change_start"] is None
    record = recorded(lake_dir, "2026-01-09")
    assert record["summary"].startswith(
        "retrain (estimated_performance): estimated ROC AUC 0.6400 on 2000 unlabelled rows of 2026-01-09 < floor 0.7000"
    )
    assert (record["estimated_roc_auc"], record["estimated_days"], record["realised_roc_auc"]) == (0.64, ["2026-01-09"], None)
    assert (result["estimated_roc_auc"], result["estimated_accuracy"], result["triggered"]) == (0.64, 0.7, True)


def test_the_estimate_of_an_uncalibrated_champion_is_recorded_but_not_judged(lake_dir):
    branch, _, result = run_window("2026-01-09", with_estimate(findings(ds="2026-01-09"), 0.64, calibration=None))
    assert branch == monitor.NO_RETRAIN_TASK_ID and result["estimated_roc_auc"] == 0.64
    assert any("uncalibrated" in note for note in recorded(lake_dir, "2026-01-09")["notes"])


def test_the_setting_switches_estimated_retrains_off(monkeypatch, lake_dir):
    monkeypatch.setenv("MLOPS_MONITOR_RETRAIN_ON_ESTIMATE", "false")
    from mlops_pipeline.config import get_settings

    get_settings.cache_clear()
    branch, _, _ = run_window("2026-01-09", with_estimate(findings(ds="2026-01-09"), 0.64))
    assert branch == monitor.NO_RETRAIN_TASK_ID
    assert any("retrain_on_estimate is off" in note for note in recorded(lake_dir, "2026-01-09")["notes"])
