"""Training and gate settings: environment variables with the ``MLOPS_TRAIN_`` prefix, then defaults.

Like :mod:`mlops_pipeline.config`, nothing is read at import time; call :func:`get_training_settings`
(tests call ``get_training_settings.cache_clear()`` after changing the environment). A DAG run's
Params override ``days``, ``seed``, ``candidates`` and ``hyperparameters`` for that run only.

Gate defaults: a candidate must reach ROC AUC 0.70 on the holdout (the floor), and must not score
more than 1 % below the current ``@champion`` on the same holdout (``champion * (1 - 0.01)``). The
tolerance keeps a retrain on fresh data from being rejected for noise-level differences, while a
model that is clearly worse never reaches ``@challenger``.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CandidateName = Literal["baseline", "xgboost"]
GateMetric = Literal["roc_auc", "pr_auc"]
DEFAULT_CANDIDATES: tuple[CandidateName, ...] = ("baseline", "xgboost")


class TrainingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_TRAIN_", extra="ignore")

    # --- data window and split ---------------------------------------------------------
    days: int = Field(default=28, ge=1, le=3650, description="Train on the last N validated days before the run's date")
    valid_fraction: float = Field(default=0.15, gt=0, lt=0.5, description="Share of rows (by event time) for validation")
    holdout_fraction: float = Field(default=0.15, gt=0, lt=0.5, description="Latest share of rows for the holdout")
    min_split_rows: int = Field(default=50, ge=1, description="Fewest rows a train/valid/holdout split may have")

    # --- candidates --------------------------------------------------------------------
    candidates: list[CandidateName] = Field(default_factory=lambda: list(DEFAULT_CANDIDATES), min_length=1)
    hyperparameters: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description='Overrides per candidate, e.g. {"xgboost": {"max_depth": 3}}'
    )
    seed: int = Field(default=42, description="Seed of every random choice in training")
    nthread: int = Field(default=1, ge=1, description="XGBoost threads; fixed so results are reproducible (raise for big data)")

    # --- MLflow ------------------------------------------------------------------------
    experiment_name: str | None = Field(default=None, description="MLflow experiment; default: the registered model name")
    reference_sample_rows: int = Field(
        default=5000, ge=0, description="Rows of the training split logged as the monitoring reference sample"
    )

    # --- champion/challenger gate --------------------------------------------------------
    gate_metric: GateMetric = "roc_auc"
    gate_floor: float = Field(default=0.70, ge=0, le=1, description="Absolute minimum of the gate metric on the holdout")
    gate_max_relative_drop: float = Field(
        default=0.01, ge=0, lt=1, description="Candidate must reach champion * (1 - this) on the same holdout"
    )

    @model_validator(mode="after")
    def _fractions_leave_training_rows(self) -> TrainingSettings:
        if self.valid_fraction + self.holdout_fraction >= 0.8:
            raise ValueError(
                f"valid_fraction {self.valid_fraction} + holdout_fraction {self.holdout_fraction} leave too few training rows"
            )
        return self


@functools.cache
def get_training_settings() -> TrainingSettings:
    from mlops_pipeline.config import project_home

    env_file = project_home() / ".env"
    return TrainingSettings(_env_file=env_file if env_file.is_file() else None)  # type: ignore[call-arg]
