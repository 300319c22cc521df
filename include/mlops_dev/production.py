"""The production shape started for real on one machine: CeleryExecutor on Redis, S3, MLflow on Postgres.

``python -m mlops_dev.production`` ::

    up [--mlflow-database NAME]      start the stack in the background; its addresses go to
                                     ``<run dir>/production.json`` (mode 0600: it holds the S3 keys)
    down [--drop-mlflow-database]    stop every process of it (and their children), workers first
    env                              print the stack's environment as shell exports
    restart NAME                     start a worker, an Airflow service, Redis or the S3 server (``s3``,
                                     the front; moto behind it keeps its data) again

What runs, each a process with a pidfile and a log under the run dir (``MLOPS_RUN_DIR``):

- **Redis** from Debian's ``redis-server`` (installed with ``serving/docker/apt-install.sh`` when
  missing), on a free port on 127.0.0.1 with a generated password: the Celery broker. Its queue is
  kept in an append-only file under ``<run dir>/redis``, so a restart of the broker loses no task.
- **An S3-compatible server**: moto in server mode (``moto_server``, process ``moto``) on a port of
  its own, behind a TCP front (:mod:`mlops_dev.tcp_front`, process ``s3``) on the stack's S3 endpoint
  (``s3_endpoint_url``: the lake, the task logs, MLflow's artifacts). The compose file uses MinIO;
  MinIO's binaries come from its own download site, which a machine with only PyPI and Debian cannot
  reach, and the S3 API the project uses (buckets, objects, conditional puts) is the same. The front
  exists because moto keeps its buckets in memory: stopping moto would wipe the lake, the task logs
  and the model files, where stopping a MinIO loses nothing. Stopping the front (``s3``) is, to every
  client, the S3 server gone (connections cut, new ones refused) while moto keeps the data; ``restart
  s3`` brings the server back, as a supervisor would start MinIO again.
- **MLflow** (``mlflow server --app-name mlops-auth``): backend store in a database of its own
  (``mlflow``) on the PostgreSQL of Airflow's metadata, artifacts in ``s3://<bucket>-mlflow/artifacts``,
  served through the server (``--serve-artifacts``), so clients need no S3 credentials. With
  authentication: users ``train``, ``deploy``, ``monitor``, ``score`` and ``reader`` with generated
  passwords (the Airflow connections ``mlflow_<name>``), an ``admin`` for operators (its password is in
  the description only), users and grants in database ``mlflow_auth``. Every user may read; a model's
  creator (``train``) manages it and grants ``deploy`` MANAGE (a promotion deletes ``@challenger``);
  only ``deploy`` may move ``@champion``.
- **Airflow** with ``AIRFLOW__CORE__EXECUTOR=CeleryExecutor``: api-server, scheduler, dag-processor and
  triggerer (supervised as :mod:`mlops_dev.services` does), and two ``airflow celery worker``
  processes, ``worker1@<host>`` and ``worker2@<host>``, both on the default queue. ``worker2`` is the
  serving host's worker: it alone also listens to ``MLOPS_SERVING_QUEUE`` (``serving``), where
  ``mlops_deploy`` (the Docker engine, the router) and ``mlops_monitor`` (the servers' prediction logs)
  run. Each worker records its own name as the task instances' hostname (:func:`worker_hostname`), as
  two machines would.
  Task logs go to S3 (remote logging), so the UI shows them whichever worker ran the task.
- **The lake** on S3: ``MLOPS_LAKE_URI=s3://<bucket>/lake`` with ``MLOPS_S3_ENDPOINT_URL``; Airflow
  tasks read the credentials from the ``aws_default`` connection that ``airflow_settings.yaml``
  builds from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (generated per stack, never stored
  outside the run dir).

The setting names are those of ``docker-compose.yaml`` (``AIRFLOW__CELERY__BROKER_URL``,
``AIRFLOW__CELERY__RESULT_BACKEND``, ``AIRFLOW__LOGGING__REMOTE_*``, ``MLOPS_LAKE_URI``,
``MLOPS_S3_ENDPOINT_URL``, ``MLFLOW_TRACKING_URI``, ``AWS_*``), so this stack runs the documented
configuration. The metadata DB is ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` when set (the tests give a
copy of the migrated template), else the embedded PostgreSQL's ``airflow`` database (``make setup``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops_dev import services

from mlops_pipeline.config import get_settings, project_home
from mlops_pipeline.registry import auth_setup

WORKERS = ("worker1", "worker2")
SERVING_WORKER = "worker2"  # the one on the serving host: it also takes the serving queue
DEFAULT_SERVING_QUEUE = "serving"
AIRFLOW_SERVICES = services.AIRFLOW_SERVICES
# Stopped in this order, each stage together: workers first (they finish or give back their tasks
# while the scheduler and the api-server still answer), the broker and the stores last.
STOP_STAGES = [list(WORKERS), list(reversed(AIRFLOW_SERVICES)), ["mlflow", "s3", "redis"], ["moto"]]
STOP_ORDER = [name for stage in STOP_STAGES for name in stage]
# Not moto: it keeps the buckets in memory, a restart would empty them ("s3" is the front before it).
RESTARTABLE = [*WORKERS, *AIRFLOW_SERVICES, "redis", "s3"]
DESCRIPTION_FILE = "production.json"
DEFAULT_BUCKET = "mlops"
# MLflow's users: one per DAG that talks to it and one for the Model ops view (airflow_settings.yaml
# builds their Airflow connections, mlflow_<name>, from MLOPS_MLFLOW_<NAME>_USER/_PASSWORD).
MLFLOW_IDENTITIES = auth_setup.IDENTITIES
MLFLOW_ADMIN = auth_setup.DEFAULT_ADMIN


def worker_hostname() -> str:
    """``AIRFLOW__CORE__HOSTNAME_CALLABLE`` of the workers: the worker's own name (``MLOPS_WORKER_NAME``)
    in front of the machine's, so two workers on one machine are told apart as two hosts would be.
    Not ``worker1@host`` (Celery's node name): Airflow builds log URLs from the hostname."""
    host = socket.getfqdn()
    name = os.environ.get("MLOPS_WORKER_NAME")
    return f"{name}-{host}" if name else host


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _description_path() -> Path:
    return services.run_dir() / DESCRIPTION_FILE


def _launch(name: str, argv: list[str], env: dict[str, str]) -> None:
    """Start ``argv`` in a session of its own (so :func:`services.stop` ends it with its children),
    with the pidfile and log where :mod:`mlops_dev.services` keeps them."""
    log = services.log_path(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    (services.run_dir() / f"{name}.pid").write_text(str(process.pid))


def _wait(name: str, ready: Callable[[], bool], deadline: float) -> None:
    while not ready():
        if not services.running_pid(name):
            tail = services.log_path(name).read_text(errors="replace")[-3000:]
            raise SystemExit(f"{name} exited during start; last log lines:\n{tail}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} not ready in time; see {services.log_path(name)}")
        time.sleep(0.5)


def _logs(name: str, line: str) -> Callable[[], bool]:
    """Ready once the log says so (a Celery worker's ``<node> ready.``: it consumes from then on)."""
    return lambda: line in services.log_path(name).read_text(errors="replace")


# --- Redis ---------------------------------------------------------------------------------------


def redis_server_binary() -> str:
    found = subprocess.run(["sh", "-c", "command -v redis-server"], capture_output=True, text=True, check=False).stdout.strip()
    if found:
        return found
    script = project_home() / "serving" / "docker" / "apt-install.sh"
    subprocess.run(["bash", str(script), "--check", "redis-server", "redis-server"], check=True)
    return "redis-server"


def start_redis(port: int, password: str) -> None:
    folder = services.run_dir() / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "redis.conf"
    # A config file, not arguments: the password stays out of `ps`. The append-only file keeps the
    # queue across a restart of the broker: without it the task messages sent and not yet taken by a
    # worker are gone, and the scheduler re-sends them only after task_queued_timeout (600 s by
    # default). `everysec`: a crash of the machine may lose the last second of sends, a restart none
    # (Redis writes the file out on SIGTERM). No RDB snapshots: the AOF is the one copy.
    auth_setup.write_private(config, "\n".join([
        "bind 127.0.0.1", f"port {port}", "protected-mode yes", f"requirepass {password}",
        f"dir {folder}", 'save ""', "appendonly yes", "appendfsync everysec", "daemonize no", "",
    ]))
    _launch("redis", [redis_server_binary(), str(config)], dict(os.environ))


def _redis_ready(port: int, password: str) -> Callable[[], bool]:
    def ready() -> bool:
        import redis

        try:
            return bool(redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2).ping())
        except redis.RedisError:
            return False

    return ready


# --- S3 (moto behind a TCP front) ----------------------------------------------------------------


def start_moto(port: int) -> None:
    moto = Path(sys.executable).parent / "moto_server"
    _launch("moto", [str(moto), "-H", "127.0.0.1", "-p", str(port)], dict(os.environ))


def start_s3_front(endpoint: str, store: str) -> None:
    """The stack's S3 endpoint: a TCP front forwarding to moto (``store``), its own process ``s3``."""
    listen, target = urllib.parse.urlsplit(endpoint).netloc, urllib.parse.urlsplit(store).netloc
    _launch("s3", [sys.executable, "-m", "mlops_dev.tcp_front", "--listen", listen, "--to", target], dict(os.environ))


def _s3_ready(endpoint: str) -> Callable[[], bool]:
    """moto answers through the front."""
    return lambda: services._http_ok(f"{endpoint}/moto-api/")


def create_buckets(endpoint: str, credentials: dict[str, str], buckets: list[str]) -> None:
    import boto3

    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name=credentials["AWS_DEFAULT_REGION"],
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"], aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
    )
    for bucket in buckets:
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)


# --- PostgreSQL: the metadata DB, the Celery result backend, MLflow's database --------------------


def with_database(database_url: str, database: str, scheme: str | None = None) -> str:
    parts = urllib.parse.urlsplit(database_url)
    return urllib.parse.urlunsplit((scheme or parts.scheme, parts.netloc, f"/{database}", "", ""))


def ensure_database(database_url: str, database: str) -> None:
    auth_setup.ensure_database(with_database(database_url, database))


def drop_database(database_url: str, database: str) -> None:
    from psycopg2 import sql

    with auth_setup.maintenance_cursor(database_url) as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


# --- the stack -----------------------------------------------------------------------------------


def stack_environment(description: dict[str, Any]) -> dict[str, str]:
    """The environment every Airflow process of the stack shares: :func:`services.airflow_environment`
    with the production settings on top (the caller's own values still win)."""
    airflow_url = description["airflow_database_url"]
    parts = urllib.parse.urlsplit(airflow_url)
    # The driver named: the SQLAlchemy of the lock takes a bare postgresql:// for psycopg 3, which is
    # not installed (psycopg2 is).
    result_backend = urllib.parse.urlunsplit(("db+postgresql+psycopg2", parts.netloc, parts.path, "", ""))
    bucket = description["bucket"]
    production = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_url,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": description["broker_url"],
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        # Sending a task to Redis may take more than the default second on a busy machine; a timeout
        # there fails the task's queueing.
        "AIRFLOW__CELERY__OPERATION_TIMEOUT": "15",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",  # per worker; Airflow's 16 would crowd a small machine
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{bucket}/airflow-logs",
        "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "aws_default",
        "MLOPS_LAKE_URI": description["lake_uri"],
        "MLOPS_S3_ENDPOINT_URL": description["s3_endpoint_url"],
        "MLFLOW_TRACKING_URI": description["mlflow_tracking_uri"],
        "MLOPS_SERVING_QUEUE": description["serving_queue"],
        **description["credentials"],
        # Each DAG's MLflow identity (its Airflow connection, built by airflow_settings.yaml from these).
        **{f"MLOPS_MLFLOW_{name.upper()}_USER": name for name in description.get("mlflow_auth", {}).get("passwords", {})},
        **{f"MLOPS_MLFLOW_{name.upper()}_PASSWORD": password
           for name, password in description.get("mlflow_auth", {}).get("passwords", {}).items()},
    }
    env = services.airflow_environment()
    env.update({key: value for key, value in production.items() if key not in os.environ})
    return env


def _airflow_database_url() -> str:
    configured = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if configured:
        return configured
    services.setup()  # the embedded PostgreSQL, its migrated `airflow` database
    return services.embedded_database_url(services.AIRFLOW_DATABASE)


def _refuse_if_running() -> None:
    running = [name for name in STOP_ORDER if services.running_pid(name)]
    if running:
        raise SystemExit(f"already running in {services.run_dir()}: {', '.join(running)}; stop it first (down)")


def mlflow_auth_config(description: dict[str, Any]) -> Path:
    """``basic-auth``'s config for the stack's MLflow (mode 0600, beside the description): users and
    grants in a database of their own on the metadata PostgreSQL (:func:`auth_setup.auth_config_text`)."""
    auth = description["mlflow_auth"]
    path = services.run_dir() / "mlflow-auth.ini"
    database_uri = with_database(description["airflow_database_url"], auth["database"])
    auth_setup.write_private(path, auth_setup.auth_config_text(database_uri, auth["admin_user"]))
    return path


def create_mlflow_users(description: dict[str, Any], timeout: float = 60.0) -> None:
    """The stack's MLflow users, as its administrator (one that exists gets this stack's password)."""
    auth = description["mlflow_auth"]
    auth_setup.create_users(description["mlflow_tracking_uri"], auth["admin_user"], auth["admin_password"],
                            auth["passwords"], timeout=timeout)


def up(mlflow_database: str = "mlflow", wait: float = 300.0) -> dict[str, Any]:
    """Start the stack; returns its description. Refused while a process of it runs: its ports and
    generated passwords are those of the description a new start would replace."""
    _refuse_if_running()
    settings = get_settings()
    bucket = os.environ.get("MLOPS_BUCKET", DEFAULT_BUCKET)
    redis_port, s3_port, moto_port = _free_port(), _free_port(), _free_port()
    redis_password = secrets.token_urlsafe(24)
    s3_endpoint = f"http://127.0.0.1:{s3_port}"
    credentials = {
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID") or "mlops" + secrets.token_hex(6),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY") or secrets.token_urlsafe(30),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    airflow_url = _airflow_database_url()
    description: dict[str, Any] = {
        "airflow_url": f"http://127.0.0.1:{settings.airflow_port}",
        "airflow_port": settings.airflow_port,
        "mlflow_port": settings.mlflow_port,
        "airflow_home": str(services.airflow_home()),
        "airflow_database_url": airflow_url,
        "broker_url": f"redis://:{urllib.parse.quote(redis_password, safe='')}@127.0.0.1:{redis_port}/0",
        "s3_endpoint_url": s3_endpoint,
        "s3_store_url": f"http://127.0.0.1:{moto_port}",  # moto itself, behind the endpoint's front
        "bucket": bucket,
        "mlflow_bucket": f"{bucket}-mlflow",
        "lake_uri": f"s3://{bucket}/lake",
        "mlflow_database": mlflow_database,
        "mlflow_tracking_uri": f"http://127.0.0.1:{settings.mlflow_port}",
        "credentials": credentials,
        "workers": {name: f"{name}@{socket.getfqdn()}" for name in WORKERS},
        "serving_queue": os.environ.get("MLOPS_SERVING_QUEUE") or DEFAULT_SERVING_QUEUE,
        "mlflow_auth": {
            "admin_user": MLFLOW_ADMIN,
            "admin_password": secrets.token_urlsafe(24),
            "passwords": {name: secrets.token_urlsafe(18) for name in MLFLOW_IDENTITIES},
            "database": f"{mlflow_database}_auth",
            "secret_key": secrets.token_hex(24),
        },
    }
    default_queue = os.environ.get("AIRFLOW__OPERATORS__DEFAULT_QUEUE", "default")
    description["queues"] = {
        name: [default_queue, description["serving_queue"]] if name == SERVING_WORKER else [default_queue]
        for name in WORKERS
    }
    auth_setup.write_private(_description_path(), json.dumps(description, indent=2))
    deadline = time.monotonic() + wait

    start_redis(redis_port, redis_password)
    start_moto(moto_port)
    start_s3_front(s3_endpoint, description["s3_store_url"])
    ensure_database(airflow_url, mlflow_database)
    auth = description["mlflow_auth"]
    ensure_database(airflow_url, auth["database"])
    mlflow_env = {**dict(os.environ), **credentials, "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
                  "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                  "MLFLOW_AUTH_CONFIG_PATH": str(mlflow_auth_config(description)),
                  "MLFLOW_AUTH_ADMIN_PASSWORD": auth["admin_password"],
                  "MLFLOW_FLASK_SERVER_SECRET_KEY": auth["secret_key"],
                  "MLOPS_MLFLOW_CHAMPION_IDENTITIES": "deploy"}
    _wait("moto", lambda: services._http_ok(f"{description['s3_store_url']}/moto-api/"), deadline)
    _wait("s3", _s3_ready(s3_endpoint), deadline)
    create_buckets(s3_endpoint, credentials, [bucket, f"{bucket}-mlflow"])
    _launch("mlflow", [
        str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "mlops-auth",
        "--host", "127.0.0.1", "--port", str(settings.mlflow_port),
        "--backend-store-uri", with_database(airflow_url, mlflow_database),
        "--artifacts-destination", f"s3://{bucket}-mlflow/artifacts",
        "--serve-artifacts", "--workers", "2",
    ], mlflow_env)

    env = stack_environment(description)
    # airflow.cfg (the shared JWT secret and fernet key) and airflow_settings.yaml: the aws_default
    # connection now carries this stack's S3 endpoint and keys, which the tasks and remote logging use.
    services.apply_settings(env, project_home() / "airflow_settings.yaml")
    for name in AIRFLOW_SERVICES:
        services._spawn(name, env)
    for name in WORKERS:
        start_worker(name, description, env)

    _wait("redis", _redis_ready(redis_port, redis_password), deadline)
    _wait("mlflow", lambda: services._http_ok(f"{description['mlflow_tracking_uri']}/health"), deadline)
    create_mlflow_users(description)
    table = services.services()
    for name in AIRFLOW_SERVICES:
        services._wait_ready(table[name], deadline, wait)
    for name in WORKERS:
        _wait(name, _logs(name, f"{description['workers'][name]} ready."), deadline)
    return description


def start_worker(name: str, description: dict[str, Any], env: dict[str, str] | None = None) -> None:
    """Start Celery worker ``name`` of the stack (at ``up``, or again after it died: ``restart``)."""
    env = env if env is not None else stack_environment(description)
    worker_env = {**env, "MLOPS_WORKER_NAME": name,
                  "AIRFLOW__CORE__HOSTNAME_CALLABLE": "mlops_dev.production.worker_hostname"}
    # --skip-serve-logs: the logs are on S3; two log servers on one machine would want one port.
    _launch(name, [str(Path(sys.executable).parent / "airflow"), "celery", "worker",
                   "--celery-hostname", description["workers"][name],
                   "--queues", ",".join(description["queues"][name]), "--skip-serve-logs"],
            worker_env)


def restart(name: str, wait: float = 300.0) -> None:
    """Start a worker, an Airflow service, Redis or the S3 server's front of the running stack again, after it died or
    was stopped: as a process supervisor (systemd, a container's restart policy) would. What still runs of it is
    stopped first."""
    description = read_description()
    if description is None:
        raise SystemExit(f"no production stack described in {_description_path()}: run `up` first")
    _use_described_ports(description)
    deadline = time.monotonic() + wait
    if services.running_pid(name):
        _stop_together([name])
    if name in WORKERS:
        # The log is appended to: readiness is the next "ready." line after this point.
        seen = services.log_path(name).read_text(errors="replace").count(f"{description['workers'][name]} ready.") \
            if services.log_path(name).exists() else 0
        start_worker(name, description)
        marker = f"{description['workers'][name]} ready."
        _wait(name, lambda: services.log_path(name).read_text(errors="replace").count(marker) > seen, deadline)
    elif name in AIRFLOW_SERVICES:
        services._spawn(name, stack_environment(description))
        services._wait_ready(services.services()[name], deadline, wait)
    elif name == "redis":
        broker = urllib.parse.urlsplit(description["broker_url"])
        password = urllib.parse.unquote(broker.password or "")
        start_redis(int(broker.port or 6379), password)
        _wait("redis", _redis_ready(int(broker.port or 6379), password), deadline)
    elif name == "s3":
        start_s3_front(description["s3_endpoint_url"], description["s3_store_url"])
        _wait("s3", _s3_ready(description["s3_endpoint_url"]), deadline)
    else:
        raise SystemExit(f"restart: {name!r} is not one of {', '.join(RESTARTABLE)}")


def _stop_together(names: list[str], grace: float = 20.0) -> None:
    """SIGTERM to each process group at once, SIGKILL to what still runs after ``grace``: a stage
    takes as long as its slowest process, not the sum (a Celery worker's warm shutdown, MLflow's
    workers). :func:`services.stop` does the same one name at a time."""
    pids = {name: pid for name in names if (pid := services.running_pid(name))}
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(services._alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.3)
    for pid in pids.values():
        if services._alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    services.stop(names)  # the pidfiles; kills any straggler of a process group left behind


def down(drop_mlflow_database: bool = False) -> None:
    """Stop every process of the stack, workers first; each with its children (own session)."""
    description = read_description()
    for stage in STOP_STAGES:
        _stop_together(stage)
    if drop_mlflow_database and description:
        with contextlib.suppress(Exception):  # the server may be gone already: nothing left to drop
            drop_database(description["airflow_database_url"], description["mlflow_database"])
            if "mlflow_auth" in description:
                drop_database(description["airflow_database_url"], description["mlflow_auth"]["database"])


def _use_described_ports(description: dict[str, Any]) -> None:
    """The ports the stack was started with, whatever this shell says."""
    os.environ["MLOPS_AIRFLOW_PORT"] = str(description["airflow_port"])
    os.environ["MLOPS_MLFLOW_PORT"] = str(description["mlflow_port"])
    get_settings.cache_clear()


def read_description() -> dict[str, Any] | None:
    try:
        return json.loads(_description_path().read_text())
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_dev.production", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up")
    start.add_argument("--mlflow-database", default="mlflow")
    start.add_argument("--wait", type=float, default=300.0)
    stop = sub.add_parser("down")
    stop.add_argument("--drop-mlflow-database", action="store_true")
    sub.add_parser("env")
    again = sub.add_parser("restart", help="start a worker, an Airflow service, Redis or the S3 server (its front) "
                                           "of the running stack again")
    again.add_argument("name", choices=RESTARTABLE)
    args = parser.parse_args(argv)
    if args.command == "up":
        _refuse_if_running()  # before the try: a refused start must not stop what runs
        try:
            description = up(args.mlflow_database, args.wait)
        except BaseException:
            down()  # nothing half-started is left behind
            raise
        print(f"production stack up: Airflow {description['airflow_url']}, MLflow {description['mlflow_tracking_uri']}, "
              f"S3 {description['s3_endpoint_url']}, lake {description['lake_uri']}; described in {_description_path()}")
    elif args.command == "down":
        down(args.drop_mlflow_database)
    elif args.command == "restart":
        restart(args.name)
    elif args.command == "env":
        described = read_description()
        if described is None:
            raise SystemExit(f"no production stack described in {_description_path()}: run `up` first")
        _use_described_ports(described)
        for key, value in sorted(stack_environment(described).items()):
            if key.startswith(("AIRFLOW", "MLOPS", "MLFLOW", "AWS_")):
                print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
