"""The client factory, aliases and recorded gate decisions against a real MLflow server."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from mlops_pipeline.config import RegistrySettings
from mlops_pipeline.registry import CHALLENGER, CHAMPION, promote
from mlops_pipeline.registry.aliases import version_for_alias
from mlops_pipeline.registry.client import RegistryUnavailable, mlflow_client, tracking_uri
from mlops_pipeline.registry.gate import GateConfig, decide, record_decision, recorded_decision
from tests.mlflow_fixtures import free_port

pytestmark = pytest.mark.integration


def _new_versions(client: MlflowClient, name: str, count: int) -> list[str]:
    """Versions pointing at an (empty) run artifact folder: enough for alias and tag tests."""
    experiment_id = client.create_experiment(f"{name}-exp")
    run = client.create_run(experiment_id)
    client.create_registered_model(name)
    return [
        client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version
        for _ in range(count)
    ]


def test_tracking_uri_comes_from_mlflow_tracking_uri(mlops_env, monkeypatch):
    from mlops_pipeline.config import get_settings

    assert tracking_uri() == mlops_env.tracking_uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("MLOPS_MLFLOW_PORT", "5123")
    get_settings.cache_clear()
    assert tracking_uri() == "http://127.0.0.1:5123"


def test_client_factory_talks_to_the_server(mlops_env):
    client = mlflow_client()
    assert client.tracking_uri == mlops_env.tracking_uri
    assert client.search_experiments(max_results=1) is not None


def test_unreachable_server_fails_with_the_uri_after_backoff(monkeypatch):
    from mlops_pipeline.config import Settings

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match=rf"MLflow tracking server {dead} is not reachable after 3 attempt"):
        mlflow_client(Settings(), RegistrySettings(connect_attempts=3, connect_backoff_seconds=0.1))
    assert 0.25 < time.monotonic() - started < 10  # waited 0.1 + 0.2 between the attempts


def test_promote_sets_champion_and_clears_its_challenger(mlops_env):
    client = MlflowClient(mlops_env.tracking_uri)
    name = mlops_env.model_name
    v1, v2, v3 = _new_versions(client, name, 3)
    assert version_for_alias(client, name, CHAMPION) is None

    client.set_registered_model_alias(name, CHALLENGER, v1)
    promote(v1)
    assert version_for_alias(client, name, CHAMPION).version == v1
    assert version_for_alias(client, name, CHALLENGER) is None

    # A newer challenger survives the promotion of an older version.
    client.set_registered_model_alias(name, CHALLENGER, v3)
    promote(v2)
    assert version_for_alias(client, name, CHAMPION).version == v2
    assert version_for_alias(client, name, CHALLENGER).version == v3
    promote(v2)  # idempotent
    assert version_for_alias(client, name, CHAMPION).version == v2

    with pytest.raises(Exception, match="not found|does not exist|RESOURCE_DOES_NOT_EXIST"):
        promote("99")


def test_recorded_decisions(mlops_env):
    client = MlflowClient(mlops_env.tracking_uri)
    name = mlops_env.model_name
    good, bad = _new_versions(client, name, 2)
    config = GateConfig()

    record_decision(client, name, good, decide(0.8, config))
    assert version_for_alias(client, name, CHALLENGER).version == good
    assert recorded_decision(client.get_model_version(name, good)).passed

    rejection = decide(0.6, config, champion_version=good, n=1000, positives=300)
    record_decision(client, name, bad, rejection)
    tags = client.get_model_version(name, bad).tags
    assert tags["rejected"] == "true" and tags["rejection_reason"] == rejection.reason
    assert tags["gate_status"] == "rejected"
    assert recorded_decision(client.get_model_version(name, bad)) == rejection
    assert version_for_alias(client, name, CHALLENGER).version == good  # no alias moved
