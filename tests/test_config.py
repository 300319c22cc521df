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
    (tmp_path / ".env").write_text("MLOPS_DATASET=from_dotenv\nMLOPS_ROUTER_PORT=9001\n")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLOPS_ROUTER_PORT", "9002")
    monkeypatch.delenv("MLOPS_DATASET", raising=False)
    settings = get_settings()
    assert settings.dataset == "from_dotenv"
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
