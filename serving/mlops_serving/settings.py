"""Runtime configuration, read once from environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable has an invalid value."""


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be a boolean (1/0/true/false), got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """All serving knobs. Build with :meth:`from_env` or directly in tests."""

    model_dir: Path = Path("/model")
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 1024 * 1024
    max_records: int = 10_000
    api_key: str | None = None
    prediction_log_enabled: bool = True
    prediction_log_dir: Path = Path("/var/log/mlops/predictions")
    prediction_log_flush_seconds: float = 1.0
    prediction_log_flush_rows: int = 2_000
    prediction_log_max_queue_rows: int = 200_000
    batching: bool = False
    batch_max_wait_ms: float = 2.0
    batch_max_rows: int = 256
    predict_threads: int = 1
    metrics_dir: Path | None = None
    access_log: bool = False
    log_level: str = "info"
    graceful_timeout_s: float = 20.0
    # Fallbacks for <model_dir>/model_info.json
    model_name: str | None = None
    model_version: str | None = None
    model_run_id: str | None = None
    model_sha256: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        api_key = env.get("MLOPS_SERVING_API_KEY") or None
        metrics_dir = env.get("MLOPS_SERVING_METRICS_DIR") or None
        return cls(
            model_dir=Path(_str(env, "MLOPS_MODEL_DIR", "/model")),
            host=_str(env, "MLOPS_SERVING_HOST", "0.0.0.0"),
            port=_int(env, "MLOPS_SERVING_PORT", 8080, minimum=0),
            workers=_int(env, "MLOPS_SERVING_WORKERS", 1, minimum=1),
            max_body_bytes=_int(env, "MLOPS_SERVING_MAX_BODY_BYTES", 1024 * 1024, minimum=1),
            max_records=_int(env, "MLOPS_SERVING_MAX_RECORDS", 10_000, minimum=1),
            api_key=api_key,
            prediction_log_enabled=_bool(env, "MLOPS_PREDICTION_LOG_ENABLED", True),
            prediction_log_dir=Path(_str(env, "MLOPS_PREDICTION_LOG_DIR", "/var/log/mlops/predictions")),
            prediction_log_flush_seconds=_float(env, "MLOPS_PREDICTION_LOG_FLUSH_SECONDS", 1.0, minimum=0.01),
            prediction_log_flush_rows=_int(env, "MLOPS_PREDICTION_LOG_FLUSH_ROWS", 2_000, minimum=1),
            prediction_log_max_queue_rows=_int(
                env, "MLOPS_PREDICTION_LOG_MAX_QUEUE_ROWS", 200_000, minimum=1
            ),
            batching=_bool(env, "MLOPS_SERVING_BATCHING", False),
            batch_max_wait_ms=_float(env, "MLOPS_SERVING_BATCH_MAX_WAIT_MS", 2.0),
            batch_max_rows=_int(env, "MLOPS_SERVING_BATCH_MAX_ROWS", 256, minimum=1),
            predict_threads=_int(env, "MLOPS_SERVING_PREDICT_THREADS", 1, minimum=0),
            metrics_dir=Path(metrics_dir) if metrics_dir else None,
            access_log=_bool(env, "MLOPS_SERVING_ACCESS_LOG", False),
            log_level=_str(env, "MLOPS_SERVING_LOG_LEVEL", "info").lower(),
            graceful_timeout_s=_float(env, "MLOPS_SERVING_GRACEFUL_TIMEOUT_S", 20.0),
            model_name=env.get("MLOPS_MODEL_NAME") or None,
            model_version=env.get("MLOPS_MODEL_VERSION") or None,
            model_run_id=env.get("MLOPS_MODEL_RUN_ID") or None,
            model_sha256=env.get("MLOPS_MODEL_SHA256") or None,
        )
