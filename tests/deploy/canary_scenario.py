"""What the deploy tests share: a scenario's settings, its models, a steady client, and the real DAG.

Every deployment in these tests is a run of the ``mlops_deploy`` DAG: ``airflow dags test`` in a
subprocess, in the session's throwaway Airflow (``airflow_stack``), with the scenario's own settings
(:class:`DeployDag`). A test that breaks something mid-rollout watches the run from outside (the
audit log says when a traffic step began) and acts then (:meth:`RunningDag.wait_for_step`).

The models: ``good`` and ``good_resampled`` are two honest models of the same population (the same
recipe fitted on different samples: different trees, different predictions row by row, the same
quality), so a canary of one against a stable of the other is a real comparison; ``bad`` is
deliberately broken (its predictions pushed far from the others).
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving import model_fixture
from tests.serving.model_fixture import build_model_dir, make_records

REPO = Path(__file__).resolve().parents[2]
ROWS_PER_REQUEST = 40
BAD_SHIFT = 6.0  # logit shift of the bad model: its probabilities crowd near 1
RESAMPLED_SEED = 1234  # the sample the second good model is fitted on (the base one uses 42)
FINAL_EVENTS = ("deployed", "promoted", "rolled_back_to", "rolled_back", "rollback_deferred", "nothing_to_deploy")
DAG_ACTOR = "airflow:mlops_deploy/"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deploy_environment(backend: str, base: Path, tracking_uri: str) -> dict[str, str]:
    """Settings for one scenario: its own model name, namespace, run dir, lake and router port.

    Every canary threshold is the production default: at least 50 canary requests and 200 predicted
    rows per side before a check counts, the 5xx, p95 (x1.5 or +50 ms) and PSI (0.2) limits. Only
    the clocks are shorter, so that a step ends when the traffic it needs has come rather than
    after production's two minutes."""
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
        # Production bakes each step for at least 120 s. The steady client brings the 50 canary
        # requests the checks need within ~40 s at 5 % (about 25 requests a second) and within a few
        # seconds at the later steps, so 3 s is never what ends a step: its traffic is.
        "MLOPS_DEPLOY_BAKE_SECONDS": "3",
        # Production waits up to 900 s for that traffic. 240 s is several times what the 5 % step
        # needs on a loaded machine, and the good canaries' analyses are asserted to have judged
        # every check on data (none skipped for lack of traffic).
        "MLOPS_DEPLOY_MAX_BAKE_SECONDS": "240",
        # Production looks every 30 s; 1 s notices a finished bake at once.
        "MLOPS_DEPLOY_POKE_SECONDS": "1",
        # The production default is a shadow window, then the canary: these scenarios are about the
        # canary's steps, and the shadow's window needs labelled traffic most of them do not send.
        # tests/e2e/test_release_strategies.py takes the default.
        "MLOPS_DEPLOY_STRATEGY": "canary",
        # Retries are exercised (a restarted router, an unreachable daemon or registry); production's
        # 30 s between them is not what is tested.
        "MLOPS_DEPLOY_RETRY_DELAY_SECONDS": "2",
        # HAProxy's health checks every 300 ms instead of 1 s: a re-pointed slot takes traffic after
        # its checks pass, which then takes a second instead of three.
        "MLOPS_DEPLOY_CHECK_INTERVAL_MS": "300",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "NO_PROXY": "*",
        "no_proxy": "*",
    }


# -- models ---------------------------------------------------------------------------------------
def build_resampled_model_dir(path: Path, seed: int = RESAMPLED_SEED) -> Path:
    """The base model's recipe fitted on another sample of the same population: ``seed`` draws the
    rows and their labels. Saved like :func:`build_model_dir` (signature, contract, digest)."""
    records = make_records(1500, seed=seed, nulls=True)
    return build_fitted_model_dir(path, records, model_fixture._labels(records, seed=seed), f"resampled-{seed}")


def build_better_model_dir(path: Path, seed: int = 777) -> Path:
    """The recipe fitted on four times the rows (6000): on the same population it ranks and
    calibrates better than the 1500-row models (Brier about 0.17 against 0.18 on the client's rows)."""
    records = make_records(6000, seed=seed, nulls=True)
    return build_fitted_model_dir(path, records, model_fixture._labels(records, seed=seed), f"better-{seed}")


def build_swapped_model_dir(path: Path, seed: int = 4321) -> Path:
    """A worse model with the same prediction distribution: fitted with ``monthly_charges`` mirrored
    (m -> 130 - m, total charges scaled along), so customers with high and low charges get each
    other's scores. Charges are uniform on [10, 120], so the scores' distribution stays that of a
    good model (PSI about 0.03 against one), while on labelled rows it is clearly worse (AUC about 0.70
    against 0.81)."""
    records = make_records(1500, seed=seed, nulls=True)
    labels = model_fixture._labels(records, seed=seed)  # from the true charges
    swapped = []
    for record in records:
        mirrored = round(130.0 - record["monthly_charges"], 2)
        swapped.append({**record, "monthly_charges": mirrored, "total_charges": round(record["total_charges"] * mirrored / record["monthly_charges"], 2)})
    return build_fitted_model_dir(path, swapped, labels, f"swapped-{seed}")


def build_fitted_model_dir(path: Path, records: list[dict[str, Any]], labels: Any, what: str) -> Path:
    """An xgboost model of the fixture's recipe fitted on ``records`` and ``labels``, saved like
    :func:`build_model_dir` (signature, contract, digest)."""
    import hashlib

    import mlflow.xgboost
    import pandas as pd

    booster = model_fixture._train_booster(records, labels, 0.0)
    mlflow.xgboost.save_model(
        booster,
        str(path),
        signature=model_fixture._signature(),
        input_example=pd.DataFrame.from_records(records[:3], columns=model_fixture.FEATURE_ORDER),
        metadata={"mlops": model_fixture.mlops_spec()},
        model_format="ubj",
        pip_requirements=["xgboost", "numpy"],
    )
    info = {
        "model_name": model_fixture.MODEL_NAME,
        "model_version": "1",
        "run_id": hashlib.sha1(f"xgboost-{what}".encode()).hexdigest()[:32],
        "artifact_sha256": hashlib.sha256((path / "model.ubj").read_bytes()).hexdigest(),
    }
    (path / "model_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return path


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "good": build_model_dir(root / "good"),
        "good_resampled": build_resampled_model_dir(root / "good-resampled"),
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


# -- traffic ----------------------------------------------------------------------------------------
CLIENT_SEEDS = 2000  # the client's requests cycle through this many record sets: 80,000 labelled rows
CLIENT_ENTITIES = 500  # ... sent on behalf of this many entities (X-Entity-Id), each a few times a minute


def client_labels() -> dict[str, Any]:
    """The labels of every record :class:`Client` ``(with_ids=True)`` sends, per event day
    (``{day: frame of id, event time, target}``): drawn by the fixture's labelling, the same the
    models were fitted on."""
    import pandas as pd

    frames = []
    for seed in range(CLIENT_SEEDS):
        records = make_records(ROWS_PER_REQUEST, seed=seed, with_ids=True)
        frames.append(pd.DataFrame({
            model_fixture.ID_COLUMN: [r[model_fixture.ID_COLUMN] for r in records],
            model_fixture.TIME_COLUMN: pd.to_datetime([r[model_fixture.TIME_COLUMN] for r in records], utc=True),
            model_fixture.TARGET: model_fixture._labels(records, seed=seed),
        }))  # fmt: skip
    labels = pd.concat(frames, ignore_index=True)
    return {str(day): frame.reset_index(drop=True) for day, frame in labels.groupby(labels[model_fixture.TIME_COLUMN].dt.date)}


@dataclass
class Client:
    """Steady traffic through the router from a thread; every failure is kept for the assertion.
    ``with_ids``: the records carry the dataset's id and event time, whose labels
    :func:`client_labels` gives, and each request names one of :data:`CLIENT_ENTITIES` entities
    (customer groups) in ``X-Entity-Id``; ``answers`` keeps (wall-clock time, entity, version)."""

    url: str
    with_ids: bool = False
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    versions: Counter = field(default_factory=Counter)
    answers: list[tuple[float, str, str]] = field(default_factory=list)
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
                entity = f"group-{seed % CLIENT_ENTITIES}"
                headers = {"X-Traffic-Source": "e2e-client", **({"X-Entity-Id": entity} if self.with_ids else {})}
                try:
                    response = http.post(
                        f"{self.url}/predict",
                        json={"records": make_records(ROWS_PER_REQUEST, seed=seed % CLIENT_SEEDS, with_ids=self.with_ids)},
                        headers=headers,
                    )
                    if response.status_code == 200:
                        version = response.json()["model_version"]
                        self.versions[version] += 1
                        if self.with_ids:
                            self.answers.append((time.time(), entity, version))
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


def audit_events(deployment_id: str | None = None, since: str | None = None) -> list[Any]:
    from mlops_pipeline.deploy.audit import AuditLog
    from mlops_pipeline.storage import open_lake

    return AuditLog(open_lake()).events(deployment_id=deployment_id, since=since)


# -- the DAG ----------------------------------------------------------------------------------------
@dataclass
class DagResult:
    """A finished ``dags test`` run of mlops_deploy: exit code, output, and its audit events."""

    returncode: int
    output: str
    events: list[Any]
    seconds: float

    @property
    def deployment_id(self) -> str | None:
        planned = [e for e in self.events if e.event in ("deployment_planned", "nothing_to_deploy")]
        return planned[-1].deployment_id if planned else None

    @property
    def final(self) -> Any | None:
        """The event that says how the deployment ended (None when it never got that far)."""
        ended = [e for e in self.events if e.event in FINAL_EVENTS]
        return ended[-1] if ended else None

    @property
    def outcome(self) -> str | None:
        return self.final.event if self.final is not None else None

    @property
    def reason(self) -> str:
        return self.final.reason if self.final is not None else ""

    def of(self, event: str) -> list[Any]:
        return [e for e in self.events if e.event == event]

    def describe(self) -> str:
        return f"exit {self.returncode}, events {[e.event for e in self.events]}\n{self.output[-6000:]}"


class RunningDag:
    """A ``dags test`` of mlops_deploy still running (its own process group)."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, since: str, started: float) -> None:
        self.process = process
        self.log_path = log_path
        self.since = since
        self.started = started

    def events(self) -> list[Any]:
        return [e for e in audit_events(since=self.since) if e.actor.startswith(DAG_ACTOR)]

    def wait_for_step(self, percent: int, timeout: float = 600.0) -> Any:
        """Block until this run has shifted ``percent`` % of the traffic to its canary; that event."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shifted = [e for e in self.events() if e.event == "traffic_shifted" and e.details.get("percent") == percent]
            if shifted:
                return shifted[-1]
            if self.process.poll() is not None:
                raise AssertionError(f"the run ended before it shifted {percent}%:\n{self.output()[-6000:]}")
            time.sleep(0.2)
        raise AssertionError(f"the run did not shift {percent}% within {timeout:.0f}s:\n{self.output()[-6000:]}")

    def kill(self) -> None:
        """SIGKILL the run's whole process (the serving processes it started live on: their own sessions)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float = 900.0) -> DagResult:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the run did not end within {timeout:.0f}s:\n{self.output()[-6000:]}") from None
        return DagResult(self.process.returncode, self.output(), self.events(), time.monotonic() - self.started)


@dataclass
class DeployDag:
    """Runs of the real ``mlops_deploy`` DAG with ``airflow dags test``: its tasks in one process
    (reschedule-mode bake sensors included), against the session's throwaway Airflow and the
    scenario's settings (``env``: registry, lake, backend, router, namespace)."""

    stack_env: dict[str, str]
    env: dict[str, str]
    logs: Path

    def start(self, action: str = "deploy", version: str | None = None, **extra_env: str) -> RunningDag:
        since = datetime.now(UTC).isoformat()
        logical_date = datetime.now(UTC).isoformat(timespec="microseconds")  # one new run per call
        conf = json.dumps({"action": action, "version": version})
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"dags-test-{action}-{uuid.uuid4().hex[:6]}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "mlops_dev.services", "exec", "--",
                 "airflow", "dags", "test", "mlops_deploy", logical_date, "--conf", conf],
                env={**self.stack_env, **self.env, **extra_env},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        return RunningDag(process, log_path, since, time.monotonic())

    def run(self, action: str = "deploy", version: str | None = None, *, timeout: float = 900.0, **extra_env: str) -> DagResult:
        return self.start(action, version, **extra_env).wait(timeout)

    def run_acting_at(
        self, percent: int, act: Callable[[], Any], action: str = "deploy", *, timeout: float = 900.0
    ) -> tuple[DagResult, dict[str, Any]]:
        """A run during which ``act()`` is called once the canary takes ``percent`` % of the traffic."""
        running = self.start(action)
        try:
            running.wait_for_step(percent, timeout=timeout)
            acted = {"at": time.monotonic()}
            acted["result"] = act()
        except BaseException:
            running.kill()
            raise
        return running.wait(timeout), acted


@contextmanager
def deployment_env(backend: str, base: Path, tracking_uri: str, **overrides: str | None) -> Iterator[dict[str, str]]:
    """The scenario's environment for ``backend`` (plus ``overrides``; None leaves a variable at its
    production default) applied to this process, settings re-read; afterwards the namespace is torn
    down and (docker) its model images removed."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.backends import get_backend

    merged = {**deploy_environment(backend, base, tracking_uri), **overrides}
    env = {key: value for key, value in merged.items() if value is not None}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in merged.items():
            if value is None:
                patch.delenv(key, raising=False)
            else:
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


def router_url() -> str:
    from mlops_pipeline.deploy.backends import get_backend

    endpoint = get_backend().router()
    assert endpoint is not None, "no router runs"
    return endpoint.url


def router_weights() -> dict[str, int]:
    """The router's weights now, over HAProxy's runtime API (the scenario's settings)."""
    from mlops_pipeline.deploy.backends import get_backend
    from mlops_pipeline.deploy.router import Router

    backend = get_backend()
    endpoint = backend.router()
    assert endpoint is not None, "no router runs"
    return Router(backend, endpoint).weights()


def running_servers() -> list[tuple[str, str]]:
    from mlops_pipeline.deploy.backends import get_backend

    return [(s.role, s.version) for s in get_backend().servers() if s.running]


def checks_without_data(result: DagResult) -> list[str]:
    """The checks of this run's passed analyses that were skipped for lack of traffic (none expected)."""
    return [
        f"{e.details['percent']}%: {check['name']} {check['status']}"
        for e in result.of("analysis_passed")
        for check in e.details["checks"]
        if check["status"] != "passed"
    ]
