"""Where bytes live: fsspec storage options for the lake and for source files.

Credentials for ``s3://`` come, in this order, from the Airflow AWS connection named by
``MLOPS_AWS_CONN_ID`` (when running under Airflow and the connection exists), else from the
standard AWS environment (``AWS_ACCESS_KEY_ID`` ..., profiles, instance roles) through boto's
own chain. ``MLOPS_S3_ENDPOINT_URL`` (or the connection's ``endpoint_url`` extra) points at an
S3-compatible server such as MinIO.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.config import Settings
    from mlops_pipeline.data.lake import Lake

log = logging.getLogger(__name__)


def _airflow_aws_options(conn_id: str) -> dict[str, Any] | None:
    """Credentials and endpoint from an Airflow AWS connection, or None outside Airflow / without it."""
    try:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    except ImportError:
        return None
    try:
        hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
        credentials = hook.get_credentials()
        endpoint = hook.conn_config.endpoint_url
    except Exception as exc:  # a missing connection is normal on a laptop: fall back to the environment
        log.debug("AWS connection %r not usable (%s); using the environment's AWS credentials", conn_id, exc)
        return None
    options: dict[str, Any] = {"key": credentials.access_key, "secret": credentials.secret_key}
    if credentials.token:
        options["token"] = credentials.token
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return options


def storage_options_for(uri: str, settings: Settings, conn_id: str | None = None) -> dict[str, Any]:
    if not uri.startswith(("s3://", "s3a://")):
        return {}
    options = _airflow_aws_options(conn_id or settings.aws_conn_id) or {}
    if settings.s3_endpoint_url:
        options.setdefault("client_kwargs", {})["endpoint_url"] = settings.s3_endpoint_url
    return options


def open_lake(settings: Settings | None = None) -> Lake:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.data.lake import Lake

    settings = settings or get_settings()
    return Lake(settings.lake_uri, storage_options_for(settings.lake_uri, settings))


def read_source_bytes(uri: str, settings: Settings, conn_id: str | None = None) -> bytes:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri, **storage_options_for(uri, settings, conn_id))
    return fs.cat_file(path)
