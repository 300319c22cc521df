"""The canary scenario both end-to-end tests run (``tests/e2e/test_canary_{local,docker}.py``).

1. v1 is deployed as stable (first deployment: directly, and promoted to ``@champion``);
2. v2 goes through every traffic step to promotion while a client sends steady traffic through
   the router: no client request fails;
3. a deliberately bad v3 (predictions shifted far from stable) is rolled back automatically at
   the first step; v2 still serves; the audit log says why;
4. a deployment of v4 is killed (SIGKILL) mid-canary; the next run reconciles (the canary is
   removed, v2 serves all traffic) and then rolls v4 out to promotion.

The steps run through the same package functions the DAG's tasks call, with bake windows of a
couple of seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.model_fixture import build_model_dir, make_records

REPO = Path(__file__).resolve().parents[2]
ROWS_PER_REQUEST = 40
BAD_SHIFT = 6.0  # logit shift of the bad model: its probabilities crowd near 1


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deploy_environment(backend: str, base: Path, tracking_uri: str) -> dict[str, str]:
    """Settings for one scenario: its own model name, namespace, run dir, lake and router port."""
    suffix = uuid.uuid4().hex[:8]
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLOPS_MODEL_NAME": f"churn-canary-{suffix}",
        "MLOPS_LAKE_URI": (base / "lake").as_uri(),
        "MLOPS_RUN_DIR": str(base / "run"),
        "MLOPS_PREDICTION_LOG_DIR": str(base / "predictions"),
        "MLOPS_ROUTER_PORT": str(free_port()),
        "MLOPS_ROUTER_BIND": "127.0.0.1",
        "MLOPS_DEPLOY_BACKEND": backend,
        "MLOPS_DEPLOY_NAMESPACE": f"mlops-test-{suffix}",
        # Not tests/e2e/conftest.py's org.mlops.test label: its session cleanup removes every object
        # carrying it, a concurrent session's included. This scenario removes its own namespace.
        "MLOPS_DEPLOY_EXTRA_LABELS": json.dumps({"org.mlops.e2e": "canary"}),
        "MLOPS_DEPLOY_STEPS": "5,25,50,100",
        "MLOPS_DEPLOY_BAKE_SECONDS": "2",
        "MLOPS_DEPLOY_MAX_BAKE_SECONDS": "60",
        "MLOPS_DEPLOY_POKE_SECONDS": "0.5",
        "MLOPS_DEPLOY_MIN_REQUESTS": "5",
        # Enough rows that two samples of one distribution stay far below the PSI limit (0.2).
        "MLOPS_DEPLOY_MIN_ROWS": "300",
        "MLOPS_DEPLOY_CHECK_INTERVAL_MS": "300",
        "MLOPS_DEPLOY_READY_TIMEOUT_SECONDS": "180",
        "MLOPS_DEPLOY_STOP_TIMEOUT_SECONDS": "15",
        # A loaded CI machine makes latencies noisy; the scenario is about errors and shift.
        "MLOPS_DEPLOY_P95_SLACK_MS": "250",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "NO_PROXY": "*",
        "no_proxy": "*",
    }


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "good": build_model_dir(root / "good"),
        "bad": build_model_dir(root / "bad", shift=BAD_SHIFT),
    }


def register(client: Any, model_name: str, model_dir: Path) -> str:
    """Log ``model_dir``'s booster as training does and register it (tagged with its digest)."""
    import mlflow
    import mlflow.xgboost
    from mlflow.models import Model

    from mlops_pipeline.registry.lineage import register_version

    model = Model.load(str(model_dir))
    booster = mlflow.xgboost.load_model(str(model_dir))
    mlflow.set_experiment("deploy-tests")
    with mlflow.start_run() as run:
        info = mlflow.xgboost.log_model(
            booster, name="model", signature=model.signature, metadata=model.metadata, model_format="ubj"
        )
    version = register_version(client, model_name, info, run.info.run_id, tags={"flavor": "xgboost"}, description="test")
    return str(version.version)


@dataclass
class Client:
    """Steady traffic through the router from a thread; every failure is kept for the assertion."""

    url: str
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    versions: Counter = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Client:
        self.thread = threading.Thread(target=self._run, name="steady-client", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        seed = 0
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                seed += 1
                try:
                    response = http.post(
                        f"{self.url}/predict",
                        json={"records": make_records(ROWS_PER_REQUEST, seed=seed % 500)},
                        headers={"X-Traffic-Source": "e2e-client"},
                    )
                    if response.status_code == 200:
                        self.versions[response.json()["model_version"]] += 1
                    else:
                        self.failures.append(f"HTTP {response.status_code}: {response.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                self.requests += 1
                time.sleep(0.02)

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=60)


def served_versions(url: str, requests: int = 20) -> Counter:
    served: Counter = Counter()
    with httpx.Client(timeout=30) as http:
        for seed in range(requests):
            response = http.post(f"{url}/predict", json={"records": make_records(2, seed=seed)})
            assert response.status_code == 200, response.text
            served[response.json()["model_version"]] += 1
    return served


def audit_events(deployment_id: str | None = None) -> list[Any]:
    from mlops_pipeline.deploy.audit import AuditLog
    from mlops_pipeline.storage import open_lake

    return AuditLog(open_lake()).events(deployment_id=deployment_id)


@contextmanager
def deployment_env(backend: str, base: Path, tracking_uri: str, **overrides: str) -> Iterator[dict[str, str]]:
    """The scenario's environment for ``backend`` (plus ``overrides``) applied to this process, settings
    re-read; afterwards the namespace is torn down and (docker) its model images removed."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.backends import get_backend

    env = {**deploy_environment(backend, base, tracking_uri), **overrides}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        try:
            yield env
        finally:
            try:
                deployed = get_backend()
                deployed.teardown()
                if deployed.kind == "docker":
                    remove_model_images(deployed.client, env["MLOPS_MODEL_NAME"])  # type: ignore[attr-defined]
            finally:
                get_settings.cache_clear()


@pytest.fixture(scope="module")
def scenario_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of one backend's scenario, applied to this process (settings re-read)."""
    backend = request.param
    server = request.getfixturevalue("mlflow_server")
    with deployment_env(backend, tmp_path_factory.mktemp(f"canary-{backend}"), server.uri) as env:
        yield env


def remove_model_images(client: Any, model_name: str) -> None:
    """The scenario's model images (the serving base they share is kept)."""
    from mlops_pipeline.deploy.images import model_image_tag

    repository = model_image_tag(model_name, "1").split(":")[0]
    for image in client.images.list(name=repository):
        for tag in image.tags:
            try:
                client.images.remove(tag)
            except Exception as exc:  # in use by a container someone else started from it
                print(f"kept {tag}: {exc}")


def run_scenario(env: dict[str, str], model_dirs: dict[str, Path]) -> dict[str, float]:
    """The whole scenario; returns how long each part took (seconds)."""
    from mlops_pipeline.deploy.backends import CANARY, STABLE
    from mlops_pipeline.deploy.rollout import Deployer, run_deployment
    from mlops_pipeline.registry.aliases import CHALLENGER, CHAMPION, set_challenger, version_for_alias

    timings: dict[str, float] = {}
    deployer = Deployer.open("test:e2e")
    client, name = deployer.client, deployer.model_name
    versions = {
        "1": register(client, name, model_dirs["good"]),
        "2": register(client, name, model_dirs["good"]),
        "3": register(client, name, model_dirs["bad"]),
        "4": register(client, name, model_dirs["good"]),
    }
    assert versions == {"1": "1", "2": "2", "3": "3", "4": "4"}

    def alias(which: str) -> str | None:
        found = version_for_alias(client, name, which)
        return None if found is None else str(found.version)

    def tags(version: str) -> dict[str, str]:
        return dict(client.get_model_version(name, version).tags or {})

    # 1. v1: the first deployment, straight to stable and champion ------------------------------
    started = time.monotonic()
    set_challenger(client, name, "1")
    first = run_deployment("deploy", deployer=deployer)
    timings["first_deploy"] = time.monotonic() - started
    assert first["outcome"] == "deployed", first
    assert alias(CHAMPION) == "1" and alias(CHALLENGER) is None
    url = deployer.backend.router().url  # type: ignore[union-attr]
    assert url == f"http://127.0.0.1:{env['MLOPS_ROUTER_PORT']}"
    assert served_versions(url) == {"1": 20}

    steady = Client(url).start()
    try:
        # 2. v2: every step, then promotion -----------------------------------------------------
        started = time.monotonic()
        set_challenger(client, name, "2")
        second = run_deployment("deploy", deployer=deployer)
        timings["canary_promote"] = time.monotonic() - started
        assert second["outcome"] == "promoted", second
        assert alias(CHAMPION) == "2" and alias(CHALLENGER) is None
        assert tags("2")["deploy_status"] == "promoted" and tags("2")["previous_champion"] == "1"
        assert tags("1")["deploy_status"] == "retired"
        events = audit_events(second["plan"]["deployment_id"])
        assert [e.details["percent"] for e in events if e.event == "traffic_shifted"] == [5, 25, 50, 100]
        assert [e.details["percent"] for e in events if e.event == "analysis_passed"] == [5, 25, 50, 100]
        assert events[-1].event == "promoted"
        servers = [s for s in deployer.backend.servers() if s.running]
        assert [(s.role, s.version) for s in servers] == [(STABLE, "2")]

        # 3. v3 is bad: rolled back at the first step -------------------------------------------
        started = time.monotonic()
        set_challenger(client, name, "3")
        third = run_deployment("deploy", deployer=deployer)
        timings["canary_rollback"] = time.monotonic() - started
        assert third["outcome"] == "rolled_back", third
        assert "prediction shift PSI" in third["reason"] and "at 5%" in third["reason"]
        assert alias(CHAMPION) == "2" and alias(CHALLENGER) is None
        assert tags("3")["deploy_status"] == "rolled_back" and "PSI" in tags("3")["deploy_reason"]
        events = audit_events(third["plan"]["deployment_id"])
        assert [e.details["percent"] for e in events if e.event == "traffic_shifted"] == [5]
        failed = [e for e in events if e.event == "analysis_failed"]
        assert len(failed) == 1 and "prediction shift PSI" in failed[0].reason
        assert events[-1].event == "rolled_back" and events[-1].reason == failed[0].reason
        assert [(s.role, s.version) for s in deployer.backend.servers() if s.running] == [(STABLE, "2")]
        assert set(served_versions(url)) == {"2"}

        # 4. a deployment of v4 killed mid-canary; the next run heals, then finishes the job ----
        started = time.monotonic()
        set_challenger(client, name, "4")
        killed = kill_mid_canary(deployer)
        timings["killed_deploy"] = time.monotonic() - started
        assert killed == "4"
        left = [(s.role, s.version) for s in deployer.backend.servers() if s.running]
        assert (CANARY, "4") in left, left

        started = time.monotonic()
        healed: dict[str, Any] = {}

        def check_reconciled(step: str, info: dict[str, Any]) -> None:
            if step == "reconciled":
                healed.update(info)
                assert [(s.role, s.version) for s in deployer.backend.servers() if s.running] == [(STABLE, "2")]
                weights = deployer.router().weights()
                assert weights == {STABLE: 100, CANARY: 0}, weights
                assert tags("4")["deploy_status"] == "interrupted"

        fourth = run_deployment("deploy", deployer=deployer, on_step=check_reconciled)
        timings["reconcile_and_promote"] = time.monotonic() - started
        assert any("interrupted deployment" in action for action in healed["actions"]), healed
        assert fourth["outcome"] == "promoted", fourth
        assert alias(CHAMPION) == "4"
        assert [e.event for e in audit_events() if e.event in ("canary_removed", "reconciled")] == [
            "canary_removed",
            "reconciled",
        ]
    finally:
        steady.finish()

    assert steady.failures == [], f"{len(steady.failures)} of {steady.requests} client requests failed: {steady.failures[:5]}"
    assert steady.requests > 100 and {"1", "2", "4"} <= set(steady.versions), steady.versions
    assert steady.versions["3"] > 0  # the bad canary did get its 5 %, and was caught there
    logs = list(Path(env["MLOPS_PREDICTION_LOG_DIR"]).glob("ds=*/*.jsonl"))
    assert logs, "no prediction log under MLOPS_PREDICTION_LOG_DIR"
    return timings


def kill_mid_canary(deployer: Any, timeout: float = 300.0) -> str:
    """Start ``python -m mlops_pipeline.deploy deploy`` and SIGKILL it once the canary takes traffic."""
    from mlops_pipeline.deploy.backends import CANARY

    process = subprocess.Popen(
        [sys.executable, "-m", "mlops_pipeline.deploy", "--actor", "test:e2e-killed", "deploy"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            shifted = [e for e in audit_events() if e.event == "traffic_shifted" and e.actor == "test:e2e-killed"]
            if any(e.details["percent"] >= 25 for e in shifted):
                if deployer.router().weights()[CANARY] > 0:
                    return str(shifted[-1].version)
            if process.poll() is not None:
                raise AssertionError(f"the deployment ended before it could be killed:\n{process.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
            time.sleep(0.2)
        raise AssertionError("the killed deployment never reached the 25% step")
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)  # the deploy process only: its servers live on
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
