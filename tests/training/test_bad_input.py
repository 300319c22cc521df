"""Bad input: each case fails with a clear error naming the run and the step, and nothing reaches the
registry: no run, no version, no alias moved."""

from __future__ import annotations

import time
from datetime import date

import pytest
from mlflow import MlflowClient

from mlops_pipeline.registry.client import RegistryUnavailable
from mlops_pipeline.training.candidates import HyperparameterError
from mlops_pipeline.training.data import TrainingDataError
from mlops_pipeline.training.pipeline import TrainingStepError, TrainRequest, train_and_register
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


def _stand_in_champion(client: MlflowClient, name: str) -> dict[str, str]:
    """One registered version (outside the training experiment) holding @champion and @challenger."""
    run = client.create_run(client.create_experiment(f"{name}-stand-in"))
    client.create_registered_model(name)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version
    for alias in ("champion", "challenger"):
        client.set_registered_model_alias(name, alias, version)
    return {"champion": str(version), "challenger": str(version)}


def _assert_untouched(client: MlflowClient, name: str, aliases: dict[str, str]) -> None:
    """Only the stand-in version exists, its aliases stayed, and the training experiment has no run."""
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == [aliases["champion"]]
    assert {alias: client.get_model_version_by_alias(name, alias).version for alias in aliases} == aliases
    experiment = client.get_experiment_by_name(name)
    assert experiment is None or client.search_runs([experiment.experiment_id]) == []


def test_a_single_class_holdout_fails_at_prepare_naming_the_run(mlops_env, monkeypatch, tmp_path):
    def no_churn_on_the_last_afternoon(frame):
        if frame["event_time"].iloc[0].day != 3:
            return frame
        return frame.assign(churned=frame["churned"].where(frame["event_time"] < frame["event_time"].iloc[len(frame) // 2], 0))

    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 3, rows=400, alter=no_churn_on_the_last_afternoon)
    _use_lake(monkeypatch, lake.uri)
    client = MlflowClient(mlops_env.tracking_uri)
    aliases = _stand_in_champion(client, mlops_env.model_name)
    with pytest.raises(TrainingStepError) as failed:
        train_and_register(TrainRequest(as_of=date(2026, 1, 4), dag_run_id="manual__holdout"))
    assert (failed.value.run, failed.value.step) == ("run manual__holdout (as of 2026-01-04)", "prepare")
    assert "the holdout split has a single class (churned=0 in all 180 rows)" in str(failed.value)
    assert "No MLflow run was started; nothing was registered and no alias moved" in str(failed.value)
    _assert_untouched(client, mlops_env.model_name, aliases)


def test_a_calibration_that_cannot_be_fitted_fails_naming_the_run(mlops_env, monkeypatch, tmp_path):
    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 3, rows=400)
    monkeypatch.setenv("MLOPS_TRAIN_VALID_FRACTION", "0.05")  # about 60 valid rows: too few positives to calibrate
    _use_lake(monkeypatch, lake.uri)
    client = MlflowClient(mlops_env.tracking_uri)
    aliases = _stand_in_champion(client, mlops_env.model_name)
    with pytest.raises(TrainingStepError, match=r"training run manual__calibration \(as of 2026-01-04\) failed at step "
                       r"calibrate \(baseline\): the valid split \(\d+ rows, \d+ of them positive\) is too small to cross-validate"):
        train_and_register(TrainRequest(as_of=date(2026, 1, 4), dag_run_id="manual__calibration", candidates=["baseline"]))
    _assert_untouched(client, mlops_env.model_name, aliases)


def test_a_search_with_no_finished_trial_fails_naming_the_run(mlops_env):
    client = MlflowClient(mlops_env.tracking_uri)
    aliases = _stand_in_champion(client, mlops_env.model_name)
    request = TrainRequest(
        as_of=mlops_env.lake.day_after, dag_run_id="manual__search", candidates=["xgboost"],
        hyperparameters={"xgboost": {"min_child_weight": -1.0}},
    )  # fmt: skip
    with pytest.raises(TrainingStepError) as failed:
        train_and_register(request)
    assert failed.value.step == "tune (xgboost)" and failed.value.run.startswith("run manual__search")
    assert "the xgboost search finished no trial: 3 of 3 trial(s)" in failed.value.reason
    assert "min_child_weight should be greater equal to 0" in failed.value.reason
    _assert_untouched(client, mlops_env.model_name, aliases)


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
