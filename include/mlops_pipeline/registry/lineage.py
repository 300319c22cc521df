"""Lineage in MLflow: which lake partitions a run read, and which run a registered version came from.

Each split of a training run is logged as an MLflow dataset whose source is a :class:`LakeSource`
(the ``validated/ds=...`` partition URIs it read) and whose digest is derived from those
partitions' manifest checksums, so "which exact bytes trained version 7" has an answer in the
registry. A version is created with its run id, so ``models:/<name>/<version>`` leads back to
the run, its parameters, its datasets and the git commit.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.data.dataset_source import DatasetSource

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.data.pandas_dataset import PandasDataset
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo

log = logging.getLogger(__name__)

LAKE_SOURCE_TYPE = "mlops_lake"


class LakeSource(DatasetSource):
    """Partitions of the lake: ``{"uris": [...], "rows_from": ..., "rows_until": ..., "versions": [...]}`` in
    the run's inputs; ``versions`` pins each partition's lake version (``ds``, ``uri``, ``version``,
    ``version_digest``), so the exact bytes can be read again after a day was re-ingested."""

    def __init__(
        self,
        uris: list[str],
        rows_from: str | None = None,
        rows_until: str | None = None,
        versions: list[dict[str, Any]] | None = None,
    ):
        self.uris = list(uris)
        self.rows_from = rows_from
        self.rows_until = rows_until
        self.versions = list(versions or [])

    @staticmethod
    def _get_source_type() -> str:
        return LAKE_SOURCE_TYPE

    def load(self, dst_path: str | None = None) -> str:
        """Copy the partitions (data files and manifests) into ``dst_path`` (a temp dir by default)."""
        import tempfile

        import fsspec

        target = Path(dst_path or tempfile.mkdtemp(prefix="lake-source-"))
        for uri in self.uris:
            fs, path = fsspec.core.url_to_fs(uri)
            destination = target / uri.rstrip("/").rsplit("/", 1)[-1]
            fs.get(path.rstrip("/") + "/", str(destination) + "/", recursive=True)
        return str(target)

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> LakeSource:
        raise NotImplementedError("LakeSource is always constructed explicitly")

    def to_dict(self) -> dict[str, Any]:
        return {"uris": self.uris, "rows_from": self.rows_from, "rows_until": self.rows_until, "versions": self.versions}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> LakeSource:
        return cls(
            source_dict["uris"], source_dict.get("rows_from"), source_dict.get("rows_until"), source_dict.get("versions")
        )


def log_lake_dataset(
    frame: pd.DataFrame,
    *,
    name: str,
    context: str,
    uris: list[str],
    digest: str,
    target: str,
    rows_from: str | None = None,
    rows_until: str | None = None,
    versions: list[dict[str, Any]] | None = None,
) -> PandasDataset:
    """Log ``frame`` as an input of the active run: source = the lake partitions, given digest."""
    import warnings

    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    dataset = from_pandas(frame, source=LakeSource(uris, rows_from, rows_until, versions), name=name, digest=digest, targets=target)
    with warnings.catch_warnings():
        # MLflow infers the dataset's schema while logging and hints that integer columns (the 0/1
        # target) cannot hold missing values; that concerns model signatures, declared explicitly.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column", category=UserWarning)
        mlflow.log_input(dataset, context=context)
    return dataset


def run_datasets(run: Run) -> list[dict[str, Any]]:
    """The dataset inputs of a run as plain dicts: name, digest, context, source type and source."""
    found = []
    for dataset_input in run.inputs.dataset_inputs if run.inputs else []:
        dataset = dataset_input.dataset
        tags = {tag.key: tag.value for tag in dataset_input.tags}
        try:
            source: Any = json.loads(dataset.source)
        except (TypeError, ValueError):
            source = dataset.source
        found.append(
            {
                "name": dataset.name,
                "digest": dataset.digest,
                "context": tags.get("mlflow.data.context"),
                "source_type": dataset.source_type,
                "source": source,
            }
        )
    return found


def ensure_registered_model(client: MlflowClient, model_name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(model_name, description=description)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def register_version(
    client: MlflowClient,
    model_name: str,
    model_info: ModelInfo,
    run_id: str,
    *,
    tags: dict[str, str],
    description: str,
) -> ModelVersion:
    """A new version of ``model_name`` from the logged model, linked to ``run_id``.

    The version is tagged ``artifact_sha256`` (a digest over the model directory, see
    ``deploy.artifacts.directory_digest``): the deploy builds an image only from bytes that match it.
    """
    import tempfile

    import mlflow.artifacts

    from mlops_pipeline.contracts.tags import ARTIFACT_SHA256
    from mlops_pipeline.deploy.artifacts import directory_digest

    with tempfile.TemporaryDirectory(prefix="mlops-digest-") as scratch:
        digest = directory_digest(mlflow.artifacts.download_artifacts(artifact_uri=model_info.model_uri, dst_path=scratch))
    ensure_registered_model(client, model_name, "Registered by mlops_train; each version carries a model card (model_card.md) in its run.")
    return client.create_model_version(
        name=model_name,
        source=model_info.model_uri,
        run_id=run_id,
        tags={**tags, ARTIFACT_SHA256: digest},
        description=description,
        model_id=model_info.model_id,
    )


def version_lineage(client: MlflowClient, model_name: str, version: str | int) -> dict[str, Any]:
    """Where a registered version came from: run, tags, datasets and artifacts (for reports and tests)."""
    model_version = client.get_model_version(model_name, str(version))
    if not model_version.run_id:
        raise ValueError(f"{model_name} version {version} is not linked to a run (source {model_version.source})")
    run = client.get_run(model_version.run_id)
    return {
        "model_name": model_name,
        "version": str(model_version.version),
        "run_id": model_version.run_id,
        "source": model_version.source,
        "version_tags": dict(model_version.tags or {}),
        "run_tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") or k == "mlflow.source.git.commit"},
        "datasets": run_datasets(run),
        "artifacts": sorted(_artifact_paths(client, run.info.run_id)),
    }


def _artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    paths = []
    for entry in client.list_artifacts(run_id, path):
        if entry.is_dir:
            paths.extend(_artifact_paths(client, run_id, entry.path))
        else:
            paths.append(entry.path)
    return paths


def protected_data_versions(client: MlflowClient) -> set[str] | None:
    """The lake version digests every registered model version was trained on (all models of the
    registry, pruning must not take any of them). Read from each version's ``data_versions`` tag (one
    paged search, no per-version call); a version without the tag (a long window, or registered before
    versions existed) is read from its run's window record. None when one cannot be read: the caller
    then treats everything as protected."""
    from mlops_pipeline.contracts.tags import DATA_VERSIONS

    digests: set[str] = set()
    page_token = None
    while True:
        page = client.search_model_versions(max_results=1000, page_token=page_token)
        for model_version in page:
            pins = (model_version.tags or {}).get(DATA_VERSIONS)
            if pins:
                digests.update(pin.rsplit(":", 1)[-1] for pin in pins.split())
            elif model_version.run_id:
                window = _run_window(client, model_version.run_id)
                if window is None:
                    log.warning("%s v%s: no readable training window; protecting every version", model_version.name, model_version.version)
                    return None
                digests.update(window)
        page_token = getattr(page, "token", None)
        if not page_token:
            return digests


def _run_window(client: MlflowClient, run_id: str) -> set[str] | None:
    """The version digests of a run's training window (``data/window.json``), computed from the
    checksums for a run from before versions existed; an empty set for a run without one."""
    import tempfile

    from mlops_pipeline.training.data import TrainingWindow

    paths = {entry.path for entry in client.list_artifacts(run_id, "data")}
    if "data/window.json" not in paths:
        return set()  # not a training run of this pipeline: it read nothing from the lake
    try:
        with tempfile.TemporaryDirectory(prefix="mlops-window-") as scratch:
            record = json.loads(Path(client.download_artifacts(run_id, "data/window.json", scratch)).read_text())
    except Exception as exc:
        log.warning("run %s: cannot read data/window.json (%s)", run_id, exc)
        return None
    return {part.digest for part in TrainingWindow.from_dict(record["window"]).partitions}
