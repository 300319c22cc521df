"""Bad input: each case fails with a clear error, and nothing reaches the registry."""

from __future__ import annotations

import time
from datetime import date

import pytest
from mlflow import MlflowClient

from mlops_pipeline.registry.client import RegistryUnavailable
from mlops_pipeline.training.candidates import HyperparameterError
from mlops_pipeline.training.data import TrainingDataError
from mlops_pipeline.training.pipeline import TrainRequest, train_and_register
from tests.mlflow_fixtures import free_port
from tests.training.lake_helpers import synthetic_lake

pytestmark = pytest.mark.integration


def _use_lake(monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    from mlops_pipeline.config import get_settings

    monkeypatch.setenv("MLOPS_LAKE_URI", uri)
    get_settings.cache_clear()


def _assert_nothing_registered(client: MlflowClient, name: str) -> None:
    assert list(client.search_model_versions(f"name = '{name}'")) == []
    experiment = client.get_experiment_by_name(name)
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []


def test_empty_window_registers_nothing(mlops_env):
    with pytest.raises(TrainingDataError, match=r"empty training window: no validated partition before ds=2026-01-01"):
        train_and_register(TrainRequest(as_of=mlops_env.lake.first_day))
    _assert_nothing_registered(MlflowClient(mlops_env.tracking_uri), mlops_env.model_name)


def test_single_class_window_registers_nothing(mlops_env, monkeypatch, tmp_path):
    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 3, rows=400, alter=lambda f: f.assign(churned=0))
    _use_lake(monkeypatch, lake.uri)
    with pytest.raises(TrainingDataError, match=r"single class \(churned=0"):
        train_and_register(TrainRequest(as_of=date(2026, 1, 4)))
    _assert_nothing_registered(MlflowClient(mlops_env.tracking_uri), mlops_env.model_name)


def test_missing_feature_column_registers_nothing(mlops_env, monkeypatch, tmp_path):
    def drop_age_on_day_two(frame):
        return frame.drop(columns=["age"]) if frame["event_time"].iloc[0].day == 2 else frame

    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 3, rows=400, alter=drop_age_on_day_two)
    _use_lake(monkeypatch, lake.uri)
    with pytest.raises(TrainingDataError, match=r"validated/ds=2026-01-02 .* lacks column\(s\) \['age'\]"):
        train_and_register(TrainRequest(as_of=date(2026, 1, 4)))
    _assert_nothing_registered(MlflowClient(mlops_env.tracking_uri), mlops_env.model_name)


def test_unknown_hyperparameter_is_refused_before_any_work(mlops_env):
    with pytest.raises(HyperparameterError, match=r"unknown xgboost hyperparameter\(s\) \['depth'\]"):
        train_and_register(TrainRequest(as_of=mlops_env.lake.day_after, hyperparameters={"xgboost": {"depth": 3}}))
    _assert_nothing_registered(MlflowClient(mlops_env.tracking_uri), mlops_env.model_name)


def test_mlflow_down_fails_clearly_after_retries(mlops_env, monkeypatch):
    from mlops_pipeline.config import get_settings

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    monkeypatch.setenv("MLOPS_REGISTRY_CONNECT_ATTEMPTS", "3")
    monkeypatch.setenv("MLOPS_REGISTRY_CONNECT_BACKOFF_SECONDS", "0.2")
    get_settings.cache_clear()
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable) as info:
        train_and_register(TrainRequest(as_of=mlops_env.lake.day_after))
    assert f"MLflow tracking server {dead} is not reachable after 3 attempt(s)" in str(info.value)
    assert 0.5 < time.monotonic() - started < 30  # backoff 0.2 + 0.4, then a clear failure (not minutes)
    _assert_nothing_registered(MlflowClient(mlops_env.tracking_uri), mlops_env.model_name)
