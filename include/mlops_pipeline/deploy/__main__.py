"""``python -m mlops_pipeline.deploy``: what is deployed, and the local housekeeping around it.

    status                       aliases, servers, router slots (JSON)
    audit    [--deployment ID]   the audit log, oldest first (JSON lines)
    teardown                     stop every server and the router of the namespace

Deploying, promoting and rolling back are runs of the ``mlops_deploy`` DAG: trigger it from the
Airflow UI, the REST API or ``airflow dags trigger mlops_deploy --conf '{"action": "deploy"}'``.
Settings as for the DAG (``MLOPS_DEPLOY_*``, ``MLOPS_ROUTER_*``, ``MLFLOW_TRACKING_URI``...).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

DAG_ACTIONS = ("deploy", "promote", "rollback", "reconcile")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except Exception as exc:  # an expected failure: one line naming it, not a traceback
        from mlops_pipeline.deploy.backends import BackendError
        from mlops_pipeline.deploy.haproxy import HAProxyRuntimeError
        from mlops_pipeline.registry.client import RegistryUnavailable

        if not isinstance(exc, BackendError | HAProxyRuntimeError | RegistryUnavailable):
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _run(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_pipeline.deploy", description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status")
    audit = commands.add_parser("audit")
    audit.add_argument("--deployment", default=None)
    audit.add_argument("--since", default=None, help="ISO time")
    commands.add_parser("teardown")
    given = list(sys.argv[1:] if argv is None else argv)
    if given and given[0] in DAG_ACTIONS:  # say where it runs now, not just "invalid choice"
        parser.error(
            f"{given[0]!r} runs in Airflow, as the mlops_deploy DAG (Params: action, version): trigger it from the UI, "
            """the REST API or `airflow dags trigger mlops_deploy --conf '{"action": "deploy"}'`"""
        )
    args = parser.parse_args(given)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    if args.command == "audit":
        from mlops_pipeline.config import get_settings
        from mlops_pipeline.deploy.audit import AuditLog
        from mlops_pipeline.storage import open_lake

        for event in AuditLog(open_lake()).iter_events(
            model_name=get_settings().registered_model_name, deployment_id=args.deployment, since=args.since
        ):
            print(json.dumps(event.to_dict(), sort_keys=True))
        return 0
    if args.command == "teardown":
        from mlops_pipeline.deploy.backends import get_backend

        get_backend().teardown()
        return 0

    from mlops_pipeline.deploy.rollout import Deployer

    print(json.dumps(Deployer.open().status(), indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
