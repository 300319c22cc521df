from pathlib import Path

import pytest

from mlops_pipeline.config import Settings, get_settings


@pytest.fixture(autouse=True)
def fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_environment_with_prefix_is_read(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_LAKE_URI", str(tmp_path / "my lake"))
    monkeypatch.setenv("MLOPS_BAD_BATCH_DAYS", "2026-01-06, 2026-01-09")
    settings = get_settings()
    assert settings.lake_uri == (tmp_path / "my lake").resolve().as_uri()
    assert [d.isoformat() for d in settings.bad_batch_days] == ["2026-01-06", "2026-01-09"]


def test_mlflow_uri_follows_the_port_unless_mlflow_tracking_uri_is_set(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLOPS_MLFLOW_PORT", "5123")
    assert get_settings().mlflow_tracking_uri == "http://127.0.0.1:5123"
    get_settings.cache_clear()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert get_settings().mlflow_tracking_uri == "http://mlflow.internal:5000"


def test_dotenv_in_the_project_home_is_read_and_environment_wins(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("MLOPS_MODEL_NAME=from_dotenv\nMLOPS_ROUTER_PORT=9001\nMLOPS_TRAIN_DAYS=9\n")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLOPS_ROUTER_PORT", "9002")
    monkeypatch.delenv("MLOPS_MODEL_NAME", raising=False)
    monkeypatch.delenv("MLOPS_TRAIN_DAYS", raising=False)
    settings = get_settings()
    assert settings.model_name == "from_dotenv" and settings.train.days == 9  # groups read the same .env
    assert settings.router_port == 9002


def test_invalid_value_names_the_field(monkeypatch):
    monkeypatch.setenv("MLOPS_ROUTER_PORT", "eighty")
    with pytest.raises(ValueError, match="router_port"):
        Settings()


def test_importing_config_has_no_side_effects(tmp_path, monkeypatch):
    import importlib

    import mlops_pipeline.config as config

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    importlib.reload(config)
    assert list(Path(tmp_path).iterdir()) == []


def test_one_tree_with_nested_groups(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_TRAIN_DAYS", "11")
    monkeypatch.setenv("MLOPS_REGISTRY_GATE_FLOOR", "0.61")
    monkeypatch.setenv("MLOPS_DEPLOY_STEPS", "10, 50,100")
    monkeypatch.setenv("MLOPS_MONITOR_KEY_FEATURES", "plan, monthly_charges")
    monkeypatch.setenv("MLOPS_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("MLOPS_PREDICTION_LOG_DIR", raising=False)
    settings = get_settings()
    assert settings.train.days == 11 and settings.registry.gate_floor == 0.61
    assert settings.deploy.steps == [10, 50, 100] and settings.monitor.key_features == ["plan", "monthly_charges"]
    # one variable for the prediction-log folder; by default it follows the run dir
    assert settings.prediction_log_dir == tmp_path / "run" / "predictions"
    monkeypatch.setenv("MLOPS_PREDICTION_LOG_DIR", str(tmp_path / "logs"))
    get_settings.cache_clear()
    assert get_settings().prediction_log_dir == tmp_path / "logs"


def write_dataset(tmp_path, policy: str) -> str:
    import shutil

    from mlops_pipeline.datasets import DATASETS_DIR

    source = (DATASETS_DIR / "churn.yaml").read_text().replace("suite: ../gx/churn_suite.json", "suite: churn_suite.json")
    shutil.copy(DATASETS_DIR.parent / "gx" / "churn_suite.json", tmp_path / "churn_suite.json")
    path = tmp_path / "mine.yaml"
    path.write_text(source + policy)
    return str(path)


def test_the_dataset_policy_sets_what_the_environment_leaves(monkeypatch, tmp_path):
    dataset = write_dataset(
        tmp_path,
        "start_date: 2013-01-01\nmin_post_change_days: 2\npolicy:\n  gate: {floor: 0.6}\n"
        "  monitor: {drift_share_threshold: 0.4, cooldown_days: 5}\n  train: {days: 14}\n",
    )
    monkeypatch.setenv("MLOPS_DATASET", dataset)
    monkeypatch.setenv("MLOPS_MONITOR_COOLDOWN_DAYS", "1")
    for name in ("MLOPS_START_DATE", "MLOPS_TRAIN_DAYS", "MLOPS_REGISTRY_GATE_FLOOR", "MLOPS_MONITOR_DRIFT_SHARE_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    settings = get_settings()
    assert settings.start_date.isoformat() == "2013-01-01"
    assert settings.registry.gate_floor == 0.6 and settings.train.days == 14
    assert settings.monitor.drift_share_threshold == 0.4 and settings.monitor.min_post_change_days == 2
    assert settings.monitor.cooldown_days == 1  # the environment wins over the policy
    monkeypatch.setenv("MLOPS_START_DATE", "2014-02-01")
    get_settings.cache_clear()
    assert get_settings().start_date.isoformat() == "2014-02-01"


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("policy:\n  monitor: {drift_share: 0.4}\n", "policy.monitor.drift_share is not a setting"),
        ("policy:\n  gates: {floor: 0.4}\n", "policy.gates is not a settings group"),
        ("policy:\n  gate: {floor: 1.5}\n", "policy.gate.gate_floor"),
    ],
)
def test_a_bad_policy_names_the_file_and_the_key(monkeypatch, tmp_path, policy, message):
    from mlops_pipeline.config import SettingsError

    monkeypatch.setenv("MLOPS_DATASET", write_dataset(tmp_path, policy))
    with pytest.raises(SettingsError, match=message) as raised:
        get_settings()
    assert "mine.yaml" in str(raised.value)


def test_monitor_variables_override_and_are_validated():
    from mlops_pipeline.config import MonitorSettings
    from mlops_pipeline.orchestration.monitor import variable_overrides

    variables = {
        "mlops_drift_share_threshold": "0.4",
        "mlops_monitor_key_features": '["contract"]',
        "mlops_monitor_trigger_on_backfill": "true",
        "mlops_monitor_cooldown_days": "",  # empty: not set
    }
    overrides = variable_overrides(variables.get)
    assert overrides == {"drift_share_threshold": "0.4", "key_features": '["contract"]', "trigger_on_backfill": "true"}
    settings = MonitorSettings().with_overrides(overrides)
    assert settings.drift_share_threshold == 0.4 and settings.key_features == ["contract"]
    assert settings.trigger_on_backfill is True and settings.cooldown_days == 3
    with pytest.raises(ValueError, match="drift_share_threshold"):
        settings.with_overrides({"drift_share_threshold": "1.5"})
