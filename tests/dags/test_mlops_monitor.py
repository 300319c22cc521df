"""mlops_monitor: the DAG's shape, a light parse, and two real `airflow dags test` runs.

The runs use the throwaway Airflow home (``airflow_stack``), a private copy of the session's lake,
the session's MLflow server with a champion trained and promoted for this module, and a
prediction log prepared for two windows:

* 2026-01-08: the lake's own rows -> no drift -> ``no_retrain``;
* 2026-01-09: rows of the covariate-drift scenario -> drift -> ``trigger_retrain`` creates an
  ``mlops_train`` run with conf ``{reason: drift, report, window}`` (``dags test`` does not run it).
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


def _airflow(stack, env_extra: dict[str, str], *argv: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**stack.env, **env_extra}
    command = [sys.executable, "-m", "mlops_dev.services", "exec", "--", "airflow", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _dags_test(stack, env_extra: dict[str, str], logical_date: str) -> subprocess.CompletedProcess[str]:
    done = _airflow(stack, env_extra, "dags", "test", "mlops_monitor", logical_date)
    assert done.returncode == 0, f"dags test failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.mark.integration
def test_drift_triggers_training_and_a_quiet_window_does_not(airflow_stack, mlops_env_module, tmp_path_factory):
    from mlflow import MlflowClient

    from tests.mlflow_fixtures import quiet_mlflow_environment
    from tests.monitoring.scenario import copy_lake, train_champion, write_scenario_logs

    base = tmp_path_factory.mktemp("monitor-dag")
    champion = train_champion(mlops_env_module.lake.day_after)
    lake_uri = copy_lake(mlops_env_module.lake.uri, base / "lake")
    logs = base / "predictions"
    write_scenario_logs(logs, lake_uri, champion, drift=False, window_day=date(2026, 1, 8))
    write_scenario_logs(logs, lake_uri, champion, drift=True, window_day=date(2026, 1, 9))
    env = {
        **quiet_mlflow_environment(),
        "MLOPS_LAKE_URI": lake_uri,
        "MLFLOW_TRACKING_URI": mlops_env_module.tracking_uri,
        "MLOPS_MODEL_NAME": mlops_env_module.model_name,
        "MLOPS_PREDICTION_LOG_DIR": str(logs),
        "MLOPS_MONITOR_REPORT_SAMPLE_ROWS": "1000",
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

    done = _dags_test(airflow_stack, env, "2026-01-09")
    assert "decision for ds=2026-01-09: retrain (drift): 8 of 14 features drifted" in done.stdout + done.stderr  # the task log
    drifted = json.loads((reports / "ds=2026-01-09" / "decision.json").read_text())
    assert drifted["action"] == "retrain" and drifted["reason"] == "drift" and drifted["trigger"]
    assert drifted["triggered"] and drifted["train_run_id"] == "mlops_monitor__2026-01-09"  # set after the trigger ran
    assert drifted["conf"]["reason"] == "drift"
    assert drifted["conf"]["report"] == f"{lake_uri}/reports/drift/ds=2026-01-09/report.html"
    assert drifted["conf"]["window"] == {"ds": "2026-01-09", "start": "2026-01-09T00:00:00+00:00", "end": "2026-01-10T00:00:00+00:00"}
    assert (reports / "ds=2026-01-09" / "report.html").is_file() and (reports / "ds=2026-01-09" / "quality.html").is_file()

    listed = _airflow(airflow_stack, env, "dags", "list-runs", "mlops_train", "--output", "json", timeout=300)
    assert listed.returncode == 0, listed.stderr[-3000:]
    table = [line for line in listed.stdout.splitlines() if line.startswith(("[{", "[]"))][-1]  # after any warnings
    runs = {run["run_id"]: run for run in json.loads(table)}
    assert "mlops_monitor__2026-01-09" in runs
    assert runs["mlops_monitor__2026-01-09"]["logical_date"].startswith("2026-01-10T00:00:00")

    client = MlflowClient(mlops_env_module.tracking_uri)
    experiment = client.get_experiment_by_name(f"{mlops_env_module.model_name}-monitoring")
    tags = {r.data.tags["window_ds"]: r.data.tags for r in client.search_runs([experiment.experiment_id])}
    assert tags["2026-01-08"]["decision_action"] == "none"
    assert tags["2026-01-09"]["decision_action"] == "retrain" and tags["2026-01-09"]["decision_reason"] == "drift"
