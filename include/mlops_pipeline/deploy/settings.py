"""Deployment settings: traffic steps, bake windows and the canary thresholds (``MLOPS_DEPLOY_*``).

Read when asked for (:func:`get_deploy_settings` builds a fresh value each call: cheap, and tests
change the environment between calls). Where the router listens and which backend serves come from
the project settings (``MLOPS_ROUTER_BIND``, ``MLOPS_ROUTER_PORT``, ``MLOPS_DEPLOY_BACKEND``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,40}$")


class DeploySettings(BaseSettings):
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
    min_requests: int = Field(default=50, ge=1, description="Canary requests per step for the 5xx and latency checks")
    min_rows: int = Field(default=200, ge=1, description="Predicted rows per side for the distribution (PSI) check")
    insufficient_traffic: Literal["proceed", "rollback"] = Field(
        default="proceed",
        description="At max_bake_seconds without enough traffic: skip the checks that lack data, or roll back",
    )
    max_5xx_rate_increase: float = Field(
        default=0.01, ge=0, le=1, description="Canary 5xx rate may exceed stable's by at most this (absolute)"
    )
    max_p95_ratio: float = Field(default=1.5, ge=1, description="Canary p95 latency at most this times stable's ...")
    p95_slack_ms: float = Field(default=50.0, ge=0, description="... unless within this many ms of it (noise floor)")
    max_psi: float = Field(default=0.2, gt=0, description="Population stability index of canary vs stable predictions")
    retrained_max_psi: float = Field(
        default=1.0,
        gt=0,
        description="The PSI limit for a version trained because the data changed (trigger_reason drift or "
        "performance): it is meant to predict differently from stable, so the check only catches a broken model",
    )
    psi_bins: int = Field(default=10, ge=2, le=20, description="Probability bins for the PSI (merged from the server's 20)")
    ready_timeout_seconds: float = Field(default=180.0, gt=0, description="A new server must answer /ready within this")
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
    prediction_log_dir: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLOPS_DEPLOY_PREDICTION_LOG_DIR"),
        description="Host folder for the servers' prediction logs (default: the project's MLOPS_PREDICTION_LOG_DIR)",
    )
    extra_labels: dict[str, str] = Field(
        default_factory=dict, description='Added to every container/network, e.g. {"team": "ml"} (JSON in the env)'
    )
    replay_rate: float = Field(default=20.0, gt=0, description="Demo traffic: requests per second")
    replay_rows: int = Field(default=1, ge=1, le=1000, description="Demo traffic: rows per request")

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
        return self


def get_deploy_settings() -> DeploySettings:
    return DeploySettings()
