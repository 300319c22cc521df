"""mlops_score: one daily window's validated partition -> the ``@champion`` model -> ``predictions/ds=...``.

Runs on the same daily windows as ``mlops_ingest`` (one run per ``validated/ds=YYYY-MM-DD/``) and is
backfillable over any range: ``airflow dags test mlops_score 2026-01-05`` scores 2026-01-05. A
scheduled run starts with its window's ingest, so ``wait_for_partition`` waits for the validated
partition (a reschedule-mode sensor, no worker slot held); a backfill or manual run does not wait:
its day is there or the run fails naming it. ``resolve_model`` picks the
version (the ``model_version`` Param pins one; by default the version behind ``@champion``) once, so
a retried ``score`` uses the same version. ``score`` downloads it, checks its bytes against the
registered ``artifact_sha256``, reads the partition in chunks of ``chunk_rows`` rows, and writes
parquet parts (id, event time, ``probability``, ``label``: the model server's numbers) and a manifest
naming the model version, its digest, the rows and the input partition's digest. The run emits an
event on the ``mlops_predictions`` asset.

A day without a validated partition fails naming the day (and says so when it was quarantined); a
model without ``@champion`` fails saying so; an empty partition fails: a run that scored nothing
is no success. Re-running a window gives byte-identical parts. The tasks live in
:mod:`mlops_pipeline.orchestration.score`.

This file builds one such DAG per dataset of the installation: ``mlops_score`` for the primary one
(``MLOPS_DATASET``), ``mlops_score__<name>`` for each other dataset file, each with its own model, lake folder
and router (:mod:`mlops_pipeline.orchestration.datasets`).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset, Param, PokeReturnValue, dag, task

from mlops_pipeline.orchestration.datasets import DatasetDags, dags_per_dataset
from mlops_pipeline.orchestration.score import MLFLOW_IDENTITY, PREDICTIONS_ASSET_NAME
from mlops_pipeline.orchestration.timetables import DailyWindowTimetable


def build(ds: DatasetDags) -> DAG:
    # Named, like mlops_validated: the event's extra carries the partition's URI and the model version.
    predictions = Asset(name=ds.asset_name(PREDICTIONS_ASSET_NAME))

    @dag(
        dag_id=ds.dag_id("mlops_score"),
        # A timetable, not the validated asset: an asset schedule cannot be backfilled.
        schedule=DailyWindowTimetable("0 0 * * *", timezone="UTC"),
        catchup=False,
        max_active_runs=4,
        default_args={
            "retries": 2,
            "retry_delay": timedelta(seconds=20),
            "execution_timeout": timedelta(minutes=30),
            "on_execute_callback": ds.callbacks(MLFLOW_IDENTITY),  # this dataset; Airflow connection mlflow_score, if any
        },
        params={
            "model_version": Param(
                "",
                type="string",
                description="Score with this registered version instead of the one behind @champion (empty: @champion).",
            ),
            "chunk_rows": Param(
                100_000,
                type="integer",
                minimum=1,
                description="Rows read, scored and written per part: bounds the task's memory.",
            ),
        },
        tags=ds.tags("mlops", "scoring"),
        doc_md=ds.doc(__doc__),
    )
    def mlops_score():
        @task.sensor(mode="reschedule", poke_interval=120, timeout=6 * 3600)
        def wait_for_partition(
            data_interval_start=None,
            data_interval_end=None,
            logical_date=None,
            dag_run=None,
        ) -> PokeReturnValue:
            """The window's validated partition: waited for by a scheduled run, required at once otherwise."""
            from mlops_pipeline.orchestration import score as adapter
            from mlops_pipeline.orchestration.timetables import run_window

            start, end = run_window(data_interval_start, data_interval_end, logical_date, dag_run)
            found = adapter.validated_partition(start, end, dag_run=dag_run)
            return PokeReturnValue(is_done=found is not None, xcom_value=found)

        @task
        def resolve_model(
            data_interval_start=None,
            data_interval_end=None,
            logical_date=None,
            dag_run=None,
            params=None,
        ) -> dict:
            """Refuse a window before the start date; the version to score with (Param or @champion)."""
            from mlops_pipeline.orchestration import score as adapter
            from mlops_pipeline.orchestration.timetables import run_window

            start, _ = run_window(data_interval_start, data_interval_end, logical_date, dag_run)
            return adapter.resolve_model(start, params=params)

        @task(outlets=[predictions])
        def score(
            model: dict,
            data_interval_start=None,
            data_interval_end=None,
            logical_date=None,
            dag_run=None,
            params=None,
            run_id=None,
            outlet_events=None,
        ) -> dict:
            """Score the window's validated partition into predictions/ds=... and announce it on the asset."""
            from mlops_pipeline.orchestration import score as adapter
            from mlops_pipeline.orchestration.timetables import run_window

            start, end = run_window(data_interval_start, data_interval_end, logical_date, dag_run)
            scored = adapter.score(start, end, model, params=params, run_id=run_id)
            outlet_events[predictions].extra = adapter.asset_extra(scored)
            return scored

        partition = wait_for_partition()
        model = resolve_model()
        partition >> model
        score(model)


    return mlops_score()


globals().update(dags_per_dataset("mlops_score", build))
