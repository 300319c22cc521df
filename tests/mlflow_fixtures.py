"""Shared fixtures: a real ``mlflow server`` and a temp lake of validated synthetic days.

Load with ``pytest_plugins = ["tests.mlflow_fixtures"]`` (root conftest) or import the fixtures
into a package's conftest. Both kinds of loading share one server and one lake per test session:
the expensive objects live in a module-level cache, so a fixture that is visible through several
conftest files still starts one server.

* ``mlflow_server``: ``mlflow server`` on a free port with a temp SQLite backend and artifact root,
  served over HTTP like the production one; stopped at the end of the session.
* ``validated_lake``: ``LAKE_DAYS`` days (from ``LAKE_FIRST_DAY``) taken through the real ingest
  steps (extract + expectation suite) into a temp lake; built once per session, treat it as read-only.
* ``mlops_env``: points the settings at both (``MLOPS_LAKE_URI``, ``MLFLOW_TRACKING_URI``) with a
  registered model name unique to the test, so tests never see each other's aliases, and a small
  hyperparameter search (:func:`small_search_environment`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

LAKE_FIRST_DAY = date(2026, 1, 1)
LAKE_DAYS = 10
MLFLOW_START_TIMEOUT = 180.0  # a few seconds on an idle machine; generous for a busy CI host

_SESSION_CACHE: dict[str, object] = {}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quiet_mlflow_environment() -> dict[str, str]:
    """Environment for MLflow clients and servers in tests: no telemetry, short HTTP retries."""
    return {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
        "NO_PROXY": "*",
        "no_proxy": "*",
    }


def small_search_environment() -> dict[str, str]:
    """A hyperparameter search of a few trials on two folds: the search runs for real, in seconds."""
    return {"MLOPS_TRAIN_TUNE_TRIALS": "3", "MLOPS_TRAIN_TUNE_FOLDS": "2"}


@dataclass
class MlflowServer:
    uri: str
    port: int
    root: Path
    process: subprocess.Popen = field(repr=False)
    log_path: Path = field(repr=False)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def launch_mlflow_server(root: Path) -> MlflowServer:
    """Start ``mlflow server`` with SQLite + local artifacts under ``root`` on a free port; no waiting."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    log_path = root / "server.log"
    # No background job runner: it starts several worker processes the registry does not need.
    env = {**os.environ, **quiet_mlflow_environment(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                mlflow_bin, "server",
                "--host", "127.0.0.1", "--port", str(port),
                "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination", str(root / "artifacts"),
                "--serve-artifacts", "--workers", "1",
            ],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    return MlflowServer(f"http://127.0.0.1:{port}", port, root, process, log_path)


def wait_until_healthy(server: MlflowServer, timeout: float = MLFLOW_START_TIMEOUT) -> MlflowServer:
    deadline = time.monotonic() + timeout
    while not _healthy(f"{server.uri}/health"):
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = server.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"mlflow server on port {server.port} did not become healthy; log tail:\n{tail}")
        time.sleep(0.5)
    return server


def start_mlflow_server(root: Path, timeout: float = MLFLOW_START_TIMEOUT) -> MlflowServer:
    return wait_until_healthy(launch_mlflow_server(root), timeout)


@dataclass(frozen=True)
class ValidatedLake:
    uri: str
    days: list[str]

    @property
    def first_day(self) -> date:
        return date.fromisoformat(self.days[0])

    @property
    def day_after(self) -> date:
        """The as-of date that makes the whole lake the training window."""
        return date.fromisoformat(self.days[-1]) + timedelta(days=1)


def build_validated_lake(root: Path, first_day: date = LAKE_FIRST_DAY, days: int = LAKE_DAYS) -> ValidatedLake:
    """Run the real extract + validate steps for ``days`` synthetic days into a lake at ``root``."""
    from mlops_pipeline.config import Settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.ingest import Window, extract, validate
    from mlops_pipeline.storage import open_lake

    settings = Settings(lake_uri=str(root), dataset="churn")
    spec = load_dataset_spec("churn")
    lake = open_lake(settings)
    built = []
    for offset in range(days):
        start = datetime.combine(first_day + timedelta(days=offset), datetime.min.time(), tzinfo=UTC)
        window = Window(start, start + timedelta(days=1))
        extract(lake, spec, window, settings)
        validate(lake, spec, window, build_docs=False)
        built.append(window.ds)
    return ValidatedLake(lake.uri, built)


@pytest.fixture(scope="session")
def mlflow_server_launched(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> MlflowServer:
    """The session's server process, possibly still booting (request it early to overlap other setup)."""
    server = _SESSION_CACHE.get("mlflow_server")
    if server is None:
        for key, value in quiet_mlflow_environment().items():
            os.environ.setdefault(key, value)
        server = launch_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
        _SESSION_CACHE["mlflow_server"] = server
        request.addfinalizer(server.stop)
    assert isinstance(server, MlflowServer)
    return server


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_launched: MlflowServer) -> MlflowServer:
    """A healthy ``mlflow server`` for the whole session (HTTP, SQLite backend, served artifacts)."""
    return wait_until_healthy(mlflow_server_launched)


@pytest.fixture(scope="session")
def validated_lake(tmp_path_factory: pytest.TempPathFactory) -> ValidatedLake:
    lake = _SESSION_CACHE.get("validated_lake")
    if lake is None:
        lake = build_validated_lake(tmp_path_factory.mktemp("lake"))
        _SESSION_CACHE["validated_lake"] = lake
    assert isinstance(lake, ValidatedLake)
    return lake


@dataclass(frozen=True)
class MlopsEnv:
    lake: ValidatedLake
    tracking_uri: str
    model_name: str


def _clear_settings_caches() -> None:
    from mlops_pipeline.config import get_settings

    get_settings.cache_clear()
    get_settings.cache_clear()


def _point_settings_at(monkeypatch: pytest.MonkeyPatch, server: MlflowServer, lake: ValidatedLake) -> MlopsEnv:
    model_name = f"churn-test-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MLOPS_LAKE_URI", lake.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("MLOPS_MODEL_NAME", model_name)
    monkeypatch.setenv("MLOPS_DATASET", "churn")
    for key, value in {**quiet_mlflow_environment(), **small_search_environment()}.items():
        monkeypatch.setenv(key, value)
    _clear_settings_caches()
    return MlopsEnv(lake, server.uri, model_name)


@pytest.fixture
def mlops_env(
    monkeypatch: pytest.MonkeyPatch,
    mlflow_server_launched: MlflowServer,  # first: the server boots while the lake is built
    validated_lake: ValidatedLake,
    mlflow_server: MlflowServer,
) -> Iterator[MlopsEnv]:
    """Settings pointing at the session's lake and MLflow server, with a model name of this test's own."""
    import mlflow

    previous_uri = mlflow.get_tracking_uri()
    yield _point_settings_at(monkeypatch, mlflow_server, validated_lake)
    mlflow.set_tracking_uri(previous_uri)
    monkeypatch.undo()
    _clear_settings_caches()


@pytest.fixture(scope="module")
def mlops_env_module(
    mlflow_server_launched: MlflowServer, validated_lake: ValidatedLake, mlflow_server: MlflowServer
) -> Iterator[MlopsEnv]:
    """Like ``mlops_env`` for a whole test module (one model name shared by the module's tests)."""
    import mlflow

    previous_uri = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _point_settings_at(monkeypatch, mlflow_server, validated_lake)
    mlflow.set_tracking_uri(previous_uri)
    _clear_settings_caches()
