"""Apply ``airflow_settings.yaml`` (the Astro CLI format) to a plain Airflow, idempotently.

    python -m mlops_pipeline.orchestration.airflow_settings apply airflow_settings.yaml
    python -m mlops_pipeline.orchestration.airflow_settings check airflow_settings.yaml   # parse + resolve only

Values may reference the environment as ``${NAME}`` or ``${NAME:-default}``, so secrets stay out of
git. A connection or variable that references an unset variable with no default is skipped (and
said so): e.g. without ``AWS_ACCESS_KEY_ID`` there is no ``aws_default`` connection and S3 access
falls back to the standard AWS credential chain.

Secrets must be references with no default (``${NAME}`` or ``${NAME:-}``): a connection's
``conn_password``, an extra whose key names a secret (password, secret, token, api key, private
key) and a variable whose name does. A literal there is refused before anything is applied.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# A secret's whole value: one reference whose default, if any, is empty.
_SECRET_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-)?\}$")
# Names that hold secrets (close to Airflow's own list of sensitive field names).
_SECRET_NAME = re.compile(r"passw(or)?d|secret|token|api_?key|private_?key|credential|authorization", re.IGNORECASE)


class UnsetReference(LookupError):
    pass


class LiteralSecret(ValueError):
    """A secret written into the settings file instead of referenced from the environment."""


def expand(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in strings (recursively in lists and dicts)."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if env.get(name):
                return env[name]
            if default is not None:
                return default
            raise UnsetReference(name)

        return _REFERENCE.sub(substitute, value)
    if isinstance(value, list):
        return [expand(v, env) for v in value]
    if isinstance(value, dict):
        return {k: expand(v, env) for k, v in value.items()}
    return value


def literal_secrets(section: Mapping[str, Any]) -> list[str]:
    """Where the (unexpanded) ``airflow`` section holds a secret that is not an environment reference."""

    def literal(value: Any) -> bool:
        return value not in (None, "") and not (isinstance(value, str) and _SECRET_REFERENCE.match(value))

    found = []
    for index, item in enumerate(section.get("connections") or []):
        if not isinstance(item, dict):
            continue
        where = f"connections[{index}] ({item.get('conn_id')})"
        if literal(item.get("conn_password")):
            found.append(f"{where}.conn_password")
        extra = item.get("conn_extra")
        if isinstance(extra, dict):
            found += [f"{where}.conn_extra.{key}" for key, value in extra.items() if _SECRET_NAME.search(str(key)) and literal(value)]
        elif isinstance(extra, str) and _SECRET_NAME.search(extra) and not _REFERENCE.search(extra):
            found.append(f"{where}.conn_extra")
    for index, item in enumerate(section.get("variables") or []):
        if isinstance(item, dict) and _SECRET_NAME.search(str(item.get("variable_name"))) and literal(item.get("variable_value")):
            found.append(f"variables[{index}] ({item.get('variable_name')})")
    return found


def load(path: Path, environ: Mapping[str, str] | None = None) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """The resolved settings and a list of what was skipped (and why)."""
    document = yaml.safe_load(path.read_text()) or {}
    section = document.get("airflow", {}) or {}
    unknown = set(section) - {"connections", "pools", "variables"}
    if unknown:
        raise ValueError(f"{path}: unknown keys under 'airflow': {sorted(unknown)}")
    literals = literal_secrets(section)
    if literals:
        raise LiteralSecret(
            f"{path}: secrets must be environment references with no default (${{NAME}}), not literals: "
            + ", ".join(literals)
        )
    resolved: dict[str, list[dict[str, Any]]] = {"connections": [], "pools": [], "variables": []}
    skipped: list[str] = []
    for kind, key in (("connections", "conn_id"), ("pools", "pool_name"), ("variables", "variable_name")):
        for index, item in enumerate(section.get(kind) or []):
            if not isinstance(item, dict) or key not in item:
                raise ValueError(f"{path}: airflow.{kind}[{index}] must be a mapping with '{key}'")
            try:
                resolved[kind].append(expand(item, environ))
            except UnsetReference as exc:
                skipped.append(f"{kind[:-1]} {item[key]!r}: ${{{exc.args[0]}}} is not set")
    return resolved, skipped


def apply(path: Path) -> list[str]:
    # The metadata-DB models: this runs as an admin command, not inside a task (airflow.sdk is for tasks).
    from airflow.models.connection import Connection
    from airflow.models.pool import Pool
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    resolved, skipped = load(path)
    done = []
    with create_session() as session:
        for item in resolved["connections"]:
            extra = item.get("conn_extra")
            if isinstance(extra, dict):  # an unset optional reference means "not configured"
                extra = {key: value for key, value in extra.items() if value != ""}
            connection = Connection(
                conn_id=item["conn_id"],
                conn_type=item.get("conn_type") or "generic",
                description=item.get("description"),
                host=item.get("conn_host"),
                schema=item.get("conn_schema"),
                login=item.get("conn_login"),
                password=item.get("conn_password"),
                port=int(item["conn_port"]) if item.get("conn_port") not in (None, "") else None,
                extra=json.dumps(extra) if isinstance(extra, dict) else extra,
            )
            session.query(Connection).filter(Connection.conn_id == connection.conn_id).delete()
            session.add(connection)
            done.append(f"connection {item['conn_id']}")
        session.commit()
    for item in resolved["pools"]:
        Pool.create_or_update_pool(
            name=item["pool_name"],
            slots=int(item.get("pool_slot", 1)),
            description=item.get("pool_description") or "",
            include_deferred=bool(item.get("include_deferred", False)),
        )
        done.append(f"pool {item['pool_name']}")
    for item in resolved["variables"]:
        value = item.get("variable_value")
        Variable.set(item["variable_name"], value if isinstance(value, str) else json.dumps(value), description=item.get("description"))
        done.append(f"variable {item['variable_name']}")
    return done + [f"skipped {s}" for s in skipped]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_pipeline.orchestration.airflow_settings")
    parser.add_argument("command", choices=["apply", "check"])
    parser.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if args.command == "check":
        resolved, skipped = load(args.path)
        print(json.dumps({k: [i.get("conn_id") or i.get("pool_name") or i.get("variable_name") for i in v] for k, v in resolved.items()}))
        for line in skipped:
            print(f"skipped {line}")
        return 0
    for line in apply(args.path):
        print(f"airflow_settings: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
