"""Where bytes live: fsspec storage options for the lake and for source files.

Credentials for ``s3://`` come, in this order, from the registered credentials provider (inside
Airflow: the AWS connection named by ``MLOPS_AWS_CONN_ID`` when it exists, see
:mod:`mlops_pipeline.orchestration`), else from the standard AWS environment (``AWS_ACCESS_KEY_ID`` ..., profiles, instance roles) through boto's
own chain. ``MLOPS_S3_ENDPOINT_URL`` (or the connection's ``endpoint_url`` extra) points at an
S3-compatible server such as MinIO.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.config import Settings
    from mlops_pipeline.data.lake import Lake

log = logging.getLogger(__name__)


CredentialsProvider = Callable[[str], "dict[str, Any] | None"]
_credentials_provider: CredentialsProvider | None = None


def set_credentials_provider(provider: CredentialsProvider | None) -> None:
    """Where ``s3://`` credentials come from before the environment's chain: a function of the
    connection id that returns fsspec options (or None). The orchestration layer sets one that reads
    Airflow connections; outside Airflow there is none."""
    global _credentials_provider
    _credentials_provider = provider


def storage_options_for(uri: str, settings: Settings, conn_id: str | None = None) -> dict[str, Any]:
    if not uri.startswith(("s3://", "s3a://")):
        return {}
    provider = _credentials_provider
    options = (provider(conn_id or settings.aws_conn_id) if provider else None) or {}
    if settings.s3_endpoint_url:
        options.setdefault("client_kwargs", {})["endpoint_url"] = settings.s3_endpoint_url
    return options


def open_lake(settings: Settings | None = None) -> Lake:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.data.lake import Lake

    settings = settings or get_settings()
    resolved = settings
    return Lake(
        settings.lake_uri,
        storage_options_for(settings.lake_uri, settings),
        keep_versions=settings.lake_keep_versions,
        protected_versions=lambda: registered_data_versions(resolved),
    )


def registered_data_versions(settings: Settings) -> set[str] | None:
    """The lake version digests registered models were trained on (retention keeps them), or None when
    the registry cannot be asked: then the lake prunes nothing (it never guesses that data is unused)."""
    from mlops_pipeline.registry.client import mlflow_client
    from mlops_pipeline.registry.lineage import protected_data_versions

    try:
        # One quick health check: a write waits seconds for an answer, not the training's minute of retries.
        client = mlflow_client(settings, settings.registry.model_copy(update={"connect_attempts": 1}))
        return protected_data_versions(client)
    except Exception as exc:  # any failure means "unknown", which protects everything
        log.warning("cannot list the data versions registered models use (%s); lake retention skipped", exc)
        return None


def read_source_bytes(uri: str, settings: Settings, conn_id: str | None = None) -> bytes:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **storage_options_for(uri, settings, conn_id))
    return fs.cat_file(path)
