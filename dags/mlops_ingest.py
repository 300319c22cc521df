"""mlops_ingest: one daily window of the source -> raw -> Great Expectations -> validated or quarantine.

Each run owns the data interval [data_interval_start, data_interval_end) of a
``CronDataIntervalTimetable`` (a bare cron string gives start == end in Airflow 3); the subclass
used here also makes ``airflow dags test mlops_ingest 2026-01-05`` process 2026-01-05. A passing batch
is published to ``validated/ds=YYYY-MM-DD/`` and emits an event on the ``mlops_validated`` asset; a
failing one is moved to ``quarantine/ds=YYYY-MM-DD/`` with its validation result and the task fails
with a message naming the failed expectations. Re-running a window replaces it atomically and gives
byte-identical validated files, so backfills can be run as often as needed.

Both steps are one task, ``ingest``, whose log shows each: a window's work is well under a second,
and every task start costs Airflow a few seconds, which a backfill would pay twice a window.

The DAG has no Airflow ``start_date``: backfills and manual runs may name any date, also years back.
The configured start date (the dataset file's ``start_date`` or ``MLOPS_START_DATE``) is enforced by
``ingest`` before it reads anything: a run for an earlier window fails and says where to change it, and a day without a source
file fails naming the file. The task lives in :mod:`mlops_pipeline.orchestration.ingest`.

This file builds one such DAG per dataset of the installation: ``mlops_ingest`` for the primary one
(``MLOPS_DATASET``), ``mlops_ingest__<name>`` for each other dataset file, each with its own model, lake folder
and router (:mod:`mlops_pipeline.orchestration.datasets`).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset, Param, dag, task

from mlops_pipeline.orchestration.datasets import DatasetDags, dags_per_dataset
from mlops_pipeline.orchestration.ingest import SCENARIOS
from mlops_pipeline.orchestration.timetables import DailyWindowTimetable

# Named, not addressed by the lake's URI: moving the lake (a folder -> s3://) keeps the asset and its
# history; each event's extra carries the partition's URI. One per dataset: mlops_validated[__<name>].
VALIDATED = "mlops_validated"


def build(ds: DatasetDags) -> DAG:
    validated_asset = Asset(name=ds.asset_name(VALIDATED))

    @dag(
        dag_id=ds.dag_id("mlops_ingest"),
        schedule=DailyWindowTimetable("0 0 * * *", timezone="UTC"),
        catchup=False,
        max_active_runs=4,
        default_args={
            "retries": 2,
            "retry_delay": timedelta(seconds=20),
            "execution_timeout": timedelta(minutes=15),
            "on_execute_callback": ds.callbacks(),  # this dataset's settings
        },
        params={
            "scenario": Param(
                "schedule",
                enum=SCENARIOS,
                description="Synthetic source only: force one scenario for this run, or follow the configured schedule.",
            ),
        },
        tags=ds.tags("mlops", "ingest"),
        doc_md=ds.doc(__doc__),
    )
    def mlops_ingest():
        @task(outlets=[validated_asset])
        def ingest(
            data_interval_start=None,
            data_interval_end=None,
            logical_date=None,
            dag_run=None,
            params=None,
            run_id=None,
            outlet_events=None,
        ) -> dict:
            """Refuse a window before the start date; copy the window's batch into raw/ds=...; run the
            expectation suite; publish to validated/ (and the asset) or quarantine and fail."""
            from mlops_pipeline.orchestration import ingest as adapter
            from mlops_pipeline.orchestration.timetables import run_window

            start, end = run_window(data_interval_start, data_interval_end, logical_date, dag_run)
            validated = adapter.ingest(start, end, params=params, run_id=run_id)
            outlet_events[validated_asset].extra = adapter.asset_extra(validated)
            return validated

        ingest()

    return mlops_ingest()


globals().update(dags_per_dataset("mlops_ingest", build))
