"""The one settings object of the project.

Values come from environment variables with the ``MLOPS_`` prefix, then a ``.env`` file in the
project home, then the defaults below. Nothing is read, created or connected at import time:
call :func:`get_settings` when a value is needed (tests call ``get_settings.cache_clear()``
after changing the environment).
"""

from __future__ import annotations

import functools
import os
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_home() -> Path:
    """The project folder: ``MLOPS_HOME``, else the checkout this package lives in, else the cwd."""
    if env := os.environ.get("MLOPS_HOME"):
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "dags").is_dir():
        return checkout
    return Path.cwd().resolve()


def _default_lake_uri() -> str:
    return (project_home() / "lake").as_uri()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MLOPS_",
        extra="ignore",
    )

    # --- data -------------------------------------------------------------------------
    lake_uri: str = Field(default_factory=_default_lake_uri, description="Lake root: file://... or s3://bucket/prefix")
    dataset: str = Field(default="churn", description="Dataset name under include/datasets/ or a path to a YAML file")
    aws_conn_id: str = Field(default="aws_default", description="Airflow connection used for s3:// paths when it exists")
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, moto) for the lake")

    # Synthetic scenario schedule: these override the dataset file's own schedule when set.
    covariate_drift_from: date | None = None
    concept_drift_from: date | None = None
    bad_batch_days: list[date] | None = None
    synthetic_rows_per_day: int | None = Field(default=None, ge=1)

    # --- training / registry ---------------------------------------------------------
    model_name: str | None = Field(default=None, description="Registered model name; default: the dataset's name")
    mlflow_tracking_uri: str = Field(
        default="", validation_alias="MLFLOW_TRACKING_URI", description="MLflow server (default: the embedded one)"
    )

    # --- local services (the embedded stack that `make demo` and the tests start) -------
    airflow_port: int = 8080
    mlflow_port: int = 5000
    airflow_home: Path | None = Field(default=None, validation_alias="AIRFLOW_HOME")

    # --- serving / deploy ------------------------------------------------------------
    deploy_backend: Literal["auto", "docker", "local"] = "auto"
    router_bind: str = "127.0.0.1"
    router_port: int = 8000
    prediction_log_dir: Path = Field(
        default_factory=lambda: project_home() / ".run" / "predictions",
        description="Host folder of the servers' prediction logs (ds=YYYY-MM-DD/ below it), read by the monitor",
    )

    @model_validator(mode="after")
    def _default_tracking_uri(self) -> Settings:
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"http://127.0.0.1:{self.mlflow_port}"
        return self

    @field_validator("bad_batch_days", mode="before")
    @classmethod
    def _split_days(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("lake_uri")
    @classmethod
    def _normalise_lake_uri(cls, value: str) -> str:
        value = value.strip()
        if "://" not in value:  # a bare path: make it an absolute file:// URI
            value = Path(value).expanduser().resolve().as_uri()
        return value.rstrip("/")

    @property
    def home(self) -> Path:
        return project_home()

    @property
    def registered_model_name(self) -> str:
        from mlops_pipeline.datasets import load_dataset_spec

        return self.model_name or load_dataset_spec(self.dataset).name


@functools.cache
def get_settings() -> Settings:
    """Read the settings now (environment, then ``<home>/.env``, then defaults); cached per process."""
    env_file = project_home() / ".env"
    return Settings(_env_file=env_file if env_file.is_file() else None)  # type: ignore[call-arg]
