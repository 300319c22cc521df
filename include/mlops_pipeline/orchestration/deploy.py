"""Airflow glue for ``mlops_deploy``: one function per task; Airflow context in, one
:class:`~mlops_pipeline.deploy.rollout.Deployer` step, XCom-able dicts out.

The DAG file is the only place the steps are put in sequence; this module neither calls one step
after another nor waits: each function is one task.

Errors in Airflow's terms:

* a state a retry would meet again fails the task at once (``AirflowFailException``): a failed
  canary check (``CanaryCheckFailed``), a step that cannot go on (``DeploymentError``: no stable
  server to compare with, the stable lost mid-canary, nothing to promote), a model artifact that
  does not verify (``ArtifactError``) and bad input (``ValueError``: an unknown version, nothing to
  roll back to);
* infrastructure errors (the registry, the Docker daemon or the router not answering, a server not
  ready in time) are raised as they are, so the task's retries apply.

Every task has retries (``MLOPS_DEPLOY_TASK_RETRIES``): a task instance whose process died (its
worker or scheduler was killed, and Airflow reset it or failed it on its heartbeat timeout) is run
again, and every step is safe to run again (it looks at what runs and what the registry says
first), so the retry carries on where the step was instead of rolling a healthy canary back.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from mlops_pipeline.orchestration.context import actor_of, fails_at_once
from mlops_pipeline.registry.aliases import CHALLENGER_ASSET_NAME as CHALLENGER_ASSET_NAME

if TYPE_CHECKING:
    from airflow.sdk import PokeReturnValue

    from mlops_pipeline.deploy.rollout import Deployer

log = logging.getLogger(__name__)

DAG_ID = "mlops_deploy"
PLAN_TASK_ID = "reconcile"
CANARY_TASK_ID = "start_canary"
DIRECT_TASK_ID = "deploy_direct"
# The bake sensor ends a step itself once ``max_bake_seconds`` have passed (``bake`` reports done),
# so its own timeout only stops a step whose pokes keep failing. It leaves an hour on top for pokes
# that could not run at all: a scheduler that was down, retries waiting out their delay.
BAKE_OUTAGE_ALLOWANCE = timedelta(hours=1)


@dataclass(frozen=True)
class DagShape:
    """What the DAG's structure and task policies take from the deploy settings (read at parse time)."""

    steps: tuple[int, ...]
    poke_interval: timedelta
    bake_timeout: timedelta
    retries: int
    retry_delay: timedelta


def dag_shape() -> DagShape:
    from mlops_pipeline.config import get_settings

    deploy = get_settings().deploy
    return DagShape(
        steps=tuple(deploy.steps),
        poke_interval=timedelta(seconds=deploy.poke_seconds),
        bake_timeout=timedelta(seconds=deploy.max_bake_seconds) + BAKE_OUTAGE_ALLOWANCE,
        retries=deploy.task_retries,
        retry_delay=timedelta(seconds=deploy.retry_delay_seconds),
    )


def step_group_id(percent: int) -> str:
    return f"step_{percent}pct"


def deployment_key(dag_run: Any) -> str:
    """The end of the deployment id: the same for every attempt of every task of one run, so a
    retried plan names the same deployment (its audit events and tags stay together)."""
    run_id = str(getattr(dag_run, "run_id", ""))
    when = getattr(dag_run, "run_after", None) or getattr(dag_run, "logical_date", None) or getattr(dag_run, "start_date", None)
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") if when is not None else "run"
    return f"{stamp}-{hashlib.sha1(run_id.encode()).hexdigest()[:6]}"


def _deployer(actor: str) -> Deployer:
    from mlops_pipeline.deploy.rollout import Deployer

    return Deployer.open(actor)


def _state_errors() -> tuple[type[Exception], ...]:
    """The domain errors a retry would meet again."""
    from mlops_pipeline.deploy.artifacts import ArtifactError
    from mlops_pipeline.deploy.rollout import CanaryCheckFailed, DeploymentError

    return (CanaryCheckFailed, DeploymentError, ArtifactError, ValueError)


def _what(plan: Mapping[str, Any]) -> str:
    return f"{DAG_ID} deployment {plan['deployment_id']}"


# -- the tasks ------------------------------------------------------------------------------------
def reconcile(params: Mapping[str, Any], dag_run: Any) -> dict[str, Any]:
    """Heal whatever an interrupted run left, then plan this run (canary, direct or nothing)."""
    action = str(params.get("action") or "deploy")
    version = params.get("version")
    version = None if version in (None, "") else version
    deployer = _deployer(actor_of(dag_run))
    what = f"{DAG_ID} cannot plan {action!r}" + (f" of version {version}" if version is not None else "")
    with fails_at_once(what, ValueError):
        healed = deployer.reconcile()
        if healed["actions"]:
            log.info("reconciled: %s", "; ".join(healed["actions"]))
        plan = deployer.plan(action, version, deployment_key=deployment_key(dag_run))
    log.info("plan %s: %s (%s)", plan["deployment_id"], plan["mode"], plan["reason"])
    return plan


def prepare(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The version's artifact downloaded, its sha256 checked against the registry, made servable."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).prepare(plan)


def route(plan: Mapping[str, Any]) -> str | None:
    """The branch to follow: the canary, a direct deployment, or none (nothing to deploy)."""
    chosen = {"canary": CANARY_TASK_ID, "direct": DIRECT_TASK_ID}.get(plan["mode"])
    if chosen is None:
        log.info("nothing to deploy: %s", plan["reason"])
    return chosen


def deploy_direct(plan: Mapping[str, Any], prepared: Mapping[str, Any]) -> dict[str, Any]:
    """First deployment, manual promotion or rollback: straight to stable and ``@champion``."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).deploy_direct(plan, prepared)


def start_canary(plan: Mapping[str, Any], prepared: Mapping[str, Any]) -> dict[str, Any]:
    """The canary server, ready, in the router's canary slot at 0 %, and a baseline sample."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).start_canary(plan, prepared)


def shift(plan: Mapping[str, Any], percent: int) -> dict[str, Any]:
    """``percent`` % of the traffic to the canary; the step's window starts."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).shift(plan, percent)


def bake(plan: Mapping[str, Any], baseline: Mapping[str, Any], step: Mapping[str, Any]) -> PokeReturnValue:
    """One poke of the bake window: done once baked long enough with enough traffic, a check failing
    already, the canary or the stable gone, or the longest bake window over."""
    from airflow.sdk import PokeReturnValue

    status = _deployer(plan["actor"]).bake_status(plan, baseline, step)
    log.info("step %s%%: %s", step["percent"], status)
    return PokeReturnValue(is_done=bool(status["done"]), xcom_value=status)


def analyse(plan: Mapping[str, Any], baseline: Mapping[str, Any], step: Mapping[str, Any]) -> dict[str, Any]:
    """Canary vs stable on the step's traffic; a failed check fails the task at once (then ``rollback``)."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).analyse(plan, baseline, step)


def promote(plan: Mapping[str, Any]) -> dict[str, Any]:
    """``@champion`` := the version; a stable server of it takes the traffic; the old one retires."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).promote(plan)


def rollback(plan: Mapping[str, Any] | None) -> dict[str, Any]:
    """Undo a canary that was started: weight 0, canary removed, version tagged ``rolled_back`` with
    the failed check's reason. Skipped when there is nothing to undo."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not plan:
        raise AirflowSkipException("the run was not planned (reconcile failed): nothing was changed, nothing to undo")
    if plan.get("mode") != "canary":
        raise AirflowSkipException(f"a {plan.get('mode')} deployment has no canary to undo")
    deployer = _deployer(plan["actor"])
    if not deployer.canary_was_started(plan):  # e.g. the image build failed
        raise AirflowSkipException(f"no canary was started for {plan['deployment_id']}: nothing to undo")
    result = deployer.rollback(plan)
    log.info("%s: %s", plan["deployment_id"], result)
    return result
