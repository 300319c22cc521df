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

The approval before promotion (``MLOPS_DEPLOY_APPROVAL``) is :class:`PromotionApproval`, Airflow's
``ApprovalOperator`` whose "Reject" fails the task at once (after keeping who rejected, and when,
under the XCom key ``rejection``) so that ``rollback``, which runs when one task failed, undoes the
canary with that reason.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator

from mlops_pipeline.orchestration.context import MlflowIdentity, actor_of, fails_at_once, scoped
from mlops_pipeline.orchestration.context import serving_host_args as serving_host_args  # for the DAG file
from mlops_pipeline.registry.aliases import CHALLENGER_ASSET_NAME as CHALLENGER_ASSET_NAME

if TYPE_CHECKING:
    from airflow.sdk import PokeReturnValue

    from mlops_pipeline.config import Settings
    from mlops_pipeline.deploy.rollout import Deployer

log = logging.getLogger(__name__)

# The DAG's on_execute_callback: its tasks talk to MLflow as the user of Airflow connection mlflow_deploy.
MLFLOW_IDENTITY = MlflowIdentity("deploy")

DAG_ID = "mlops_deploy"
PLAN_TASK_ID = "reconcile"
CANARY_TASK_ID = "start_canary"
BLUE_GREEN_GROUP_ID = "blue_green"
GREEN_TASK_ID = f"{BLUE_GREEN_GROUP_ID}.start_green"
SHADOW_GROUP_ID = "shadow"
SHADOW_TASK_ID = f"{SHADOW_GROUP_ID}.start_shadow"
AB_GROUP_ID = "ab"
AB_TASK_ID = f"{AB_GROUP_ID}.start_ab"
DIRECT_TASK_ID = "deploy_direct"
# The bake sensor ends a step itself once ``max_bake_seconds`` have passed (``bake`` reports done;
# with ``insufficient_traffic=hold`` and too little traffic, ``hold_seconds`` later),
# so its own timeout only stops a step whose pokes keep failing. It leaves an hour on top for pokes
# that could not run at all: a scheduler that was down, retries waiting out their delay.
BAKE_OUTAGE_ALLOWANCE = timedelta(hours=1)
# The approval before promotion: a branch (ask, or not), the request, the way around it, the join.
APPROVAL_GROUP_ID = "approval"
APPROVAL_ROUTE_TASK_ID = f"{APPROVAL_GROUP_ID}.decide"
APPROVAL_TASK_ID = f"{APPROVAL_GROUP_ID}.request"
NO_APPROVAL_TASK_ID = f"{APPROVAL_GROUP_ID}.not_required"
APPROVAL_CHOICES = ("off", "before_promote")  # the approval Param's values (empty: the setting)
APPROVAL_REQUEST_XCOM = "approval_request"  # {subject, body}, pushed by the branch, rendered into the request
REJECTION_XCOM = "rejection"


@dataclass(frozen=True)
class DagShape:
    """What the DAG's structure and task policies take from the deploy settings (read at parse time)."""

    steps: tuple[int, ...]
    poke_interval: timedelta
    bake_timeout: timedelta
    retries: int
    retry_delay: timedelta
    approval_timeout: timedelta
    approval_timeout_answer: str  # the option taken when nobody answered: Approve or Reject
    shadow_timeout: timedelta
    ab_timeout: timedelta


def dag_shape(settings: Settings | None = None) -> DagShape:
    """What shapes the DAG of a dataset (its settings, read at parse time; default: this process's)."""
    from mlops_pipeline.config import get_settings

    deploy = (settings or get_settings()).deploy
    return DagShape(
        steps=tuple(deploy.steps),
        poke_interval=timedelta(seconds=deploy.poke_seconds),
        bake_timeout=timedelta(
            seconds=deploy.max_bake_seconds + (deploy.hold_seconds if deploy.insufficient_traffic == "hold" else 0)
        )
        + BAKE_OUTAGE_ALLOWANCE,
        retries=deploy.task_retries,
        retry_delay=timedelta(seconds=deploy.retry_delay_seconds),
        approval_timeout=timedelta(seconds=deploy.approval_timeout_seconds),
        approval_timeout_answer=ApprovalOperator.APPROVE
        if deploy.approval_timeout_action == "approve"
        else ApprovalOperator.REJECT,
        shadow_timeout=timedelta(seconds=deploy.shadow_max_seconds) + BAKE_OUTAGE_ALLOWANCE,
        ab_timeout=timedelta(seconds=deploy.ab_max_seconds) + BAKE_OUTAGE_ALLOWANCE,
    )


def step_group_id(percent: int) -> str:
    return f"step_{percent}pct"


def analysis_task_ids(steps: tuple[int, ...] | list[int]) -> list[str]:
    """Every analysis a rollout may have run, in order: the shadow's, the canary's steps, blue-green's, the A/B test's."""
    return (
        [f"{SHADOW_GROUP_ID}.compare"]
        + [f"{step_group_id(percent)}.analyse" for percent in steps]
        + [f"{BLUE_GREEN_GROUP_ID}.analyse", f"{AB_GROUP_ID}.analyse"]
    )


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
    return f"{scoped(DAG_ID)} deployment {plan['deployment_id']}"


# -- the tasks ------------------------------------------------------------------------------------
def reconcile(params: Mapping[str, Any], dag_run: Any) -> dict[str, Any]:
    """Heal whatever an interrupted run left, then plan this run (canary, direct or nothing)."""
    action = str(params.get("action") or "deploy")
    version = params.get("version")
    version = None if version in (None, "") else version
    deployer = _deployer(actor_of(dag_run))
    what = f"{scoped(DAG_ID)} cannot plan {action!r}" + (f" of version {version}" if version is not None else "")
    with fails_at_once(what, ValueError):
        healed = deployer.reconcile()
        if healed["actions"]:
            log.info("reconciled: %s", "; ".join(healed["actions"]))
        plan = deployer.plan(action, version, deployment_key=deployment_key(dag_run), strategy=params.get("strategy") or None)
        approval = params.get("approval") or None
        if approval is not None:
            if approval not in APPROVAL_CHOICES:
                raise ValueError(f"the approval Param must be one of {', '.join(APPROVAL_CHOICES)}, got {approval!r}")
            plan = {**plan, "approval": approval}  # this run's answer to "ask a person first?"
    log.info("plan %s: %s (%s)", plan["deployment_id"], plan["mode"], plan["reason"])
    return plan


def prepare(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The version's artifact downloaded, its sha256 checked against the registry, made servable."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).prepare(plan)


def route(plan: Mapping[str, Any]) -> str | list[str] | None:
    """The branch to follow: the canary (after a shadow window, with the shadow strategy: the canary
    waits for the shadow's verdict), blue-green, a direct deployment, or none (nothing to deploy)."""
    if plan["mode"] == "canary" and plan.get("strategy") == "shadow":
        return [SHADOW_TASK_ID, CANARY_TASK_ID]
    chosen = {"canary": CANARY_TASK_ID, "blue_green": GREEN_TASK_ID, "ab": AB_TASK_ID, "direct": DIRECT_TASK_ID}.get(plan["mode"])
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


def start_green(plan: Mapping[str, Any], prepared: Mapping[str, Any]) -> dict[str, Any]:
    """Green beside blue at 0 %, smoke-tested with recorded requests; blue's reference window starts."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).start_green(plan, prepared)


def start_shadow(plan: Mapping[str, Any], prepared: Mapping[str, Any]) -> dict[str, Any]:
    """The candidate beside stable at 0 %, and the mirror's start."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).start_shadow(plan, prepared)


def mirror(plan: Mapping[str, Any]) -> PokeReturnValue:
    """One poke of the shadow window: stable's new requests copied to the shadow; done once enough
    labelled rows were answered by both (or at the longest window, or a server gone)."""
    from airflow.sdk import PokeReturnValue

    status = _deployer(plan["actor"]).mirror_status(plan)
    log.info("shadow window: %s", status)
    return PokeReturnValue(is_done=bool(status["done"]), xcom_value=status)


def compare_shadow(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The shadow against stable on the same requests; a failure fails the task at once (then ``rollback``)."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).compare_shadow(plan)


def start_ab(plan: Mapping[str, Any], prepared: Mapping[str, Any]) -> dict[str, Any]:
    """B beside A with its share of the entities; the A/B test starts."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).start_ab(plan, prepared)


def collect(plan: Mapping[str, Any], started: Mapping[str, Any]) -> PokeReturnValue:
    """One poke of the A/B test: done once each variant has the labelled rows of the horizon."""
    from airflow.sdk import PokeReturnValue

    status = _deployer(plan["actor"]).ab_status(plan, started)
    log.info("A/B test: %s", status)
    return PokeReturnValue(is_done=bool(status["done"]), xcom_value=status)


def analyse_ab(plan: Mapping[str, Any], started: Mapping[str, Any]) -> dict[str, Any]:
    """The A/B verdict; unless B wins, the task fails at once (then ``rollback``: A stays)."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).analyse_ab(plan, started)


def reference(plan: Mapping[str, Any], baseline: Mapping[str, Any]) -> PokeReturnValue:
    """One poke: has blue served enough since green started to compare green with after the switch?"""
    from airflow.sdk import PokeReturnValue

    status = _deployer(plan["actor"]).reference_status(plan, baseline)
    log.info("blue's reference window: %s", status)
    return PokeReturnValue(is_done=bool(status["done"]), xcom_value=status)


def switch(plan: Mapping[str, Any]) -> dict[str, Any]:
    """All the traffic to green at once; blue stays warm at 0 % for the bake window."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).switch(plan)


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


def approval_route(plan: Mapping[str, Any], steps: list[Mapping[str, Any]], ti: Any) -> str:
    """Ask a person before promoting (``MLOPS_DEPLOY_APPROVAL=before_promote``), or go straight on.
    When asking, the request's subject and body (the evidence) go to XCom for the request to show."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.approval import approval_required, gather_evidence, render_request

    steps = [step for step in steps or [] if step]  # the analyses of the path that ran (the other one was skipped)
    settings = get_settings()
    if not approval_required(plan.get("approval") or settings.deploy.approval):
        log.info("%s: no approval asked for (%s)", plan["deployment_id"], _approval_source(plan))
        return NO_APPROVAL_TASK_ID
    deployer = _deployer(plan["actor"])
    evidence = gather_evidence(deployer.client, plan, steps, settings.mlflow_tracking_uri)
    request = render_request(
        evidence,
        timeout=timedelta(seconds=settings.deploy.approval_timeout_seconds),
        timeout_action=settings.deploy.approval_timeout_action,
    )
    ti.xcom_push(key=APPROVAL_REQUEST_XCOM, value=request)
    deployer.record("approval_requested", request["subject"], plan, timeout_action=settings.deploy.approval_timeout_action)
    return APPROVAL_TASK_ID


def approval_not_required(plan: Mapping[str, Any]) -> dict[str, Any]:
    """The way around the request when approval is off: says so, for the Grid and the join."""
    return {"approval": "not_required", "version": plan["version"], "reason": _approval_source(plan)}


def _approval_source(plan: Mapping[str, Any]) -> str:
    """Where "approval off" came from: the run's Param, or the setting."""
    return "the run's approval Param is off" if plan.get("approval") else "MLOPS_DEPLOY_APPROVAL=off"


def approval_outcome(plan: Mapping[str, Any], answer: Mapping[str, Any] | None) -> dict[str, Any]:
    """The join before ``promote``: who approved (audited), or that nobody was asked."""
    if not answer:
        return {"approval": "not_required", "version": plan["version"]}
    by, timed_out = _responder(answer.get("responded_by_user")), bool(answer.get("timed_out"))
    reason = "approved on timeout (MLOPS_DEPLOY_APPROVAL_TIMEOUT_ACTION=approve)" if timed_out else f"approved by {by}"
    _deployer(plan["actor"]).record("promotion_approved", reason, plan, responded_by=by, timed_out=timed_out)
    return {"approval": "approved", "version": plan["version"], "responded_by": by, "timed_out": timed_out, "reason": reason}


def _responder(user: Any) -> str | None:
    if isinstance(user, Mapping):
        return str(user.get("name") or user.get("id") or "") or None
    return None


class PromotionApproval(ApprovalOperator):
    """Airflow's ``ApprovalOperator`` for the promotion: its subject and body are the request the
    branch (``APPROVAL_ROUTE_TASK_ID``) pushed; "Reject" (a person's, or the timeout's default) keeps
    who and when under ``REJECTION_XCOM`` and fails the task at once, so ``rollback`` runs. The stock
    operator would skip its downstream tasks instead, and a skip triggers no rollback."""

    def __init__(self, *, timeout: timedelta, timeout_answer: str, **kwargs: Any) -> None:
        request = f"ti.xcom_pull(task_ids={APPROVAL_ROUTE_TASK_ID!r}, key={APPROVAL_REQUEST_XCOM!r})"
        super().__init__(
            subject="{{ " + request + "['subject'] }}",
            body="{{ " + request + "['body'] }}",
            defaults=timeout_answer,
            response_timeout=timeout,
            **kwargs,
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from mlops_pipeline.deploy.approval import rejection_reason

        answer = HITLOperator.execute_complete(self, context=context, event=event)
        timed_out = bool(event.get("timedout"))
        approved = answer["chosen_options"] == [self.APPROVE]
        self.hitl_summary_extra["approved"] = approved
        responded_by = _responder(answer.get("responded_by_user"))
        if approved:
            return {**answer, "timed_out": timed_out}
        responded_at = answer["responded_at"].isoformat() if answer.get("responded_at") else None
        reason = rejection_reason(responded_by, responded_at, timed_out=timed_out)
        context["ti"].xcom_push(
            key=REJECTION_XCOM,
            value={"reason": reason, "responded_by": responded_by, "responded_at": responded_at, "timed_out": timed_out},
        )
        raise AirflowFailException(reason)


def promote(plan: Mapping[str, Any]) -> dict[str, Any]:
    """``@champion`` := the version; a stable server of it takes the traffic; the old one retires."""
    with fails_at_once(_what(plan), *_state_errors()):
        return _deployer(plan["actor"]).promote(plan)


def rollback(plan: Mapping[str, Any] | None, rejection: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Undo a canary that was started: weight 0, canary removed, version tagged ``rolled_back`` with
    the failed check's reason, or the approval's ``rejection``. Skipped when there is nothing to undo."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not plan:
        raise AirflowSkipException("the run was not planned (reconcile failed): nothing was changed, nothing to undo")
    if plan.get("mode") not in ("canary", "blue_green", "ab"):
        raise AirflowSkipException(f"a {plan.get('mode')} deployment has no canary, green or B variant to undo")
    deployer = _deployer(plan["actor"])
    if not deployer.canary_was_started(plan):  # e.g. the image build failed
        raise AirflowSkipException(f"no canary was started for {plan['deployment_id']}: nothing to undo")
    result = deployer.rollback(plan, reason=rejection["reason"] if rejection else None)
    log.info("%s: %s", plan["deployment_id"], result)
    return result
