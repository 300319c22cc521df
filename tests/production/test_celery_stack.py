"""The production shape, started for real: CeleryExecutor on Redis with two workers, the lake and
MLflow's artifacts on S3, MLflow on PostgreSQL (:mod:`mlops_dev.production`).

The S3 server is moto in server mode, not MinIO (compose's choice): MinIO's binaries come from its own
download site, which CI machines with only PyPI and Debian cannot reach. Both speak the S3 HTTP API the
code uses. The scheduler drives every run; the tests create a backfill or one trigger and observe
through the REST API, then read the lake and the registry as a user would.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, AirflowDatabases, free_port

pytestmark = pytest.mark.integration

DAYS = ["2026-02-01", "2026-02-02", "2026-02-03", "2026-02-04"]


@dataclass
class ProductionStack:
    env: dict[str, str]
    description: dict[str, Any]

    def api(self):
        from mlops_dev.airflow_api import AirflowAPI

        passwords = Path(self.description["airflow_home"]) / "simple_auth_manager_passwords.json.generated"
        return AirflowAPI(self.description["airflow_url"], password=json.loads(passwords.read_text())["admin"])

    def s3(self):
        import boto3

        credentials = self.description["credentials"]
        return boto3.client(
            "s3", endpoint_url=self.description["s3_endpoint_url"], region_name=credentials["AWS_DEFAULT_REGION"],
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"], aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )

    def worker_hostnames(self) -> set[str]:
        """What each worker records as a task instance's hostname (mlops_dev.production.worker_hostname)."""
        return {f"{name}-{socket.getfqdn()}" for name in self.description["workers"]}


def _production(env: dict[str, str], *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops_dev.production", *argv], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def production_stack(tmp_path_factory: pytest.TempPathFactory, airflow_databases: AirflowDatabases) -> Iterator[ProductionStack]:
    """The stack on its own Airflow metadata database (a copy of the migrated template), run dir,
    Airflow home and ports; its MLflow database sits beside it on the same server."""
    from tests.mlflow_fixtures import small_search_environment

    base = tmp_path_factory.mktemp("production-stack")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW__", "MLOPS_", "AWS_")) and k != "MLFLOW_TRACKING_URI"}
    database_url = airflow_databases.create()
    env.update({
        "MLOPS_HOME": str(REPO),
        "AIRFLOW_HOME": str(base / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        "MLOPS_RUN_DIR": str(base / "run"),
        "MLOPS_AIRFLOW_PORT": str(free_port()),
        "MLOPS_MLFLOW_PORT": str(free_port()),
        # One task at a time per worker: the backfill's four runs queued at once cannot all go to one.
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        **small_search_environment(),
    })
    mlflow_database = urllib.parse.urlsplit(database_url).path.lstrip("/") + "_mlflow"
    try:
        started = _production(env, "up", "--mlflow-database", mlflow_database, timeout=400)
        assert started.returncode == 0, f"the production stack did not start:\n{started.stdout[-3000:]}\n{started.stderr[-5000:]}"
        description = json.loads((base / "run" / "production.json").read_text())
        yield ProductionStack(env=env, description=description)
    finally:
        stopped = _production(env, "down", "--drop-mlflow-database", timeout=300)
        assert stopped.returncode == 0, stopped.stderr[-3000:]


def test_a_backfill_runs_on_both_celery_workers_into_the_s3_lake(production_stack, monkeypatch):
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.storage import open_lake

    api = production_stack.api()
    api.wait_for_dag("mlops_ingest", timeout=300)
    api.backfill("mlops_ingest", DAYS[0], DAYS[-1], max_active_runs=4)
    runs = api.wait_for_runs("mlops_ingest", run_type="backfill", expected=len(DAYS), timeout=600)
    assert [r["state"] for r in runs] == ["success"] * len(DAYS), runs

    task_instances = [ti for run in runs for ti in api.task_instances("mlops_ingest", run["dag_run_id"])]
    assert {ti["hostname"] for ti in task_instances} == production_stack.worker_hostnames()
    assert {ti["queue"] for ti in task_instances} == {"default"}
    # Task logs are on S3 (remote logging): the api-server reads each worker's from there.
    bucket = production_stack.description["bucket"]
    for hostname in production_stack.worker_hostnames():
        ti = next(ti for ti in task_instances if ti["hostname"] == hostname)
        log = api.task_log("mlops_ingest", ti["dag_run_id"], ti["task_id"], ti["try_number"])
        assert f"s3://{bucket}/airflow-logs/" in log, log[:2000]

    # The validated partitions are in the S3 lake, read through the project's lake code ...
    for key, value in {
        "MLOPS_LAKE_URI": production_stack.description["lake_uri"],
        "MLOPS_S3_ENDPOINT_URL": production_stack.description["s3_endpoint_url"],
        **production_stack.description["credentials"],
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        lake = open_lake(get_settings())
        assert set(DAYS) <= set(lake.list_partitions("validated"))
    finally:
        get_settings.cache_clear()
    # ... and byte for byte as their manifests say, read with plain boto3
    s3 = production_stack.s3()
    for ds in DAYS:
        prefix = f"lake/validated/ds={ds}"
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/_manifest.json")["Body"].read())
        assert manifest["files"], f"ds={ds}: an empty manifest"
        for entry in manifest["files"]:
            body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{entry['path']}")["Body"].read()
            assert hashlib.sha256(body).hexdigest() == entry["sha256"], f"ds={ds}: {entry['path']}"


def test_a_training_run_registers_a_model_with_artifacts_in_s3_through_mlflow_on_postgres(production_stack):
    """Trains on the days the backfill above validated (the module's stack is shared, in file order)."""
    import psycopg2
    from mlflow import MlflowClient

    api = production_stack.api()
    api.wait_for_dag("mlops_train", timeout=300)
    train_run = api.trigger(
        "mlops_train", conf={"reason": "production", "candidates": ["baseline"]}, logical_date="2026-02-05T03:00:00Z"
    )["dag_run_id"]
    api.set_paused("mlops_train", False)
    [trained] = api.wait_for_runs("mlops_train", {train_run}, timeout=600)
    task_instances = {ti["task_id"]: ti for ti in api.task_instances("mlops_train", train_run)}
    assert trained["state"] == "success", {task_id: ti["state"] for task_id, ti in task_instances.items()}
    for task_id in ("train", "gate"):
        assert task_instances[task_id]["state"] == "success"
        assert task_instances[task_id]["pool"] == "training", task_instances[task_id]
        assert task_instances[task_id]["hostname"] in production_stack.worker_hostnames()

    # Both URIs named: an earlier test of the session may have set MLflow's process-wide registry URI
    # (mlflow.set_registry_uri), which a client given only its tracking URI would use for the registry.
    uri = production_stack.description["mlflow_tracking_uri"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    [version] = client.search_model_versions("name = 'churn'")
    run = client.get_run(version.run_id)
    assert run.data.tags["dag_run_id"] == train_run
    assert (run.data.params["window.first_ds"], run.data.params["window.last_ds"]) == (DAYS[0], DAYS[-1])

    # The registry is the PostgreSQL database of the stack's MLflow ...
    database_url = urllib.parse.urlsplit(production_stack.description["airflow_database_url"])
    connection = psycopg2.connect(
        host=database_url.hostname, port=database_url.port, dbname=production_stack.description["mlflow_database"],
        user=urllib.parse.unquote(database_url.username or ""), password=urllib.parse.unquote(database_url.password or ""),
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT version, run_id FROM model_versions WHERE name = 'churn'")
            assert cursor.fetchall() == [(int(version.version), version.run_id)]
    finally:
        connection.close()

    # ... and the model's files are objects in the MLflow bucket: the bytes MLflow serves are S3's
    import mlflow.artifacts

    model_id = version.source.removeprefix("models:/")
    location = client.get_logged_model(model_id).artifact_location
    assert location.startswith("mlflow-artifacts:"), location  # served through the server: clients need no S3 keys
    s3 = production_stack.s3()
    bucket = production_stack.description["mlflow_bucket"]
    key = f"artifacts/{run.info.experiment_id}/models/{model_id}/artifacts/MLmodel"
    served = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{location}/MLmodel", tracking_uri=production_stack.description["mlflow_tracking_uri"],
        dst_path=str(Path(production_stack.env["MLOPS_RUN_DIR"]) / "downloaded"),
    )
    assert Path(served).read_bytes() == s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    run_files = s3.list_objects_v2(Bucket=bucket, Prefix=f"artifacts/{run.info.experiment_id}/{run.info.run_id}/artifacts/")
    assert any(o["Key"].endswith("/train_result.json") for o in run_files.get("Contents", [])), run_files
