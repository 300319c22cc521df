"""The one way to reach MLflow: :func:`mlflow_client`.

Every task talks to the tracking server and model registry over HTTP at
``settings.mlflow_tracking_uri`` (``MLFLOW_TRACKING_URI`` wins over ``MLOPS_MLFLOW_PORT``). Before
returning a client the factory checks that the server answers (``/health``), retrying with
exponential backoff, and fails with an error that names the URI instead of letting MLflow's own
retries run for minutes. MLflow's per-request retries and timeout get bounded defaults too (only
where the environment does not set them already).

Connection settings are the registry group of the settings (``MLOPS_REGISTRY_*``).
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_pipeline.config import RegistrySettings, Settings

log = logging.getLogger(__name__)


class RegistryUnavailable(RuntimeError):
    """The MLflow tracking server did not answer; retrying later may help."""


def mlflow_environment_defaults(registry: RegistrySettings) -> dict[str, str]:
    """Environment for MLflow's HTTP layer; applied with setdefault, so explicit values win.

    Telemetry is off by default: its exit-time flush blocks a process for about 30 s on machines
    without internet access, which every task process would pay. It must be set before ``mlflow``
    is first imported in the process to take effect.
    """
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(registry.request_timeout_seconds),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(registry.request_max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # Models carry their own pinned requirements; the project's uv.lock is not part of a model.
        "MLFLOW_UV_AUTO_DETECT": "false",
        "MLFLOW_LOG_UV_FILES": "false",
    }


def is_http_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def wait_until_reachable(uri: str, registry: RegistrySettings) -> None:
    """Return once ``<uri>/health`` answers 2xx; raise :class:`RegistryUnavailable` after the last attempt."""
    health_url = uri.rstrip("/") + "/health"
    delay = registry.connect_backoff_seconds
    started = time.monotonic()
    last_error = "no attempt made"
    for attempt in range(1, registry.connect_attempts + 1):
        try:
            with urllib.request.urlopen(health_url, timeout=registry.health_timeout_seconds) as response:
                if 200 <= response.status < 300:
                    return
                last_error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last_error = str(getattr(exc, "reason", exc))
        if attempt < registry.connect_attempts:
            log.warning(
                "MLflow at %s not reachable (attempt %d/%d: %s); retrying in %.1fs",
                uri, attempt, registry.connect_attempts, last_error, delay,
            )
            time.sleep(delay)
            delay *= 2
    raise RegistryUnavailable(
        f"MLflow tracking server {uri} is not reachable after {registry.connect_attempts} attempt(s) "
        f"over {time.monotonic() - started:.0f}s (last error: {last_error}). Check MLFLOW_TRACKING_URI, "
        "or start the embedded server with `python -m mlops_dev.services start mlflow`."
    )


def tracking_uri(settings: Settings | None = None) -> str:
    from mlops_pipeline.config import get_settings

    return (settings or get_settings()).mlflow_tracking_uri


def mlflow_client(settings: Settings | None = None, registry: RegistrySettings | None = None) -> MlflowClient:
    """A client for the configured tracking server and registry, checked to be reachable.

    Also points MLflow's fluent API (``mlflow.start_run``, ``mlflow.<flavor>.log_model``) at the
    same server, so code that mixes both talks to one place.
    """
    from mlops_pipeline.config import get_settings

    registry = registry or (settings or get_settings()).registry
    for key, value in mlflow_environment_defaults(registry).items():
        os.environ.setdefault(key, value)
    uri = tracking_uri(settings)
    if is_http_uri(uri):
        wait_until_reachable(uri, registry)

    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``: restored when deleted, created when missing (a concurrent
    creation by another run is fine)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # created meanwhile by another run
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id
