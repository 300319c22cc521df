from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SERVING_SRC = REPO / "serving"
if str(SERVING_SRC) not in sys.path:
    sys.path.insert(0, str(SERVING_SRC))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from .model_fixture import build_model_dir  # noqa: E402


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def xgb_model_dir(model_root: Path) -> Path:
    return build_model_dir(model_root / "xgb", "xgboost")


@pytest.fixture(scope="session")
def sklearn_model_dir(model_root: Path) -> Path:
    return build_model_dir(model_root / "sklearn", "sklearn")


@pytest.fixture(scope="session")
def bad_model_dir(model_root: Path) -> Path:
    return build_model_dir(model_root / "bad", "xgboost", shift=6.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_file: Path

    def output(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def start_server(
    tmp_path: Path,
    model_dir: Path,
    log_dir: Path | None,
    extra_env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> ServerProcess:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "PROMETHEUS_"))}
    env.update(
        PYTHONPATH=str(SERVING_SRC),
        PYTHONDONTWRITEBYTECODE="1",
        MLOPS_MODEL_DIR=str(model_dir),
        MLOPS_SERVING_HOST="127.0.0.1",
        MLOPS_SERVING_PORT=str(port),
    )
    if log_dir is not None:
        env["MLOPS_PREDICTION_LOG_DIR"] = str(log_dir)
    env.update(extra_env or {})
    log_file = tmp_path / f"server-{port}.log"
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlops_serving"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log_file)
    if wait_ready:
        wait_until_ready(server)
    return server


def wait_until_ready(server: ServerProcess, timeout: float = 120.0) -> ServerProcess:
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited early ({server.proc.returncode}):\n{server.output()}")
        try:
            if httpx.get(server.url + "/ready", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"server not ready after {timeout}s:\n{server.output()}")
        time.sleep(0.1)


@dataclass
class ServerPool:
    """Real server processes started together (start-up is mostly imports: overlap it)."""

    live: ServerProcess
    live_log_dir: Path
    sigterm: ServerProcess
    sigterm_log_dir: Path
    unwritable: ServerProcess
    unwritable_log_dir: Path


@pytest.fixture(scope="package", autouse=True)
def _launch_servers_early(request: pytest.FixtureRequest) -> None:
    """Start the real servers with the first test of this package when any test needs them:
    their start-up (mostly imports) then overlaps the in-process tests."""
    if any("server_pool" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("server_pool_started")


@pytest.fixture(scope="package")
def server_pool_started(
    tmp_path_factory: pytest.TempPathFactory, xgb_model_dir: Path
) -> Iterator[ServerPool]:
    tmp = tmp_path_factory.mktemp("servers")
    blocker = tmp / "not-a-directory"
    blocker.write_text("a regular file: nothing can be created below it, not even by root\n")
    dirs = {"live": tmp / "live-log", "sigterm": tmp / "sigterm-log", "unwritable": blocker / "predictions"}
    live = start_server(
        tmp,
        xgb_model_dir,
        dirs["live"],
        {"MLOPS_SERVING_MAX_BODY_BYTES": "200000", "MLOPS_SERVING_MAX_RECORDS": "500"},
        wait_ready=False,
    )
    sigterm = start_server(
        tmp,
        xgb_model_dir,
        dirs["sigterm"],
        {"MLOPS_PREDICTION_LOG_FLUSH_SECONDS": "30", "MLOPS_SERVING_WORKERS": "2"},
        wait_ready=False,
    )
    unwritable = start_server(tmp, xgb_model_dir, dirs["unwritable"], wait_ready=False)
    try:
        yield ServerPool(live, dirs["live"], sigterm, dirs["sigterm"], unwritable, dirs["unwritable"])
    finally:
        for server in (live, sigterm, unwritable):
            server.stop()


@pytest.fixture(scope="package")
def server_pool(server_pool_started: ServerPool) -> ServerPool:
    for server in (server_pool_started.live, server_pool_started.sigterm, server_pool_started.unwritable):
        wait_until_ready(server)
    return server_pool_started


@pytest.fixture(scope="package")
def live_server(server_pool: ServerPool) -> ServerProcess:
    """A real `python -m mlops_serving` process (small body/record limits to test them)."""
    return server_pool.live


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
