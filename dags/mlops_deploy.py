"""mlops_deploy: a registered model version -> its own image -> canary behind HAProxy -> promote or roll back.

Runs when ``mlops_train`` announces a new ``@challenger`` (the ``mlops_challenger`` asset), or by hand
with Params: ``action`` = ``deploy`` (a version, default the challenger, through the ``strategy``:
by default a shadow window, then a canary),
``promote`` (straight to stable, no canary) or ``rollback`` (back to the previous champion, or to
``version``).

1. ``reconcile``: heal whatever an interrupted run left (state comes from the registry's aliases and
   the running containers' labels: a leftover canary is removed, a half-done promotion finished),
   then plan the run: a canary rollout, a direct deployment (the first one, a promotion, a
   rollback) or nothing.
2. ``prepare``: download ``models:/<name>/<version>``, verify its sha256 against the version's
   ``artifact_sha256`` tag, build the model image (labels: name, version, run id, digest).
3. ``start_canary``: the canary container, ready, in the router's canary slot at 0 %. With the
   ``strategy`` Param (or ``MLOPS_DEPLOY_STRATEGY``) ``blue_green`` the ``blue_green`` group runs
   instead: ``start_green`` (beside blue at 0 %, smoke-tested with requests clients sent blue),
   ``reference`` (blue's window before the switch), ``switch`` (100 % to green, blue warm at 0 %),
   ``bake`` and ``analyse`` (green after the switch against blue before it). With ``shadow`` (the
   default) the ``shadow`` group runs first: ``start_shadow`` (the candidate beside stable at 0 %), ``mirror`` (a
   sensor: each poke copies the requests stable answered since the last one to the shadow, with
   stable's request ids, until enough labelled rows were answered by both) and ``compare`` (errors,
   prediction shift, and a paired test of the Brier score on the labelled rows); a shadow that
   passes goes on as the canary, one that fails is rolled back before any client sees it. With
   ``ab`` the ``ab`` group runs instead of the canary: ``start_ab`` (B beside A with
   ``MLOPS_DEPLOY_AB_SPLIT`` % of the weight; HAProxy hashes the ``X-Entity-Id`` header, so an
   entity always sees one variant), ``collect`` (a sensor: until each variant has
   ``MLOPS_DEPLOY_AB_SAMPLES`` labelled rows) and ``analyse`` (the canary's guardrails, then a
   fixed-horizon test of the Brier score: B is promoted only when it wins).
4. One group per traffic step (``MLOPS_DEPLOY_STEPS``, default 5 -> 25 -> 50 -> 100 %): ``shift`` the
   weights over HAProxy's runtime API, ``bake`` (a sensor in reschedule mode: no worker sleeps)
   until the bake window is over with enough traffic (or a check fails early), ``analyse`` canary
   against stable on the same traffic: 5xx rate, p95 latency, prediction shift (PSI), and quality
   (Brier score) once the labels of enough of both sides' rows have arrived.
5. ``approval``: a branch (``decide``) asks a person before promoting when the ``approval`` Param (or
   ``MLOPS_DEPLOY_APPROVAL``, or the dataset policy's ``deploy.approval``) is ``before_promote``, else goes round by
   ``not_required``; the Grid shows which path ran. ``request`` is Airflow's ``ApprovalOperator``
   (answered in Required Actions or over the REST API), its body the evidence: the gate against
   ``@champion``, every step's checks, why the version was trained, the model card. Without an answer
   within ``MLOPS_DEPLOY_APPROVAL_TIMEOUT_SECONDS`` it takes ``MLOPS_DEPLOY_APPROVAL_TIMEOUT_ACTION``
   (default reject). Reject fails ``request``, so the rollback below runs with who rejected.
6. ``promote`` (``@champion`` := the version, ``@challenger`` cleared, old stable retired) or, when
   anything in the rollout fails or the promotion is rejected, ``rollback`` (weight 0, canary removed,
   version tagged ``deploy_status=rolled_back`` with the reason). The run then ends failed, saying why.

The traffic a canary is judged on is the clients' own, through the router; nothing in this DAG makes
any. Every task retries (``MLOPS_DEPLOY_TASK_RETRIES``) and every step is safe to run again, so a
run whose worker or scheduler was killed mid-rollout carries on where it was once Airflow runs the
task again; a failed canary check, a lost stable server or bad input fail at once. Every step writes
to the append-only audit log (``<lake>/deployments/audit/``). Backend (``MLOPS_DEPLOY_BACKEND``):
docker when a daemon answers, else local processes. Thresholds and bake windows: ``MLOPS_DEPLOY_*``.

This file builds one such DAG per dataset of the installation: ``mlops_deploy`` for the primary one
(``MLOPS_DATASET``), ``mlops_deploy__<name>`` for each other dataset file, each with its own model, lake folder
and router (:mod:`mlops_pipeline.orchestration.datasets`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, Param, PokeReturnValue, TaskGroup, TriggerRule, dag, task

from mlops_pipeline.orchestration import deploy
from mlops_pipeline.orchestration.datasets import DatasetDags, dags_per_dataset


def build(ds: DatasetDags) -> DAG:
    challenger = Asset(name=ds.asset_name(deploy.CHALLENGER_ASSET_NAME))  # this dataset's train DAG announces
    SHAPE = deploy.dag_shape(ds.settings)  # steps, poke interval and retries shape the DAG; thresholds are read at run time

    @dag(
        dag_id=ds.dag_id(deploy.DAG_ID),
        schedule=[challenger],
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args={
            "retries": SHAPE.retries,
            "on_execute_callback": ds.callbacks(deploy.MLFLOW_IDENTITY),  # this dataset; Airflow connection mlflow_deploy, if any
            "retry_delay": SHAPE.retry_delay,
            "execution_timeout": timedelta(minutes=30),
            **deploy.serving_host_args(),  # MLOPS_SERVING_QUEUE: the worker that holds the Docker socket and the router
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
            "strategy": Param(
                None,
                type=["null", "string"],
                enum=[None, "shadow", "canary", "blue_green", "ab"],
                title="Strategy",
                description="How a deploy replaces the serving version: canary (traffic steps), shadow (a copy of the "
                "traffic first, judged on labelled rows, then the canary) or blue_green (smoke test, one switch, the old "
                "version warm for the bake window) or ab (an A/B test by entity, decided on the labels). Empty: "
                "MLOPS_DEPLOY_STRATEGY (default shadow, then canary).",
            ),
            "approval": Param(
                None,
                type=["null", "string"],
                enum=[None, "off", "before_promote"],
                title="Approval",
                description="before_promote: a rollout that passed every check waits for a person to approve its "
                "promotion (Required Actions); off: promoted at once. Empty: MLOPS_DEPLOY_APPROVAL (default off).",
            ),
        },
        tags=ds.tags("mlops", "deploy"),
        doc_md=ds.doc(__doc__),
    )
    def mlops_deploy():
        @task(task_id=deploy.PLAN_TASK_ID)
        def reconcile(params=None, dag_run=None) -> dict:
            """Heal an interrupted deployment, then plan this run (canary, direct or nothing)."""
            return deploy.reconcile(params, dag_run)

        @task(execution_timeout=timedelta(minutes=60))
        def prepare(plan: dict) -> dict:
            """Download the version's artifact, check its sha256 against the registry, build its image."""
            return deploy.prepare(plan)

        @task.branch
        def route(plan: dict, prepared: dict) -> str | None:
            """A canary, a direct deployment, or nothing to do."""
            return deploy.route(plan)

        @task(task_id=deploy.DIRECT_TASK_ID)
        def deploy_direct(plan: dict, prepared: dict) -> dict:
            """First deployment, manual promotion or rollback: straight to stable and @champion."""
            return deploy.deploy_direct(plan, prepared)

        # After route alone, or after a shadow that passed: route picks both with the shadow strategy,
        # and a skipped shadow (any other strategy) must not skip the canary.
        @task(task_id=deploy.CANARY_TASK_ID, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        def start_canary(plan: dict, prepared: dict) -> dict:
            """The canary server, ready, in the router's canary slot at 0 % (and a baseline sample)."""
            return deploy.start_canary(plan, prepared)

        @task(task_id="start_shadow")
        def start_shadow(plan: dict, prepared: dict) -> dict:
            """The candidate beside stable at 0 %: from now on it gets a copy of every request stable answers."""
            return deploy.start_shadow(plan, prepared)

        @task.sensor(task_id="mirror", mode="reschedule", poke_interval=SHAPE.poke_interval, timeout=SHAPE.shadow_timeout)
        def mirror(plan: dict, started: dict) -> PokeReturnValue:
            """Copy stable's new requests to the shadow (same request ids) until enough labelled rows are in."""
            return deploy.mirror(plan)

        @task(task_id="compare")
        def compare(plan: dict, window: dict) -> dict:
            """Shadow vs stable on the same requests: errors, prediction shift, a paired test on labelled rows."""
            return deploy.compare_shadow(plan)

        @task(task_id="start_ab")
        def start_ab(plan: dict, prepared: dict) -> dict:
            """B beside A, serving MLOPS_DEPLOY_AB_SPLIT % of the entities (sticky by X-Entity-Id)."""
            return deploy.start_ab(plan, prepared)

        @task.sensor(task_id="collect", mode="reschedule", poke_interval=SHAPE.poke_interval, timeout=SHAPE.ab_timeout)
        def collect(plan: dict, started: dict) -> PokeReturnValue:
            """Wait for the test's horizon: the labelled rows of each variant (or its longest duration)."""
            return deploy.collect(plan, started)

        @task(task_id="analyse")
        def analyse_ab(plan: dict, started: dict, collected: dict) -> dict:
            """Guardrails (5xx, p95, shift), then the outcome test: B promoted only when it wins."""
            return deploy.analyse_ab(plan, started)

        @task(task_id="start_green")
        def start_green(plan: dict, prepared: dict) -> dict:
            """Green (the new version) beside blue at 0 %, smoke-tested with recorded requests."""
            return deploy.start_green(plan, prepared)

        @task.sensor(task_id="reference", mode="reschedule", poke_interval=SHAPE.poke_interval, timeout=SHAPE.bake_timeout)
        def reference(plan: dict, baseline: dict) -> PokeReturnValue:
            """Blue's traffic before the switch: what green is compared with afterwards."""
            return deploy.reference(plan, baseline)

        @task(task_id="switch")
        def switch(plan: dict, ready: dict) -> dict:
            """All the traffic to green in one switch; blue stays warm at 0 %."""
            return deploy.switch(plan)

        @task
        def shift(plan: dict, percent: int) -> dict:
            """Route ``percent`` % of the traffic to the canary (HAProxy runtime weights, no reload)."""
            return deploy.shift(plan, percent)

        @task.sensor(mode="reschedule", poke_interval=SHAPE.poke_interval, timeout=SHAPE.bake_timeout)
        def bake(plan: dict, baseline: dict, step: dict) -> PokeReturnValue:
            """Wait out the bake window (enough time and traffic, or a check already failing)."""
            return deploy.bake(plan, baseline, step)

        @task
        def analyse(plan: dict, baseline: dict, step: dict, baked: dict) -> dict:
            """Canary vs stable on the step's traffic: 5xx rate, p95 latency, prediction shift (PSI), quality once labelled."""
            return deploy.analyse(plan, baseline, step)

        @task.branch(task_id="decide", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        def decide(ti=None) -> str:
            """Ask a person before promoting, or not (the approval Param, else MLOPS_DEPLOY_APPROVAL, read now)."""
            # Pulled rather than passed: its only upstreams are the last analyses of the two rollouts, so
            # it runs after whichever ran and passed (the other was skipped), and never after a direct
            # deployment (both skipped); an argument from reconcile would make that a success upstream.
            return deploy.approval_route(
                ti.xcom_pull(task_ids=deploy.PLAN_TASK_ID), ti.xcom_pull(task_ids=deploy.analysis_task_ids(SHAPE.steps)), ti
            )

        @task(task_id="not_required")
        def not_required(plan: dict) -> dict:
            """Approval is off: the canary goes on to promotion."""
            return deploy.approval_not_required(plan)

        @task(task_id="approved", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        def approved(ti=None) -> dict:
            """The join after the branch: approved by whom, or not asked."""
            # Pulled rather than passed: an argument from reconcile would let this join run on a direct deployment.
            return deploy.approval_outcome(ti.xcom_pull(task_ids=deploy.PLAN_TASK_ID), ti.xcom_pull(task_ids=deploy.APPROVAL_TASK_ID))

        @task
        def promote(plan: dict) -> dict:
            """@champion := the version; a stable server of it takes the traffic; the old one retires."""
            return deploy.promote(plan)

        @task(trigger_rule=TriggerRule.ONE_FAILED)
        def rollback(ti=None) -> dict:
            """Weight 0, canary removed, version tagged rolled_back with the failed check's or the rejection's reason."""
            # Pulled rather than passed: when reconcile itself failed there is no plan, and nothing to undo.
            return deploy.rollback(
                ti.xcom_pull(task_ids=deploy.PLAN_TASK_ID),
                ti.xcom_pull(task_ids=deploy.APPROVAL_TASK_ID, key=deploy.REJECTION_XCOM),
            )

        plan = reconcile()
        prepared = prepare(plan)
        branch = route(plan, prepared)
        branch >> deploy_direct(plan, prepared)
        with TaskGroup(group_id=deploy.SHADOW_GROUP_ID):
            shadow = start_shadow(plan, prepared)
            window = mirror(plan, shadow)
            verdict = compare(plan, window)
        branch >> shadow
        baseline = start_canary(plan, prepared)
        branch >> baseline
        verdict >> baseline

        rollout = [shadow, window, verdict, baseline]
        previous = baseline
        checks = []
        for percent in SHAPE.steps:
            with TaskGroup(group_id=deploy.step_group_id(percent)):
                step = shift(plan, percent)
                baked = bake(plan, baseline, step)
                checked = analyse(plan, baseline, step, baked)
            previous >> step
            rollout += [step, baked, checked]
            checks.append(checked)
            previous = checked
        with TaskGroup(group_id=deploy.BLUE_GREEN_GROUP_ID):
            green = start_green(plan, prepared)
            ready = reference(plan, green)
            switched = switch(plan, ready)
            green_baked = bake(plan, green, switched)
            green_checked = analyse(plan, green, switched, green_baked)
        branch >> green
        rollout += [green, ready, switched, green_baked, green_checked]
        checks.append(green_checked)
        with TaskGroup(group_id=deploy.AB_GROUP_ID):
            b_started = start_ab(plan, prepared)
            collected = collect(plan, b_started)
            outcome = analyse_ab(plan, b_started, collected)
        branch >> b_started
        rollout += [b_started, collected, outcome]
        checks.append(outcome)
        with TaskGroup(group_id=deploy.APPROVAL_GROUP_ID):
            asking = decide()
            checks >> asking  # every rollout's last analysis (those that did not run are skipped)
            request = deploy.PromotionApproval(
                task_id="request", timeout=SHAPE.approval_timeout, timeout_answer=SHAPE.approval_timeout_answer
            )
            joined = approved()
            asking >> [request, not_required(plan)] >> joined
        joined >> promote(plan)
        [*rollout, request] >> rollback()


    return mlops_deploy()


globals().update(dags_per_dataset("mlops_deploy", build))
