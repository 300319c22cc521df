"""The closed loop on Airflow's own scheduler, observed only through its REST API.

A real local stack (PostgreSQL metadata DB, scheduler, DAG processor, triggerer, api-server), a real
MLflow server and the Docker backend (serving containers behind the HAProxy router container). The
test does what ``make demo`` does (:func:`mlops_dev.loop.run_loop`): it unpauses the DAGs, creates
the ingest and monitor backfills and the one first trigger of ``mlops_train``, and starts a client
process standing in for the model's users. Everything else is started by Airflow:

* **the first deploy:** ``mlops_train`` (the first trigger) -> ``@challenger`` -> an asset-triggered
  ``mlops_deploy`` -> the first version serves;
* **after the change:** the post-change days are served by the client -> the monitor's windows
  (a backfill) find drift, wait for ``min_post_change_days`` of post-change data, then trigger
  ``mlops_train`` (``triggered_by`` the operator) -> an asset-triggered ``mlops_deploy`` with the
  default strategy: a shadow window (the client's rows now carry their own event times, whose labels
  are in the lake, so the paired quality test has labelled rows) -> every canary step -> promoted;
* **batch scoring:** a backfill of ``mlops_score`` over the post-change days writes the new
  champion's predictions, the numbers the router serves for the same rows.

Fault: the scheduler (with its executor) is SIGKILLed while the canary bakes, then started again:
the same deploy run resumes and finishes, and the client sees no failed request.

The scenario's "today" is a fixed date other than the real one, so the loop is shown to close on a
date of its own (the demo runs on the real today); the synthetic source's schedule follows it.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TEST_LABELS

pytestmark = [pytest.mark.docker, pytest.mark.integration]

TODAY = date(2026, 6, 17)
KILL_AT_STEP = "step_50pct"
# The deploy settings the demo uses (mlops_dev.demo.DEMO_DEFAULTS): short bakes, production thresholds.
SCENARIO_DEPLOY = {
    "MLOPS_DEPLOY_STEPS": "10,50,100",
    "MLOPS_DEPLOY_BAKE_SECONDS": "20",
    "MLOPS_DEPLOY_MAX_BAKE_SECONDS": "180",
    "MLOPS_DEPLOY_POKE_SECONDS": "5",
    # The shadow window (the default strategy) is at least 20 s, not production's 30 min: the client's
    # rows carry labels from the moment the monitor has judged the days, so the evidence the window
    # waits for (50 mirrored requests, 200 labelled rows answered by both) comes within seconds.
    "MLOPS_DEPLOY_SHADOW_SECONDS": "20",
}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Fault:
    """SIGKILL the scheduler's process group once, while the canary bakes at ``KILL_AT_STEP``; start it again."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.killed_run: str | None = None
        self.killed_at: float | None = None
        self.restarted_in: float | None = None

    def __call__(self, dag_id: str, run: dict[str, Any], tasks: list[dict[str, Any]]) -> None:
        if self.killed_run is not None or dag_id != "mlops_deploy":
            return
        states = {t["task_id"]: t["state"] for t in tasks}
        if states.get(f"{KILL_AT_STEP}.bake") != "up_for_reschedule":
            return
        pid = int((Path(self.stack.env["MLOPS_RUN_DIR"]) / "scheduler.pid").read_text())
        os.killpg(pid, signal.SIGKILL)  # the supervisor, the scheduler and the executor's workers
        self.killed_run, self.killed_at = run["dag_run_id"], time.monotonic()
        started = self.stack.run("start", "scheduler", timeout=300)
        assert started.returncode == 0, started.stderr
        self.restarted_in = round(time.monotonic() - self.killed_at, 1)


@pytest.fixture(scope="module")
def loop(airflow_stack, airflow_databases, mlflow_server, docker_client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from mlops_dev.loop import ClientProcess, Observer, Timeline, run_loop

    from mlops_pipeline.config import get_settings
    from tests.conftest import AirflowStack

    base = tmp_path_factory.mktemp("scheduler-loop")
    suffix = uuid.uuid4().hex[:8]
    timeline = Timeline.ending(TODAY, post_change_days=3)
    env = {
        **airflow_stack.env,
        **timeline.environment(),
        **SCENARIO_DEPLOY,
        # its own Airflow: home, metadata database (a copy of the migrated template), ports, run dir
        "AIRFLOW_HOME": str(base / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_databases.create(),
        "MLOPS_AIRFLOW_PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "MLOPS_DATASET": "churn",
        "MLOPS_MODEL_NAME": f"churn-loop-{suffix}",
        "MLOPS_LAKE_URI": (base / "lake").as_uri(),
        "MLOPS_RUN_DIR": str(base / "run"),
        "MLOPS_PREDICTION_LOG_DIR": str(base / "predictions"),
        "MLOPS_ROUTER_PORT": str(free_port()),
        "MLOPS_DEPLOY_BACKEND": "docker",
        "MLOPS_DEPLOY_NAMESPACE": f"mlops-loop-{suffix}",
        "MLOPS_DEPLOY_EXTRA_LABELS": json.dumps(TEST_LABELS),
        "MLOPS_MONITOR_REPORT_SAMPLE_ROWS": "2000",
        "MLOPS_MONITOR_MIN_POST_CHANGE_DAYS": "3",
    }
    stack = AirflowStack(env=env, base=base)
    airflow_stack.run("stop", timeout=120)  # the session stack's services, if a test left them running
    prepared = stack.run("setup", timeout=600)  # airflow.cfg, the training pool (airflow_settings.yaml)
    assert prepared.returncode == 0, f"{prepared.stdout}\n{prepared.stderr}"
    started = stack.run("start", "api-server", "scheduler", "dag-processor", "triggerer", timeout=600)
    assert started.returncode == 0, f"{started.stdout}\n{started.stderr}"
    api = stack.api()
    fault = Fault(stack)
    lines: list[str] = []
    observer = Observer(api, progress=lines.append, poll_seconds=2.0, on_poll=fault)
    client = ClientProcess(timeline.post_change, base / "client.json", env=env, before_days=timeline.good_history)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        try:
            began = time.monotonic()
            result = run_loop(observer, timeline, client, say=lines.append)
            seconds = round(time.monotonic() - began, 1)
            yield {"result": result, "fault": fault, "observer": observer, "env": env, "seconds": seconds, "lines": lines}
        finally:
            client.stop()
            print("\n".join(lines[-40:]))
            from mlops_pipeline.deploy.backends import get_backend

            get_backend().teardown()
            stack.run("stop", timeout=120)
            get_settings.cache_clear()


def all_runs(observer: Any) -> dict[str, list[dict[str, Any]]]:
    from mlops_dev.loop import DAGS

    return {dag_id: observer.runs(dag_id) for dag_id in DAGS}


def test_the_first_deploy_is_started_by_the_asset_event(loop: dict[str, Any]) -> None:
    result = loop["result"]
    train, deploy = result.runs["first_train"], result.runs["first_deploy"]
    assert train["state"] == "success" and train["run_type"] == "manual" and train["triggered_by"] == "rest_api"
    assert deploy["state"] == "success" and deploy["run_type"] == "asset_triggered" and deploy["triggered_by"] == "asset"
    assert result.first_version == "1"
    tasks = {t["task_id"]: t["state"] for t in deploy["tasks"]}
    assert tasks["deploy_direct"] == "success" and tasks["start_canary"] == "skipped"
    # the history went through ingest as a backfill on the scheduler; the bad batch was quarantined
    timeline = result.timeline
    assert result.ingested[timeline.bad_batch_day.isoformat()] == "failed"
    assert all(result.ingested[d.isoformat()] == "success" for d in timeline.days if d != timeline.bad_batch_day)


def test_after_the_change_the_monitor_retrains_and_the_canary_promotes(loop: dict[str, Any]) -> None:
    result, observer = loop["result"], loop["observer"]
    timeline = result.timeline
    waiting, triggering = result.decisions[:-1], result.decisions[-1]
    # drift from the change day; the retrain waits until three post-change days exist
    assert [d["blocked_by"] for d in waiting] == ["waiting_for_post_change_data"] * 2, [d.get("summary") for d in waiting]
    assert triggering["trigger"] and triggering["reason"] == "drift", triggering.get("summary")
    assert triggering["change_start"] == timeline.change_day.isoformat() and triggering["post_change_days"] == 3

    retrain = result.runs["retrain"]
    assert retrain["dag_run_id"] == f"mlops_monitor__{timeline.post_change[-1].isoformat()}"
    assert retrain["triggered_by"] == "operator" and retrain["state"] == "success"
    assert retrain["conf"]["reason"] == "drift" and retrain["conf"]["change_start"] == timeline.change_day.isoformat()
    from mlops_dev.loop import trained_days

    trained = observer.xcom("mlops_train", retrain["dag_run_id"], "train")
    assert trained_days(trained)[1] == timeline.post_change[-1].isoformat()  # it learnt from the post-change days

    canary = result.runs["canary"]
    assert canary["run_type"] == "asset_triggered" and canary["state"] == "success"
    states = {t["task_id"]: t["state"] for t in canary["tasks"]}
    # the default strategy: a shadow window first, judged on the users' labelled rows, then the canary
    assert [states[f"shadow.{t}"] for t in ("start_shadow", "mirror", "compare")] == ["success"] * 3, states
    shadow = observer.xcom("mlops_deploy", canary["dag_run_id"], "shadow.compare")
    assert {c["name"]: c["status"] for c in shadow["checks"]} == {
        "errors": "passed", "prediction_shift": "passed", "quality": "passed",
    }, shadow["reason"]  # fmt: skip
    assert [s for s in ("step_10pct", "step_50pct", "step_100pct") if states.get(f"{s}.analyse") == "success"] == [
        "step_10pct", "step_50pct", "step_100pct",
    ], states  # fmt: skip
    assert states["promote"] == "success" and states["rollback"] == "skipped"
    assert result.outcome["outcome"] == "promoted" and result.outcome["version"] == result.retrained_version == "2"


def test_the_new_champion_holds_its_quality_after_the_change(loop: dict[str, Any]) -> None:
    """The promoted champion's ROC AUC on post-change rows it did not train on (its holdout, the last of
    the post-change data) is at least 95 % of the old champion's on pre-change rows (its holdout)."""
    from mlops_dev.loop import holdout_score

    from mlops_pipeline.registry.aliases import CHAMPION, version_for_alias
    from mlops_pipeline.registry.client import mlflow_client

    result, observer = loop["result"], loop["observer"]
    old = holdout_score(observer.xcom("mlops_train", result.runs["first_train"]["dag_run_id"], "train"))
    new = holdout_score(observer.xcom("mlops_train", result.runs["retrain"]["dag_run_id"], "train"))
    print(json.dumps({"old_champion_pre_change_roc_auc": old, "new_champion_post_change_roc_auc": new}))
    assert new >= 0.95 * old, (new, old)
    champion = version_for_alias(mlflow_client(), loop["env"]["MLOPS_MODEL_NAME"], CHAMPION)
    assert champion is not None and str(champion.version) == result.retrained_version
    gate = observer.xcom("mlops_train", result.runs["retrain"]["dag_run_id"], "gate")
    assert gate["method"] == "delong" and gate["n"] > 0 and len(gate["interval"]) == 2 and gate["champion_version"] == "1"


def test_the_scheduler_backfills_batch_scores_that_match_the_router(loop: dict[str, Any]) -> None:
    """Each post-change day scored by a backfill run of mlops_score with the promoted champion; for a
    sample of each day's rows the router (serving that champion) answers the same probabilities."""
    import numpy as np
    from mlops_dev.traffic import day_records, request_headers, router_url

    from mlops_pipeline.scoring.batch import LABEL, PROBABILITY, read_predictions
    from mlops_pipeline.storage import open_lake

    result = loop["result"]
    days = [d.isoformat() for d in result.timeline.post_change]
    assert sorted(result.scored) == days
    runs = {r["logical_date"][:10]: r for r in loop["observer"].runs("mlops_score", run_type="backfill")}
    lake = open_lake()
    url = router_url().rstrip("/") + "/predict"
    import httpx

    for ds in days:
        scored = result.scored[ds]
        assert runs[ds]["state"] == "success" and runs[ds]["dag_run_id"] == scored["dag_run_id"]
        assert scored["model_version"] == result.retrained_version and scored["rows"] == 2000, scored
        manifest = lake.read_manifest("predictions", ds)
        assert manifest["dag_run_id"] == scored["dag_run_id"] and manifest["row_count"] == scored["rows"]
        predictions = read_predictions(lake, ds).to_pandas()
        predictions.index = predictions["customer_id"].astype(str)
        sample = day_records([ds])[::20]  # 100 rows of the day
        response = httpx.post(url, json={"records": sample}, headers=request_headers("test", os.environ.get("MLOPS_SERVING_API_KEY")), timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert str(body["model_version"]) == result.retrained_version
        ids = [str(record["customer_id"]) for record in sample]
        served = np.asarray([p["probability"] for p in body["predictions"]], dtype=np.float64)
        assert np.abs(predictions.loc[ids, PROBABILITY].to_numpy() - served).max() <= 1e-6
        assert predictions.loc[ids, LABEL].tolist() == [p["label"] for p in body["predictions"]]


def test_a_scheduler_killed_mid_bake_resumes_the_same_run_and_no_request_fails(loop: dict[str, Any]) -> None:
    result, fault = loop["result"], loop["fault"]
    assert fault.killed_run == result.runs["canary"]["dag_run_id"], "the scheduler was not killed during the canary bake"
    client = result.client
    replayed, steady = client["replayed"], client["steady"]
    print(json.dumps({"scheduler_restarted_in_s": fault.restarted_in, "steady_requests": steady["sent"], "loop_s": loop["seconds"]}))
    assert replayed["failed"] == 0 and replayed["rows"] == 3 * 2000
    assert steady["sent"] > 0 and steady["failed"] == 0, steady["failures"]


def test_the_harness_only_started_things(loop: dict[str, Any]) -> None:
    """No `dags test`, no deploy step in the test process: every run was started by Airflow or is one of
    the harness's own starts (the backfills and the one first trigger)."""
    runs = all_runs(loop["observer"])
    assert not [r["dag_run_id"] for rs in runs.values() for r in rs if r.get("triggered_by") == "test"]
    by_rest = [r["dag_run_id"] for rs in runs.values() for r in rs if r.get("triggered_by") == "rest_api"]
    assert len(by_rest) == 1 and by_rest[0].startswith("first_training__"), by_rest
    deploys = [r for r in runs["mlops_deploy"]]
    assert deploys and all(r["run_type"] == "asset_triggered" for r in deploys), [(r["dag_run_id"], r["run_type"]) for r in deploys]
    assert {r["run_type"] for r in runs["mlops_ingest"]} <= {"backfill", "scheduled"}
    assert {r["run_type"] for r in runs["mlops_monitor"]} <= {"backfill", "scheduled"}
    assert {r["run_type"] for r in runs["mlops_score"]} <= {"backfill", "scheduled"}
    import mlops_dev.loop as harness

    source = Path(harness.__file__).read_text()
    assert "Deployer" not in source and '"dags", "test"' not in source  # it observes; it runs no step
