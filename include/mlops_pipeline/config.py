"""The one settings tree of the project, loaded one way: :func:`get_settings`.

``get_settings()`` returns a :class:`Settings` whose nested groups hold each part's settings::

    settings.lake_uri, settings.dataset, settings.start_date ...   MLOPS_*
    settings.train.days, settings.train.seed ...                  MLOPS_TRAIN_*
    settings.registry.gate_floor, settings.registry.connect_attempts  MLOPS_REGISTRY_*
    settings.deploy.steps, settings.deploy.bake_seconds ...       MLOPS_DEPLOY_*
    settings.monitor.drift_share_threshold ...                    MLOPS_MONITOR_*

Where a value comes from, strongest first:

1. the environment (``MLOPS_...``; ``MLFLOW_TRACKING_URI``, ``AIRFLOW_HOME``);
2. ``<project>/.env``;
3. the dataset's policy: its YAML file can set ``start_date``, ``min_post_change_days`` and, under
   ``policy:``, values of the ``train``, ``gate`` (the registry's gate), ``monitor`` and ``deploy``
   groups (see :mod:`mlops_pipeline.datasets`);
4. the defaults below.

Inside Airflow, the monitor's thresholds can also be changed through Airflow Variables, read by the
task at run time (:mod:`mlops_pipeline.orchestration.monitor`): a Variable wins over all of these.

Nothing is read, created or connected at import time. ``get_settings`` caches its value per process;
tests call ``get_settings.cache_clear()`` after changing the environment.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def project_home() -> Path:
    """The project folder: ``MLOPS_HOME``, else the checkout this package lives in, else the cwd."""
    if env := os.environ.get("MLOPS_HOME"):
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "dags").is_dir():
        return checkout
    return Path.cwd().resolve()


def parse_list(value: object) -> object:
    """A JSON list or a comma-separated string (what people type into an env var or a Variable)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


# --- train --------------------------------------------------------------------------------------

CandidateName = Literal["baseline", "xgboost"]
GateMetric = Literal["roc_auc", "pr_auc"]
DEFAULT_CANDIDATES: tuple[CandidateName, ...] = ("baseline", "xgboost")


class TrainSettings(BaseSettings):
    """Training: the data window, the split, the candidates, their search and calibration
    (``MLOPS_TRAIN_*``). A DAG run's Params override ``days``, ``seed``, ``candidates`` and
    ``hyperparameters`` for that run only.

    The search budget is per candidate: ``tune_trials`` Optuna trials, each fitting
    ``tune_folds`` rolling-origin folds of the training split, stopped early by
    ``tune_timeout_seconds``. With the defaults a training on 28 days of 2000 rows takes about two
    minutes on two cores (XGBoost's 30 trials most of it), at most about five when both searches
    hit the cap. The trial count is the reproducible budget, the timeout a cap: a search it cut
    short depends on the machine's speed, and the run records that it did (``stopped_by``)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_TRAIN_", extra="ignore")

    days: int = Field(default=28, ge=1, le=3650, description="Train on the last N validated days before the run's date")
    valid_fraction: float = Field(default=0.15, gt=0, lt=0.5, description="Share of rows (by event time) for validation")
    holdout_fraction: float = Field(default=0.15, gt=0, lt=0.5, description="Latest share of rows for the holdout")
    min_split_rows: int = Field(default=50, ge=1, description="Fewest rows a train/valid/holdout split may have")
    candidates: list[CandidateName] = Field(default_factory=lambda: list(DEFAULT_CANDIDATES), min_length=1)
    hyperparameters: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='Fixed values per candidate, e.g. {"xgboost": {"max_depth": 3}}: the search leaves these keys alone',
    )
    tune_trials: int = Field(
        default=30, ge=0, le=10_000, description="Optuna trials per candidate (TPE, seeded); 0: no search, the defaults"
    )
    tune_timeout_seconds: float = Field(
        default=120.0, gt=0, description="Wall-clock cap of one candidate's search; a trial under way is finished"
    )
    tune_folds: int = Field(
        default=3,
        ge=2,
        le=10,
        description="Rolling-origin folds of the training split: fold k trains on the first k blocks (by event time) "
        "and validates on block k + 1",
    )
    calibration_folds: int = Field(
        default=3,
        ge=2,
        le=10,
        description="Consecutive blocks of the valid split that choose between isotonic and Platt calibration by "
        "cross-validation (the Brier score of each held-out block)",
    )
    seed: int = Field(default=42, description="Seed of every random choice in training")
    nthread: int = Field(
        default=1, ge=1, description="XGBoost and BLAS threads; fixed so results are reproducible (raise for big data)"
    )
    experiment_name: str | None = Field(default=None, description="MLflow experiment; default: the registered model name")
    reference_sample_rows: int = Field(
        default=5000, ge=0, description="Rows of the training split logged as the monitoring reference sample"
    )

    @model_validator(mode="after")
    def _fractions_leave_training_rows(self) -> TrainSettings:
        if self.valid_fraction + self.holdout_fraction >= 0.8:
            raise ValueError(
                f"valid_fraction {self.valid_fraction} + holdout_fraction {self.holdout_fraction} leave too few training rows"
            )
        return self


# --- registry -------------------------------------------------------------------------------------


class RegistrySettings(BaseSettings):
    """The MLflow registry: how to reach it, and the champion/challenger gate (``MLOPS_REGISTRY_*``;
    the dataset policy's ``gate:`` keys are these fields without ``gate_``).

    Gate defaults: a candidate must reach ROC AUC 0.70 on its holdout (the floor), and the 95 %
    interval of the paired difference candidate - ``@champion`` on the same rows must lie above
    -0.02 (non-inferiority; see :mod:`mlops_pipeline.registry.gate`)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_REGISTRY_", extra="ignore")

    connect_attempts: int = Field(default=4, ge=1, description="Health checks before giving up")
    connect_backoff_seconds: float = Field(default=1.0, ge=0, description="First wait between checks; doubles each time")
    health_timeout_seconds: float = Field(default=5.0, gt=0)
    request_timeout_seconds: int = Field(default=60, ge=1, description="MLflow's per-request HTTP timeout")
    request_max_retries: int = Field(default=3, ge=0, description="MLflow's per-request HTTP retries")

    gate_metric: GateMetric = "roc_auc"
    gate_floor: float = Field(default=0.70, ge=0, le=1, description="Absolute minimum of the gate metric on the holdout")
    gate_margin: float = Field(
        default=0.02, ge=0, lt=1, description="Non-inferiority margin: the interval's lower bound of candidate - champion >= -margin"
    )
    gate_mode: Literal["non_inferiority", "superiority"] = Field(
        default="non_inferiority", description="superiority: the lower bound must be above 0 (a retrain must be better)"
    )
    gate_confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Two-sided confidence of the interval")
    gate_resamples: int = Field(default=2000, ge=100, description="Paired bootstrap resamples (metrics other than ROC AUC)")
    gate_seed: int = Field(default=42, description="Seed of the bootstrap")
    gate_min_rows: int = Field(default=200, ge=1, description="Fewest holdout rows the gate decides on")
    gate_min_class_rows: int = Field(default=20, ge=1, description="Fewest rows of each class the gate decides on")


# --- deploy ---------------------------------------------------------------------------------------

_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,40}$")


class DeploySettings(BaseSettings):
    """Deployment: traffic steps, bake windows and the canary thresholds (``MLOPS_DEPLOY_*``). Where the
    router listens and which backend serves are top-level settings (``MLOPS_ROUTER_*``,
    ``MLOPS_DEPLOY_BACKEND``)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_DEPLOY_", extra="ignore")

    namespace: str = Field(
        default="mlops",
        description="Names the Docker network, containers and local processes of one deployment "
        "(label org.mlops.deployment); tests use their own.",
    )
    steps: Annotated[list[int], NoDecode] = Field(
        default=[5, 25, 50, 100], description="Canary traffic percentages, increasing, ending at 100"
    )
    docker_reach: Literal["published", "network"] = Field(
        default="published",
        description="How the deployer reaches the containers: 'published' = their ports published on 127.0.0.1 "
        "(the deployer runs on the Docker host); 'network' = their addresses on the namespace network (the "
        "deployer runs in a container on that network, as the compose stack's Airflow worker does)",
    )
    bake_seconds: float = Field(default=120.0, ge=0, description="Minimum time at each step before its checks")
    max_bake_seconds: float = Field(
        default=900.0, gt=0, description="Longest wait at a step for enough traffic; then the checks run on what came"
    )
    poke_seconds: float = Field(default=30.0, gt=0, description="How often a waiting step is looked at (reschedule mode)")
    task_retries: int = Field(
        default=2,
        ge=1,
        description="Retries of each deploy task after an infrastructure error or a lost task process (its worker or "
        "scheduler died): every step is safe to run again, and a retry carries on where the step was instead of "
        "rolling a healthy canary back",
    )
    retry_delay_seconds: float = Field(default=30.0, ge=0, description="Wait before a deploy task's retry")
    min_requests: int = Field(default=50, ge=1, description="Canary requests per step for the 5xx and latency checks")
    min_rows: int = Field(default=200, ge=1, description="Predicted rows per side for the distribution (PSI) check")
    insufficient_traffic: Literal["rollback", "hold", "proceed"] = Field(
        default="rollback",
        description="A step at max_bake_seconds without enough traffic for every check: rollback (no promotion "
        "without evidence); hold (keep the step's traffic share and wait up to hold_seconds more for it, then roll "
        "back); proceed (skip the checks that lack data: promotes on partial evidence, set it knowingly)",
    )
    hold_seconds: float = Field(
        default=6 * 3600.0,
        gt=0,
        description="With insufficient_traffic=hold: how long a step waits beyond max_bake_seconds for enough "
        "traffic before it rolls back (read when the DAG is parsed: the bake sensor's timeout)",
    )
    max_5xx_rate_increase: float = Field(
        default=0.01, ge=0, le=1, description="Canary 5xx rate may exceed stable's by at most this (absolute)"
    )
    max_p95_ratio: float = Field(default=1.5, ge=1, description="Canary p95 latency at most this times stable's ...")
    p95_slack_ms: float = Field(default=50.0, ge=0, description="... unless within this many ms of it (noise floor)")
    max_psi: float = Field(
        default=0.2,
        gt=0,
        description="Population stability index of canary vs stable predictions, above the shift the training gate's "
        "holdout predicted between the two versions (a retrain is meant to predict differently by about that much)",
    )
    psi_bins: int = Field(default=10, ge=2, le=20, description="Probability bins for the PSI (merged from the server's 20)")
    ready_timeout_seconds: float = Field(default=180.0, gt=0, description="A new server must answer /ready within this")
    warmup_requests: int = Field(
        default=50,
        ge=0,
        description="Requests sent straight to a new server before it takes traffic (its first requests are slow: "
        "they would count against a canary's latency check and reach the first clients); marked as warm-up, so the "
        "monitor never reads them (0: none)",
    )
    warmup_rows: int = Field(default=10, ge=1, le=1000, description="Rows per warm-up request")
    stop_timeout_seconds: float = Field(default=20.0, gt=0, description="Graceful stop before a kill")
    check_interval_ms: int = Field(default=1000, ge=100, description="HAProxy health checks of the serving slots")
    router_rate_limit: int = Field(
        default=0,
        ge=0,
        description="Requests per second one client address may send through the router; above it 429 (0: no limit)",
    )
    require_artifact_digest: bool = Field(
        default=True,
        description="Refuse a version without an artifact_sha256 tag (False: compute it, tag it, audit it)",
    )
    extra_labels: dict[str, str] = Field(
        default_factory=dict, description='Added to every container/network, e.g. {"team": "ml"} (JSON in the env)'
    )
    strategy: Literal["shadow", "canary", "blue_green", "ab"] = Field(
        default="shadow",
        description="How a new version replaces the serving one (the mlops_deploy run's strategy Param overrides it; "
        "the dataset policy's deploy.strategy sets it per dataset): shadow (the default) = first a shadow window (a "
        "copy of every request, answers never served, judged against stable on labelled rows), then the canary's "
        "steps; canary = the traffic steps alone, each baked and checked, for a version whose labels come too late "
        "for a shadow window; blue_green = the "
        "new version smoke-tested with recorded requests, then all the traffic in one switch while the old one stays "
        "warm for the bake window; ab = an A/B test: the new version serves ab_split % of the entities until the "
        "outcome (labels) decides which stays",
    )
    ab_split: int = Field(
        default=50, ge=1, le=99, description="A/B: the share of entities (percent) the new version (B) serves"
    )
    ab_samples: int = Field(
        default=2000,
        ge=2,
        description="A/B: labelled rows a variant the outcome test waits for (its fixed horizon; it runs once)",
    )
    ab_seconds: float = Field(default=3600.0, ge=0, description="A/B: the shortest test")
    ab_outcome: str | None = Field(
        default=None,
        description="A/B: a numeric column of the dataset's validated rows that measures each row's outcome (a "
        "business metric such as revenue, arriving with the labels), compared between the variants instead of the "
        "label's Brier score; empty: the Brier score",
    )
    ab_outcome_goal: Literal["maximize", "minimize"] = Field(
        default="maximize", description="A/B: whether a higher ab_outcome is better (maximize) or a lower one"
    )
    ab_max_seconds: float = Field(
        default=14 * 86400.0,
        gt=0,
        description="A/B: the longest test; at its end the outcome is tested on the rows there are (read when the "
        "DAG is parsed: the sensor's timeout)",
    )
    shadow_seconds: float = Field(
        default=1800.0, ge=0, description="Shortest shadow window: the shadow gets copies at least this long"
    )
    shadow_max_seconds: float = Field(
        default=3 * 86400.0,
        gt=0,
        description="Longest shadow window, waiting for labelled rows: set it beyond the dataset's label delay (read "
        "when the DAG is parsed: the mirror sensor's timeout)",
    )
    min_labelled: int = Field(
        default=200,
        ge=2,
        description="Labelled rows a quality test needs: the shadow's, of rows both versions answered; a canary "
        "step's, on each side (labels usually arrive later: a canary step without them has no quality check)",
    )
    quality_alpha: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Significance of the quality tests (the shadow's paired one, a canary's on its labelled rows): an "
        "equally good version is rejected this often",
    )
    approval: Literal["off", "before_promote"] = Field(
        default="off",
        description="before_promote: a canary that passed every step waits for a person to approve its promotion "
        "(Airflow's Required Actions or the REST API); off: promoted at once. Read when the run gets there",
    )
    approval_timeout_seconds: float = Field(
        default=86400.0, gt=0, description="How long an approval request waits for an answer (read when the DAG is parsed)"
    )
    approval_timeout_action: Literal["reject", "approve"] = Field(
        default="reject",
        description="The answer taken when nobody answered in time: reject rolls the canary back, approve promotes it",
    )

    @field_validator("steps", mode="before")
    @classmethod
    def _split_steps(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip().strip("[]")
            return [int(part) for part in re.split(r"[,\s]+", text) if part]
        return value

    @field_validator("steps")
    @classmethod
    def _check_steps(cls, value: list[int]) -> list[int]:
        if not value or value[-1] != 100:
            raise ValueError(f"traffic steps must end at 100, got {value}")
        if any(not 0 < step <= 100 for step in value) or any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"traffic steps must increase within 1..100, got {value}")
        return value

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not _NAMESPACE.match(value):
            raise ValueError(f"namespace must match {_NAMESPACE.pattern}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_bake(self) -> DeploySettings:
        if self.max_bake_seconds < self.bake_seconds:
            raise ValueError(
                f"max_bake_seconds ({self.max_bake_seconds}) must be at least bake_seconds ({self.bake_seconds})"
            )
        if self.ab_max_seconds < self.ab_seconds:
            raise ValueError(f"ab_max_seconds ({self.ab_max_seconds}) must be at least ab_seconds ({self.ab_seconds})")
        if self.shadow_max_seconds < self.shadow_seconds:
            raise ValueError(
                f"shadow_max_seconds ({self.shadow_max_seconds}) must be at least shadow_seconds ({self.shadow_seconds})"
            )
        return self


# --- monitor --------------------------------------------------------------------------------------

# Monitor settings an Airflow Variable may override, and the Variable's name.
MONITOR_VARIABLES: dict[str, str] = {
    "drift_share_threshold": "mlops_drift_share_threshold",
    "feature_drift_threshold": "mlops_monitor_feature_drift_threshold",
    "key_features": "mlops_monitor_key_features",
    "roc_auc_floor": "mlops_monitor_roc_auc_floor",
    "max_relative_drop": "mlops_monitor_max_relative_drop",
    "min_rows": "mlops_monitor_min_rows",
    "min_labelled_rows": "mlops_monitor_min_labelled_rows",
    "cooldown_days": "mlops_monitor_cooldown_days",
    "min_post_change_days": "mlops_monitor_min_post_change_days",
    "trigger_on_backfill": "mlops_monitor_trigger_on_backfill",
}


class MonitorSettings(BaseSettings):
    """Monitoring: drift and performance thresholds, the retraining decision, alerts (``MLOPS_MONITOR_*``).
    Where the prediction logs are is the top-level ``MLOPS_PREDICTION_LOG_DIR``."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_MONITOR_", extra="ignore", populate_by_name=True)

    # --- inputs ----------------------------------------------------------------------------
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
    min_rows: int = Field(
        default=500,
        ge=1,
        description="Fewest window rows for a drift verdict: fewer is recorded as 'not enough data' (a warning), none "
        "as 'no data' (an error alert, and the monitor run fails after recording it)",
    )
    report_sample_rows: int = Field(default=20_000, ge=100, description="Rows of the window in the Evidently report")
    sample_seed: int = 42

    # --- performance ------------------------------------------------------------------------------
    roc_auc_floor: float = Field(
        default=0.70, ge=0, le=1, description="ROC AUC on arrived labels (or estimated, without them) below this = performance"
    )
    max_relative_drop: float = Field(
        default=0.05, ge=0, lt=1, description="ROC AUC (realised or estimated) below champion holdout * (1 - this) = performance"
    )
    min_labelled_rows: int = Field(default=200, ge=1, description="Fewest labelled rows for a performance verdict")
    performance_window_days: int = Field(default=1, ge=1, description="Event days (the latest with labels) scored for quality")
    retrain_on_estimate: bool = Field(
        default=True,
        description="The ROC AUC estimated from a calibrated champion's probabilities (before labels) below roc_auc_floor "
        "or the allowed drop asks for a retrain too (reason estimated_performance); labels win when they also say so",
    )
    estimate_bins: int = Field(
        default=1000, ge=10, le=1_000_000, description="Probability bins of the streamed ROC AUC estimate (its error bound shrinks with more)"
    )

    # --- decision -------------------------------------------------------------------------------
    cooldown_days: int = Field(default=3, ge=0, description="No second retrain within this many days of the last one")
    cooldown_reasons: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["drift", "performance", "estimated_performance"],
        description="Training runs (trigger_reason) that count as retrains",
    )
    min_post_change_days: int = Field(
        default=3,
        ge=1,
        description="A drift-triggered retrain waits until this many days of data since the change exist, so the new "
        "model has post-change rows to learn from besides its holdout",
    )
    trigger_on_backfill: bool = Field(
        default=False,
        description="Backfill runs may trigger retraining too; a backfill created with dag_run_conf "
        '{"retrain_on_backfill": true|false} decides for its own runs',
    )

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

    def with_overrides(self, overrides: Mapping[str, Any]) -> MonitorSettings:
        """These settings with the given fields replaced, validated (strings from Variables are coerced)."""
        unknown = sorted(set(overrides) - set(MonitorSettings.model_fields))
        if unknown:
            raise ValueError(f"unknown monitor settings {unknown}")
        return MonitorSettings.model_validate({**self.model_dump(), **overrides})


# --- the tree -------------------------------------------------------------------------------------

DEFAULT_START_DATE = date(2000, 1, 1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    # --- data -------------------------------------------------------------------------
    lake_uri: str = Field(default_factory=lambda: (project_home() / "lake").as_uri(), description="Lake root: file://... or s3://bucket/prefix")
    dataset: str = Field(
        default="churn",
        description="The primary dataset: a name under include/datasets/ or a path to a YAML file. Its DAGs, model "
        "and lake keep the plain names; every other dataset file found gets its own (see datasets_dir)",
    )
    datasets_dir: Path | None = Field(
        default=None,
        description="A folder of more dataset files (MLOPS_DATASETS_DIR): each one, like each file in "
        "include/datasets/, gets its own DAGs (mlops_ingest__<name> ...), model, lake folder, namespace and router",
    )
    start_date: date = Field(
        default=DEFAULT_START_DATE,
        description="The first day the pipeline processes (the dataset file's start_date, else 2000-01-01): a run "
        "for a window before it fails and says so",
    )
    aws_conn_id: str = Field(default="aws_default", description="Airflow connection used for s3:// paths when it exists")
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (MinIO, moto) for the lake")
    lake_keep_versions: int = Field(
        default=5,
        ge=1,
        description="Versions of each lake day to keep (MLOPS_LAKE_KEEP_VERSIONS); a version a registered model was "
        "trained on is kept whatever its age",
    )

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
    postgres_port: int = 5433
    airflow_home: Path | None = Field(default=None, validation_alias="AIRFLOW_HOME")
    run_dir: Path = Field(
        default_factory=lambda: project_home() / ".run",
        description="Local state: service pidfiles and logs, the router config, local model copies",
    )

    # --- serving / deploy ------------------------------------------------------------
    deploy_backend: Literal["auto", "docker", "local"] = "auto"
    router_bind: str = "127.0.0.1"
    router_port: int = 8000
    router_tls_cert: Path | None = Field(
        default=None,
        description="PEM file with the router's certificate chain and private key: the router then serves "
        "HTTPS only (unset: plain HTTP, for a router that only this machine reaches)",
    )
    serving_queue: str | None = Field(
        default=None,
        description="Celery queue of the tasks that must run on the serving host: mlops_deploy's (they drive its "
        "Docker engine or local servers and its router) and mlops_monitor's (it reads the prediction logs the "
        "servers write there). Only the workers of that host listen to it. Unset: Airflow's default queue (one "
        "host, or the LocalExecutor, which has no queues)",
    )
    prediction_log_dir: Path = Field(
        default_factory=lambda: project_home() / ".run" / "predictions",  # follows run_dir: see _log_dir_follows_run_dir
        description="Host folder of the servers' prediction logs (ds=YYYY-MM-DD/ below it), read by the monitor: "
        "the one place both sides look (default <run dir>/predictions)",
    )

    # --- the groups --------------------------------------------------------------------
    train: TrainSettings = Field(default_factory=TrainSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)

    @model_validator(mode="before")
    @classmethod
    def _log_dir_follows_run_dir(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("prediction_log_dir") in (None, "") and data.get("run_dir"):
            data = {**data, "prediction_log_dir": Path(data["run_dir"]) / "predictions"}
        return data

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

    @property
    def training_experiment(self) -> str:
        return self.train.experiment_name or self.registered_model_name


# The dataset policy's group names, and the settings group each one sets (``gate`` sets the registry's
# ``gate_*`` fields: ``gate: {floor: 0.65}`` is ``registry.gate_floor``).
POLICY_GROUPS: dict[str, tuple[str, str]] = {
    "train": ("train", ""),
    "gate": ("registry", "gate_"),
    "monitor": ("monitor", ""),
    "deploy": ("deploy", ""),
}


class SettingsError(ValueError):
    pass


# Set in a task's process (by the DAG's on_execute_callback, see orchestration/datasets.py) to the file of
# the dataset the task works for, when that is not the primary one; child processes inherit it.
SCOPE_ENV = "MLOPS_DATASET_SCOPE"


def load_settings(env_file: Path | None = None, scope: str | Path | None = None) -> Settings:
    """Read the settings now: environment, then ``env_file``, then the dataset's policy, then defaults.

    ``scope`` (default: ``$MLOPS_DATASET_SCOPE``) is the file of a dataset other than the primary one:
    the settings are then that dataset's (:func:`_with_dataset_scope`)."""
    options: dict[str, Any] = {"_env_file": env_file}
    groups = {"train": TrainSettings, "registry": RegistrySettings, "deploy": DeploySettings, "monitor": MonitorSettings}
    built = {name: cls(**options) for name, cls in groups.items()}
    settings = Settings(**options, **built)
    scope = scope or os.environ.get(SCOPE_ENV) or None
    if scope is None:
        return _with_dataset_policy(settings)
    primary = settings.dataset
    settings = settings.model_copy(update={"dataset": str(scope)})
    return _with_dataset_scope(_with_dataset_policy(settings), primary)


def _with_dataset_scope(settings: Settings, primary: str) -> Settings:
    """A second dataset's own names beside the primary one's: its registered model (its name), its lake
    folder (``<lake>/datasets/<name>``), its serving namespace (``<namespace>-<name>``), router port (the
    file's ``router_port``, else derived from the name) and prediction logs; its own MLflow experiment."""
    import zlib

    from mlops_pipeline.datasets import DatasetSpecError, load_dataset_spec

    spec = load_dataset_spec(settings.dataset)
    name = spec.name
    try:
        if name == load_dataset_spec(primary).name:
            return settings  # the primary dataset's own file
    except DatasetSpecError:
        pass  # a broken primary file is its own DAGs' error, not this dataset's
    slug = re.sub(r"[^a-z0-9_.-]", "-", name.lower())
    namespace = f"{settings.deploy.namespace}-{slug}"[:41]
    port = spec.router_port
    if port is None:  # 8001..8999 by default, away from the other services' ports
        taken = {settings.router_port, settings.airflow_port, settings.mlflow_port, settings.postgres_port}
        port = settings.router_port + 1 + zlib.crc32(name.encode()) % 999
        while port in taken:
            port += 1
    return settings.model_copy(update={
        "model_name": name,
        "lake_uri": f"{settings.lake_uri}/datasets/{name}",
        "router_port": port,
        "prediction_log_dir": settings.prediction_log_dir / "datasets" / name,
        "deploy": settings.deploy.model_copy(update={"namespace": namespace}),
        "train": settings.train.model_copy(update={"experiment_name": None}),
        "monitor": settings.monitor.model_copy(update={"experiment_name": None}),
    })


def dataset_entries(settings: Settings | None = None) -> list[Any]:
    """Every dataset of this installation (:func:`mlops_pipeline.datasets.discover_datasets`): the primary
    one (``MLOPS_DATASET``), then the files of ``include/datasets/`` and of ``MLOPS_DATASETS_DIR``."""
    from mlops_pipeline.datasets import DATASETS_DIR, discover_datasets

    if settings is None:  # the environment only: a broken dataset file must not hide the others
        settings = Settings(_env_file=_env_file())  # type: ignore[call-arg]
    folders = [DATASETS_DIR] + ([settings.datasets_dir] if settings.datasets_dir else [])
    return discover_datasets(settings.dataset, folders)


def _with_dataset_policy(settings: Settings) -> Settings:
    """Values of the dataset's policy for every setting the environment left at its default."""
    from mlops_pipeline.datasets import load_dataset_spec

    spec = load_dataset_spec(settings.dataset)
    where = spec.spec_path or settings.dataset
    updates: dict[str, Any] = {}
    if spec.start_date is not None and "start_date" not in settings.model_fields_set:
        updates["start_date"] = spec.start_date
    policy: dict[str, dict[str, Any]] = {key: dict(value) for key, value in (spec.policy or {}).items()}
    if spec.min_post_change_days is not None:
        policy.setdefault("monitor", {}).setdefault("min_post_change_days", spec.min_post_change_days)
    for key, values in policy.items():
        if key not in POLICY_GROUPS:
            raise SettingsError(f"dataset file {where}: policy.{key} is not a settings group; known: {sorted(POLICY_GROUPS)}")
        group_name, prefix = POLICY_GROUPS[key]
        group: BaseSettings = getattr(settings, group_name)
        fields = type(group).model_fields
        merged = group.model_dump()
        for name, value in values.items():
            field = prefix + name
            if field not in fields:
                known = sorted(f.removeprefix(prefix) for f in fields if f.startswith(prefix))
                raise SettingsError(f"dataset file {where}: policy.{key}.{name} is not a setting; known: {known}")
            if field not in group.model_fields_set:  # the environment wins
                merged[field] = value
        try:
            updates[group_name] = type(group).model_validate(merged)
        except ValidationError as exc:
            problems = "; ".join(f"policy.{key}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise SettingsError(f"dataset file {where}: {problems}") from exc
        updates[group_name].__pydantic_fields_set__ = set(group.model_fields_set)
    return settings.model_copy(update=updates) if updates else settings


def _env_file() -> Path | None:
    env_file = project_home() / ".env"
    return env_file if env_file.is_file() else None


def settings_for(scope: str | Path | None) -> Settings:
    """One dataset's settings, read now as :func:`get_settings` reads them (``scope``: the file of a
    dataset other than the primary one; None: the primary one's)."""
    return load_settings(_env_file(), scope=scope)


@functools.cache
def get_settings() -> Settings:
    """The settings of this process (cached; see the module's docstring for where values come from)."""
    return load_settings(_env_file())

