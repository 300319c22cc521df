"""The embedded stack on one machine: a project-local Airflow (and later MLflow) as real processes.

``python -m mlops_dev.services`` is what ``make`` calls::

    env                      print the environment as shell exports
    exec -- CMD ...          run CMD (e.g. ``airflow dags test ...``) in the project's environment
    setup                    migrate the Airflow DB and apply airflow_settings.yaml (idempotent)
    start [NAME ...]         start services in the background (pidfiles and logs under .run/)
    stop  [NAME ...]         stop them (SIGTERM, then SIGKILL after a grace period)
    status                   which are running

``mlflow`` is a real ``mlflow server`` (SQLite backend, artifacts under ``<project>/mlruns``,
served over HTTP) on ``MLOPS_MLFLOW_PORT`` (default 5000). Airflow runs with SQLite and the LocalExecutor under ``AIRFLOW_HOME`` (default ``<project>/.airflow``),
reading DAGs from ``<project>/dags``. Values already in the environment win over these defaults, so
a user can point the same commands at Postgres or another executor.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlops_pipeline.config import get_settings, project_home


def run_dir() -> Path:
    """Pidfiles and service logs: ``MLOPS_RUN_DIR`` or ``<project>/.run`` (tests use their own)."""
    return Path(os.environ.get("MLOPS_RUN_DIR") or project_home() / ".run")


def mlflow_dir() -> Path:
    """Embedded MLflow server state: SQLite backend and local artifact root (gitignored)."""
    path = Path(os.environ.get("MLOPS_MLFLOW_DIR") or project_home() / "mlruns")
    path.mkdir(parents=True, exist_ok=True)
    return path


def airflow_home() -> Path:
    configured = get_settings().airflow_home
    return Path(configured) if configured else project_home() / ".airflow"


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
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{settings.airflow_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
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


def services() -> dict[str, Service]:
    settings = get_settings()
    airflow = str(Path(sys.executable).parent / "airflow")
    return {
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
                "--serve-artifacts", "--workers", "2",
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


def setup(settings_file: Path | None = None) -> None:
    """Migrate the metadata DB and apply airflow_settings.yaml; safe to run again."""
    env = airflow_environment()
    airflow_home().mkdir(parents=True, exist_ok=True)
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    settings_file = settings_file or project_home() / "airflow_settings.yaml"
    if settings_file.is_file():
        subprocess.run([sys.executable, "-m", "mlops_pipeline.orchestration.airflow_settings", "apply", str(settings_file)], env=env, check=True)


def start(names: list[str], wait: float = 120.0) -> None:
    env = airflow_environment()
    (run_dir() / "logs").mkdir(parents=True, exist_ok=True)
    table = services()
    for name in names:
        if name not in table:
            raise SystemExit(f"unknown service {name!r}; known: {sorted(table)}")
        if running_pid(name):
            continue
        service = table[name]
        with open(log_path(name), "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "mlops_dev.services", "supervise", name],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        _pidfile(name).write_text(str(process.pid))
    deadline = time.monotonic() + wait
    for name in names:
        service = table[name]
        while service.ready_url and not _http_ok(service.ready_url):
            if not running_pid(name):
                tail = log_path(name).read_text(errors="replace")[-3000:]
                raise SystemExit(f"service {name} exited during start; last log lines:\n{tail}")
            if time.monotonic() > deadline:
                raise SystemExit(f"service {name} not ready at {service.ready_url} after {wait:.0f}s; see {log_path(name)}")
            time.sleep(1)


def supervise(name: str, max_restarts: int = 5, window: float = 600.0) -> int:
    """Run one service and restart it when it exits unexpectedly (what ``restart: always`` does in
    compose): e.g. the scheduler exits on a lost SQLite write race. SIGTERM stops it for good."""
    service = services()[name]
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_term(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    restarts: list[float] = []
    while True:
        child = subprocess.Popen(service.argv)
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
    args = parser.parse_args(argv)
    if args.command == "env":
        for key, value in sorted(airflow_environment().items()):
            if key.startswith(("AIRFLOW", "MLOPS", "MLFLOW")):
                print(f"export {key}={json.dumps(value)}")
    elif args.command == "exec":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            parser.error("exec needs a command")
        os.execvpe(command[0], command, airflow_environment())
    elif args.command == "setup":
        setup()
    elif args.command == "start":
        start(args.names or AIRFLOW_SERVICES)
    elif args.command == "stop":
        stop(args.names or [*reversed(list(services()))])
    elif args.command == "status":
        for name in services():
            pid = running_pid(name)
            print(f"{name:14s} {'running pid ' + str(pid) if pid else 'stopped'}")
    elif args.command == "supervise":
        return supervise(args.name)
    elif args.command == "login":
        print(f"admin / {admin_password() or '(not generated yet: start the api-server)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
