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
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

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


class ColumnDomain(BaseModel):
    """What a column may hold, declared by a person: the gate quarantines a batch that breaks it.

    Only declarations go in the gate; what a reference window happened to hold goes in the watch
    suite, which never quarantines (see ``validation/profile.py``).
    """

    model_config = ConfigDict(extra="forbid")

    min: float | None = Field(default=None, description="Smallest allowed value (inclusive)")
    max: float | None = Field(default=None, description="Largest allowed value (inclusive)")
    categories: list[str | int | float] | None = Field(default=None, description="The known values")
    allow_new: bool = Field(default=False, description="Whether values outside `categories` pass the gate")
    nullable: bool | None = Field(default=None, description="false: a null quarantines the batch; unset: not checked")

    @model_validator(mode="after")
    def _coherent(self) -> ColumnDomain:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        if self.categories is not None and (self.min is not None or self.max is not None):
            raise ValueError("declare either a range (min/max) or categories, not both")
        if self.categories is not None and not self.categories:
            raise ValueError("categories is empty: list the known values")
        if self.allow_new and self.categories is None:
            raise ValueError("allow_new needs categories")
        return self


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
    watch_suite: str | None = Field(
        default=None,
        description="Watch suite JSON (profiled, never quarantines); default: beside `suite`, *_suite.json -> *_watch.json",
    )
    extra_columns: Literal["refuse", "allow"] = Field(
        default="refuse", description="Whether the gate quarantines a batch with columns the file does not list"
    )
    min_batch_rows: int = Field(default=1, ge=0, description="The gate quarantines a batch with fewer rows")
    domains: dict[str, ColumnDomain] = Field(
        default_factory=dict, description="Declared per-column domains: the gate's value checks (never profiled)"
    )
    policy: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Settings for this dataset by group (train, gate, monitor, deploy); the environment still wins",
    )
    router_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of this dataset's router when it is not the primary dataset (default: MLOPS_ROUTER_PORT "
        "plus a number derived from the name); the primary dataset's router is MLOPS_ROUTER_PORT",
    )
    spec_path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _columns_are_distinct(self) -> DatasetSpec:
        columns = self.feature_columns + [self.id_column, self.time_column, self.target]
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise ValueError(f"columns listed twice (as feature/id/time/target): {duplicated}")
        return self

    @field_validator("domains")
    @classmethod
    def _domains_name_known_columns(cls, domains: dict[str, ColumnDomain], info: ValidationInfo) -> dict[str, ColumnDomain]:
        numeric = set(info.data.get("numeric_features") or [])
        categorical = set(info.data.get("categorical_features") or [])
        target = info.data.get("target")
        allowed = numeric | categorical | ({target} if target else set())
        for column, domain in domains.items():
            if column not in allowed:
                raise ValueError(
                    f"domains.{column}: unknown column {column!r}; a domain is declared for a feature or the target, "
                    f"one of {sorted(allowed)} (the id and time columns are checked by the gate already)"
                )
            if column in categorical and (domain.min is not None or domain.max is not None):
                raise ValueError(f"domains.{column}: {column} is a categorical feature; declare categories, not min/max")
        return domains

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

    @property
    def watch_suite_path(self) -> Path:
        if self.watch_suite:
            watch = Path(self.watch_suite)
            base = self.spec_path.parent if self.spec_path else DATASETS_DIR
            return watch if watch.is_absolute() else (base / watch).resolve()
        gate = self.suite_path
        stem = gate.stem.removesuffix("_suite")
        return gate.with_name(f"{stem}_watch{gate.suffix}")

    @property
    def suite_report_path(self) -> Path:
        """The bootstrap's Markdown report, beside the gate suite: why each bound is what it is."""
        gate = self.suite_path
        return gate.with_name(f"{gate.stem}_report.md")


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
        # libyaml's parser where PyYAML has it (the same safe loader, in C): every task process and
        # DAG parse reads the dataset file, and the Python parser costs several milliseconds a read.
        raw = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
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


# --- many datasets in one installation -------------------------------------------------------------
#
# Every dataset file found gets its own set of DAGs, registered model, lake folder, serving namespace,
# router port and monitoring (``mlops_pipeline.orchestration.datasets`` builds the DAGs). The primary
# dataset (``MLOPS_DATASET``) keeps the plain names (``mlops_ingest``, its model, the lake's root), so
# an installation that adds a second dataset keeps the first one's history; every other dataset's
# names carry its own (``mlops_ingest__<name>``, ``<lake>/datasets/<name>``, ``<namespace>-<name>``).

SCOPE_SEPARATOR = "__"


class DatasetEntry(BaseModel):
    """One dataset file found by :func:`discover_datasets`: its name, where it is, whether it is the
    primary one, and why it cannot be used (``error``) when its file is broken."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: Path
    primary: bool = False
    error: str | None = None

    @property
    def suffix(self) -> str:
        """What this dataset adds to the names it owns: nothing for the primary one."""
        return "" if self.primary else f"{SCOPE_SEPARATOR}{self.name}"

    def dag_id(self, base: str) -> str:
        return f"{base}{self.suffix}"


def _slug(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in stem) or "dataset"


def discover_datasets(primary: str, folders: list[Path]) -> list[DatasetEntry]:
    """The primary dataset (a name or a path: ``MLOPS_DATASET``), then every ``*.yaml``/``*.yml`` file
    of ``folders`` in name order, one entry per dataset name (the first file with a name wins; a
    second file that claims a name already taken is an error entry naming both files).

    A file that does not load is an entry with ``error`` set (its name is the file's stem), so that
    one broken file shows as its own DAGs' import error and never hides the others."""
    entries: list[DatasetEntry] = []
    seen: dict[str, Path] = {}
    seen_paths: set[Path] = set()

    def add(path: Path, is_primary: bool) -> None:
        path = path.resolve()
        if path in seen_paths:
            return
        seen_paths.add(path)
        try:
            spec = _load(path, path.stat().st_mtime_ns)
        except (DatasetSpecError, OSError) as exc:
            entries.append(DatasetEntry(name=_slug(path.stem), path=path, primary=is_primary, error=str(exc)))
            return
        if spec.name in seen:
            if path.parent == DATASETS_DIR.resolve() and seen[spec.name] == entries[0].path:
                return  # a built-in dataset the primary replaces (MLOPS_DATASET=/my/churn.yaml): the primary wins
            entries.append(DatasetEntry(
                name=_slug(path.stem), path=path, error=f"dataset file {path}: name {spec.name!r} is already the "
                f"name of {seen[spec.name]}; every dataset needs a name of its own",
            ))
            return
        seen[spec.name] = path
        entries.append(DatasetEntry(name=spec.name, path=path, primary=is_primary))

    try:
        add(resolve_dataset_path(primary), True)
    except DatasetSpecError as exc:
        entries.append(DatasetEntry(name=_slug(Path(primary).stem), path=Path(primary), primary=True, error=str(exc)))
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            add(path, False)
    return entries
