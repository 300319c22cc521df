"""mlops_train: the last N validated days -> candidates -> MLflow -> registered version -> gate -> @challenger.

Runs weekly (Monday 03:00 UTC), by hand, or when another DAG triggers it with conf
``{"reason": "drift", ...}`` (the monitor does). Its window is the ``validated/ds=...`` partitions
of the N days before the run's data interval end (the logical date it was given, for a manual
run: Airflow infers a manual run's interval from when it was created), so a
backfill for an old date trains on exactly the data that existed before that date.

1. ``train``: split by event time (train / valid / holdout); per candidate (a scikit-learn baseline,
   XGBoost) an Optuna search on rolling time-series folds within a trial and time budget, the fit,
   calibration of the winner on valid (isotonic or Platt by cross-validation), each threshold chosen
   on valid, evaluation on holdout; everything logged to one MLflow run with a nested run per
   candidate and per trial (params, metrics, lake datasets with digests, git commit, environment,
   SHAP importances, the model with its ``metadata.mlops`` contract and calibration); the best
   candidate registered as a new version.
2. ``gate``: score the new version and the current ``@champion`` on the same holdout rows; pass when
   it reaches the floor and the confidence interval of the paired difference (DeLong for ROC AUC)
   shows it non-inferior within the margin -> ``@challenger``; fail -> the version stays
   registered, tagged ``rejected=true`` with the reason, no alias moves, and the run stops here.
3. ``announce_challenger``: updates the ``mlops_challenger`` asset, which the deploy DAG listens to.

``train`` and ``gate`` run in the ``training`` pool (one slot: trainings never compete for cores). A retried
``train`` reuses its finished MLflow run instead of registering a second version; a re-run gate
returns the recorded decision. Settings: ``MLOPS_TRAIN_*`` (window, split, seed, search budget,
calibration), ``MLOPS_REGISTRY_GATE_*`` (floor, margin, mode), ``MLFLOW_TRACKING_URI``, ``MLOPS_MODEL_NAME``.

The DAG has no Airflow ``start_date``: a run may be for any date, also years back (a user's history,
or the monitor's trigger for an old window). ``train`` refuses a date before the configured start
date (the dataset file's ``start_date`` or ``MLOPS_START_DATE``) and fails on a date without
validated data before it, naming the date. The tasks live in :mod:`mlops_pipeline.orchestration.train`.

This file builds one such DAG per dataset of the installation: ``mlops_train`` for the primary one
(``MLOPS_DATASET``), ``mlops_train__<name>`` for each other dataset file, each with its own model, lake folder
and router (:mod:`mlops_pipeline.orchestration.datasets`).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset, Param, dag, task

from mlops_pipeline.orchestration.datasets import DatasetDags, dags_per_dataset
from mlops_pipeline.orchestration.train import CANDIDATES, CHALLENGER_ASSET_NAME, MLFLOW_IDENTITY


def build(ds: DatasetDags) -> DAG:
    challenger = Asset(name=ds.asset_name(CHALLENGER_ASSET_NAME))  # the deploy DAG of this dataset listens

    @dag(
        dag_id=ds.dag_id("mlops_train"),
        schedule="0 3 * * 1",
        catchup=False,
        max_active_runs=1,
        default_args={
            "pool": "training",
            "on_execute_callback": ds.callbacks(MLFLOW_IDENTITY),  # this dataset; Airflow connection mlflow_train, if any
            "retries": 1,
            "retry_delay": timedelta(minutes=1),
            "execution_timeout": timedelta(minutes=60),
        },
        params={
            "reason": Param(
                "manual",
                type="string",
                minLength=1,
                maxLength=250,
                title="Reason",
                description="Why this training runs; tagged on the MLflow run as trigger_reason (the monitor sends 'drift').",
            ),
            "days": Param(
                None,
                type=["null", "integer"],
                minimum=1,
                maximum=3650,
                title="Training days",
                description="Train on the last N validated days before the run's date. Empty: MLOPS_TRAIN_DAYS (default 28).",
            ),
            "candidates": Param(
                [],
                type="array",
                items={"type": "string", "enum": CANDIDATES},
                uniqueItems=True,
                examples=CANDIDATES,
                title="Candidates",
                description="Which models to train. Empty: MLOPS_TRAIN_CANDIDATES (default both).",
            ),
            "hyperparameters": Param(
                {},
                type="object",
                title="Hyperparameter overrides",
                description='Per candidate, e.g. {"xgboost": {"max_depth": 3, "n_estimators": 200}, "baseline": {"C": 0.5}}.',
            ),
            "seed": Param(
                None,
                type=["null", "integer"],
                title="Seed",
                description="Empty: MLOPS_TRAIN_SEED (default 42). Same data, settings and seed give the same model.",
            ),
        },
        tags=ds.tags("mlops", "train"),
        doc_md=ds.doc(__doc__),
    )
    def mlops_train():
        @task
        def train(params=None, dag_run=None, data_interval_end=None, logical_date=None) -> dict:
            """Assemble the window, fit and evaluate the candidates, log to MLflow, register the best."""
            from mlops_pipeline.orchestration import train as adapter

            return adapter.train(params, dag_run=dag_run, data_interval_end=data_interval_end, logical_date=logical_date)

        @task.short_circuit
        def gate(candidate: dict, ti=None) -> dict | bool:
            """Candidate vs @champion on the same holdout; only a pass lets the run continue. The decision
            is kept under the XCom key ``decision`` either way, so a rejection shows its reason."""
            from mlops_pipeline.orchestration import train as adapter

            decision = adapter.gate(candidate)
            ti.xcom_push(key="decision", value=decision)
            return decision if decision["passed"] else False

        @task(outlets=[challenger], pool="default_pool")
        def announce_challenger(decision: dict, outlet_events=None) -> dict:
            """Tell the deploy DAG which version became @challenger (an asset event with the version)."""
            from mlops_pipeline.orchestration import train as adapter

            summary = adapter.announce_challenger(decision)
            outlet_events[challenger].extra = summary
            return summary

        announce_challenger(gate(train()))


    return mlops_train()


globals().update(dags_per_dataset("mlops_train", build))
