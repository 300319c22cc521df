"""mlops_monitor: nightly drift and performance reports for one window, and the branch that asks for retraining.

Each run owns the data interval [data_interval_start, data_interval_end) of a daily
``CronDataIntervalTimetable`` (``airflow dags test mlops_monitor 2026-01-05`` monitors 2026-01-05),
so backfills over past windows work like the nights they replay.

1. ``monitor``: the ``@champion``'s training sample (found through its run's lineage) vs the
   window's prediction log (by event time) -> verdicts on every row (normed Wasserstein /
   Jensen-Shannon, exact or with a stated error bound), quality on the predictions whose labels
   have arrived (``label_delay_days``) -> Evidently reports on bounded samples ->
   ``reports/drift/ds=YYYY-MM-DD/`` (``report.html``, ``quality.html``, ``report.json``) and a run
   in the ``<model>-monitoring`` MLflow experiment with the headline numbers as metrics.
2. ``decide`` (branch): drift share / key features / ROC AUC floor and drop vs the champion's
   holdout (realised on arrived labels, or estimated from the calibrated probabilities before
   them: reason ``estimated_performance``), minimum rows, enough post-change data, cooldown since the last retrain; writes
   ``decision.json`` beside the report and follows ``trigger_retrain`` or ``no_retrain``. A window
   with no prediction rows is ``no_data``, with fewer than ``min_rows`` ``not_enough_data``. A
   drift-triggered retrain waits until ``min_post_change_days`` days of data exist since the drift
   episode's first window (``change_start``); a performance-triggered one does not wait.
   Backfill runs record the decision but do not trigger unless ``MLOPS_MONITOR_TRIGGER_ON_BACKFILL``
   (or its Variable) says so, or the backfill was created with ``dag_run_conf={"retrain_on_backfill":
   true}`` (the Param; ``false`` forbids, ``null`` follows the setting).
3. ``trigger_retrain``: ``mlops_train`` with conf ``{reason: drift|performance|estimated_performance,
   report, window, change_start}``, logical date = the decided window's end (it trains on data up to
   the window), run id ``mlops_monitor__<ds>``: one run per window.
4. ``finalize`` (after either branch): records the triggered run in ``decision.json`` and alerts
   on findings and on missing data; a window with no prediction rows then fails (a model without
   traffic, or whose prediction log stopped, is an incident). Task failures alert too (log; webhook or
   e-mail when configured).

Windows are decided in order (the drift episode and the cooldown are read from earlier windows'
records): one run at a time, and a backfill of this DAG should be created with ``max_active_runs=1``
(a backfill has its own limit). The DAG has no Airflow ``start_date``; ``monitor`` refuses a window
before the configured start date (``start_date`` in the dataset file, or ``MLOPS_START_DATE``).

Thresholds: ``MLOPS_MONITOR_*`` settings, overridden by Airflow Variables (``mlops_drift_share_threshold``,
``mlops_monitor_key_features``, ``mlops_monitor_roc_auc_floor`` ...). Prediction logs:
``MLOPS_PREDICTION_LOG_DIR``. The tasks live in :mod:`mlops_pipeline.orchestration.monitor`.

This file builds one such DAG per dataset of the installation: ``mlops_monitor`` for the primary one
(``MLOPS_DATASET``), ``mlops_monitor__<name>`` for each other dataset file, each with its own model, lake folder
and router (:mod:`mlops_pipeline.orchestration.datasets`).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, TriggerRule, dag, task

from mlops_pipeline.orchestration.context import serving_host_args
from mlops_pipeline.orchestration.datasets import DatasetDags, dags_per_dataset
from mlops_pipeline.orchestration.monitor import (
    DECIDE_TASK_ID,
    FINALIZE_TASK_ID,
    MLFLOW_IDENTITY,
    MONITOR_TASK_ID,
    NO_RETRAIN_TASK_ID,
    RETRAIN_ON_BACKFILL,
    TRAIN_DAG_ID,
    TRIGGER_CONF_XCOM,
    TRIGGER_TASK_ID,
)
from mlops_pipeline.orchestration.notifier import MonitorNotifier
from mlops_pipeline.orchestration.timetables import DailyWindowTimetable


def build(ds: DatasetDags) -> DAG:
    @dag(
        dag_id=ds.dag_id("mlops_monitor"),
        schedule=DailyWindowTimetable("0 0 * * *", timezone="UTC"),
        catchup=False,
        max_active_runs=1,  # windows in order: a decision reads the previous window's record
        default_args={
            "retries": 2,
            "retry_delay": timedelta(minutes=1),
            "execution_timeout": timedelta(minutes=45),
            "on_failure_callback": ds.callbacks(MonitorNotifier()),
            "on_execute_callback": ds.callbacks(MLFLOW_IDENTITY),  # this dataset; Airflow connection mlflow_monitor, if any
            **serving_host_args(),  # MLOPS_SERVING_QUEUE: the host whose servers write the prediction logs
        },
        params={
            RETRAIN_ON_BACKFILL: Param(
                None,
                type=["null", "boolean"],
                title="Retrain on backfill",
                description="Backfill runs only: may a finding trigger mlops_train? Empty: the setting "
                "MLOPS_MONITOR_TRIGGER_ON_BACKFILL (or its Variable mlops_monitor_trigger_on_backfill).",
            ),
        },
        tags=ds.tags("mlops", "monitor"),
        doc_md=ds.doc(__doc__),
    )
    def mlops_monitor():
        @task(task_id=MONITOR_TASK_ID)
        def monitor(
            data_interval_start=None, data_interval_end=None, logical_date=None, dag_run=None, run_id=None
        ) -> dict:
            """Drift and quality of the window against the champion's reference; reports to the lake and MLflow."""
            from mlops_pipeline.orchestration import monitor as adapter
            from mlops_pipeline.orchestration.timetables import run_window

            start, end = run_window(data_interval_start, data_interval_end, logical_date, dag_run)
            return adapter.monitor(start, end, run_id=run_id)

        @task.branch(task_id=DECIDE_TASK_ID)
        def decide(
            findings: dict,
            data_interval_start=None,
            data_interval_end=None,
            logical_date=None,
            dag_run=None,
            params=None,
            ti=None,
        ) -> str:
            """Retrain or not (decision.json beside the report); follow the matching branch."""
            from mlops_pipeline.orchestration import monitor as adapter
            from mlops_pipeline.orchestration.timetables import run_window

            start, end = run_window(data_interval_start, data_interval_end, logical_date, dag_run)
            return adapter.decide(
                findings,
                data_interval_start=start,
                data_interval_end=end,
                dag_run=dag_run,
                params=params,
                ti=ti,
            )

        @task(task_id=NO_RETRAIN_TASK_ID)
        def no_retrain(ti=None) -> str:
            """The quiet branch: the decision's reasons are in the log and in decision.json."""
            from mlops_pipeline.orchestration import monitor as adapter

            return adapter.no_retrain(ti)

        @task(task_id=FINALIZE_TASK_ID, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        def finalize(ti=None) -> dict:
            """Whichever branch ran: record a triggered retrain, alert on findings, fail a window without data."""
            from mlops_pipeline.orchestration import monitor as adapter

            return adapter.finalize(ti)

        decision = decide(monitor())
        DECIDED_WINDOW = f"ti.xcom_pull(task_ids='{DECIDE_TASK_ID}', key='{TRIGGER_CONF_XCOM}')['window']"
        trigger = TriggerDagRunOperator(
            task_id=TRIGGER_TASK_ID,
            trigger_dag_id=ds.dag_id(TRAIN_DAG_ID),  # this dataset's training
            # the window the decision was made for (a manual run names its own day; see run_window)
            trigger_run_id="mlops_monitor__{{ " + DECIDED_WINDOW + "['ds'] }}",
            logical_date="{{ " + DECIDED_WINDOW + "['end'] }}",
            conf=decision[TRIGGER_CONF_XCOM],
            skip_when_already_exists=True,  # one training run per window, however often the window runs
        )
        decision >> [trigger, no_retrain()] >> finalize()


    return mlops_monitor()


globals().update(dags_per_dataset("mlops_monitor", build))
