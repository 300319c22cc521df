"""mlops_deploy: a registered model version -> its own image -> canary behind HAProxy -> promote or roll back.

Runs when ``mlops_train`` announces a new ``@challenger`` (the ``mlops_challenger`` asset), or by hand
with Params: ``action`` = ``deploy`` (a version, default the challenger, through a canary),
``promote`` (straight to stable, no canary) or ``rollback`` (back to the previous champion, or to
``version``).

1. ``reconcile``: heal whatever an interrupted run left (state comes from the registry's aliases and
   the running containers' labels: a leftover canary is removed, a half-done promotion finished),
   then plan the run: a canary rollout, a direct deployment (the first one, a promotion, a
   rollback) or nothing.
2. ``prepare``: download ``models:/<name>/<version>``, verify its sha256 against the version's
   ``artifact_sha256`` tag, build the model image (labels: name, version, run id, digest).
3. ``start_canary``: the canary container, ready, in the router's canary slot at 0 %.
4. One group per traffic step (``MLOPS_DEPLOY_STEPS``, default 5 -> 25 -> 50 -> 100 %): ``shift`` the
   weights over HAProxy's runtime API, ``bake`` (a sensor in reschedule mode: no worker sleeps)
   until the bake window is over with enough traffic (or a check fails early), ``analyse`` canary
   against stable on the same traffic: 5xx rate, p95 latency, prediction shift (PSI).
5. ``promote`` (``@champion`` := the version, ``@challenger`` cleared, old stable retired) or, when
   anything in the rollout fails, ``rollback`` (weight 0, canary removed, version tagged
   ``deploy_status=rolled_back`` with the reason). The run then ends failed, saying why.

Every step writes to the append-only audit log (``<lake>/deployments/audit/``). ``replay_traffic``
sends recent validated rows through the router during the rollout (demo traffic, labelled so in the
prediction log). Backend (``MLOPS_DEPLOY_BACKEND``): docker when a daemon answers, else local
processes. Thresholds and bake windows: ``MLOPS_DEPLOY_*``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, PokeReturnValue, TaskGroup, TriggerRule, dag, task

from mlops_pipeline.config import get_settings
from mlops_pipeline.registry.aliases import CHALLENGER_ASSET_NAME

CHALLENGER = Asset(name=CHALLENGER_ASSET_NAME)
SETTINGS = get_settings().deploy  # steps and poke interval shape the DAG; thresholds are read at run time


def _actor(dag_run) -> str:
    user = getattr(dag_run, "triggering_user_name", None)
    return f"airflow:{dag_run.dag_id}/{dag_run.run_id}" + (f" by {user}" if user else "")


def _deployer(plan: dict):
    from mlops_pipeline.deploy.rollout import Deployer

    return Deployer.open(plan["actor"])


@dag(
    dag_id="mlops_deploy",
    schedule=[CHALLENGER],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "action": Param(
            "deploy",
            enum=["deploy", "promote", "rollback"],
            title="Action",
            description="deploy: canary rollout; promote: straight to stable; rollback: back to the previous champion.",
        ),
        "version": Param(
            None,
            type=["null", "string", "integer"],
            title="Version",
            description="Model version. Empty: @challenger (deploy, promote) or the previous champion (rollback).",
        ),
        "replay_traffic": Param(
            False,
            type="boolean",
            title="Replay demo traffic",
            description="Send recent validated rows through the router during the rollout (X-Traffic-Source: demo).",
        ),
    },
    tags=["mlops", "deploy"],
    doc_md=__doc__,
)
def mlops_deploy():
    @task
    def reconcile(params=None, dag_run=None) -> dict:
        """Heal an interrupted deployment, then plan this run (canary, direct or nothing)."""
        from mlops_pipeline.deploy.rollout import Deployer

        deployer = Deployer.open(_actor(dag_run))
        deployer.reconcile()
        return deployer.plan(params["action"], params["version"])

    @task(execution_timeout=timedelta(minutes=60))
    def prepare(plan: dict) -> dict:
        """Download the version's artifact, check its sha256 against the registry, build its image."""
        return _deployer(plan).prepare(plan)

    @task.branch
    def route(plan: dict, prepared: dict) -> str | None:
        return {"canary": "start_canary", "direct": "deploy_direct"}.get(plan["mode"])

    @task
    def deploy_direct(plan: dict, prepared: dict) -> dict:
        """First deployment, manual promotion or rollback: straight to stable and @champion."""
        return _deployer(plan).deploy_direct(plan, prepared)

    @task
    def start_canary(plan: dict, prepared: dict) -> dict:
        """The canary server, ready, in the router's canary slot at 0 % (and a baseline sample)."""
        return _deployer(plan).start_canary(plan, prepared)

    @task(retries=0)
    def replay_traffic(plan: dict, params=None) -> dict:
        """Demo traffic through the router until this deployment ends (a background process)."""
        from airflow.sdk.exceptions import AirflowSkipException

        if not params["replay_traffic"]:
            raise AirflowSkipException("replay_traffic is off")
        from mlops_pipeline.deploy.traffic import start_background_replay

        return start_background_replay(plan["deployment_id"])

    @task
    def shift(plan: dict, baseline: dict, percent: int) -> dict:
        """Route ``percent`` % of the traffic to the canary (HAProxy runtime weights, no reload)."""
        return _deployer(plan).shift(plan, percent)

    @task.sensor(
        mode="reschedule",
        poke_interval=SETTINGS.poke_seconds,
        timeout=SETTINGS.max_bake_seconds + 600,
        retries=0,
    )
    def bake(plan: dict, baseline: dict, step: dict) -> PokeReturnValue:
        """Wait out the bake window (enough time and traffic, or a check already failing)."""
        status = _deployer(plan).bake_status(plan, baseline, step)
        return PokeReturnValue(is_done=status["done"], xcom_value=status)

    @task(retries=0)
    def analyse(plan: dict, baseline: dict, step: dict, baked: dict) -> dict:
        """Canary vs stable on the step's traffic: 5xx rate, p95 latency, prediction shift (PSI)."""
        from airflow.sdk.exceptions import AirflowFailException

        from mlops_pipeline.deploy.rollout import CanaryCheckFailed

        try:
            return _deployer(plan).analyse(plan, baseline, step)
        except CanaryCheckFailed as exc:
            raise AirflowFailException(str(exc)) from exc

    @task
    def promote(plan: dict) -> dict:
        """@champion := the version; a stable server of it takes the traffic; the old one retires."""
        return _deployer(plan).promote(plan)

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=2)
    def rollback(plan: dict) -> dict:
        """Weight 0, canary removed, version tagged rolled_back with the failed check's reason."""
        from airflow.sdk.exceptions import AirflowSkipException

        deployer = _deployer(plan)
        if not deployer.canary_was_started(plan):  # e.g. the image build failed: nothing to undo
            raise AirflowSkipException("no canary was started for this deployment")
        return deployer.rollback(plan)

    plan = reconcile()
    prepared = prepare(plan)
    branch = route(plan, prepared)
    branch >> deploy_direct(plan, prepared)
    baseline = start_canary(plan, prepared)
    branch >> baseline
    replay_traffic(plan) << baseline

    rollout = [baseline]
    previous = baseline
    for percent in SETTINGS.steps:
        with TaskGroup(group_id=f"step_{percent}pct"):
            step = shift(plan, baseline, percent)
            baked = bake(plan, baseline, step)
            checked = analyse(plan, baseline, step, baked)
        previous >> step
        rollout += [step, baked, checked]
        previous = checked
    previous >> promote(plan)
    rollout >> rollback(plan)


mlops_deploy()
