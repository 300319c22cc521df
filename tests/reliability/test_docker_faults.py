"""Faults on the ``docker`` backend, for real: containers killed mid-rollout, the router restarted,
the Docker daemon and the MLflow server unreachable, and what the containers are allowed to do.

One deployment for the module (its own model name, namespace and router port): v1 is deployed
first; each case then rolls out a new version and breaks something on the way, and asserts the
outcome the design promises.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.deploy.canary_scenario import register, served_versions
from tests.reliability.harness import SteadyClient, deployment_env, docker_container, latency_ms

# Each case stops by itself: a hung container or rollout fails the case, not the CI job.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# The compose services that may be given the Docker socket, and why (the README says what it means).
SOCKET_HOLDERS = {
    "airflow-worker": "runs mlops_deploy: builds model images, starts and stops serving and router containers",
    "prometheus": "docker_sd_configs: finds the serving and router containers by their labels",
}


@dataclass
class Deployment:
    env: dict[str, str]
    deployer: Any
    client: Any  # MlflowClient
    name: str
    url: str
    docker: Any

    def alias(self, which: str) -> str | None:
        from mlops_pipeline.registry.aliases import version_for_alias

        found = version_for_alias(self.client, self.name, which)
        return None if found is None else str(found.version)

    def register(self, model_dir: Path) -> str:
        return register(self.client, self.name, model_dir)

    def challenger(self, version: str) -> None:
        from mlops_pipeline.registry.aliases import set_challenger

        set_challenger(self.client, self.name, version)

    def weights(self) -> dict[str, int]:
        return self.deployer.router().weights()

    def running(self) -> list[tuple[str, str]]:
        return [(s.role, s.version) for s in self.deployer.backend.servers() if s.running]

    def container(self, role: str) -> Any:
        return docker_container(self.docker, self.env["MLOPS_DEPLOY_NAMESPACE"], role)


@pytest.fixture(scope="module")
def deployment(docker_client, mlflow_server, model_dirs, tmp_path_factory) -> Iterator[Deployment]:  # noqa: F811
    from mlops_pipeline.deploy.rollout import Deployer, run_deployment

    base = tmp_path_factory.mktemp("docker-faults")
    labels = '{"org.mlops.e2e": "reliability"}'
    # Two traffic steps: each case acts at 25 %; the rollouts after it need not take four.
    with deployment_env("docker", base, mlflow_server.uri, MLOPS_DEPLOY_EXTRA_LABELS=labels, MLOPS_DEPLOY_STEPS="25,100") as env:
        deployer = Deployer.open("test:reliability")
        deployment = Deployment(env, deployer, deployer.client, deployer.model_name, "", docker_client)
        first = deployment.register(model_dirs["good"])
        deployment.challenger(first)
        assert run_deployment("deploy", deployer=deployer)["outcome"] == "deployed"
        deployment.url = deployer.backend.router().url
        yield deployment


def rollout_with(deployment: Deployment, version: str, act_at_percent: int, act: Any) -> dict[str, Any]:
    """Roll ``version`` out; call ``act()`` once the canary takes ``act_at_percent`` % of the traffic."""
    from mlops_pipeline.deploy.rollout import run_deployment

    acted: dict[str, Any] = {}

    def on_step(step: str, info: dict[str, Any]) -> None:
        if step == "shifted" and info["percent"] == act_at_percent and not acted:
            acted["at"] = time.monotonic()
            acted["result"] = act()

    deployment.challenger(version)
    try:
        outcome = run_deployment("deploy", deployer=deployment.deployer, on_step=on_step)
    except Exception as exc:  # noqa: BLE001 - some faults end the run: the case asserts on the error
        outcome = {"outcome": "failed", "error": f"{type(exc).__name__}: {exc}"}
    assert acted, f"the rollout of v{version} never reached {act_at_percent}%: {outcome}"
    return {**outcome, "acted": acted}


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
    # docker-compose: no service is handed the Docker socket unless it deploys (see the README).
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    with_socket = sorted(
        name for name, service in compose["services"].items()
        if any("docker.sock" in str(volume) for volume in service.get("volumes") or [])
    )
    assert set(with_socket) <= set(SOCKET_HOLDERS), f"services given the Docker socket: {with_socket}; allowed: {SOCKET_HOLDERS}"
    reliability.record(
        "security",
        "serving and router containers: non-root, read-only root, no capabilities, no Docker socket",
        "uid != 0, CapEff 0, writes refused, no docker.sock mount (compose: only the deploying worker and Prometheus discovery get it)",
        stable=figures["stable"],
        router=figures["router"],
        compose_services_with_socket=",".join(with_socket) or "none",
    )


def test_kill_the_canary_mid_bake(deployment: Deployment, model_dirs, reliability) -> None:  # noqa: F811
    version = deployment.register(model_dirs["good"])
    champion = deployment.alias("champion")
    steady = SteadyClient(deployment.url).start()
    try:
        result = rollout_with(deployment, version, 25, lambda: deployment.container("canary").kill())
    finally:
        steady.finish()
    failures = steady.failures()
    reliability.record(
        "faults",
        "canary container killed (SIGKILL) at 25 %",
        "rolled back with the reason, champion unchanged, stable serves everything, no client error",
        outcome=result["outcome"],
        requests=len(steady.samples),
        failed=len(failures),
        p99_ms=latency_ms(steady.samples, 99),
    )
    assert result["outcome"] == "rolled_back", result
    assert "not running" in result["reason"], result["reason"]
    assert deployment.alias("champion") == champion and deployment.alias("challenger") is None
    assert deployment.running() == [("stable", champion)]
    assert deployment.weights() == {"stable": 100, "canary": 0}
    assert served_versions(deployment.url) == {champion: 20}
    assert failures == [], failures[:5]


def test_restart_the_router_mid_canary(deployment: Deployment, model_dirs, reliability) -> None:  # noqa: F811
    version = deployment.register(model_dirs["good"])
    seen: dict[str, Any] = {}

    def restart_router() -> None:
        before = deployment.weights()
        deployment.container("router").restart(timeout=10)
        deadline = time.monotonic() + 60
        while True:
            try:
                seen["after"] = deployment.weights()
                break
            except Exception:  # noqa: BLE001 - not answering yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        seen["before"] = before
        seen["served"] = served_versions(deployment.url, requests=8)

    steady = SteadyClient(deployment.url).start()  # the bake windows need traffic
    try:
        result = rollout_with(deployment, version, 25, restart_router)
    finally:
        steady.finish()
    reliability.record(
        "faults",
        "router (HAProxy) container restarted at 25 %",
        "weights restored from the persisted config, rollout completes",
        before=str(seen["before"]),
        after=str(seen["after"]),
        outcome=result["outcome"],
        requests=len(steady.samples),
        failed_while_restarting=len(steady.failures()),
    )
    assert seen["before"] == {"stable": 75, "canary": 25}
    assert seen["after"] == seen["before"]
    assert result["outcome"] == "promoted", result
    assert deployment.alias("champion") == version
    assert served_versions(deployment.url) == {version: 20}


def test_kill_the_stable_mid_canary(deployment: Deployment, model_dirs, reliability) -> None:  # noqa: F811
    """The router fails over to the canary (no client error); the run fails clearly without taking
    the canary out (it is the only server left); the next run reconciles, then finishes the rollout."""
    from mlops_pipeline.deploy.rollout import run_deployment

    old = deployment.alias("champion")
    version = deployment.register(model_dirs["good"])
    steady = SteadyClient(deployment.url).start()
    try:
        result = rollout_with(deployment, version, 25, lambda: deployment.container("stable").kill())
        killed_at = result["acted"]["at"]
        weights_after_failure = deployment.weights()
        followup_started = time.monotonic()
        followup = run_deployment("deploy", deployer=deployment.deployer)
        followup_seconds = time.monotonic() - followup_started
    finally:
        steady.finish()
    after_kill = steady.between(killed_at, float("inf"))
    failures = steady.failures(killed_at)
    champion = deployment.alias("champion")
    reliability.record(
        "faults",
        "stable container killed (SIGKILL) at 25 %",
        "router fails over to the canary, no client error; the run fails naming the lost stable and leaves the "
        "canary serving; the next run reconciles and completes",
        first_run=result["outcome"] if result["outcome"] != "failed" else result["error"].split(":")[0],
        requests_after_kill=len(after_kill),
        failed_after_kill=len(failures),
        next_run=followup["outcome"],
        next_run_s=round(followup_seconds, 1),
    )
    assert result["outcome"] == "failed" and "the stable server is not running any more" in result["error"], result
    assert weights_after_failure["canary"] > 0  # not rolled back onto a dead server
    assert failures == [], failures[:5]
    assert {s.version for s in after_kill if s.ok} <= {old, version}
    assert followup["outcome"] == "promoted" and champion == version, followup
    assert deployment.running() == [("stable", champion)]
    assert deployment.weights() == {"stable": 100, "canary": 0}
    assert served_versions(deployment.url) == {champion: 20}
    leftovers = deployment.docker.containers.list(
        all=True, filters={"label": f"org.mlops.deployment={deployment.env['MLOPS_DEPLOY_NAMESPACE']}"}
    )
    assert sorted(c.labels["org.mlops.role"] for c in leftovers) == ["router", "stable"], [c.name for c in leftovers]


def _deploy_subprocess(extra_env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_pipeline.deploy", "--actor", "test:reliability", "deploy"],
        env={**os.environ, **extra_env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_docker_daemon_unreachable(deployment: Deployment, model_dirs, tmp_path: Path, reliability) -> None:  # noqa: F811
    version = deployment.register(model_dirs["good"])
    deployment.challenger(version)
    champion, weights = deployment.alias("champion"), deployment.weights()
    closed = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as listener:  # bound, never listening: connections are refused
        listener.bind(str(closed))
        started = time.monotonic()
        done = _deploy_subprocess({"DOCKER_HOST": f"unix://{closed}", "MLOPS_DEPLOY_BACKEND": "docker"})
    seconds = time.monotonic() - started
    last_line = (done.stderr.strip().splitlines() or [""])[-1]
    reliability.record(
        "faults",
        "Docker daemon unreachable (DOCKER_HOST on a closed socket)",
        "the deploy fails with an error naming the Docker daemon; no alias or traffic change",
        exit_code=done.returncode,
        seconds=round(seconds, 1),
        error=last_line[:100],
    )
    assert done.returncode != 0
    assert "Docker daemon" in last_line and str(closed) in last_line, done.stderr[-3000:]
    assert deployment.alias("champion") == champion and deployment.alias("challenger") == version
    assert deployment.weights() == weights
    assert deployment.running() == [("stable", champion)]


def test_mlflow_unreachable_during_deploy(deployment: Deployment, reliability) -> None:
    champion, weights = deployment.alias("champion"), deployment.weights()
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]  # nothing listens there
        started = time.monotonic()
        done = _deploy_subprocess(
            {
                "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
                "MLOPS_REGISTRY_CONNECT_ATTEMPTS": "3",
                "MLOPS_REGISTRY_CONNECT_BACKOFF_SECONDS": "0.5",
            }
        )
    seconds = time.monotonic() - started
    last_line = (done.stderr.strip().splitlines() or [""])[-1]
    reliability.record(
        "faults",
        "MLflow server down during deploy",
        "retries (3 health checks, backoff), then an error naming the server; nothing changed",
        exit_code=done.returncode,
        seconds=round(seconds, 1),
        error=last_line[:100],
    )
    assert done.returncode != 0
    assert f"127.0.0.1:{port}" in last_line and "3" in last_line, done.stderr[-3000:]
    assert deployment.alias("champion") == champion
    assert deployment.weights() == weights
    assert deployment.running() == [("stable", champion)]
