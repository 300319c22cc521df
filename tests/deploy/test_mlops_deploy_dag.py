"""mlops_deploy: the DAG's shape and imports, its adapter with a fake context, and a run that survives
its scheduler being killed mid-bake.

The rollouts themselves (promotion, rollback, a killed run healed by the next) are the end-to-end
scenario in ``tests/e2e/test_canary_local.py``; the faults, in ``tests/reliability``.
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_pipeline.deploy.backends import BackendError
from mlops_pipeline.deploy.rollout import CanaryCheckFailed, DeploymentError, StableLost
from mlops_pipeline.orchestration import deploy as adapter
from tests.deploy.canary_scenario import model_dirs  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "mlops_deploy.py"
HEAVY = ("pandas", "mlflow", "xgboost", "sklearn", "numpy", "docker", "pyarrow")
DAG_IMPORTS = {"__future__", "datetime", "pendulum", "airflow.sdk", "mlops_pipeline.orchestration",
               "mlops_pipeline.orchestration.datasets"}  # one DAG per dataset


# -- the DAG file -----------------------------------------------------------------------------------
def test_dag_file_imports_only_the_sdk_and_its_adapter() -> None:
    tree = ast.parse(DAG_FILE.read_text())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= DAG_IMPORTS, imported - DAG_IMPORTS
    adapters = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "mlops_pipeline.orchestration"]
    assert [alias.name for node in adapters for alias in node.names] == ["deploy"]


def test_dag_file_imports_nothing_heavy() -> None:
    code = (
        "import runpy, sys, json\n"
        f"runpy.run_path({str(DAG_FILE)!r})\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def load_dag(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from mlops_pipeline.config import get_settings

    for key in [k for k in os.environ if k.startswith("MLOPS_DEPLOY_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        bag = DagBag(dag_folder=str(DAG_FILE))
    finally:
        get_settings.cache_clear()
    assert bag.import_errors == {}
    return bag.dags["mlops_deploy"]


def test_dag_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = load_dag(monkeypatch)
    steps = [f"step_{p}pct" for p in (5, 25, 50, 100)]
    assert {t.task_id for t in dag.tasks} == {
        "reconcile", "prepare", "route", "deploy_direct", "start_canary", "promote", "rollback",
        *(f"{step}.{name}" for step in steps for name in ("shift", "bake", "analyse")),
        *(f"approval.{name}" for name in ("decide", "request", "not_required", "approved")),
        *(f"blue_green.{name}" for name in ("start_green", "reference", "switch", "bake", "analyse")),
        *(f"shadow.{name}" for name in ("start_shadow", "mirror", "compare")),
        *(f"ab.{name}" for name in ("start_ab", "collect", "analyse")),
    }  # fmt: skip
    for step in steps:
        bake = dag.get_task(f"{step}.bake")
        assert bake.mode == "reschedule"  # the bake window holds no worker
        assert bake.poke_interval == 30 and bake.timeout >= 900 + 3600
        assert dag.get_task(f"{step}.shift").downstream_task_ids >= {f"{step}.bake", f"{step}.analyse"}
    assert "step_25pct.shift" in dag.get_task("step_5pct.analyse").downstream_task_ids
    assert "approval.decide" in dag.get_task("step_100pct.analyse").downstream_task_ids
    assert dag.get_task("promote").upstream_task_ids == {"reconcile", "approval.approved"}
    assert dag.get_task("rollback").trigger_rule == "one_failed"
    assert {"start_canary", "step_5pct.analyse", "step_100pct.bake"} <= dag.get_task("rollback").upstream_task_ids
    assert dag.get_task("route").downstream_task_ids == {
        "start_canary", "deploy_direct", "blue_green.start_green", "shadow.start_shadow", "ab.start_ab"
    }  # fmt: skip
    # A/B: B's share of the entities, the horizon's labelled rows, the verdict, then the approval
    chain = ["ab.start_ab", "ab.collect", "ab.analyse", "approval.decide"]
    for first, then in zip(chain, chain[1:], strict=False):
        assert then in dag.get_task(first).downstream_task_ids, (first, then)
    collect = dag.get_task("ab.collect")
    assert collect.mode == "reschedule" and collect.timeout >= 14 * 86400 + 3600
    assert set(chain[:3]) <= dag.get_task("rollback").upstream_task_ids
    # shadow: the mirror's window, the verdict, then the canary (which a skipped shadow does not skip)
    chain = ["shadow.start_shadow", "shadow.mirror", "shadow.compare", "start_canary"]
    for first, then in zip(chain, chain[1:], strict=False):
        assert then in dag.get_task(first).downstream_task_ids, (first, then)
    mirror = dag.get_task("shadow.mirror")
    assert mirror.mode == "reschedule" and mirror.timeout >= 3 * 86400 + 3600
    assert dag.get_task("start_canary").trigger_rule == "none_failed_min_one_success"
    assert set(chain) <= dag.get_task("rollback").upstream_task_ids
    # blue-green: smoke-tested green, blue's reference window, one switch, blue warm through the bake
    chain = ["blue_green.start_green", "blue_green.reference", "blue_green.switch", "blue_green.bake", "blue_green.analyse"]
    for first, then in zip(chain, chain[1:], strict=False):
        assert then in dag.get_task(first).downstream_task_ids, (first, then)
    for sensor in ("blue_green.reference", "blue_green.bake"):
        assert dag.get_task(sensor).mode == "reschedule"
    decide = dag.get_task("approval.decide")
    assert {"step_100pct.analyse", "blue_green.analyse"} <= decide.upstream_task_ids
    assert decide.trigger_rule == "none_failed_min_one_success"  # whichever path ran; none after a failure
    assert set(chain) <= dag.get_task("rollback").upstream_task_ids
    assert [asset.name for asset in dag.timetable.asset_condition.objects] == ["mlops_challenger"]
    assert dag.params.dump() == {"action": "deploy", "version": None, "strategy": None, "approval": None}
    assert dag.max_active_runs == 1 and not dag.catchup
    # A task whose process died (its worker or scheduler killed) is run again, never rolled back for it.
    assert {t.task_id: t.retries for t in dag.tasks if t.retries < 1} == {}
    assert all(t.retry_delay == timedelta(seconds=30) for t in dag.tasks)


def test_steps_poke_interval_and_retries_come_from_the_deploy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = load_dag(
        monkeypatch,
        MLOPS_DEPLOY_STEPS="20,100",
        MLOPS_DEPLOY_POKE_SECONDS="7",
        MLOPS_DEPLOY_MAX_BAKE_SECONDS="200",
        MLOPS_DEPLOY_TASK_RETRIES="4",
        MLOPS_DEPLOY_RETRY_DELAY_SECONDS="5",
    )
    assert sorted(t.task_id for t in dag.tasks if t.task_id.startswith("step_")) == [
        f"step_{p}pct.{name}" for p in (100, 20) for name in ("analyse", "bake", "shift")
    ]
    bake = dag.get_task("step_20pct.bake")
    assert bake.poke_interval == 7 and bake.timeout == 200 + 3600
    assert {t.retries for t in dag.tasks} == {4} and {t.retry_delay for t in dag.tasks} == {timedelta(seconds=5)}


# -- the adapter, with a fake context and a fake Deployer -------------------------------------------
class FakeDeployer:
    def __init__(self, fail: Exception | None = None, started: bool = True) -> None:
        self.fail = fail
        self.started = started
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name: str):
        def step(*args: Any, **kwargs: Any) -> dict[str, Any]:
            self.calls.append((name, args))
            if self.fail is not None:
                raise self.fail
            if name == "reconcile":
                return {"actions": []}
            if name == "plan":
                return {"deployment_id": f"m-v{args[1]}-{kwargs['deployment_key']}", "mode": "canary", "reason": "r"}
            if name == "bake_status":
                return {"done": False, "why": "baking"}
            if name == "canary_was_started":
                return self.started
            return {"outcome": name}

        return step


PLAN = {"deployment_id": "m-v2-x", "actor": "airflow:mlops_deploy/r1", "mode": "canary", "version": "2", "reason": "r"}


def dag_run(run_id: str = "manual__2026-03-01T10:00:00+00:00") -> SimpleNamespace:
    return SimpleNamespace(
        dag_id="mlops_deploy", run_id=run_id, run_after=datetime(2026, 3, 1, 10, tzinfo=UTC), triggering_user_name="ann"
    )


@pytest.fixture
def deployer(monkeypatch: pytest.MonkeyPatch) -> FakeDeployer:
    fake = FakeDeployer()
    monkeypatch.setattr(adapter, "_deployer", lambda actor: fake)
    return fake


def test_a_retried_plan_names_the_same_deployment(deployer: FakeDeployer) -> None:
    first = adapter.reconcile({"action": "deploy", "version": 2}, dag_run())
    again = adapter.reconcile({"action": "deploy", "version": 2}, dag_run())
    other = adapter.reconcile({"action": "deploy", "version": 2}, dag_run("manual__2026-03-01T10:00:01+00:00"))

    assert first["deployment_id"] == again["deployment_id"] != other["deployment_id"]
    assert first["deployment_id"].startswith("m-v2-20260301T100000Z-")
    assert [name for name, _ in deployer.calls] == ["reconcile", "plan"] * 3  # healed before every plan


def test_bad_input_fails_the_plan_at_once(deployer: FakeDeployer) -> None:
    deployer.fail = ValueError("nothing to roll back to")
    with pytest.raises(AirflowFailException, match="cannot plan 'rollback'.*nothing to roll back to"):
        adapter.reconcile({"action": "rollback", "version": None}, dag_run())


@pytest.mark.parametrize(
    "error",
    [CanaryCheckFailed("canary v2 at 5%: prediction shift PSI 3.1"), StableLost("the stable server is not running any more"),
     DeploymentError("no canary of v2 is running"), ValueError("no version 9")],
    ids=["failed-check", "stable-lost", "cannot-go-on", "bad-input"],
)  # fmt: skip
def test_a_state_a_retry_would_meet_again_fails_at_once(deployer: FakeDeployer, error: Exception) -> None:
    deployer.fail = error
    for call in (
        lambda: adapter.analyse(PLAN, {}, {"percent": 5}),
        lambda: adapter.shift(PLAN, 5),
        lambda: adapter.start_canary(PLAN, {}),
        lambda: adapter.promote(PLAN),
    ):
        with pytest.raises(AirflowFailException, match=f"deployment m-v2-x: {error}"):
            call()


@pytest.mark.parametrize("error", [BackendError("router not answering"), OSError("connection reset")])
def test_an_outage_is_raised_as_it_is_so_the_task_retries(deployer: FakeDeployer, error: Exception) -> None:
    deployer.fail = error
    with pytest.raises(type(error)):
        adapter.analyse(PLAN, {}, {"percent": 5})
    with pytest.raises(type(error)):
        adapter.bake(PLAN, {}, {"percent": 5})


def test_bake_pokes_until_done(deployer: FakeDeployer) -> None:
    poked = adapter.bake(PLAN, {"baseline": {}}, {"percent": 25})
    assert poked.is_done is False and poked.xcom_value == {"done": False, "why": "baking"}


def test_route_follows_the_plan() -> None:
    assert adapter.route({**PLAN, "mode": "canary"}) == "start_canary"
    assert adapter.route({**PLAN, "mode": "canary", "strategy": "shadow"}) == ["shadow.start_shadow", "start_canary"]
    assert adapter.route({**PLAN, "mode": "ab", "strategy": "ab"}) == "ab.start_ab"
    assert adapter.route({**PLAN, "mode": "direct"}) == "deploy_direct"
    assert adapter.route({**PLAN, "mode": "noop"}) is None


def test_rollback_undoes_only_a_started_canary(deployer: FakeDeployer) -> None:
    with pytest.raises(AirflowSkipException, match="reconcile failed"):
        adapter.rollback(None)
    with pytest.raises(AirflowSkipException, match="direct deployment"):
        adapter.rollback({**PLAN, "mode": "direct"})
    deployer.started = False
    with pytest.raises(AirflowSkipException, match="no canary was started"):
        adapter.rollback(PLAN)
    deployer.started = True
    assert adapter.rollback(PLAN) == {"outcome": "rollback"}
    for mode in ("blue_green", "ab"):  # a green switched back; a B variant that did not win
        assert adapter.rollback({**PLAN, "mode": mode}) == {"outcome": "rollback"}


# -- the scheduler killed mid-bake --------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.timeout(1500)
def test_a_run_carries_on_after_its_scheduler_is_killed_mid_bake(
    airflow_stack, airflow_databases, mlflow_server, model_dirs, tmp_path  # noqa: F811
) -> None:
    """A real scheduler (LocalExecutor) runs the deployment, triggered and followed by ``make deploy``'s
    command; the scheduler's whole process group is SIGKILLed while a step bakes, then started again:
    the same run carries on and promotes the canary, with no rollback."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.registry.aliases import CHAMPION, set_challenger, version_for_alias
    from mlops_pipeline.registry.client import mlflow_client
    from tests.deploy.canary_scenario import Client, deployment_env, register, router_url, running_servers

    # Two steps (the kill lands in the first, the second shows the run goes on). Pokes 10 s apart, so
    # the bake sensor spends most of its time rescheduled (no process) and the kill lands there, as a
    # real crash mid-bake mostly would; 20 s of baking leaves room for a poke after the restart.
    steps = {"MLOPS_DEPLOY_STEPS": "50,100", "MLOPS_DEPLOY_BAKE_SECONDS": "20", "MLOPS_DEPLOY_POKE_SECONDS": "10"}
    with deployment_env("local", tmp_path, mlflow_server.uri, **steps) as env:
        stack = SchedulerStack.beside(airflow_stack, airflow_databases.create(), tmp_path / "airflow", env)
        client, name = mlflow_client(get_settings()), env["MLOPS_MODEL_NAME"]
        assert [register(client, name, model_dirs[kind]) for kind in ("good", "good_resampled")] == ["1", "2"]
        steady = None
        try:
            stack.start("api-server")  # first: it writes the new home's airflow.cfg
            stack.start("scheduler", "dag-processor")
            set_challenger(client, name, "1")
            first = stack.deploy_command("deploy", "--unpause")
            assert first.wait(timeout=600) == 0, first.output() + stack.failed_task_logs()
            assert "success: deployed v1" in first.output()

            steady = Client(router_url()).start()
            set_challenger(client, name, "2")
            follower = stack.deploy_command("deploy")
            run_id = stack.wait_for_run()
            stack.wait_for_task(run_id, "step_50pct.bake", "up_for_reschedule")
            stack.kill("scheduler")
            time.sleep(5)  # the run is left as it was: no scheduler looks at it
            assert stack.task_state(run_id, "step_50pct.bake") == "up_for_reschedule"
            stack.start("scheduler")
            assert follower.wait(timeout=900) == 0, follower.output() + stack.failed_task_logs()
            tasks = {t["task_id"]: t for t in stack.api.task_instances("mlops_deploy", run_id)}
        finally:
            if steady is not None:
                steady.finish()
            stack.stop()

        output = follower.output()
        assert "step_50pct.bake" in output and "success: promoted v2 (previous v1)" in output, output
        assert str(version_for_alias(client, name, CHAMPION).version) == "2"
        assert tasks["promote"]["state"] == "success" and tasks["rollback"]["state"] == "skipped", tasks
        assert tasks["step_50pct.bake"]["state"] == "success" and tasks["step_100pct.analyse"]["state"] == "success"
        assert running_servers() == [("stable", "2")]
    assert steady.failures == [], steady.failures[:5]


class SchedulerStack:
    """Airflow services of their own (a fresh metadata database, their own home, port and pidfiles)
    running with a scenario's settings: what a scheduler-run task sees is the scheduler's environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[str] = []
        self._api: Any = None

    @classmethod
    def beside(cls, stack: Any, database_url: str, base: Path, scenario_env: dict[str, str]) -> SchedulerStack:
        """Services on a fresh metadata database (no other test's runs or asset events in it), with the
        session stack's settings and the scenario's (its run dir holds the pidfiles too)."""
        from tests.conftest import free_port

        home = base / "home"
        home.mkdir(parents=True)
        env = {
            **stack.env,
            **scenario_env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
            "MLOPS_AIRFLOW_PORT": str(free_port()),
            # One secret for the tokens the api-server signs and the scheduler's tasks present: a new
            # Airflow home would otherwise have each service generate its own.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        }
        return cls(env)

    def services(self, *argv: str, timeout: float = 300) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "mlops_dev.services", *argv],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"services {' '.join(argv)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    def start(self, *names: str) -> None:
        self.started += [name for name in names if name not in self.started]
        self.services("start", *names)

    def stop(self) -> None:
        self.services("stop", *reversed(self.started), timeout=180)

    def kill(self, name: str) -> None:
        """SIGKILL the service's whole process group: the process, its executor's workers, their tasks."""
        pid = int((Path(self.env["MLOPS_RUN_DIR"]) / f"{name}.pid").read_text())
        os.killpg(pid, signal.SIGKILL)

    @property
    def api(self) -> Any:
        if self._api is None:
            from mlops_dev.airflow_api import AirflowAPI

            passwords = Path(self.env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
            self._api = AirflowAPI(f"http://127.0.0.1:{self.env['MLOPS_AIRFLOW_PORT']}", password=json.loads(passwords.read_text())["admin"])
        return self._api

    def deploy_command(self, *argv: str) -> DeployCommand:
        return DeployCommand(self.env, argv)

    def wait_for_run(self, timeout: float = 120.0) -> str:
        """The run id of the manual mlops_deploy run that is running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [r for r in self.api.dag_runs("mlops_deploy", state="running")]
            if running:
                return str(running[-1]["dag_run_id"])
            time.sleep(1)
        raise AssertionError("no mlops_deploy run started")

    def failed_task_logs(self, lines: int = 40) -> str:
        """The last lines of every task log that reports an error (for a failure message)."""
        found = []
        for path in sorted((Path(self.env["AIRFLOW_HOME"]) / "logs").rglob("*.log")):
            text = path.read_text(errors="replace")
            if '"level": "error"' in text or "[error" in text or "Traceback" in text:
                found.append(f"--- {path}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(found)

    def task_state(self, run_id: str, task_id: str) -> str | None:
        return next((t["state"] for t in self.api.task_instances("mlops_deploy", run_id) if t["task_id"] == task_id), None)

    def wait_for_task(self, run_id: str, task_id: str, state: str, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.task_state(run_id, task_id) == state:
                return
            time.sleep(0.5)
        raise AssertionError(f"{task_id} of {run_id} never reached {state}: {self.api.task_instances('mlops_deploy', run_id)}")


class DeployCommand:
    """``python -m mlops_dev.deploy ...`` (what ``make deploy`` runs) in the background."""

    def __init__(self, env: dict[str, str], argv: tuple[str, ...]) -> None:
        self.log = Path(env["MLOPS_RUN_DIR"]) / f"deploy-command-{time.monotonic_ns()}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlops_dev.deploy", *argv, "--poll", "1"],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"make deploy did not end within {timeout:.0f}s:\n{self.output()[-5000:]}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")
