"""The ``@champion`` and ``@challenger`` versions as the view shows them: version, run, metrics, tags.

The client comes from the project's factory (:func:`mlops_pipeline.registry.client.mlflow_client`)
with one short health check and bounded request retries, so a page load waits seconds, not minutes,
when MLflow is down; :class:`~mlops_pipeline.registry.client.RegistryUnavailable` then says where
it looked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops_pipeline.contracts import tags

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_pipeline.config import Settings

# Shown first, in this order; the other holdout_/valid_ metrics of the winner follow.
KEY_METRICS = ("holdout_roc_auc", "holdout_pr_auc", "holdout_log_loss", "holdout_brier", "valid_roc_auc")
# Version tags that say where a version stands (training, gate, deployment).
KEY_TAGS = (
    tags.DEPLOY_STATUS,
    tags.DEPLOY_REASON,
    tags.GATE_STATUS,
    tags.REJECTION_REASON,
    tags.PREVIOUS_CHAMPION,
    tags.TRIGGER_REASON,
    tags.CANDIDATE,
    tags.FLAVOR,
    tags.DATA_WINDOW,
    tags.GIT_COMMIT,
    tags.ARTIFACT_SHA256,
)


@dataclass(frozen=True)
class VersionSummary:
    alias: str
    model_name: str
    version: str
    run_id: str | None
    aliases: list[str]
    created: str | None
    status: str | None
    description: str
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def roc_auc(self) -> float | None:
        return self.metrics.get("holdout_roc_auc")


READER_IDENTITY = "reader"  # Airflow connection mlflow_reader: a READ-only MLflow user


def registry_client(settings: Settings) -> MlflowClient:
    """A client that gives up fast: one health check, few retries, a short per-request timeout. It reads
    as the user of Airflow connection ``mlflow_reader`` when there is one (an MLflow server with
    authentication: a READ-only identity, so the view can move nothing), else with the api-server's own
    MLflow credentials, if any."""
    from mlops_pipeline.config import RegistrySettings
    from mlops_pipeline.orchestration.context import use_mlflow_identity
    from mlops_pipeline.registry.client import mlflow_client

    use_mlflow_identity(READER_IDENTITY)

    return mlflow_client(
        settings,
        RegistrySettings(connect_attempts=1, health_timeout_seconds=3, request_timeout_seconds=10, request_max_retries=1),
    )


def key_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The winner's own metrics (no ``<candidate>.`` prefix), the key ones first."""
    own = {name: value for name, value in metrics.items() if "." not in name and name.startswith(("holdout_", "valid_"))}
    first = {name: own[name] for name in KEY_METRICS if name in own}
    return {**first, **{name: own[name] for name in sorted(own) if name not in first}}


def _millis_to_iso(value: Any) -> str | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError):
        return None


def summarise_version(alias: str, model_name: str, version: Any, run_metrics: dict[str, float] | None) -> VersionSummary:
    """A :class:`VersionSummary` from an MLflow ``ModelVersion`` and its run's metrics."""
    version_tags = dict(version.tags or {})
    return VersionSummary(
        alias=alias,
        model_name=model_name,
        version=str(version.version),
        run_id=version.run_id or None,
        aliases=sorted(getattr(version, "aliases", None) or []),
        created=_millis_to_iso(version.creation_timestamp),
        status=str(version.status) if version.status is not None else None,
        description=version.description or "",
        metrics=key_metrics(run_metrics or {}),
        tags={key: str(version_tags[key]) for key in KEY_TAGS if version_tags.get(key)},
    )


def alias_versions(client: MlflowClient, model_name: str, aliases: tuple[str, ...] | None = None) -> dict[str, VersionSummary | None]:
    """Per alias (``champion``, ``challenger``): its version summary, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    from mlops_pipeline.registry.aliases import CHALLENGER, CHAMPION, version_for_alias

    found: dict[str, VersionSummary | None] = {}
    for alias in aliases or (CHAMPION, CHALLENGER):
        version = version_for_alias(client, model_name, alias)
        if version is None:
            found[alias] = None
            continue
        metrics: dict[str, float] = {}
        if version.run_id:
            try:
                metrics = dict(client.get_run(version.run_id).data.metrics)
            except MlflowException:  # a deleted run: the version is still worth showing
                metrics = {}
        found[alias] = summarise_version(alias, model_name, version, metrics)
    return found
