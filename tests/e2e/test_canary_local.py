"""The canary scenario through the real ``mlops_deploy`` DAG on the ``local`` backend: serving processes
and Debian's HAProxy, no Docker. Every deployment is an ``airflow dags test`` run of the DAG.

1. v1 is deployed as stable (first deployment: directly, and promoted to ``@champion``);
2. v2 (a good model fitted on another sample) goes through every traffic step to promotion while a
   client sends steady traffic through the router: no client request fails, and every check of
   every step was judged on data with the production thresholds;
3. a deliberately bad v3 (predictions shifted far from stable) fails its first step; the
   ``rollback`` task takes it out; v2 still serves; the run ends failed and the audit log says why;
4. ``action=promote`` takes v4 (a good model like v1) straight to stable, no canary;
5. ``action=rollback`` goes straight back to the previous champion, v2.

A run cut short mid-canary is covered where it happens for real: a scheduler killed mid-bake (the
run carries on, ``tests/deploy/test_mlops_deploy_dag.py``) and a stable server killed mid-canary
(the next run heals the interrupted canary, ``tests/reliability/test_docker_faults.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.canary_scenario import (  # noqa: F401 (model_dirs is a fixture)
    Client,
    DeployDag,
    checks_without_data,
    deployment_env,
    model_dirs,
    register,
    router_url,
    router_weights,
    running_servers,
    served_versions,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]


def test_canary_promotion_rollback_and_manual_actions_through_the_dag(
    airflow_stack, mlflow_server, model_dirs, tmp_path_factory  # noqa: F811
) -> None:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.registry.aliases import CHALLENGER, CHAMPION, set_challenger, version_for_alias
    from mlops_pipeline.registry.client import mlflow_client

    base = tmp_path_factory.mktemp("canary-local")
    timings: dict[str, float] = {}
    with deployment_env("local", base, mlflow_server.uri) as env:
        dag = DeployDag(airflow_stack.env, env, base / "dag-logs")
        client, name = mlflow_client(get_settings()), env["MLOPS_MODEL_NAME"]
        versions = [register(client, name, model_dirs[kind]) for kind in ("good", "good_resampled", "bad", "good")]
        assert versions == ["1", "2", "3", "4"]

        def alias(which: str) -> str | None:
            found = version_for_alias(client, name, which)
            return None if found is None else str(found.version)

        def tags(version: str) -> dict[str, str]:
            return dict(client.get_model_version(name, version).tags or {})

        # 1. v1: the first deployment, straight to stable and champion ---------------------------
        set_challenger(client, name, "1")
        first = dag.run()
        timings["first_deploy"] = first.seconds
        assert first.returncode == 0 and first.outcome == "deployed", first.describe()
        assert alias(CHAMPION) == "1" and alias(CHALLENGER) is None
        url = router_url()
        assert url == f"http://127.0.0.1:{env['MLOPS_ROUTER_PORT']}"
        assert served_versions(url) == {"1": 20}

        steady = Client(url).start()
        try:
            # 2. v2: every step, then promotion ------------------------------------------------
            set_challenger(client, name, "2")
            second = dag.run()
            timings["canary_promote"] = second.seconds
            assert second.returncode == 0 and second.outcome == "promoted", second.describe()
            assert alias(CHAMPION) == "2" and alias(CHALLENGER) is None
            assert tags("2")["deploy_status"] == "promoted" and tags("2")["previous_champion"] == "1"
            assert tags("1")["deploy_status"] == "retired"
            assert [e.details["percent"] for e in second.of("traffic_shifted")] == [5, 25, 50, 100]
            assert [e.details["percent"] for e in second.of("analysis_passed")] == [5, 25, 50, 100]
            assert checks_without_data(second) == [], "a good canary must be judged on data at every step"
            assert second.events[-1].event == "promoted"
            assert running_servers() == [("stable", "2")]

            # 3. v3 is bad: its first step fails, the rollback task takes it out ---------------
            set_challenger(client, name, "3")
            third = dag.run()
            timings["canary_rollback"] = third.seconds
            assert third.returncode != 0 and "DagRun failed" in third.output, third.describe()
            assert third.outcome == "rolled_back", third.describe()
            assert "prediction shift PSI" in third.reason and "at 5%" in third.reason, third.reason
            assert alias(CHAMPION) == "2" and alias(CHALLENGER) is None
            assert tags("3")["deploy_status"] == "rolled_back" and "PSI" in tags("3")["deploy_reason"]
            assert [e.details["percent"] for e in third.of("traffic_shifted")] == [5]
            failed = third.of("analysis_failed")
            assert len(failed) == 1 and "prediction shift PSI" in failed[0].reason
            assert third.reason == failed[0].reason
            assert running_servers() == [("stable", "2")]
            assert set(served_versions(url)) == {"2"}

            # 4. action=promote: straight to stable, no canary ------------------------------------
            fourth = dag.run("promote", "4")
            timings["manual_promote"] = fourth.seconds
            assert fourth.returncode == 0 and fourth.outcome == "promoted", fourth.describe()
            assert fourth.of("traffic_shifted") == [] and alias(CHAMPION) == "4"
            assert tags("4")["previous_champion"] == "2" and tags("2")["deploy_status"] == "retired"
            assert running_servers() == [("stable", "4")]

            # 5. action=rollback: straight back to the previous champion ------------------------
            fifth = dag.run("rollback")
            timings["manual_rollback"] = fifth.seconds
            assert fifth.returncode == 0 and fifth.outcome == "rolled_back_to", fifth.describe()
            assert fifth.final.version == "2" and alias(CHAMPION) == "2"
            assert tags("4")["deploy_status"] == "rolled_back"
            assert running_servers() == [("stable", "2")]
            assert router_weights() == {"stable": 100, "canary": 0}
        finally:
            steady.finish()

    assert steady.failures == [], f"{len(steady.failures)} of {steady.requests} client requests failed: {steady.failures[:5]}"
    assert steady.requests > 100 and {"1", "2", "4"} <= set(steady.versions), steady.versions
    assert steady.versions["3"] > 0  # the bad canary did get its 5 %, and was caught there
    logs = list(Path(env["MLOPS_PREDICTION_LOG_DIR"]).glob("ds=*/*.jsonl"))
    assert logs, "no prediction log under MLOPS_PREDICTION_LOG_DIR"
    print(json.dumps({"local": {k: round(v, 1) for k, v in timings.items()}}))
