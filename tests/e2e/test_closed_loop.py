"""The closed loop, end to end, on real components: the project's DAGs (``airflow dags test`` runs in a
throwaway Airflow), a real MLflow server, serving containers behind the HAProxy router container.

One timeline of synthetic churn data (2000 rows a day), shared by the three scenarios in order:

* history (4 days, normal) -> ``mlops_train`` -> v1 ``@challenger`` -> first deployment: v1 serves;
* **no drift**: a normal day is ingested and served; ``mlops_monitor`` finds nothing, no retrain
  is triggered, v1 stays the champion;
* **covariate drift** from day D: D is ingested and served; the monitor for D finds drift and
  triggers ``mlops_train`` (reason ``drift``); that run trains on data including D, its version
  passes the gate, goes through the canary under traffic of D, and is promoted; its ROC AUC on a
  post-drift holdout day is at least 95 % of v1's pre-drift holdout ROC AUC;
* **concept drift** with labels: a concept-drift day is served; when its labels have arrived
  (``label_delay_days`` later) the monitor finds the champion's ROC AUC fell and triggers
  ``mlops_train`` with reason ``performance``.

The steps are the ones ``make demo`` runs (``mlops_dev.loop``). Bake windows are seconds. To keep
the file within a few minutes on two cores, days outside the drift loop's own spine (the history,
the quiet day, the concept day, the holdout day) are ingested by the ingest steps in process; the
drift day goes through ``mlops_ingest`` itself.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TEST_LABELS

pytestmark = [pytest.mark.docker, pytest.mark.integration]

HISTORY = [date(2026, 3, 1) + timedelta(days=offset) for offset in range(4)]
QUIET_DAY = date(2026, 3, 5)
DRIFT_DAY = date(2026, 3, 6)  # covariate drift from here on
HOLDOUT_DAY = DRIFT_DAY + timedelta(days=1)  # post-drift rows no model trains on
CONCEPT_DAY = date(2026, 3, 8)
LABEL_DELAY_DAYS = 3  # churn.yaml: the concept day's labels are there for the window 2 days later
CONCEPT_WINDOW = CONCEPT_DAY + timedelta(days=LABEL_DELAY_DAYS - 1)
TIMINGS: dict[str, float] = {}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loop_environment(base: Path, tracking_uri: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLOPS_DATASET": "churn",
        "MLOPS_MODEL_NAME": f"churn-loop-{suffix}",
        "MLOPS_LAKE_URI": (base / "lake").as_uri(),
        "MLOPS_PREDICTION_LOG_DIR": str(base / "predictions"),
        "MLOPS_RUN_DIR": str(base / "run"),  # the deploy's router config and replay logs
        "MLOPS_COVARIATE_DRIFT_FROM": DRIFT_DAY.isoformat(),
        "MLOPS_ROUTER_PORT": str(free_port()),
        "MLOPS_ROUTER_BIND": "127.0.0.1",
        "MLOPS_DEPLOY_BACKEND": "docker",
        "MLOPS_DEPLOY_NAMESPACE": f"mlops-loop-{suffix}",
        "MLOPS_DEPLOY_EXTRA_LABELS": json.dumps(TEST_LABELS),
        "MLOPS_DEPLOY_STEPS": "25,50,100",
        "MLOPS_DEPLOY_BAKE_SECONDS": "2",
        "MLOPS_DEPLOY_MAX_BAKE_SECONDS": "60",
        "MLOPS_DEPLOY_POKE_SECONDS": "0.5",
        "MLOPS_DEPLOY_MIN_REQUESTS": "5",
        "MLOPS_DEPLOY_MIN_ROWS": "300",
        "MLOPS_DEPLOY_CHECK_INTERVAL_MS": "300",
        "MLOPS_DEPLOY_P95_SLACK_MS": "250",  # a loaded CI machine makes latencies noisy
        "MLOPS_MONITOR_REPORT_SAMPLE_ROWS": "1000",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
        "NO_PROXY": "*",
        "no_proxy": "*",
    }


class Loop:
    """The scenario's environment, its runner and what earlier steps left (v1, the router URL)."""

    def __init__(self, env: dict[str, str], runner: Any) -> None:
        self.env = env
        self.runner = runner
        self.state: dict[str, Any] = {}

    def timed(self, name: str, function, *args, **kwargs):
        started = time.monotonic()
        try:
            return function(*args, **kwargs)
        finally:
            TIMINGS[name] = round(time.monotonic() - started, 1)

    def client(self):
        from mlops_pipeline.registry.client import mlflow_client

        return mlflow_client()

    def alias(self, which: str) -> str | None:
        from mlops_pipeline.registry.aliases import version_for_alias

        found = version_for_alias(self.client(), self.env["MLOPS_MODEL_NAME"], which)
        return None if found is None else str(found.version)

    def versions(self) -> set[str]:
        return {str(v.version) for v in self.client().search_model_versions(f"name='{self.env['MLOPS_MODEL_NAME']}'")}


@pytest.fixture(scope="module")
def loop(airflow_stack, mlflow_server, docker_client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    """History ingested, v1 trained through mlops_train and deployed: the loop's starting point."""
    from mlops_pipeline import loop as steps
    from mlops_pipeline.config import get_settings

    env = loop_environment(tmp_path_factory.mktemp("closed-loop"), mlflow_server.uri)

    def clear() -> None:
        get_settings.cache_clear()
        get_settings.cache_clear()
        get_settings.cache_clear()

    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        clear()
        runner = steps.AirflowRunner(env={**airflow_stack.env, **env}, timeout=900)
        world = Loop(env, runner)
        try:
            world.timed("history_ingest", steps.ingest_in_process, HISTORY)
            first = world.timed("train_v1", steps.train, runner, HISTORY[-1] + timedelta(days=1), {"reason": "initial"})
            world.state["v1"] = first
            deployed = world.timed("deploy_v1", steps.deploy, actor="test:closed-loop")
            world.state["first_deploy"] = deployed
            yield world
        finally:
            teardown(docker_client, env)
            clear()
    print(json.dumps({"closed_loop_timings_s": TIMINGS}))


def teardown(docker_client: Any, env: dict[str, str]) -> None:
    from mlops_pipeline.deploy.backends import get_backend
    from mlops_pipeline.deploy.images import model_image_tag

    get_backend().teardown()
    repository = model_image_tag(env["MLOPS_MODEL_NAME"], "1").split(":")[0]
    for image in docker_client.images.list(name=repository):
        for tag in image.tags:
            try:
                docker_client.images.remove(tag)
            except Exception as exc:  # still used by a container someone else started
                print(f"kept {tag}: {exc}")


def audit_events(deployment_id: str) -> list[Any]:
    from mlops_pipeline.deploy.audit import AuditLog
    from mlops_pipeline.storage import open_lake

    return AuditLog(open_lake()).events(deployment_id=deployment_id)


def test_first_version_is_trained_by_the_dag_and_serves(loop: Loop) -> None:
    from mlops_pipeline.registry.aliases import CHALLENGER, CHAMPION

    first, deployed = loop.state["v1"], loop.state["first_deploy"]
    assert first["version"] == "1" and first["trigger_reason"] == "initial"
    assert first["tasks"] == ["train", "gate", "announce_challenger"], first["tasks"]
    assert first["challenger"] and first["gate_status"] == "passed"
    assert first["window"]["first_ds"] == HISTORY[0].isoformat() and first["window"]["last_ds"] == HISTORY[-1].isoformat()
    assert deployed["outcome"] == "deployed" and deployed["mode"] == "direct" and deployed["version"] == "1"
    assert deployed["backend"] == "docker"
    assert deployed["router_url"] == f"http://127.0.0.1:{loop.env['MLOPS_ROUTER_PORT']}"
    assert loop.alias(CHAMPION) == "1" and loop.alias(CHALLENGER) is None


def test_no_drift_no_retrain(loop: Loop) -> None:
    from mlops_pipeline import loop as steps
    from mlops_pipeline.registry.aliases import CHAMPION

    ingested = loop.timed("quiet_ingest", steps.ingest_in_process, [QUIET_DAY])
    assert ingested["days"] == {QUIET_DAY.isoformat(): 2000}
    served = loop.timed("quiet_serve", steps.serve_days, [QUIET_DAY])
    assert served["failed_requests"] == 0 and served["ok_rows"] == served["rows"] == 2000
    assert served["versions"] == {"1": 2000}

    before = loop.versions()
    decision = loop.timed("quiet_monitor", steps.monitor, loop.runner, QUIET_DAY)
    assert decision["numbers"]["rows"] == 2000, decision["numbers"]
    assert decision["action"] == "none" and decision["reason"] is None, decision["summary"]
    assert not decision["trigger"] and not decision["triggered"] and decision["conf"] is None
    assert decision["numbers"]["drifted_features"] == []
    assert "no_retrain" in decision["tasks"] and "trigger_retrain" not in decision["tasks"]
    assert Path(decision["report_html"]).is_file()
    assert steps.triggered_run(loop.runner, f"mlops_monitor__{QUIET_DAY.isoformat()}") is None
    assert loop.versions() == before and loop.alias(CHAMPION) == "1"


def test_covariate_drift_retrains_and_the_challenger_is_promoted(loop: Loop) -> None:
    from mlops_pipeline import loop as steps
    from mlops_pipeline.registry.aliases import CHALLENGER, CHAMPION

    ingested = loop.timed("drift_ingest", loop.runner.ingest, [DRIFT_DAY])
    assert ingested["days"] == {DRIFT_DAY.isoformat(): "success"}, ingested.get("errors")
    served = loop.timed("drift_serve", steps.serve_days, [DRIFT_DAY])
    assert served["failed_requests"] == 0 and served["versions"] == {"1": 2000}

    # the monitor for D: drift -> mlops_train triggered with the reason
    decision = loop.timed("drift_monitor", steps.monitor, loop.runner, DRIFT_DAY)
    assert decision["action"] == "retrain" and decision["reason"] == "drift", decision["summary"]
    assert decision["trigger"] and decision["triggered"], decision
    assert decision["train_run_id"] == f"mlops_monitor__{DRIFT_DAY.isoformat()}"
    assert decision["conf"]["reason"] == "drift" and decision["conf"]["window"]["ds"] == DRIFT_DAY.isoformat()
    assert decision["numbers"]["drift_share"] >= 0.3 and decision["numbers"]["rows"] == 2000
    assert "trigger_retrain" in decision["tasks"]
    report = Path(decision["report_html"])
    assert report.is_file() and b"<html" in report.read_bytes()[:5000].lower()
    triggered = steps.triggered_run(loop.runner, decision["train_run_id"])
    assert triggered is not None, "the monitor's trigger created no mlops_train run"
    assert triggered["logical_date"].startswith((DRIFT_DAY + timedelta(days=1)).isoformat())

    # the triggered training: reason drift, data including D, passes the gate
    retrained = loop.timed("drift_retrain", steps.retrain_from_decision, loop.runner, decision)
    assert retrained["version"] == "2" and retrained["trigger_reason"] == "drift"
    assert retrained["window"]["last_ds"] == DRIFT_DAY.isoformat(), retrained["window"]
    assert retrained["trigger_report"] == decision["conf"]["report"]
    assert retrained["gate_status"] == "passed" and retrained["challenger"], retrained
    assert loop.alias(CHALLENGER) == "2" and loop.alias(CHAMPION) == "1"

    # the canary under traffic of D, then promotion
    deployed = loop.timed("drift_canary", steps.deploy, traffic_days=[DRIFT_DAY], actor="test:closed-loop")
    assert deployed["outcome"] == "promoted", deployed
    assert deployed["mode"] == "canary" and deployed["version"] == "2" and deployed["previous"] == "1"
    assert [s["percent"] for s in deployed["steps"] if s["step"] == "analysed"] == [25, 50, 100]
    assert all(s["passed"] for s in deployed["steps"] if s["step"] == "analysed")
    assert deployed["traffic"]["ok"] > 0 and deployed["traffic"]["failed"] == 0, deployed["traffic"]
    assert loop.alias(CHAMPION) == "2" and loop.alias(CHALLENGER) is None
    shifts = [
        check
        for event in audit_events(deployed["deployment_id"])
        if event.event == "analysis_passed"
        for check in event.details["checks"]
        if check["name"] == "prediction_shift" and check["status"] == "passed"
    ]
    # A version retrained on drifted data predicts differently from stable by design: it is judged
    # by the retrained limit (a broken model shifts far beyond it), and the shift was measured.
    assert shifts and all(check["limit"] == 1.0 and check["value"] is not None for check in shifts), shifts

    # quality: the new champion on post-drift rows no model saw vs the old one on its pre-drift holdout
    steps.ingest_in_process([HOLDOUT_DAY])
    new_quality = steps.roc_auc_on(retrained["model_uri"], steps.labelled_frame([HOLDOUT_DAY]))
    old_quality = loop.state["v1"]["holdout_roc_auc"]
    print(json.dumps({"v1_pre_drift_holdout_roc_auc": old_quality, "v2_post_drift_holdout_roc_auc": new_quality}))
    assert new_quality >= 0.95 * old_quality, (new_quality, old_quality)
    loop.state["v2"] = retrained


def test_concept_drift_with_labels_retrains_for_performance(loop: Loop) -> None:
    from mlops_pipeline import loop as steps

    assert loop.state.get("v2"), "runs after the covariate drift scenario (the champion is v2)"
    ingested = loop.timed("concept_ingest", steps.ingest_in_process, [CONCEPT_DAY], scenario="concept_drift")
    assert ingested["days"] == {CONCEPT_DAY.isoformat(): 2000}
    served = loop.timed("concept_serve", steps.serve_days, [CONCEPT_DAY])
    assert served["failed_requests"] == 0 and served["versions"] == {"2": 2000}

    decision = loop.timed("concept_monitor", steps.monitor, loop.runner, CONCEPT_WINDOW)
    numbers = decision["numbers"]
    assert numbers["labelled_rows"] == 2000, numbers  # the concept day's predictions, joined with its labels
    assert decision["action"] == "retrain" and decision["reason"] == "performance", decision["summary"]
    assert decision["triggered"] and decision["conf"]["reason"] == "performance"
    assert numbers["roc_auc"] < max(0.70, numbers.get("roc_auc_required") or 0.0), numbers
    assert Path(decision["quality_html"]).is_file()

    retrained = loop.timed("concept_retrain", steps.retrain_from_decision, loop.runner, decision)
    assert retrained["trigger_reason"] == "performance" and retrained["version"] == "3"
    assert retrained["window"]["last_ds"] == CONCEPT_DAY.isoformat(), retrained["window"]  # trained on the new concept too
