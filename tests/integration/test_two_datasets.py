"""Two datasets in one installation, both running their loops on one scheduler.

The session's stack (scheduler, DAG processor, api-server, LocalExecutor) gets the synthetic churn
dataset as its primary one and, in ``MLOPS_DATASETS_DIR``, a second small file dataset the test
writes (parquet exports, one file a day), plus a third file that is broken. Everything is started
through the REST API and then left to Airflow:

* both ingest DAGs (``mlops_ingest`` and ``mlops_ingest__<name>``) backfill the same week;
* one manual run of each train DAG registers each dataset's own model; its ``@challenger`` asset
  starts that dataset's own deploy DAG (Airflow's asset schedule), which puts it behind that
  dataset's own router (local backend: serving processes and HAProxy, each dataset its namespace and
  port);
* each router answers with its own model; a day's rows sent to each land in that dataset's
  prediction log, and each monitor DAG judges its own window from its own log into its own lake.

It also checks what is kept apart (the lake folders, the registered models, the namespaces, the
assets), that the broken file's DAGs name it and fail at once while both datasets' DAGs run (no
import error: Airflow would stop every DAG of the file), and that the Model ops view's picker shows
each model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from mlops_dev.airflow_api import AirflowAPIError

from tests.conftest import AirflowStack, free_port
from tests.integration.test_history_2013 import why_failed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[2]
# Days no other test of the session uses: the session shares one metadata DB, and a backfill skips a
# day that already has a run (another test's, into another lake).
DAYS = [date(2026, 8, 3) + timedelta(days=offset) for offset in range(7)]
TRAIN_AS_OF = DAYS[-1] + timedelta(days=1)
MONITORED = DAYS[-1]
SECOND_ROWS_PER_DAY = 600  # a window of it reaches the monitor's min_rows (500) for a drift verdict
SERVICES = ("api-server", "scheduler", "dag-processor")
STEPS = ("mlops_ingest", "mlops_train", "mlops_deploy", "mlops_monitor", "mlops_score")


def write_second_dataset(folder: Path, exports: Path, name: str, router_port: int) -> Path:
    """A small file dataset: the churn columns under another name, one parquet file a day."""
    import yaml

    from mlops_pipeline.data.synthetic import generate_day

    exports.mkdir(parents=True)
    for day in DAYS:
        generate_day(day, seed=11, rows=SECOND_ROWS_PER_DAY).to_parquet(exports / f"{day.isoformat()}.parquet", index=False)
    churn = yaml.safe_load((REPO / "include" / "datasets" / "churn.yaml").read_text())
    spec = {
        **{key: churn[key] for key in ("id_column", "time_column", "target", "numeric_features", "categorical_features")},
        "name": name,
        "description": "A second model of the same installation: daily parquet exports",
        "source": {"kind": "file", "path_template": f"{exports}/{{ds}}.parquet"},
        "suite": str(REPO / "include" / "gx" / "churn_suite.json"),
        "label_delay_days": 3,
        "start_date": DAYS[0].isoformat(),
        "router_port": router_port,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def records(frame, target: str) -> list[dict]:
    """A day's rows as request records: everything but the label, JSON-ready."""
    from mlops_dev.traffic import _json_value

    return [{k: _json_value(v) for k, v in row.items()} for row in frame.drop(columns=[target]).to_dict(orient="records")]


def get_json(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


@pytest.fixture
def two_datasets(airflow_stack, mlflow_server, tmp_path):
    """The session's stack with a second dataset and a broken third file: its services restarted with
    this environment; at the end the DAGs paused as they were, both deployments torn down, the
    services stopped."""
    from tests.mlflow_fixtures import quiet_mlflow_environment

    tag = uuid.uuid4().hex[:6]
    folder = tmp_path / "datasets"
    folder.mkdir()
    second = f"leads_{tag}"
    second_port = free_port()
    second_path = write_second_dataset(folder, tmp_path / "exports", second, second_port)
    broken = folder / f"broken_{tag}.yaml"
    broken.write_text(f"name: broken_{tag}\nsource: {{kind: ftp}}\n")
    env = {
        **airflow_stack.env,
        **quiet_mlflow_environment(),
        "MLOPS_DATASETS_DIR": str(folder),
        "MLOPS_LAKE_URI": str(tmp_path / "lake"),
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "MLOPS_MODEL_NAME": f"churn-two-{tag}",
        "MLOPS_DEPLOY_BACKEND": "local",
        "MLOPS_DEPLOY_NAMESPACE": f"two-{tag}",
        "MLOPS_ROUTER_PORT": str(free_port()),
        "MLOPS_PREDICTION_LOG_DIR": str(tmp_path / "predictions"),
        "MLOPS_SYNTHETIC_ROWS_PER_DAY": "600",
    }
    stack = AirflowStack(env=env, base=airflow_stack.base)
    stack.run("stop", *SERVICES, timeout=120)  # services an earlier test left running, with its environment
    stack.run("start", *SERVICES, check=True, timeout=300)
    api = stack.api()
    dag_ids = [f"{step}{suffix}" for step in STEPS for suffix in ("", f"__{second}")]
    paused = {dag_id: api.wait_for_dag(dag_id, timeout=300)["is_paused"] for dag_id in dag_ids}
    try:
        # The loop's DAGs run; the score DAGs and the scheduled nights stay out of the way.
        for step in ("mlops_ingest", "mlops_train", "mlops_deploy", "mlops_monitor"):
            for dag_id in (step, f"{step}__{second}"):
                api.set_paused(dag_id, step not in ("mlops_train", "mlops_deploy"))
        yield {"stack": stack, "api": api, "second": second, "second_path": second_path, "broken": broken,
               "model": env["MLOPS_MODEL_NAME"], "second_port": second_port, "tmp": tmp_path}
    finally:
        for dag_id in ("mlops_ingest", f"mlops_ingest__{second}"):
            try:
                api.wait_for_backfills_completed(dag_id, timeout=120)
            except AirflowAPIError:
                for backfill in api.backfills(dag_id):
                    if backfill.get("completed_at") is None:
                        api.cancel_backfill(backfill["id"])
        for dag_id, was_paused in paused.items():
            api.set_paused(dag_id, was_paused)
        for scope in (None, str(second_path)):
            teardown_env = {**env, **({"MLOPS_DATASET_SCOPE": scope} if scope else {})}
            subprocess.run([sys.executable, "-m", "mlops_pipeline.deploy", "teardown"], env=teardown_env,
                           capture_output=True, text=True, timeout=300)
        broken.unlink(missing_ok=True)
        stack.run("stop", *SERVICES, timeout=120)


def run_backfills(api, dag_ids: list[str], days: list[date], timeout: float) -> dict[str, list[dict]]:
    """One backfill per DAG over ``days``, created together, waited for together."""
    first, last = f"{days[0].isoformat()}T00:00:00Z", f"{days[-1].isoformat()}T00:00:00Z"
    created = datetime.now(UTC)
    for dag_id in dag_ids:
        api.backfill(dag_id, first, last, max_active_runs=2)
    done = {}
    for dag_id in dag_ids:
        runs = api.wait_for_runs(dag_id, run_type="backfill", expected=len(days), timeout=timeout,
                                 logical_date_gte=first, logical_date_lte=f"{days[-1].isoformat()}T23:59:59Z")
        assert {r["state"] for r in runs} == {"success"}, why_failed(api, dag_id, runs)
        older = [r["dag_run_id"] for r in runs if datetime.fromisoformat(r["queued_at"].replace("Z", "+00:00")) < created]
        assert not older, f"{dag_id}: runs of these days existed before this backfill: {older}"
        done[dag_id] = runs
    for dag_id in dag_ids:
        api.wait_for_backfills_completed(dag_id, timeout=180)
    return done


def test_two_datasets_run_their_own_loops_on_one_scheduler(two_datasets, mlflow_server):
    from mlflow import MlflowClient

    from mlops_pipeline.data.synthetic import generate_day

    api, stack, second = two_datasets["api"], two_datasets["stack"], two_datasets["second"]
    model, lake = two_datasets["model"], Path(stack.env["MLOPS_LAKE_URI"])
    suffix = f"__{second}"
    started = time.monotonic()

    # The broken file is its own DAGs, which say what is wrong and fail at once; it is no import error
    # (that would make Airflow stop every DAG of the file), and both datasets' DAGs are there.
    broken, broken_name = two_datasets["broken"], two_datasets["broken"].stem
    errors = api._request("GET", "/api/v2/importErrors?limit=100")["import_errors"]
    assert not [e for e in errors if Path(e["filename"]).name in {f"{step}.py" for step in STEPS}], errors
    for step in STEPS:
        assert api.dag(step)["dag_id"] == step and api.dag(f"{step}{suffix}")["dag_id"] == f"{step}{suffix}"
        shown = api.dag(f"{step}__{broken_name}")
        assert str(broken) in shown["description"] and "broken-dataset" in {t["name"] for t in shown["tags"]}, shown
    broken_dag = f"mlops_ingest__{broken_name}"
    api.set_paused(broken_dag, False)
    try:
        run_id = api.trigger(broken_dag)["dag_run_id"]
        runs = api.wait_for_runs(broken_dag, {run_id}, timeout=300)
    finally:
        api.set_paused(broken_dag, True)
    assert runs[0]["state"] == "failed"
    log = api.task_log(broken_dag, run_id, "dataset_file_error", 1)
    assert str(broken) in log and "source" in log, log[-2000:]

    # 1. Both ingest DAGs backfill the week on the one scheduler.
    run_backfills(api, ["mlops_ingest", f"mlops_ingest{suffix}"], DAYS, timeout=1200)
    for day in DAYS:
        assert list((lake / "validated" / f"ds={day.isoformat()}").glob("*.parquet"))
        assert list((lake / "datasets" / second / "validated" / f"ds={day.isoformat()}").glob("*.parquet"))
    assert not (lake / "datasets" / "churn").exists()  # the primary keeps the lake's root

    # 2. One training run each: each registers its own model and announces its own challenger ...
    logical = f"{TRAIN_AS_OF.isoformat()}T00:00:00Z"
    trained = {dag_id: api.trigger(dag_id, conf={"reason": "two datasets"}, logical_date=logical)["dag_run_id"]
               for dag_id in ("mlops_train", f"mlops_train{suffix}")}
    for dag_id, run_id in trained.items():
        runs = api.wait_for_runs(dag_id, {run_id}, timeout=1500)
        assert runs[0]["state"] == "success", why_failed(api, dag_id, runs)

    # ... which starts that dataset's deploy DAG (asset schedule): the first deployment goes straight to stable.
    for dag_id in ("mlops_deploy", f"mlops_deploy{suffix}"):
        runs = api.wait_for_runs(dag_id, run_type="asset_triggered", expected=1, timeout=1200)
        assert [r["state"] for r in runs] == ["success"], why_failed(api, dag_id, runs)
    client = MlflowClient(mlflow_server.uri)
    champions = {name: client.get_model_version_by_alias(name, "champion") for name in (model, second)}
    assert champions[model].run_id != champions[second].run_id
    experiments = {client.get_run(v.run_id).info.experiment_id for v in champions.values()}
    assert len(experiments) == 2  # each model its own experiment

    # 3. Each router serves its own model, in its own namespace.
    routers = {model: f"http://127.0.0.1:{stack.env['MLOPS_ROUTER_PORT']}", second: f"http://127.0.0.1:{two_datasets['second_port']}"}
    rows = {model: generate_day(MONITORED, seed=42, rows=600), second: generate_day(MONITORED, seed=11, rows=SECOND_ROWS_PER_DAY)}
    from mlops_dev.traffic import send_once, wait_until_serving

    for name, url in routers.items():
        wait_until_serving(url, timeout=120)
        answer = post_json(url + "/predict", {"records": records(rows[name].head(3), "churned")})
        assert str(answer.get("model_version")) == str(champions[name].version), answer
        status, ready = get_json(url + "/ready")
        assert status == 200 and ready["model_name"] == name, ready
        sent = send_once(url, records(rows[name], "churned"), rows=50)
        assert sent.failed == 0 and sent.rows == len(rows[name]), sent.to_dict()
    time.sleep(5)  # the servers' log writers flush every second
    log_root = Path(stack.env["MLOPS_PREDICTION_LOG_DIR"])
    primary_logs = [p for p in log_root.rglob("*.jsonl") if "datasets" not in p.relative_to(log_root).parts]
    second_logs = list((log_root / "datasets" / second).rglob("*.jsonl"))
    assert primary_logs and second_logs

    # 4. Each monitor judges the day from its own log into its own lake.
    run_backfills(api, ["mlops_monitor", f"mlops_monitor{suffix}"], [MONITORED], timeout=1200)
    ds = MONITORED.isoformat()
    decisions = sorted(str(p.relative_to(lake)) for p in lake.rglob(f"ds={ds}/decision.json"))
    assert decisions == [f"datasets/{second}/reports/drift/ds={ds}/decision.json", f"reports/drift/ds={ds}/decision.json"]
    for decision_file in decisions:  # each monitor wrote in its own lake, judging rows from its own log
        decision = json.loads((lake / decision_file).read_text())
        assert decision["action"] not in ("no_data", "not_enough_data"), decision

    # 5. The Model ops view: a picker of both models; each page its own; an unknown name is a 404 naming the parameter.
    token = api.token()
    base = f"http://127.0.0.1:{stack.env['MLOPS_AIRFLOW_PORT']}/mlops"
    status, primary_view = get_json(f"{base}/api/overview", token)
    assert status == 200 and primary_view["model_name"] == model, primary_view
    assert [c["dataset"] for c in primary_view["choices"] if not c["error"]] == ["churn", second]
    status, second_view = get_json(f"{base}/api/overview?dataset={second}", token)
    assert status == 200 and second_view["model_name"] == second and second_view["dataset"] == second
    assert second_view["sections"]["versions"]["error"] is None, second_view["sections"]["versions"]
    status, unknown = get_json(f"{base}/api/overview?dataset=nope", token)
    assert status == 404 and "dataset" in unknown["detail"] and "nope" in unknown["detail"], unknown
    print(json.dumps({"two_datasets_loop_s": round(time.monotonic() - started, 1)}))
