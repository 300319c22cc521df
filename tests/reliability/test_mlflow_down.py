"""The MLflow server goes down in the middle of a training run: the task fails with an error naming
the server after MLflow's own retries, nothing is half-registered, and Airflow's retry (same run id)
registers exactly one complete version once the server is back.

The server is a real ``mlflow server`` of this test's own (the session's is shared); it is stopped at
the worst moment: the model is logged, the registry entry not yet created.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.mlflow_fixtures import (
    _clear_settings_caches,
    launch_mlflow_server,
    quiet_mlflow_environment,
    wait_until_healthy,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def test_mlflow_down_mid_training(tmp_path: Path, validated_lake, monkeypatch: pytest.MonkeyPatch, reliability) -> None:
    import mlflow
    from mlflow import MlflowClient

    from mlops_pipeline.registry import lineage
    from mlops_pipeline.training.pipeline import TrainRequest, train_and_register

    root = tmp_path / "mlflow"
    server = wait_until_healthy(launch_mlflow_server(root))
    first_port = server.port
    model_name = f"churn-down-{uuid.uuid4().hex[:8]}"
    previous_uri, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        for key, value in {
            **quiet_mlflow_environment(),
            "MLOPS_LAKE_URI": validated_lake.uri,
            "MLFLOW_TRACKING_URI": server.uri,
            "MLOPS_MODEL_NAME": model_name,
            "MLOPS_DATASET": "churn",
        }.items():
            monkeypatch.setenv(key, value)
        _clear_settings_caches()
        real_register = lineage.register_version

        def server_dies_first(*args, **kwargs):  # type: ignore[no-untyped-def]
            server.stop()
            return real_register(*args, **kwargs)

        monkeypatch.setattr(lineage, "register_version", server_dies_first)
        request = TrainRequest(as_of=validated_lake.day_after, dag_run_id="manual__reliability")
        started = time.monotonic()
        with pytest.raises(Exception) as failure:  # noqa: PT011 - the type is MLflow's; the message is asserted
            train_and_register(request)
        failed_after = time.monotonic() - started
        message = str(failure.value)

        # The server comes back (same store, another port): nothing half-registered, then the retry.
        monkeypatch.setattr(lineage, "register_version", real_register)
        server = wait_until_healthy(launch_mlflow_server(root))
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        _clear_settings_caches()
        client = MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
        versions_after_failure = client.search_model_versions(f"name='{model_name}'")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], f"tags.dag_run_id = '{request.dag_run_id}'")
        retried = train_and_register(request)
        versions = client.search_model_versions(f"name='{model_name}'")
    finally:
        server.stop()
        mlflow.set_tracking_uri(previous_uri)
        mlflow.set_registry_uri(previous_registry)
        _clear_settings_caches()

    reliability.record(
        "faults",
        "MLflow server down mid-training (model logged, not yet registered)",
        "clear failure naming the server after retries; no version registered; the retry registers one complete version",
        failed_after_s=round(failed_after, 1),
        error=message.splitlines()[0][:90],
        versions_after_failure=len(versions_after_failure),
        versions_after_retry=len(versions),
    )
    assert f"127.0.0.1:{first_port}" in message and ("Max retries" in message or "not reachable" in message or "Connection" in message), message[:2000]
    assert versions_after_failure == []
    assert runs and all(run.info.status != "FINISHED" for run in runs)  # the interrupted run never looks complete
    assert len(versions) == 1 and str(versions[0].version) == str(retried["version"])
    assert versions[0].tags.get("artifact_sha256"), versions[0].tags
