"""mlops_monitor: the DAG's shape, a light parse, and real `airflow dags test` runs.

The runs use the throwaway Airflow home (``airflow_stack``), a private copy of the session's lake,
the session's MLflow server with a champion trained and promoted for this module, and a
prediction log prepared for these windows (``min_post_change_days`` 2):

* 2026-01-08: the lake's own rows -> no drift -> ``no_retrain``; the record holds the estimated
  performance of its rows (and, once 2026-01-10 ran, their realised performance beside it);
* 2026-01-09: rows of the covariate-drift scenario -> drift, the first post-change day -> the retrain
  waits (``no_retrain``), ``change_start`` 2026-01-09;
* 2026-01-10: drift again, the second post-change day -> ``trigger_retrain`` creates an ``mlops_train``
  run with conf ``{reason: drift, report, window, change_start}`` (``dags test`` does not run it);
* 2026-01-20: no prediction row -> ``no_data`` recorded, then the run fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "mlops_monitor.py"
HEAVY = ("pandas", "numpy", "mlflow", "evidently", "pyarrow", "scipy", "sklearn", "xgboost")


def test_dag_file_imports_nothing_heavy():
    code = (
        "import runpy, sys, json\n"
        f"runpy.run_path({str(DAG_FILE)!r})\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_dag_shape():
    from airflow.dag_processing.dagbag import DagBag

    from mlops_pipeline.orchestration.timetables import DailyWindowTimetable

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    dag = bag.dags["mlops_monitor"]
    assert {t.task_id for t in dag.tasks} == {"monitor", "decide", "trigger_retrain", "no_retrain", "finalize"}
    assert isinstance(dag.timetable, DailyWindowTimetable)
    assert dag.get_task("decide").downstream_task_ids == {"trigger_retrain", "no_retrain"}
    assert dag.get_task("finalize").upstream_task_ids == {"trigger_retrain", "no_retrain"}
    assert dag.get_task("finalize").trigger_rule == "none_failed_min_one_success"
    trigger = dag.get_task("trigger_retrain")
    assert trigger.trigger_dag_id == "mlops_train" and trigger.skip_when_already_exists
    assert dag.get_task("monitor").on_failure_callback
    assert "mlops" in dag.tags and not dag.catchup
    # No Airflow start date (a run may be for any date; the configured one is checked by the monitor
    # task), and one window at a time (a decision reads the previous window's record).
    assert dag.start_date is None and dag.max_active_runs == 1
    assert dag.params.dump() == {"retrain_on_backfill": None}


def _airflow(stack, env_extra: dict[str, str], *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**stack.env, **env_extra}
    command = [sys.executable, "-m", "mlops_dev.services", "exec", "--", "airflow", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _dags_test(stack, env_extra: dict[str, str], logical_date: str, *, fails: bool = False) -> subprocess.CompletedProcess[str]:
    done = _airflow(stack, env_extra, "dags", "test", "mlops_monitor", logical_date)
    assert (done.returncode != 0) is fails, f"dags test {'succeeded' if fails else 'failed'}:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return done


def _write_drifted_window(log_dir: Path, champion: dict, day: date) -> None:
    """The window's rows only (covariate drift), predicted by the champion."""
    from datetime import UTC, datetime, timedelta

    from mlops_pipeline.data.synthetic import Scenario, generate_day
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.registry.models import load_model
    from tests.monitoring.logs import log_lines, write_log

    spec = load_dataset_spec("churn")
    rows = generate_day(day, seed=42, rows=2000, scenarios={Scenario.COVARIATE_DRIFT}).drop(columns=[spec.target])
    predicted_at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=23)
    model = load_model(champion["model_uri"])
    lines = log_lines(rows, model.predict_proba(rows), spec, model_version=champion["version"], predicted_at=predicted_at)
    write_log(log_dir, day.isoformat(), lines)


@pytest.mark.integration
def test_drift_triggers_training_once_enough_post_change_days_exist(airflow_stack, mlops_env_module, tmp_path_factory):
    from mlflow import MlflowClient

    from tests.mlflow_fixtures import quiet_mlflow_environment
    from tests.monitoring.scenario import copy_lake, train_champion, write_scenario_logs

    base = tmp_path_factory.mktemp("monitor-dag")
    champion = train_champion(mlops_env_module.lake.day_after)
    lake_uri = copy_lake(mlops_env_module.lake.uri, base / "lake")
    logs = base / "predictions"
    write_scenario_logs(logs, lake_uri, champion, drift=False, window_day=date(2026, 1, 8))
    write_scenario_logs(logs, lake_uri, champion, drift=True, window_day=date(2026, 1, 9))
    _write_drifted_window(logs, champion, date(2026, 1, 10))
    env = {
        **quiet_mlflow_environment(),
        "MLOPS_LAKE_URI": lake_uri,
        "MLFLOW_TRACKING_URI": mlops_env_module.tracking_uri,
        "MLOPS_MODEL_NAME": mlops_env_module.model_name,
        "MLOPS_PREDICTION_LOG_DIR": str(logs),
        "MLOPS_MONITOR_REPORT_SAMPLE_ROWS": "1000",
        "MLOPS_MONITOR_MIN_POST_CHANGE_DAYS": "2",
    }
    # The trigger needs mlops_train in the metadata DB (a scheduler's DAG processor would put it there).
    reserialized = _airflow(airflow_stack, env, "dags", "reserialize")
    assert reserialized.returncode == 0, reserialized.stderr[-3000:]

    reports = Path(urlparse(lake_uri).path) / "reports" / "drift"

    _dags_test(airflow_stack, env, "2026-01-08")
    quiet = json.loads((reports / "ds=2026-01-08" / "decision.json").read_text())
    assert quiet["action"] == "none" and not quiet["trigger"] and not quiet["triggered"]
    assert quiet["numbers"]["drifted_features"] == [] and quiet["numbers"]["labelled_rows"] == 2000
    assert quiet["conf"] is None
    assert quiet["estimated_days"] == ["2026-01-08"] and 0.6 < quiet["estimated_roc_auc"] < 0.9
    assert quiet["estimated_accuracy"] is not None and quiet["realised_roc_auc"] is None  # no labels of 01-08 yet
    assert quiet["labelled"]["days"] == ["2026-01-06"] and quiet["labelled"]["rows"] == 2000

    done = _dags_test(airflow_stack, env, "2026-01-09")
    waiting = json.loads((reports / "ds=2026-01-09" / "decision.json").read_text())
    assert (waiting["action"], waiting["reason"], waiting["trigger"]) == ("retrain", "drift", False)
    assert waiting["blocked_by"] == "waiting_for_post_change_data" and not waiting["triggered"]
    assert (waiting["change_start"], waiting["post_change_days"], waiting["min_post_change_days"]) == ("2026-01-09", 1, 2)
    assert "drift since 2026-01-09: 1 of 2 post-change days; retrain when 2 days exist" in done.stdout + done.stderr  # the task log
    assert waiting["conf"] is None

    done = _dags_test(airflow_stack, env, "2026-01-10")
    assert "decision for ds=2026-01-10: retrain (drift): " in done.stdout + done.stderr  # the task log
    assert "features drifted (share" in done.stdout + done.stderr
    drifted = json.loads((reports / "ds=2026-01-10" / "decision.json").read_text())
    assert drifted["action"] == "retrain" and drifted["reason"] == "drift" and drifted["trigger"]
    assert (drifted["change_start"], drifted["post_change_days"]) == ("2026-01-09", 2)
    assert drifted["previous_window"] == {"ds": "2026-01-09", "recorded": True}
    assert drifted["triggered"] and drifted["train_run_id"] == "mlops_monitor__2026-01-10"  # set after the trigger ran
    assert drifted["conf"] == {
        "reason": "drift",
        "report": f"{lake_uri}/reports/drift/ds=2026-01-10/report.html",
        "window": {"ds": "2026-01-10", "start": "2026-01-10T00:00:00+00:00", "end": "2026-01-11T00:00:00+00:00"},
        "change_start": "2026-01-09",
    }
    assert (reports / "ds=2026-01-10" / "report.html").is_file() and (reports / "ds=2026-01-10" / "quality.html").is_file()
    # 2026-01-10's run measured the labels of 2026-01-08 and wrote them beside that window's estimate.
    quiet = json.loads((reports / "ds=2026-01-08" / "decision.json").read_text())
    assert quiet["realised_days"] == ["2026-01-08"] and quiet["realised"]["measured_by"] == "2026-01-10"
    assert abs(quiet["estimated_roc_auc"] - quiet["realised_roc_auc"]) < 0.05

    listed = _airflow(airflow_stack, env, "dags", "list-runs", "mlops_train", "--output", "json", timeout=300)
    assert listed.returncode == 0, listed.stderr[-3000:]
    table = [line for line in listed.stdout.splitlines() if line.startswith(("[{", "[]"))][-1]  # after any warnings
    runs = {run["run_id"]: run for run in json.loads(table)}
    assert "mlops_monitor__2026-01-10" in runs and "mlops_monitor__2026-01-09" not in runs
    assert runs["mlops_monitor__2026-01-10"]["logical_date"].startswith("2026-01-11T00:00:00")

    # A window without a single prediction row: recorded, alerted, and the run fails.
    done = _dags_test(airflow_stack, env, "2026-01-20", fails=True)
    empty = json.loads((reports / "ds=2026-01-20" / "decision.json").read_text())
    assert (empty["action"], empty["data_status"], empty["rows"], empty["trigger"]) == ("no_data", "no_data", 0, False)
    output = done.stdout + done.stderr
    assert "ALERT [error] mlops_monitor ds=2026-01-20: no prediction data" in output
    assert "no data: 0 prediction rows in the window (min_rows 500)" in output

    client = MlflowClient(mlops_env_module.tracking_uri)
    experiment = client.get_experiment_by_name(f"{mlops_env_module.model_name}-monitoring")
    tags = {r.data.tags["window_ds"]: r.data.tags for r in client.search_runs([experiment.experiment_id])}
    assert tags["2026-01-08"]["decision_action"] == "none"
    assert tags["2026-01-09"]["decision_blocked_by"] == "waiting_for_post_change_data"
    assert tags["2026-01-10"]["decision_action"] == "retrain" and tags["2026-01-10"]["decision_reason"] == "drift"
    assert tags["2026-01-10"]["decision_trigger"] == "true"
    quiet_run = next(r for r in client.search_runs([experiment.experiment_id]) if r.data.tags["window_ds"] == "2026-01-08")
    assert quiet_run.data.metrics["estimated_roc_auc"] == quiet["estimated_roc_auc"]
    assert quiet_run.data.metrics["realised_roc_auc"] == quiet["realised_roc_auc"] and "estimate_error_roc_auc" in quiet_run.data.metrics
