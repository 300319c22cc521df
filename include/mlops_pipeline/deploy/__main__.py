"""``python -m mlops_pipeline.deploy``: the deployment steps outside Airflow.

    status                       aliases, servers, router slots (JSON)
    reconcile                    heal an interrupted deployment
    deploy   [--version N]       canary rollout of N (default @challenger); directly when nothing serves
    promote  [--version N]       N (default @challenger) straight to stable and @champion, no canary
    rollback [--version N]       back to N (default: the champion's previous champion)
    audit    [--deployment ID]   the audit log, oldest first (JSON lines)
    teardown                     stop every server and the router of the namespace

Settings as for the DAG (``MLOPS_DEPLOY_*``, ``MLOPS_ROUTER_*``, ``MLFLOW_TRACKING_URI``...). The
bake windows are waited out in this process.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except Exception as exc:  # an expected failure: one line naming it, not a traceback
        from mlops_pipeline.deploy.artifacts import ArtifactError
        from mlops_pipeline.deploy.backends import BackendError
        from mlops_pipeline.deploy.haproxy import HAProxyRuntimeError
        from mlops_pipeline.deploy.images import ImageBuildError
        from mlops_pipeline.deploy.rollout import DeploymentError
        from mlops_pipeline.registry.client import RegistryUnavailable

        expected = (ArtifactError, BackendError, HAProxyRuntimeError, ImageBuildError, DeploymentError, RegistryUnavailable)
        if not isinstance(exc, expected):
            raise
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _run(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_pipeline.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--actor", default=None, help="who is acting, for the audit log (default cli:<user>)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status")
    commands.add_parser("reconcile")
    for name in ("deploy", "promote", "rollback"):
        commands.add_parser(name).add_argument("--version", default=None)
    audit = commands.add_parser("audit")
    audit.add_argument("--deployment", default=None)
    audit.add_argument("--since", default=None, help="ISO time")
    commands.add_parser("teardown")
    args = parser.parse_args(argv)
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

    from mlops_pipeline.deploy.rollout import Deployer, run_deployment

    deployer = Deployer.open(args.actor)
    if args.command == "status":
        result = deployer.status()
    elif args.command == "reconcile":
        result = deployer.reconcile()
    else:
        result = run_deployment(args.command, args.version, deployer=deployer)
    print(json.dumps(result, indent=2, default=str))
    return 1 if result.get("outcome") in ("rolled_back", "rollback_deferred") else 0


if __name__ == "__main__":
    raise SystemExit(main())
