"""Deploy settings from the environment, and the backend helpers that need no engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mlops_pipeline.config import DeploySettings
from mlops_pipeline.deploy.backends import PLACEHOLDER_PORT, slot_servers


def test_defaults_are_the_documented_rollout() -> None:
    settings = DeploySettings()

    assert settings.steps == [5, 25, 50, 100] and settings.namespace == "mlops"
    assert settings.max_psi == 0.2 and settings.insufficient_traffic == "rollback"


def test_steps_and_windows_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_DEPLOY_STEPS", "10, 50,100")
    monkeypatch.setenv("MLOPS_DEPLOY_BAKE_SECONDS", "2")
    monkeypatch.setenv("MLOPS_DEPLOY_EXTRA_LABELS", '{"team": "ml"}')

    settings = DeploySettings()

    assert settings.steps == [10, 50, 100] and settings.bake_seconds == 2
    assert settings.extra_labels == {"team": "ml"}


@pytest.mark.parametrize("steps", ["5,25,50", "50,25,100", "0,100", "5,5,100"])
def test_steps_must_increase_to_100(steps: str) -> None:
    with pytest.raises(ValidationError, match="traffic steps"):
        DeploySettings(steps=steps)


def test_the_longest_bake_is_at_least_the_bake() -> None:
    with pytest.raises(ValidationError, match="max_bake_seconds"):
        DeploySettings(bake_seconds=60, max_bake_seconds=10)


def test_every_deploy_task_retries() -> None:
    """A task whose process died with its worker or scheduler must be run again, not rolled back."""
    assert DeploySettings().task_retries >= 1
    with pytest.raises(ValidationError, match="task_retries"):
        DeploySettings(task_retries=0)


def test_namespace_must_be_a_plain_name() -> None:
    with pytest.raises(ValidationError, match="namespace"):
        DeploySettings(namespace="Bad Name/")


def test_empty_slots_are_placeholders_in_maintenance() -> None:
    servers = slot_servers({"stable": {"address": "10.0.0.5", "port": 8080, "weight": 100}, "canary": None})

    assert servers[0] == {"name": "stable", "address": "10.0.0.5", "port": 8080, "weight": 100, "enabled": True}
    assert servers[1]["port"] == PLACEHOLDER_PORT and servers[1]["enabled"] is False and servers[1]["weight"] == 0


def test_prediction_logs_go_where_the_monitor_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_pipeline.config import Settings
    from mlops_pipeline.deploy.local_backend import LocalBackend

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.delenv("MLOPS_PREDICTION_LOG_DIR", raising=False)
    default = LocalBackend(Settings(lake_uri=str(tmp_path / "lake")), DeploySettings())
    assert default.prediction_log_dir() == tmp_path / ".run" / "predictions" == Settings().prediction_log_dir

    monkeypatch.setenv("MLOPS_PREDICTION_LOG_DIR", str(tmp_path / "logs"))
    configured = LocalBackend(Settings(), DeploySettings())
    assert configured.prediction_log_dir() == tmp_path / "logs" == Settings().prediction_log_dir
