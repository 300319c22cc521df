"""Dataset descriptions: one YAML file says where a dataset comes from and what its columns mean.

Switching datasets is configuration only (``MLOPS_DATASET``): a name under ``include/datasets/``
or a path to a YAML file of the same shape.
"""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

PACKAGE_INCLUDE_DIR = Path(__file__).resolve().parent.parent
DATASETS_DIR = PACKAGE_INCLUDE_DIR / "datasets"


class ScenarioSchedule(BaseModel):
    """When the synthetic source changes behaviour (dates are data days, inclusive)."""

    covariate_drift_from: date | None = None
    concept_drift_from: date | None = None
    bad_batch_days: list[date] = Field(default_factory=list)


class SyntheticSource(BaseModel):
    kind: Literal["synthetic"] = "synthetic"
    seed: int = 42
    rows_per_day: int = Field(default=2000, ge=1)
    scenarios: ScenarioSchedule = Field(default_factory=ScenarioSchedule)


class FileSource(BaseModel):
    kind: Literal["file"] = "file"
    path_template: str = Field(description="Local path or URI with {ds} (YYYY-MM-DD), e.g. s3://bucket/exports/{ds}.parquet")
    format: Literal["parquet", "csv", "auto"] = "auto"
    aws_conn_id: str | None = None

    def path_for(self, ds: str) -> str:
        return self.path_template.format(ds=ds)

    def format_for(self, path: str) -> str:
        if self.format != "auto":
            return self.format
        return "csv" if path.lower().endswith((".csv", ".csv.gz")) else "parquet"


class DatasetSpec(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    source: SyntheticSource | FileSource = Field(discriminator="kind")
    id_column: str
    time_column: str
    target: str
    numeric_features: list[str]
    categorical_features: list[str]
    suite: str = Field(description="Expectation suite JSON, relative to the YAML file's folder or absolute")
    label_delay_days: int = Field(default=0, ge=0)
    start_date: date | None = Field(
        default=None, description="The first day of data: runs for windows before it fail and say so (settings.start_date)"
    )
    min_post_change_days: int | None = Field(
        default=None, ge=1, description="Days of data after a change before a drift-triggered retrain (monitor policy)"
    )
    policy: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings for this dataset by group (train, gate, monitor, deploy); the environment still wins",
    )
    spec_path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _columns_are_distinct(self) -> DatasetSpec:
        columns = self.feature_columns + [self.id_column, self.time_column, self.target]
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise ValueError(f"columns listed twice (as feature/id/time/target): {duplicated}")
        return self

    @property
    def feature_columns(self) -> list[str]:
        return [*self.numeric_features, *self.categorical_features]

    @property
    def columns(self) -> list[str]:
        """Every column a batch must have, in a fixed order."""
        return [self.id_column, self.time_column, *self.feature_columns, self.target]

    @property
    def suite_path(self) -> Path:
        suite = Path(self.suite)
        if suite.is_absolute():
            return suite
        base = self.spec_path.parent if self.spec_path else DATASETS_DIR
        return (base / suite).resolve()


class DatasetSpecError(ValueError):
    pass


def resolve_dataset_path(dataset: str) -> Path:
    candidate = Path(dataset).expanduser()
    if candidate.suffix in {".yaml", ".yml"}:
        if not candidate.is_file():
            raise DatasetSpecError(f"dataset file {candidate} does not exist")
        return candidate.resolve()
    named = DATASETS_DIR / f"{dataset}.yaml"
    if not named.is_file():
        known = sorted(p.stem for p in DATASETS_DIR.glob("*.yaml"))
        raise DatasetSpecError(f"unknown dataset {dataset!r}: no {named}; known datasets: {known}, or give a path to a YAML file")
    return named


@functools.cache
def _load(path: Path, mtime_ns: int) -> DatasetSpec:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DatasetSpecError(f"dataset file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise DatasetSpecError(f"dataset file {path} must hold a mapping, got {type(raw).__name__}")
    try:
        return DatasetSpec.model_validate({**raw, "spec_path": path})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise DatasetSpecError(f"dataset file {path} is invalid: {problems}") from exc


def load_dataset_spec(dataset: str) -> DatasetSpec:
    """The spec for ``dataset``: a name under ``include/datasets/`` or a path to a YAML file."""
    path = resolve_dataset_path(dataset)
    return _load(path, path.stat().st_mtime_ns)
