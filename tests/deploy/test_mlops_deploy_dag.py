"""mlops_deploy: the DAG's shape, a light parse, and real `airflow dags test` rollouts (promote, roll back).

The runs use a throwaway Airflow home (``airflow_stack``), the session's MLflow server and the
``local`` backend: v1 is deployed beforehand through the package, v2 is the challenger, and the
DAG takes it through every traffic step (bake windows in reschedule mode) to promotion while a
client sends traffic through the router; then a bad v3 fails its first step, the ``rollback``
task (trigger rule one_failed) takes it out, and the run ends failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "mlops_deploy.py"
HEAVY = ("pandas", "mlflow", "xgboost", "sklearn", "numpy", "docker", "pyarrow")


def test_dag_file_imports_nothing_heavy() -> None:
    code = (
        "import runpy, sys, json\n"
        f"runpy.run_path({str(DAG_FILE)!r})\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_dag_shape() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    dag = bag.dags["mlops_deploy"]
    steps = [f"step_{p}pct" for p in (5, 25, 50, 100)]
    assert {t.task_id for t in dag.tasks} == {
        "reconcile", "prepare", "route", "deploy_direct", "start_canary", "replay_traffic", "promote", "rollback",
        *(f"{step}.{name}" for step in steps for name in ("shift", "bake", "analyse")),
    }  # fmt: skip
    for step in steps:
        bake = dag.get_task(f"{step}.bake")
        assert bake.mode == "reschedule"  # the bake window holds no worker
        assert dag.get_task(f"{step}.shift").downstream_task_ids >= {f"{step}.bake", f"{step}.analyse"}
    assert "step_25pct.shift" in dag.get_task("step_5pct.analyse").downstream_task_ids
    assert "promote" in dag.get_task("step_100pct.analyse").downstream_task_ids
    assert dag.get_task("rollback").trigger_rule == "one_failed"
    assert {"start_canary", "step_5pct.analyse", "step_100pct.bake"} <= dag.get_task("rollback").upstream_task_ids
    assert dag.get_task("route").downstream_task_ids == {"start_canary", "deploy_direct"}
    assert [asset.name for asset in dag.timetable.asset_condition.objects] == ["mlops_challenger"]
    params = dag.params.dump()
    assert params == {"action": "deploy", "version": None, "replay_traffic": False}
    assert dag.max_active_runs == 1 and not dag.catchup


@pytest.mark.integration
def test_dags_test_rolls_a_challenger_out_to_promotion(airflow_stack, mlflow_server, tmp_path) -> None:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.audit import AuditLog
    from mlops_pipeline.deploy.backends import get_backend
    from mlops_pipeline.deploy.rollout import Deployer, run_deployment
    from mlops_pipeline.registry.aliases import CHALLENGER, CHAMPION, set_challenger, version_for_alias
    from mlops_pipeline.storage import open_lake
    from tests.deploy.canary_scenario import BAD_SHIFT, Client, deploy_environment, register
    from tests.serving.model_fixture import build_model_dir

    env = deploy_environment("local", tmp_path, mlflow_server.uri)
    env["MLOPS_DEPLOY_POKE_SECONDS"] = "1"
    model_dir = build_model_dir(tmp_path / "model")
    bad_model_dir = build_model_dir(tmp_path / "bad", shift=BAD_SHIFT)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        deployer = Deployer.open("test:dag")
        client, name = deployer.client, deployer.model_name
        steady = None
        try:
            assert [register(client, name, model_dir) for _ in range(2)] == ["1", "2"]
            set_challenger(client, name, "1")
            assert run_deployment("deploy", deployer=deployer)["outcome"] == "deployed"
            set_challenger(client, name, "2")
            steady = Client(deployer.backend.router().url).start()  # type: ignore[union-attr]

            def dags_test() -> tuple[int, str]:
                done = subprocess.run(
                    [sys.executable, "-m", "mlops_dev.services", "exec", "--",
                     "airflow", "dags", "test", "mlops_deploy", "--conf", json.dumps({"action": "deploy"})],
                    env={**airflow_stack.env, **env}, capture_output=True, text=True, timeout=900, check=False,
                )  # fmt: skip
                return done.returncode, done.stdout[-6000:] + done.stderr[-6000:]

            def airflow_events(since: str) -> list:
                return [e for e in AuditLog(open_lake()).events(since=since) if e.actor.startswith("airflow:mlops_deploy/")]

            started = datetime.now(UTC).isoformat()
            returncode, output = dags_test()
            assert returncode == 0, output
            assert str(version_for_alias(client, name, CHAMPION).version) == "2", output
            assert version_for_alias(client, name, CHALLENGER) is None
            events = airflow_events(started)
            assert [e.details["percent"] for e in events if e.event == "analysis_passed"] == [5, 25, 50, 100]
            assert events[-1].event == "promoted"

            # A bad challenger: the 5 % step's analysis fails the task, the rollback task undoes it.
            assert register(client, name, bad_model_dir) == "3"
            set_challenger(client, name, "3")
            started = datetime.now(UTC).isoformat()
            returncode, output = dags_test()
            assert returncode != 0 and "DagRun failed" in output, output
            assert str(version_for_alias(client, name, CHAMPION).version) == "2"
            tags = client.get_model_version(name, "3").tags
            assert tags["deploy_status"] == "rolled_back" and "prediction shift PSI" in tags["deploy_reason"]
            events = airflow_events(started)
            assert events[-1].event == "rolled_back" and "at 5%" in events[-1].reason, [e.event for e in events]
            assert [(s.role, s.version) for s in deployer.backend.servers() if s.running] == [("stable", "2")]
        finally:
            if steady is not None:
                steady.finish()
            get_backend().teardown()
            get_settings.cache_clear()
    assert steady.failures == [], steady.failures[:5]
    assert {"1", "2", "3"} <= set(steady.versions)
