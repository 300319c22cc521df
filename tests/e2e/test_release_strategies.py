"""Releases on the scheduler, on the Docker backend: what evidence each strategy needs to promote.

Run as a person runs them: ``make deploy`` (``mlops_dev.deploy``) triggers ``mlops_deploy`` through
the REST API and follows it; the scheduler (LocalExecutor) runs every task; the serving containers
and the HAProxy router container run on the Docker engine.

* **A canary with too little traffic is not promoted.** No client sends requests, so no step ever
  has the requests its checks need: with the production default (``insufficient_traffic=rollback``)
  the first step fails when its longest bake ends, the canary is rolled back with a reason naming
  the checks that lacked data, and the stable version keeps serving.
"""

from __future__ import annotations

import pytest

from tests.deploy.canary_scenario import model_dirs  # noqa: F401 (fixture)

pytestmark = [pytest.mark.docker, pytest.mark.integration]


@pytest.mark.timeout(1500)
def test_a_canary_with_too_little_traffic_is_not_promoted(
    docker_client, airflow_stack, airflow_databases, mlflow_server, model_dirs, tmp_path  # noqa: F811
) -> None:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.canary import Thresholds
    from mlops_pipeline.registry.aliases import CHALLENGER, CHAMPION, set_challenger, version_for_alias
    from mlops_pipeline.registry.client import mlflow_client
    from tests.deploy.canary_scenario import deployment_env, register, running_servers
    from tests.deploy.test_mlops_deploy_dag import SchedulerStack

    assert get_settings().deploy.insufficient_traffic == Thresholds().insufficient_traffic == "rollback"
    scenario = {
        "MLOPS_DEPLOY_STEPS": "50,100",
        # Without a client no request can come, however long a step waits: the longest bake only sets
        # when the verdict falls. 30 s instead of the scenario's 240 s (production: 900 s).
        "MLOPS_DEPLOY_MAX_BAKE_SECONDS": "30",
        "MLOPS_DEPLOY_EXTRA_LABELS": '{"org.mlops.e2e": "strategies"}',
    }
    with deployment_env("docker", tmp_path, mlflow_server.uri, **scenario) as env:
        assert "MLOPS_DEPLOY_INSUFFICIENT_TRAFFIC" not in env  # the production default decides
        stack = SchedulerStack.beside(airflow_stack, airflow_databases.create(), tmp_path / "airflow", env)
        client, name = mlflow_client(get_settings()), env["MLOPS_MODEL_NAME"]
        assert [register(client, name, model_dirs[kind]) for kind in ("good", "good_resampled")] == ["1", "2"]
        try:
            stack.start("api-server")  # first: it writes the new home's airflow.cfg
            stack.start("scheduler", "dag-processor")
            set_challenger(client, name, "1")
            first = stack.deploy_command("deploy", "--unpause")
            assert first.wait(timeout=600) == 0, first.output() + stack.failed_task_logs()
            assert "success: deployed v1" in first.output()

            set_challenger(client, name, "2")
            canary = stack.deploy_command("deploy")
            run_id = stack.wait_for_run()
            assert canary.wait(timeout=900) == 1, canary.output() + stack.failed_task_logs()
            tasks = {t["task_id"]: t["state"] for t in stack.api.task_instances("mlops_deploy", run_id)}
            run = stack.api.dag_run("mlops_deploy", run_id)
        finally:
            stack.stop()

        assert run["run_type"] == "manual" and run["state"] == "failed"
        assert tasks["step_50pct.bake"] == "success" and tasks["step_50pct.analyse"] == "failed", tasks
        assert tasks["rollback"] == "success" and tasks["promote"] in ("upstream_failed", "skipped"), tasks
        assert "step_100pct.shift" not in tasks or tasks["step_100pct.shift"] in ("upstream_failed", "skipped", None), tasks
        assert str(version_for_alias(client, name, CHAMPION).version) == "1"
        assert version_for_alias(client, name, CHALLENGER) is None
        tags = client.get_model_version(name, "2").tags
        assert tags["deploy_status"] == "rolled_back", tags
        reason = tags["deploy_reason"]
        assert "canary v2 at 50%: not enough traffic to judge" in reason, reason
        assert "fewer than 50 requests" in reason or "the canary answered no requests" in reason, reason
        assert running_servers() == [("stable", "1")]
