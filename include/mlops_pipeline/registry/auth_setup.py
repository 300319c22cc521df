"""Setting up an ``mlops-auth`` MLflow server (:mod:`mlops_pipeline.registry.auth_app`): its config and its users.

``python -m mlops_pipeline.registry.auth_setup`` ::

    serve [MLFLOW SERVER ARGS...]   create the users' database when missing, write basic-auth's config
                                    (mode 0600), then become ``mlflow server --app-name mlops-auth ...``
    users                           create (or reset the password of) each DAG's MLflow user, as the
                                    server's administrator

Both read the environment, as docker-compose.yaml's ``mlflow`` and ``airflow-init`` services set it:

- ``MLOPS_MLFLOW_AUTH_DATABASE_URI``: where basic-auth keeps users and grants (``serve``);
- ``MLFLOW_AUTH_ADMIN_USERNAME`` (default ``admin``) and ``MLFLOW_AUTH_ADMIN_PASSWORD``: the
  administrator MLflow creates at its first start (``serve``), who then creates the others (``users``);
- ``MLOPS_MLFLOW_<IDENTITY>_USER`` (default: the identity) and ``MLOPS_MLFLOW_<IDENTITY>_PASSWORD`` for
  each of :data:`IDENTITIES`: the same variables ``airflow_settings.yaml`` builds the connections
  ``mlflow_<identity>`` from, so the DAGs log in with what the server knows (``users``);
- ``MLFLOW_TRACKING_URI``: the server (``users``).

The password of a user that exists already is set again from the environment: the secrets file
stays the one source of truth when a password is rotated there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

IDENTITIES = ("train", "deploy", "monitor", "score", "reader")
DEFAULT_ADMIN = "admin"
AUTH_DATABASE_VARIABLE = "MLOPS_MLFLOW_AUTH_DATABASE_URI"


class AuthSetupError(RuntimeError):
    """A setting is missing or the server refused: the message names which."""


def auth_config_text(database_uri: str, admin_username: str = DEFAULT_ADMIN) -> str:
    """basic-auth's config: users and grants in ``database_uri``; every authenticated user may READ
    what no grant names. A model's creator (the training identity) has MANAGE on it, and mlops_train
    grants the deploy identity MANAGE on it; only the deploy identity may move ``@champion``."""
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {admin_username}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def identity_passwords(env: Mapping[str, str]) -> dict[str, str]:
    """``{user name: password}`` of every identity, from ``env``; a missing password is an error naming
    its variable (the DAG of that identity could not log in)."""
    passwords: dict[str, str] = {}
    missing = []
    for identity in IDENTITIES:
        variable = f"MLOPS_MLFLOW_{identity.upper()}_PASSWORD"
        password = env.get(variable, "")
        if not password:
            missing.append(variable)
            continue
        passwords[env.get(f"MLOPS_MLFLOW_{identity.upper()}_USER") or identity] = password
    if missing:
        raise AuthSetupError(f"MLflow users need passwords: set {', '.join(missing)} (the Airflow connections "
                             "mlflow_<identity> are built from the same variables)")
    return passwords


def create_users(tracking_uri: str, admin: str, admin_password: str, passwords: Mapping[str, str],
                 timeout: float = 60.0) -> list[str]:
    """Create each user of ``passwords`` as the server's administrator; one that exists gets its
    password set again. Returns the names created (the others were updated)."""
    import httpx

    created = []
    with httpx.Client(base_url=tracking_uri.rstrip("/"), auth=(admin, admin_password), timeout=timeout) as client:
        for name, password in passwords.items():
            answer = client.post("/api/2.0/mlflow/users/create", json={"username": name, "password": password})
            if answer.status_code == 200:
                created.append(name)
                continue
            if "RESOURCE_ALREADY_EXISTS" in answer.text:
                answer = client.patch("/api/2.0/mlflow/users/update-password",
                                      json={"username": name, "password": password})
                if answer.status_code == 200:
                    continue
            raise AuthSetupError(f"MLflow at {tracking_uri} refused setting up user {name!r} as {admin!r}: "
                                 f"HTTP {answer.status_code} {answer.text[:300]}")
    return created


@contextlib.contextmanager
def maintenance_cursor(database_uri: str) -> Iterator[Any]:
    """An autocommit cursor on the maintenance database (``postgres``) of the PostgreSQL server
    ``database_uri`` points at, as its user."""
    import psycopg2

    parts = urllib.parse.urlsplit(database_uri)
    connection = psycopg2.connect(
        host=parts.hostname, port=parts.port, dbname="postgres",
        user=urllib.parse.unquote(parts.username or ""), password=urllib.parse.unquote(parts.password or ""),
        connect_timeout=10,
    )
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def ensure_database(database_uri: str) -> None:
    """Create the PostgreSQL database ``database_uri`` names when it does not exist. Other backends
    create their own store."""
    if not urllib.parse.urlsplit(database_uri).scheme.startswith("postgresql"):
        return
    from psycopg2 import sql

    database = urllib.parse.urlsplit(database_uri).path.lstrip("/")
    with maintenance_cursor(database_uri) as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def write_private(path: Path, text: str) -> None:
    """``text`` to ``path``, mode 0600, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    staging.replace(path)


def serve(server_args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Become ``mlflow server --app-name mlops-auth <server_args>``, its users' database and config ready."""
    env = dict(os.environ if env is None else env)
    database_uri = env.get(AUTH_DATABASE_VARIABLE, "")
    if not database_uri:
        raise AuthSetupError(f"set {AUTH_DATABASE_VARIABLE}: the database of MLflow's users and grants")
    if not env.get("MLFLOW_AUTH_ADMIN_PASSWORD"):
        raise AuthSetupError("set MLFLOW_AUTH_ADMIN_PASSWORD: MLflow creates its administrator with it at the first start")
    ensure_database(database_uri)
    config = Path(tempfile.mkdtemp(prefix="mlflow-auth-")) / "basic_auth.ini"
    write_private(config, auth_config_text(database_uri, env.get("MLFLOW_AUTH_ADMIN_USERNAME") or DEFAULT_ADMIN))
    env["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
    mlflow = str(Path(sys.executable).parent / "mlflow")
    argv = [mlflow if Path(mlflow).exists() else "mlflow", "server", "--app-name", "mlops-auth", *server_args]
    sys.stdout.flush()
    os.execvpe(argv[0], argv, env)


def users(env: Mapping[str, str] | None = None, wait: float = 300.0) -> list[str]:
    """Set up every identity's user on the server ``MLFLOW_TRACKING_URI`` names, once it answers."""
    import httpx

    env = os.environ if env is None else env
    tracking_uri = env.get("MLFLOW_TRACKING_URI", "")
    admin_password = env.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")
    if not tracking_uri or not admin_password:
        raise AuthSetupError("set MLFLOW_TRACKING_URI and MLFLOW_AUTH_ADMIN_PASSWORD: the server and its administrator")
    passwords = identity_passwords(env)
    deadline = time.monotonic() + wait
    while True:
        try:
            if httpx.get(f"{tracking_uri.rstrip('/')}/health", timeout=10).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AuthSetupError(f"MLflow at {tracking_uri} did not answer /health within {wait:.0f} s")
        time.sleep(2)
    return create_users(tracking_uri, env.get("MLFLOW_AUTH_ADMIN_USERNAME") or DEFAULT_ADMIN, admin_password, passwords)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_pipeline.registry.auth_setup", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="become `mlflow server --app-name mlops-auth ARGS...`")
    commands.add_parser("users", help="create or update each DAG's MLflow user")
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "serve":
            serve(rest)
        elif rest:
            parser.error(f"unexpected arguments: {' '.join(rest)}")
        else:
            created = users()
            print(f"MLflow users ready ({', '.join(created) or 'none new'} created; the others' passwords set again)")
    except AuthSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
