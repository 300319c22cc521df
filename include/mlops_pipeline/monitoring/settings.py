"""Monitor settings: environment variables with the ``MLOPS_MONITOR_`` prefix, then ``.env``, then defaults.

Inside Airflow the decision thresholds can also be changed without a deploy, through Airflow
Variables read by the task at run time (a Variable wins over the environment):

==============================  =================================  =========
setting                         Airflow Variable                   default
==============================  =================================  =========
``drift_share_threshold``       ``mlops_drift_share_threshold``    0.3
``feature_drift_threshold``     ``mlops_monitor_feature_drift_threshold``  0.1
``key_features``                ``mlops_monitor_key_features``     (none)
``roc_auc_floor``               ``mlops_monitor_roc_auc_floor``    0.70
``max_relative_drop``           ``mlops_monitor_max_relative_drop``  0.05
``min_rows``                    ``mlops_monitor_min_rows``         500
``min_labelled_rows``           ``mlops_monitor_min_labelled_rows``  200
``cooldown_days``               ``mlops_monitor_cooldown_days``    3
``trigger_on_backfill``         ``mlops_monitor_trigger_on_backfill``  false
==============================  =================================  =========

The prediction log folder is ``MLOPS_PREDICTION_LOG_DIR`` (the variable the serving app writes
to), by default ``<project>/.run/predictions``. Nothing is read at import time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Settings an Airflow Variable may override, and the Variable's name.
VARIABLE_NAMES: dict[str, str] = {
    "drift_share_threshold": "mlops_drift_share_threshold",
    "feature_drift_threshold": "mlops_monitor_feature_drift_threshold",
    "key_features": "mlops_monitor_key_features",
    "roc_auc_floor": "mlops_monitor_roc_auc_floor",
    "max_relative_drop": "mlops_monitor_max_relative_drop",
    "min_rows": "mlops_monitor_min_rows",
    "min_labelled_rows": "mlops_monitor_min_labelled_rows",
    "cooldown_days": "mlops_monitor_cooldown_days",
    "trigger_on_backfill": "mlops_monitor_trigger_on_backfill",
}


def _default_log_dir() -> Path:
    from mlops_pipeline.config import Settings

    return Settings().prediction_log_dir  # read afresh: the project's MLOPS_PREDICTION_LOG_DIR


class MonitorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_MONITOR_", extra="ignore", populate_by_name=True)

    # --- inputs ----------------------------------------------------------------------------
    prediction_log_dir: Path = Field(
        default_factory=_default_log_dir,
        validation_alias=AliasChoices("MLOPS_MONITOR_PREDICTION_LOG_DIR"),
        description="Folder of ds=YYYY-MM-DD/predictions-*.jsonl files written by the serving app",
    )
    log_scan: Literal["auto", "window", "all"] = Field(
        default="auto",
        description=(
            "Which ds= log partitions to read (a row belongs to the window by its event time): 'window' = the "
            "prediction days around the window; 'all' = every partition; 'auto' = 'window', then 'all' when those "
            "hold no row of the window (traffic replayed later, as the demo does)"
        ),
    )
    log_scan_days_after: int = Field(default=1, ge=0, description="Late partitions read after the window (window scan)")
    match_champion_version: bool = Field(
        default=True, description="Prediction drift and quality use only the rows the @champion version served"
    )

    # --- drift verdicts -------------------------------------------------------------------------
    feature_drift_threshold: float = Field(
        default=0.1, gt=0, description="Per feature: normed Wasserstein (numeric) or Jensen-Shannon distance at or above this = drift"
    )
    drift_share_threshold: float = Field(default=0.3, gt=0, le=1, description="Share of drifted features that is dataset drift")
    key_features: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Features whose drift alone asks for a retrain")
    min_rows: int = Field(default=500, ge=1, description="Fewest window rows for a drift verdict")
    report_sample_rows: int = Field(default=20_000, ge=100, description="Rows of the window in the Evidently report")
    sample_seed: int = 42

    # --- performance ------------------------------------------------------------------------------
    roc_auc_floor: float = Field(default=0.70, ge=0, le=1, description="ROC AUC on arrived labels below this = performance")
    max_relative_drop: float = Field(
        default=0.05, ge=0, lt=1, description="ROC AUC below champion holdout * (1 - this) = performance"
    )
    min_labelled_rows: int = Field(default=200, ge=1, description="Fewest labelled rows for a performance verdict")
    performance_window_days: int = Field(default=1, ge=1, description="Event days (the latest with labels) scored for quality")

    # --- decision -------------------------------------------------------------------------------
    cooldown_days: int = Field(default=3, ge=0, description="No second retrain within this many days of the last one")
    cooldown_reasons: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["drift", "performance"], description="Training runs (trigger_reason) that count as retrains"
    )
    trigger_on_backfill: bool = Field(default=False, description="Backfill runs may trigger retraining too")

    # --- outputs ----------------------------------------------------------------------------------
    reports_prefix: str = Field(default="reports/drift", description="Lake folder of the reports (ds=... below)")
    experiment_name: str | None = Field(default=None, description="MLflow experiment; default: '<model name>-monitoring'")
    log_to_mlflow: bool = True

    # --- alerts -----------------------------------------------------------------------------------
    alert_webhook_conn_id: str | None = Field(
        default=None, description="Airflow connection (http) whose URL receives alerts as JSON POSTs"
    )
    alert_email_to: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Recipients of alert e-mails (SMTP)")
    alert_smtp_conn_id: str = Field(default="smtp_default", description="Airflow SMTP connection for alert e-mails")

    @field_validator("key_features", "alert_email_to", "cooldown_reasons", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        return parse_list(value)

    def experiment_for(self, model_name: str) -> str:
        return self.experiment_name or f"{model_name}-monitoring"


def parse_list(value: object) -> object:
    """A JSON list or a comma-separated string (what people type into an env var or a Variable)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def with_overrides(settings: MonitorSettings, overrides: Mapping[str, Any]) -> MonitorSettings:
    """``settings`` with the given fields replaced, validated (strings from Variables are coerced)."""
    unknown = sorted(set(overrides) - set(MonitorSettings.model_fields))
    if unknown:
        raise ValueError(f"unknown monitor settings {unknown}")
    merged = {**settings.model_dump(), **overrides}
    return MonitorSettings.model_validate(merged)


def variable_overrides(get_variable: Callable[[str], str | None]) -> dict[str, str]:
    """The overrides found through ``get_variable(name)`` (None = not set), keyed by setting name."""
    found = {}
    for field_name, variable in VARIABLE_NAMES.items():
        value = get_variable(variable)
        if value is not None and str(value).strip() != "":
            found[field_name] = value
    return found


@functools.cache
def get_monitor_settings() -> MonitorSettings:
    from mlops_pipeline.config import project_home

    env_file = project_home() / ".env"
    return MonitorSettings(_env_file=env_file if env_file.is_file() else None)  # type: ignore[call-arg]
