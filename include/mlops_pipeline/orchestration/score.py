"""The adapter of ``mlops_score``: one function per task, context values in, XCom-able dicts out.

* :func:`validated_partition` the window's validated partition, which a scheduled run waits for (it
  starts with the window's ingest) and any other run requires at once;
* :func:`resolve_model` the version the run scores with: the ``model_version`` Param, else the one
  behind ``@champion`` (:func:`mlops_pipeline.scoring.batch.resolve_model`). Resolved once, so a
  retry of ``score`` uses the same version even if the alias moved meanwhile;
* :func:`score` the window's validated partition through that version into ``predictions/ds=...``
  (:func:`mlops_pipeline.scoring.batch.score_partition`).

Bad input fails at once, without retries: a window before the start date, a day without a
validated partition (quarantined or never ingested), no ``@champion``, an unknown pinned version,
an artifact whose bytes are not the registered ones, an empty partition. An unreachable MLflow
server or lake raises as it is, so Airflow's retries apply.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mlops_pipeline.orchestration.context import (
    MlflowIdentity,
    fails_at_once,
    refuse_before_start,
    run_type_of,
    scoped,
    window_of,
)

log = logging.getLogger(__name__)

# The DAG's on_execute_callback: its tasks talk to MLflow as the user of Airflow connection mlflow_score.
MLFLOW_IDENTITY = MlflowIdentity("score")

DAG_ID = "mlops_score"
PREDICTIONS_ASSET_NAME = "mlops_predictions"
ASSET_KEYS = ("dataset", "ds", "rows", "uri", "model_name", "model_version")


def pinned_version_of(params: Mapping[str, Any] | None) -> str | None:
    """The ``model_version`` Param as a version string, or None to score with ``@champion``."""
    value = (params or {}).get("model_version")
    if value is None or str(value).strip() == "":
        return None
    return str(value).strip()


def chunk_rows_of(params: Mapping[str, Any] | None) -> int:
    from mlops_pipeline.scoring.batch import DEFAULT_CHUNK_ROWS

    return int((params or {}).get("chunk_rows") or DEFAULT_CHUNK_ROWS)


def validated_partition(data_interval_start: datetime, data_interval_end: datetime, *, dag_run: Any) -> dict[str, Any] | None:
    """``{ds, uri, rows}`` of the window's validated partition; None while a scheduled run waits for it.

    A quarantined day fails at once (waiting will not validate it); a backfill or manual run fails at
    once for a missing day too, naming it: it names a day that should be there."""
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_pipeline.scoring.batch import INPUT_ZONE, QUARANTINE_ZONE, PartitionMissing, input_partition
    from mlops_pipeline.storage import open_lake

    window = window_of(data_interval_start, data_interval_end)
    lake = open_lake()
    try:
        manifest = input_partition(lake, window.ds)
    except PartitionMissing as exc:
        if run_type_of(dag_run) == "scheduled" and lake.read_manifest(QUARANTINE_ZONE, window.ds) is None:
            log.info("waiting for %s (the window's ingest publishes it)", lake.partition_uri(INPUT_ZONE, window.ds))
            return None
        raise AirflowFailException(f"{scoped(DAG_ID)}: {exc}") from exc
    return {"ds": window.ds, "uri": lake.partition_uri(INPUT_ZONE, window.ds), "rows": manifest.get("row_count")}


def resolve_model(data_interval_start: datetime, *, params: Mapping[str, Any] | None) -> dict[str, str]:
    """Refuse a window before the start date; the registered version to score with."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.registry.client import mlflow_client
    from mlops_pipeline.scoring.batch import ScoringError
    from mlops_pipeline.scoring.batch import resolve_model as resolve

    settings = get_settings()
    refuse_before_start(scoped(DAG_ID), data_interval_start, settings)
    ds = data_interval_start.date().isoformat()
    with fails_at_once(f"{scoped(DAG_ID)} ds={ds} has no model to score with", ScoringError):
        ref = resolve(mlflow_client(settings), settings.registered_model_name, pinned_version_of(params))
    log.info("ds=%s is scored with %s version %s (%s, sha256 %s)", ds, ref.name, ref.version, ref.source, ref.artifact_sha256)
    return ref.to_dict()


def score(
    data_interval_start: datetime,
    data_interval_end: datetime,
    model: Mapping[str, Any],
    *,
    params: Mapping[str, Any] | None,
    run_id: str | None,
) -> dict[str, Any]:
    """Score the window's validated partition with ``model`` into ``predictions/ds=...``."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.artifacts import ArtifactError
    from mlops_pipeline.registry.client import mlflow_client
    from mlops_pipeline.registry.models import ModelFormatError
    from mlops_pipeline.scoring.batch import (
        PREDICTIONS_ZONE,
        ModelRef,
        ScoringError,
        input_partition,
        load_verified,
        score_partition,
    )
    from mlops_pipeline.storage import open_lake

    settings = get_settings()
    window = window_of(data_interval_start, data_interval_end)
    ref = ModelRef.from_dict(model)
    lake = open_lake(settings)
    with fails_at_once(f"{scoped(DAG_ID)} cannot score ds={window.ds}", ScoringError, ArtifactError, ModelFormatError):
        input_partition(lake, window.ds)  # a missing day fails before a model is downloaded
        with tempfile.TemporaryDirectory(prefix="mlops-score-") as workdir:
            loaded = load_verified(mlflow_client(settings), ref, workdir)
            manifest = score_partition(
                lake,
                window.ds,
                loaded,
                ref,
                dataset=settings.dataset,
                chunk_rows=chunk_rows_of(params),
                extra={"dag_run_id": run_id, "window": {"start": window.start.isoformat(), "end": window.end.isoformat()}},
            )
    return {
        "dataset": settings.dataset,
        "ds": window.ds,
        "rows": manifest["row_count"],
        "parts": len(manifest["files"]),
        "uri": lake.partition_uri(PREDICTIONS_ZONE, window.ds),
        "model_name": ref.name,
        "model_version": ref.version,
        "artifact_sha256": ref.artifact_sha256,
        "input_digest": manifest["input"]["digest"],
    }


def asset_extra(scored: Mapping[str, Any]) -> dict[str, Any]:
    """What the ``mlops_predictions`` asset event carries: the partition written and the model behind it."""
    return {key: scored[key] for key in ASSET_KEYS}
