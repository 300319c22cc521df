"""Monitor settings: environment, defaults, and Airflow Variable overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_pipeline.monitoring.settings import (
    MonitorSettings,
    get_monitor_settings,
    variable_overrides,
    with_overrides,
)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    for name in ("MLOPS_PREDICTION_LOG_DIR", "MLOPS_MONITOR_KEY_FEATURES", "MLOPS_MONITOR_DRIFT_SHARE_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    get_monitor_settings.cache_clear()
    yield
    get_monitor_settings.cache_clear()


def test_defaults_and_environment(monkeypatch, tmp_path):
    defaults = MonitorSettings()
    assert defaults.prediction_log_dir.parts[-2:] == (".run", "predictions")
    assert (defaults.drift_share_threshold, defaults.cooldown_days, defaults.trigger_on_backfill) == (0.3, 3, False)
    monkeypatch.setenv("MLOPS_PREDICTION_LOG_DIR", str(tmp_path))
    monkeypatch.setenv("MLOPS_MONITOR_KEY_FEATURES", "plan, monthly_charges")
    monkeypatch.setenv("MLOPS_MONITOR_DRIFT_SHARE_THRESHOLD", "0.5")
    configured = get_monitor_settings()
    assert configured.prediction_log_dir == Path(tmp_path)
    assert configured.key_features == ["plan", "monthly_charges"] and configured.drift_share_threshold == 0.5
    assert configured.experiment_for("churn") == "churn-monitoring"


def test_variables_override_and_are_validated():
    variables = {
        "mlops_drift_share_threshold": "0.4",
        "mlops_monitor_key_features": '["contract"]',
        "mlops_monitor_trigger_on_backfill": "true",
        "mlops_monitor_cooldown_days": "",  # empty: not set
    }
    overrides = variable_overrides(variables.get)
    assert overrides == {"drift_share_threshold": "0.4", "key_features": '["contract"]', "trigger_on_backfill": "true"}
    settings = with_overrides(MonitorSettings(prediction_log_dir="/logs"), overrides)
    assert settings.drift_share_threshold == 0.4 and settings.key_features == ["contract"]
    assert settings.trigger_on_backfill is True and settings.cooldown_days == 3
    assert settings.prediction_log_dir == Path("/logs")
    with pytest.raises(ValueError, match="drift_share_threshold"):
        with_overrides(settings, {"drift_share_threshold": "1.5"})
