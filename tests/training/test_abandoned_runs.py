"""A try whose process died (a SIGKILLed worker) leaves its MLflow run RUNNING; the next try of the same
Airflow run ends it, and its nested runs, as KILLED with a tag saying why. Other runs are untouched.
Against a real ``mlflow server``."""

from __future__ import annotations

import uuid

from mlops_pipeline.contracts.tags import DAG_RUN_ID
from mlops_pipeline.training.recorder import ABANDONED_TAG, end_abandoned


def test_the_next_try_ends_the_dead_tries_runs_and_nothing_else(mlflow_server) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    experiment_id = client.create_experiment(f"abandoned-{uuid.uuid4().hex[:8]}")
    dag_run_id, digest = "manual__2026-05-20T00:00:00+00:00", "d1"
    dead = client.create_run(experiment_id, tags={DAG_RUN_ID: dag_run_id, "request_digest": digest}).info.run_id
    nested = client.create_run(experiment_id, tags={"mlflow.parentRunId": dead}).info.run_id
    other_inputs = client.create_run(experiment_id, tags={DAG_RUN_ID: dag_run_id, "request_digest": "d2"}).info.run_id
    finished = client.create_run(experiment_id, tags={DAG_RUN_ID: dag_run_id, "request_digest": digest}).info.run_id
    client.set_terminated(finished, status="FINISHED")

    assert sorted(end_abandoned(client, experiment_id, dag_run_id, digest)) == sorted([dead, nested])

    for run_id in (dead, nested):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and dag_run_id in run.data.tags[ABANDONED_TAG]
    assert client.get_run(other_inputs).info.status == "RUNNING"
    assert client.get_run(finished).info.status == "FINISHED"
    assert end_abandoned(client, experiment_id, dag_run_id, digest) == []  # a second retry finds none
