"""Faults on the ``docker`` backend, for real: containers killed mid-rollout, the router restarted,
the Docker daemon and the MLflow server unreachable, and what the containers are allowed to do.

One deployment for the module (its own model name, namespace and router port): v1 is deployed
first; each case then rolls out a new version with the real ``mlops_deploy`` DAG (``airflow dags
test``), breaks something from outside once the canary takes 25 % of the traffic, and asserts the
outcome the design promises.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.deploy.canary_scenario import (
    DagResult,
    DeployDag,
    register,
    router_url,
    router_weights,
    running_servers,
    served_versions,
)
from tests.reliability.harness import SteadyClient, deployment_env, docker_container, latency_ms

# Each case stops by itself: a hung container or rollout fails the case, not the CI job.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# The compose services that may be given the Docker socket, and why (the README says what it means).
SOCKET_HOLDERS = {
    "airflow-worker": "runs mlops_deploy: builds model images, starts and stops serving and router containers",
    "prometheus": "docker_sd_configs: finds the serving and router containers by their labels",
}
SCENARIO_LABEL = "org.mlops.e2e=reliability"


@dataclass
class Deployment:
    env: dict[str, str]
    dag: DeployDag
    client: Any  # MlflowClient
    name: str
    docker: Any
    model_dirs: dict[str, Path]
    url: str = ""
    kinds: dict[str, str] = field(default_factory=dict)  # version -> which model it is

    def alias(self, which: str) -> str | None:
        from mlops_pipeline.registry.aliases import version_for_alias

        found = version_for_alias(self.client, self.name, which)
        return None if found is None else str(found.version)

    def register(self, kind: str) -> str:
        version = register(self.client, self.name, self.model_dirs[kind])
        self.kinds[version] = kind
        return version

    def register_good_canary(self) -> str:
        """A good version that is not the model the champion serves: a canary is compared with a
        different model, never with a copy of the stable one."""
        serving = self.kinds.get(self.alias("champion") or "")
        return self.register("good_resampled" if serving == "good" else "good")

    def challenger(self, version: str) -> None:
        from mlops_pipeline.registry.aliases import set_challenger

        set_challenger(self.client, self.name, version)

    def rollout(self, version: str, act: Any) -> tuple[DagResult, dict[str, Any]]:
        """Roll ``version`` out; ``act()`` once the canary takes 25 % of the traffic."""
        self.challenger(version)
        return self.dag.run_acting_at(25, act)

    def container(self, role: str) -> Any:
        return docker_container(self.docker, self.env["MLOPS_DEPLOY_NAMESPACE"], role)


def remove_stale_scenarios(client: Any, older_than_s: float = 3 * 3600) -> None:
    """Containers and networks an interrupted run of this module left behind (never a running one's: too young)."""

    def age(created: str) -> float:
        moment = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
        return (datetime.now(UTC) - moment).total_seconds()

    for container in client.containers.list(all=True, filters={"label": SCENARIO_LABEL}):
        if age(container.attrs["Created"]) > older_than_s:
            container.remove(force=True, v=True)
    for network in client.networks.list(filters={"label": SCENARIO_LABEL}):
        if age(network.attrs["Created"]) > older_than_s:
            try:
                network.remove()
            except Exception:  # still in use
                pass


@pytest.fixture(scope="module")
def deployment(docker_client, airflow_stack, mlflow_server, model_dirs, tmp_path_factory) -> Iterator[Deployment]:  # noqa: F811
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.registry.client import mlflow_client

    remove_stale_scenarios(docker_client)
    base = tmp_path_factory.mktemp("docker-faults")
    labels = '{"org.mlops.e2e": "reliability"}'
    # Two traffic steps: each case acts at 25 %; more steps would only lengthen every rollout.
    with deployment_env("docker", base, mlflow_server.uri, MLOPS_DEPLOY_EXTRA_LABELS=labels, MLOPS_DEPLOY_STEPS="25,100") as env:
        client = mlflow_client(get_settings())
        deployment = Deployment(
            env, DeployDag(airflow_stack.env, env, base / "dag-logs"), client, env["MLOPS_MODEL_NAME"], docker_client, model_dirs
        )
        deployment.challenger(deployment.register("good"))
        first = deployment.dag.run()
        assert first.returncode == 0 and first.outcome == "deployed", first.describe()
        deployment.url = router_url()
        yield deployment


# ---------------------------------------------------------------------------------------------
def test_containers_run_hardened_and_without_the_docker_socket(deployment: Deployment, reliability) -> None:
    figures = {}
    for role in ("stable", "router"):
        container = deployment.container(role)
        container.reload()
        host = container.attrs["HostConfig"]
        pid = container.attrs["State"]["Pid"]
        uid = next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
        caps = next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("CapEff:"))
        mounts = [m.get("Source", "") for m in container.attrs["Mounts"]]
        figures[role] = f"uid {uid}, CapEff {caps}, read-only {host['ReadonlyRootfs']}"
        assert uid != "0", f"the {role} container runs as root"
        assert int(caps, 16) == 0, f"the {role} container has capabilities {caps}"
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"], host
        assert "no-new-privileges" in host["SecurityOpt"]
        assert not any("docker.sock" in source for source in mounts), mounts
        probe = container.exec_run(["sh", "-c", "touch /probe 2>&1; echo rc=$?"]).output.decode()
        assert "Read-only file system" in probe and "rc=1" in probe, probe
        # Reachable from this host only.
        assert all(b["HostIp"] == "127.0.0.1" for bindings in host["PortBindings"].values() for b in bindings), host["PortBindings"]
    # The stable container says what it serves, and its image agrees.
    stable = deployment.container("stable")
    namespace = deployment.env["MLOPS_DEPLOY_NAMESPACE"]
    assert stable.labels["org.mlops.model.name"] == deployment.name and stable.labels["org.mlops.model.version"] == "1"
    assert len(stable.labels["org.mlops.model.sha256"]) == 64 and stable.labels["org.mlops.model.run_id"]
    assert deployment.docker.images.get(stable.image.id).labels["org.mlops.model.sha256"] == stable.labels["org.mlops.model.sha256"]
    assert stable.attrs["Config"]["User"] == "10001:10001"
    assert list(stable.attrs["NetworkSettings"]["Networks"]) == [namespace]
    router = deployment.container("router").attrs["HostConfig"]["PortBindings"]
    assert router["8000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": deployment.env["MLOPS_ROUTER_PORT"]}]
    # docker-compose: no service is handed the Docker socket unless it deploys (see the README).
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    with_socket = sorted(
        name for name, service in compose["services"].items()
        if any("docker.sock" in str(volume) for volume in service.get("volumes") or [])
    )  # fmt: skip
    assert set(with_socket) <= set(SOCKET_HOLDERS), f"services given the Docker socket: {with_socket}; allowed: {SOCKET_HOLDERS}"
    reliability.record(
        "security",
        "serving and router containers: non-root, read-only root, no capabilities, no Docker socket",
        "uid != 0, CapEff 0, writes refused, ports on 127.0.0.1 only, no docker.sock mount (compose: only the "
        "deploying worker and Prometheus discovery get it)",
        stable=figures["stable"],
        router=figures["router"],
        compose_services_with_socket=",".join(with_socket) or "none",
    )


def test_kill_the_canary_mid_bake(deployment: Deployment, reliability) -> None:
    version = deployment.register_good_canary()
    champion = deployment.alias("champion")
    steady = SteadyClient(deployment.url).start()
    try:
        result, _ = deployment.rollout(version, lambda: deployment.container("canary").kill())
    finally:
        steady.finish()
    failures = steady.failures()
    reliability.record(
        "faults",
        "canary container killed (SIGKILL) at 25 %",
        "rolled back with the reason, champion unchanged, stable serves everything, no client error",
        outcome=result.outcome,
        run_s=round(result.seconds, 1),
        requests=len(steady.samples),
        failed=len(failures),
        p99_ms=latency_ms(steady.samples, 99),
    )
    assert result.returncode != 0 and result.outcome == "rolled_back", result.describe()
    assert "not running" in result.reason, result.reason
    assert deployment.alias("champion") == champion and deployment.alias("challenger") is None
    assert running_servers() == [("stable", champion)]
    assert router_weights() == {"stable": 100, "canary": 0}
    assert served_versions(deployment.url) == {champion: 20}
    assert failures == [], failures[:5]


def test_restart_the_router_mid_canary(deployment: Deployment, reliability) -> None:
    version = deployment.register_good_canary()
    seen: dict[str, Any] = {}

    def restart_router() -> None:
        seen["before"] = router_weights()
        deployment.container("router").restart(timeout=10)
        deadline = time.monotonic() + 60
        while True:
            try:
                seen["after"] = router_weights()
                break
            except Exception:  # noqa: BLE001 - not answering yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        seen["served"] = served_versions(deployment.url, requests=8)

    steady = SteadyClient(deployment.url).start()  # the bake windows need traffic
    try:
        result, _ = deployment.rollout(version, restart_router)
    finally:
        steady.finish()
    reliability.record(
        "faults",
        "router (HAProxy) container restarted at 25 %",
        "weights restored from the persisted config, rollout completes (a step that met the restart is retried)",
        before=str(seen["before"]),
        after=str(seen["after"]),
        outcome=result.outcome,
        run_s=round(result.seconds, 1),
        requests=len(steady.samples),
        failed_while_restarting=len(steady.failures()),
    )
    assert seen["before"] == {"stable": 75, "canary": 25}
    assert seen["after"] == seen["before"]
    assert result.returncode == 0 and result.outcome == "promoted", result.describe()
    assert deployment.alias("champion") == version
    assert served_versions(deployment.url) == {version: 20}


def test_kill_the_stable_mid_canary(deployment: Deployment, reliability) -> None:
    """The router fails over to the canary (no client error); the run fails clearly without taking
    the canary out (it is the only server left); the next run reconciles, then finishes the rollout."""
    old = deployment.alias("champion")
    version = deployment.register_good_canary()
    steady = SteadyClient(deployment.url).start()
    try:
        result, acted = deployment.rollout(version, lambda: deployment.container("stable").kill())
        weights_after_failure = router_weights()
        followup = deployment.dag.run()
    finally:
        steady.finish()
    after_kill = steady.between(acted["at"], float("inf"))
    failures = steady.failures(acted["at"])
    champion = deployment.alias("champion")
    reliability.record(
        "faults",
        "stable container killed (SIGKILL) at 25 %",
        "router fails over to the canary, no client error; the run fails naming the lost stable and leaves the "
        "canary serving; the next run reconciles and completes",
        first_run=result.outcome,
        requests_after_kill=len(after_kill),
        failed_after_kill=len(failures),
        next_run=followup.outcome,
        next_run_s=round(followup.seconds, 1),
    )
    assert result.returncode != 0 and result.outcome == "rollback_deferred", result.describe()
    assert "the stable server is not running any more" in result.reason, result.reason
    assert "the stable server is not running any more" in result.output
    assert weights_after_failure["canary"] > 0  # not rolled back onto a dead server
    assert failures == [], failures[:5]
    assert {s.version for s in after_kill if s.ok} <= {old, version}
    assert followup.returncode == 0 and followup.outcome == "promoted" and champion == version, followup.describe()
    # The next run healed what this one left: a new stable first, the interrupted canary removed.
    assert [e.event for e in followup.events][:3] == ["reconcile_started", "canary_removed", "reconciled"], followup.describe()
    removed = followup.of("canary_removed")[0]
    assert removed.version == version and "interrupted" in removed.reason, removed
    assert running_servers() == [("stable", champion)]
    assert router_weights() == {"stable": 100, "canary": 0}
    assert served_versions(deployment.url) == {champion: 20}
    leftovers = deployment.docker.containers.list(
        all=True, filters={"label": f"org.mlops.deployment={deployment.env['MLOPS_DEPLOY_NAMESPACE']}"}
    )
    assert sorted(c.labels["org.mlops.role"] for c in leftovers) == ["router", "stable"], [c.name for c in leftovers]


def test_docker_daemon_unreachable(deployment: Deployment, tmp_path: Path, reliability) -> None:
    version = deployment.register_good_canary()
    deployment.challenger(version)
    champion, weights = deployment.alias("champion"), router_weights()
    closed = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as listener:  # bound, never listening: connections are refused
        listener.bind(str(closed))
        result = deployment.dag.run(DOCKER_HOST=f"unix://{closed}", MLOPS_DEPLOY_BACKEND="docker")
    error = next((line for line in result.output.splitlines() if "Docker daemon" in line), "")
    reliability.record(
        "faults",
        "Docker daemon unreachable (DOCKER_HOST on a closed socket)",
        "reconcile fails after its retries with an error naming the Docker daemon; no alias or traffic change",
        exit_code=result.returncode,
        seconds=round(result.seconds, 1),
        error=error.strip()[:100],
    )
    assert result.returncode != 0 and "DagRun failed" in result.output, result.describe()
    assert f"the Docker daemon at unix://{closed} is unreachable" in result.output, result.describe()
    assert result.events == []  # nothing was done, so nothing was audited
    assert deployment.alias("champion") == champion and deployment.alias("challenger") == version
    assert router_weights() == weights
    assert running_servers() == [("stable", champion)]


def test_mlflow_unreachable_during_deploy(deployment: Deployment, reliability) -> None:
    champion, weights = deployment.alias("champion"), router_weights()
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]  # nothing listens there
        result = deployment.dag.run(
            MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}",
            MLOPS_REGISTRY_CONNECT_ATTEMPTS="3",
            MLOPS_REGISTRY_CONNECT_BACKOFF_SECONDS="0.5",
        )
    error = next((line for line in result.output.splitlines() if "is not reachable after" in line), "")
    reliability.record(
        "faults",
        "MLflow server down during deploy",
        "each attempt of reconcile checks 3 times (backoff), the task retries, then fails naming the server; "
        "nothing changed",
        exit_code=result.returncode,
        seconds=round(result.seconds, 1),
        error=error.strip()[:100],
    )
    assert result.returncode != 0 and "DagRun failed" in result.output, result.describe()
    assert f"MLflow tracking server http://127.0.0.1:{port} is not reachable after 3 attempt(s)" in result.output, result.describe()
    assert result.events == []
    assert deployment.alias("champion") == champion
    assert router_weights() == weights
    assert running_servers() == [("stable", champion)]
