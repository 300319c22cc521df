"""A user's history from 2013 on a real scheduler: any date works, dates before the start date fail loudly.

The test writes a file dataset (the churn columns and suite, one parquet file per day of January 2013,
``start_date: 2013-01-01``), starts the scheduler, DAG processor and api-server on the session's
metadata DB with that dataset, its own lake and the session's MLflow server, then drives everything
through the REST API:

* a backfill of ``mlops_ingest`` over 2013-01-01..08 validates every day;
* a manual ``mlops_train`` run for 2013-01-09 runs its tasks and registers a version trained on them;
* ``mlops_ingest`` for 2012-12-30 (before the start date) fails in its first task, saying so;
  for 2013-01-20 (no source file) it fails naming the file. Neither is a success with nothing run.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest
from mlops_dev.airflow_api import AirflowAPIError

from tests.conftest import AirflowStack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIRST_DAY = date(2013, 1, 1)
DAYS = [FIRST_DAY + timedelta(days=offset) for offset in range(8)]
ROWS_PER_DAY = 500
SERVICES = ("api-server", "scheduler", "dag-processor")
DAGS = ("mlops_ingest", "mlops_train", "mlops_deploy", "mlops_monitor")


def write_dataset(folder: Path) -> Path:
    """Days of 2013 as parquet files, and the dataset file that reads them."""
    import yaml

    from mlops_pipeline.data.synthetic import generate_day

    data = folder / "exports"
    data.mkdir(parents=True)
    for day in DAYS:
        generate_day(day, seed=7, rows=ROWS_PER_DAY).to_parquet(data / f"{day.isoformat()}.parquet", index=False)
    churn = yaml.safe_load((REPO / "include" / "datasets" / "churn.yaml").read_text())
    spec = {
        **{key: churn[key] for key in ("id_column", "time_column", "target", "numeric_features", "categorical_features")},
        "name": "churn_history",
        "description": "Churn exports of 2013, one parquet file per day",
        "source": {"kind": "file", "path_template": f"{data}/{{ds}}.parquet"},
        "suite": str(REPO / "include" / "gx" / "churn_suite.json"),
        "label_delay_days": 3,
        "start_date": FIRST_DAY.isoformat(),
    }
    path = folder / "churn_history.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def history_stack(airflow_stack, mlflow_server, tmp_path):
    """The session's stack with the 2013 dataset: its services restarted with this environment, and
    stopped (DAGs paused as they were) at the end, so later tests start their own."""
    from tests.mlflow_fixtures import quiet_mlflow_environment

    model_name = f"churn-history-{uuid.uuid4().hex[:8]}"
    env = {
        **airflow_stack.env,
        **quiet_mlflow_environment(),
        "MLOPS_DATASET": str(write_dataset(tmp_path)),
        "MLOPS_LAKE_URI": str(tmp_path / "lake"),
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "MLOPS_MODEL_NAME": model_name,
        # The version is registered but not made @challenger: no asset event starts a deployment
        # in the session's shared metadata DB.
        "MLOPS_REGISTRY_GATE_FLOOR": "0.99",
    }
    stack = AirflowStack(env=env, base=airflow_stack.base)
    stack.run("stop", *SERVICES, timeout=120)  # services an earlier test left running, with its environment
    stack.run("start", *SERVICES, check=True, timeout=300)
    api = stack.api()
    paused = {dag_id: api.wait_for_dag(dag_id, timeout=300)["is_paused"] for dag_id in DAGS}
    try:
        # Only the DAGs under test run: no scheduled monitor or asset-triggered deployment meanwhile.
        for dag_id in ("mlops_deploy", "mlops_monitor"):
            api.set_paused(dag_id, True)
        yield stack, model_name
    finally:
        # The scheduler closes a backfill a pass after its last run ends: let it, before it stops, so
        # a later test of the session can create the next backfill of mlops_ingest.
        try:
            api.wait_for_backfills_completed("mlops_ingest", timeout=120)
        except AirflowAPIError:
            for backfill in api.backfills("mlops_ingest"):
                if backfill.get("completed_at") is None:
                    api.cancel_backfill(backfill["id"])
        for dag_id, was_paused in paused.items():
            api.set_paused(dag_id, was_paused)
        stack.run("stop", *SERVICES, timeout=120)


def states(api, dag_id: str, run_id: str) -> dict[str, str | None]:
    return {ti["task_id"]: ti["state"] for ti in api.task_instances(dag_id, run_id)}


def why_failed(api, dag_id: str, runs: list[dict]) -> str:
    """The states of the runs, and the log's end of the first failed task of the first failed run."""
    lines = [f"{r['dag_run_id']}: {r['state']}" for r in runs]
    for run in runs:
        failed = [ti for ti in api.task_instances(dag_id, run["dag_run_id"]) if ti["state"] == "failed"]
        if failed:
            ti = failed[0]
            log = api.task_log(dag_id, run["dag_run_id"], ti["task_id"], max(ti.get("try_number") or 1, 1))
            lines.append(f"--- {run['dag_run_id']} {ti['task_id']}:\n{log[-4000:]}")
            break
    return "\n".join(lines)


def test_history_from_2013_is_ingested_and_trained_and_a_date_before_the_start_fails(history_stack, mlflow_server):
    from mlflow import MlflowClient

    stack, model_name = history_stack
    api = stack.api()
    lake_dir = Path(stack.env["MLOPS_LAKE_URI"])

    backfill = api.backfill(
        "mlops_ingest", f"{DAYS[0].isoformat()}T00:00:00Z", f"{DAYS[-1].isoformat()}T00:00:00Z", max_active_runs=4
    )
    # Meanwhile: a day before the start date, and a day without a source file.
    before_start = api.trigger("mlops_ingest", logical_date="2012-12-30T00:00:00Z")["dag_run_id"]
    no_file = api.trigger("mlops_ingest", logical_date="2013-01-20T00:00:00Z")["dag_run_id"]

    ingested = api.wait_for_runs(
        "mlops_ingest", run_type="backfill", expected=len(DAYS), timeout=900,
        logical_date_gte="2013-01-01T00:00:00Z", logical_date_lte="2013-01-08T23:59:59Z",
    )
    assert sorted(r["logical_date"][:10] for r in ingested) == [d.isoformat() for d in DAYS], backfill
    assert {r["state"] for r in ingested} == {"success"}, why_failed(api, "mlops_ingest", ingested)
    for run in ingested:
        assert states(api, "mlops_ingest", run["dag_run_id"]) == {"ingest": "success"}
    assert sorted(p.name for p in (lake_dir / "validated").glob("ds=*")) == [f"ds={d.isoformat()}" for d in DAYS]

    # The loud failures: a failed run whose first task ran and says why, never a success with no task.
    refused = api.wait_for_runs("mlops_ingest", {before_start, no_file}, timeout=600)
    assert {r["state"] for r in refused} == {"failed"}, refused
    assert states(api, "mlops_ingest", before_start) == {"ingest": "failed"}
    log = api.task_log("mlops_ingest", before_start, "ingest")
    dataset_file = stack.env["MLOPS_DATASET"]
    assert f"mlops_ingest for 2012-12-30 is before the configured start date 2013-01-01 of dataset '{dataset_file}'" in log, log[-6000:]
    assert "Set start_date in the dataset file (or MLOPS_START_DATE)" in log
    assert not (lake_dir / "raw" / "ds=2012-12-30").exists()
    assert states(api, "mlops_ingest", no_file)["ingest"] == "failed"
    log = api.task_log("mlops_ingest", no_file, "ingest")
    assert f"no source file for ds=2013-01-20 at {Path(dataset_file).parent}/exports/2013-01-20.parquet" in log, log[-6000:]

    # Training as of 2013-01-09: the run is created while the DAG may be paused, then allowed to start.
    train_run = api.trigger(
        "mlops_train", conf={"reason": "history", "candidates": ["baseline"]}, logical_date="2013-01-09T03:00:00Z"
    )["dag_run_id"]
    api.set_paused("mlops_train", False)
    [trained] = api.wait_for_runs("mlops_train", {train_run}, timeout=900)
    tasks = states(api, "mlops_train", train_run)
    assert trained["state"] == "success", (tasks, why_failed(api, "mlops_train", [trained]))
    assert tasks == {"train": "success", "gate": "success", "announce_challenger": "skipped"}  # the gate rejects (floor 0.99)

    client = MlflowClient(mlflow_server.uri)
    [version] = client.search_model_versions(f"name = '{model_name}'")
    assert version.tags["rejected"] == "true"
    run = client.get_run(version.run_id)
    assert run.data.tags["trigger_reason"] == "history" and run.data.tags["dag_run_id"] == train_run
    assert run.data.params["window.as_of"] == "2013-01-09"
    assert (run.data.params["window.first_ds"], run.data.params["window.last_ds"]) == ("2013-01-01", "2013-01-08")
