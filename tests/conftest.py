"""Shared fixtures: an isolated lake per test, and a throwaway project-local Airflow per session."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest_plugins = [
    p for p in ("tests.mlflow_fixtures", "tests.reliability.report") if (REPO / (p.replace(".", "/") + ".py")).is_file()
]


@pytest.fixture(autouse=True)
def no_dataset_scope_leaks() -> Iterator[None]:
    """A test that leaves ``MLOPS_DATASET_SCOPE`` set (what a task's first callback sets in its own
    process) would point every later test of the session at another dataset's settings: it errors,
    naming itself, and the variable is removed."""
    before = os.environ.get("MLOPS_DATASET_SCOPE")
    yield
    after = os.environ.get("MLOPS_DATASET_SCOPE")
    if after is not None and after != before:
        os.environ.pop("MLOPS_DATASET_SCOPE", None)
        from mlops_pipeline.config import get_settings

        get_settings.cache_clear()
        pytest.fail(f"the test left MLOPS_DATASET_SCOPE={after} in the environment of the session")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def day_window(day: date):
    from mlops_pipeline.ingest import Window

    start = datetime.combine(day, time(0), tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


@pytest.fixture
def lake_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """MLOPS_LAKE_URI pointed at an empty temp folder for this test (settings re-read)."""
    from mlops_pipeline.config import get_settings

    uri = (tmp_path / "lake").as_uri()
    monkeypatch.setenv("MLOPS_LAKE_URI", uri)
    for name in ("MLOPS_DATASET", "MLOPS_BAD_BATCH_DAYS", "MLOPS_COVARIATE_DRIFT_FROM", "MLOPS_CONCEPT_DRIFT_FROM"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield uri
    get_settings.cache_clear()


@pytest.fixture
def lake(lake_uri: str):
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.storage import open_lake

    return open_lake(get_settings())


@dataclass
class AirflowStack:
    """A project-local Airflow in temp folders: its own metadata database, lake, run dir and ports."""

    env: dict[str, str]
    base: Path

    @property
    def lake_dir(self) -> Path:
        return self.base / "lake"

    @property
    def database_url(self) -> str:
        return self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]

    def run(self, *argv: str, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlops_dev.services", *argv],
            env=self.env, capture_output=True, text=True, timeout=timeout, check=check,
        )

    def airflow(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.run("exec", "--", "airflow", *argv, timeout=timeout)

    def api(self):
        from mlops_dev.airflow_api import AirflowAPI

        passwords = json.loads((Path(self.env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated").read_text())
        return AirflowAPI(f"http://127.0.0.1:{self.env['MLOPS_AIRFLOW_PORT']}", password=passwords["admin"])


# The environment pytest started in, before any fixture changed it: where the project's embedded
# PostgreSQL lives (its run dir and port).
PROJECT_ENVIRON = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}


@dataclass
class AirflowDatabases:
    """Airflow metadata databases of this session on the project's embedded PostgreSQL (``make setup``
    starts it; the first :meth:`create` does when it is not). Each is a copy of the migrated template:
    no migration per database. Dropped at the end of the session."""

    created: list[str]

    def _services(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "mlops_dev.services", *argv],
            env={**PROJECT_ENVIRON, "MLOPS_HOME": str(REPO)}, capture_output=True, text=True, timeout=timeout, check=False,
        )
        assert done.returncode == 0, f"services {' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    def create(self) -> str:
        """A new database; its SQLAlchemy URL (for ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``)."""
        name = f"airflow_test_{os.getpid()}_{len(self.created) + 1}"
        url = self._services("db", "create", name).stdout.strip().splitlines()[-1]  # starts the server if needed
        if not self.created:
            self.drop_abandoned()
        self.created.append(name)
        return url

    def drop_abandoned(self) -> None:
        """Drop the databases of test sessions that ended without dropping theirs (killed)."""
        for line in self._services("db", "list").stdout.splitlines():
            name = line.split("\t", 1)[0]
            match = re.fullmatch(r"airflow_test_(\d+)_\d+", name)
            if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
                self._services("db", "drop", name)

    def drop_all(self) -> None:
        while self.created:
            self._services("db", "drop", self.created.pop())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def airflow_databases() -> Iterator[AirflowDatabases]:
    databases = AirflowDatabases(created=[])
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory, airflow_databases: AirflowDatabases) -> Iterator[AirflowStack]:
    base = tmp_path_factory.mktemp("airflow-stack")
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("AIRFLOW__", "MLOPS_")) and name != "MLOPS_HOME":
            env.pop(name)
    env.update(
        {
            "MLOPS_HOME": str(REPO),
            "AIRFLOW_HOME": str(base / "home"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_databases.create(),
            "MLOPS_RUN_DIR": str(base / "run"),
            "MLOPS_LAKE_URI": str(base / "lake"),
            "MLOPS_AIRFLOW_PORT": str(free_port()),
        }
    )
    from tests.mlflow_fixtures import small_search_environment

    env.update(small_search_environment())  # trainings on this stack search a few trials: real, and quick
    stack = AirflowStack(env=env, base=base)
    done = stack.run("setup", timeout=300)
    assert done.returncode == 0, f"airflow setup failed:\n{done.stdout}\n{done.stderr}"
    yield stack
    stack.run("stop", timeout=120)
