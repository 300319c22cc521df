"""Registry aliases: ``@champion`` serves traffic, ``@challenger`` is the candidate waiting for a deploy.

The training DAG only ever moves ``@challenger`` (when a version passes the gate). The deploy DAG
calls :func:`promote` once a canary succeeds. Importable at DAG parse time: no heavy imports here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mlops_pipeline.contracts.tags import CHALLENGER, CHALLENGER_ASSET_NAME, CHAMPION

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

# The alias names and the Airflow asset that mlops_train updates when a version becomes @challenger
# are contracts (mlops_pipeline.contracts.tags); re-exported here for the registry's users.
__all__ = ["CHALLENGER", "CHALLENGER_ASSET_NAME", "CHAMPION", "promote", "set_challenger", "version_for_alias"]


def version_for_alias(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version behind ``model_name@alias``, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def set_challenger(client: MlflowClient, model_name: str, version: str | int) -> None:
    client.set_registered_model_alias(model_name, CHALLENGER, str(version))
    log.info("%s version %s is now @%s", model_name, version, CHALLENGER)


def promote(
    version: str | int,
    *,
    model_name: str | None = None,
    client: MlflowClient | None = None,
) -> None:
    """Make ``version`` the ``@champion``; clear ``@challenger`` when it pointed at that version.

    A newer challenger (registered while this one was being deployed) keeps its alias, so it is
    not lost; it will be deployed next. Safe to call again with the same version.
    """
    if client is None:
        from mlops_pipeline.registry.client import mlflow_client

        client = mlflow_client()
    if model_name is None:
        from mlops_pipeline.config import get_settings

        model_name = get_settings().registered_model_name
    version = str(version)
    client.get_model_version(model_name, version)  # a clear error when the version does not exist
    client.set_registered_model_alias(model_name, CHAMPION, version)
    challenger = version_for_alias(client, model_name, CHALLENGER)
    if challenger is not None and str(challenger.version) == version:
        client.delete_registered_model_alias(model_name, CHALLENGER)
    log.info("%s version %s is now @%s", model_name, version, CHAMPION)
