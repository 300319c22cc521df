"""Score one validated partition with one registered model version, in bounded memory.

The output is ``predictions/ds=YYYY-MM-DD/``: parquet parts with the id column, the time column,
``probability`` (float64, the calibrated probability the model server answers) and ``label``
(``probability >= threshold``), plus ``_manifest.json``. The manifest names the model (name,
version, its ``artifact_sha256`` tag, run id, flavor), the input partition (its ``ds``, URI, row count
and a digest over its files' sha256), the rows scored and every part with its sha256.

The contract is the lake's: parts are content-addressed and written first, the manifest last and
atomically, then parts it does not name are removed. The same input and model give byte-identical
parts, so a retry or a backfill rewrites nothing a reader may be using.

Memory stays bounded by ``chunk_rows``: input files are read in record batches of that size, each
batch is encoded, scored and written as its own part before the next is read.

Probabilities come from :func:`mlops_pipeline.registry.models.load_model` (native flavor +
``metadata.mlops``: the contract's encoding and calibration map), the same numbers the model server
serves (checked by ``tests/scoring/test_parity.py``).
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_pipeline.data.lake import MANIFEST_NAME, partition_name, sha256_bytes

if TYPE_CHECKING:
    import pyarrow as pa
    from mlflow import MlflowClient

    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.registry.models import LoadedModel

log = logging.getLogger(__name__)

INPUT_ZONE = "validated"
QUARANTINE_ZONE = "quarantine"
PREDICTIONS_ZONE = "predictions"
PROBABILITY = "probability"
LABEL = "label"
DEFAULT_CHUNK_ROWS = 100_000
CHAMPION_SOURCE = "champion"
PINNED_SOURCE = "pinned"


class ScoringError(ValueError):
    """Input a retry would meet again: no partition, no model to score with, nothing to score."""


class PartitionMissing(ScoringError):
    """The window has no validated partition."""


class NoChampion(ScoringError):
    """The registered model has no ``@champion`` (and no version was pinned)."""


class NothingToScore(ScoringError):
    """The validated partition holds no rows."""


@dataclass(frozen=True)
class ModelRef:
    """The registered version a run scores with, resolved once so a retry uses the same one."""

    name: str
    version: str
    artifact_sha256: str
    run_id: str
    source: str  # "champion" or "pinned"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRef:
        return cls(**{key: str(data[key]) for key in ("name", "version", "artifact_sha256", "run_id", "source")})

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def resolve_model(client: MlflowClient, model_name: str, pinned_version: str | int | None = None) -> ModelRef:
    """The version to score with: ``pinned_version`` when given, else the one behind ``@champion``."""
    from mlflow.exceptions import MlflowException

    from mlops_pipeline.contracts.tags import ARTIFACT_SHA256, CHAMPION
    from mlops_pipeline.registry.aliases import version_for_alias

    if pinned_version not in (None, ""):
        try:
            version = client.get_model_version(model_name, str(pinned_version))
        except MlflowException as exc:
            raise ScoringError(f"model {model_name!r} has no version {pinned_version!r} to score with ({exc})") from exc
        source = PINNED_SOURCE
    else:
        found = version_for_alias(client, model_name, CHAMPION)
        if found is None:
            raise NoChampion(
                f"model {model_name!r} has no @{CHAMPION} alias, so there is no model to score with: "
                f"deploy a version first (mlops_deploy promotes it), or pin one with the model_version Param"
            )
        version, source = found, CHAMPION_SOURCE
    digest = (version.tags or {}).get(ARTIFACT_SHA256)
    if not digest:
        raise ScoringError(
            f"{model_name} version {version.version} has no {ARTIFACT_SHA256!r} tag, so its artifact cannot be "
            "verified; re-register it through mlops_train"
        )
    return ModelRef(model_name, str(version.version), digest, version.run_id or "", source)


def load_verified(client: MlflowClient, ref: ModelRef, workdir: Path | str) -> LoadedModel:
    """Download ``ref`` into ``workdir``, check its bytes against the registered digest, load it natively."""
    from mlops_pipeline.deploy.artifacts import download_verified
    from mlops_pipeline.registry.models import load_model

    verified = download_verified(client, ref.name, ref.version, Path(workdir) / f"{ref.name}-{ref.version}")
    if verified.sha256 != ref.artifact_sha256:  # the tag moved between resolving and downloading
        raise ScoringError(
            f"{ref.name} version {ref.version}: artifact sha256 {verified.sha256} is not the {ref.artifact_sha256} "
            "this run resolved"
        )
    return load_model(verified.model_dir)


def input_partition(lake: Lake, ds: str) -> dict[str, Any]:
    """The committed manifest of ``validated/ds=<ds>``; an error naming the day (and its quarantine) if none."""
    manifest = lake.read_manifest(INPUT_ZONE, ds)
    if manifest is not None:
        return manifest
    quarantined = lake.read_manifest(QUARANTINE_ZONE, ds)
    if quarantined is not None:
        failures = quarantined.get("failures") or []
        raise PartitionMissing(
            f"ds={ds} has no validated partition: its batch was quarantined "
            f"({lake.partition_uri(QUARANTINE_ZONE, ds)}, {len(failures)} failed check(s)); fix the suite or the "
            "source and reprocess the day (make reprocess) before scoring it"
        )
    raise PartitionMissing(
        f"ds={ds} has no validated partition in {lake.uri} ({lake.partition_uri(INPUT_ZONE, ds)}): "
        "run mlops_ingest for that day first"
    )


def partition_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 over ``"<file>\\0<sha256>\\n"`` of a manifest's files, sorted: names the input's bytes."""
    digest = hashlib.sha256()
    for entry in sorted(manifest["files"], key=lambda item: item["path"]):
        digest.update(f"{entry['path']}\0{entry['sha256']}\n".encode())
    return digest.hexdigest()


def _verified_file(lake: Lake, path: str, expected_sha256: str) -> None:
    """Hash a file in blocks (never whole in memory) and compare with its manifest entry."""
    digest = hashlib.sha256()
    with lake.fs.open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    if digest.hexdigest() != expected_sha256:
        from mlops_pipeline.data.lake import ManifestMismatchError

        raise ManifestMismatchError(f"{path}: sha256 {digest.hexdigest()} does not match the manifest's {expected_sha256}")


def iter_input_batches(lake: Lake, ds: str, manifest: Mapping[str, Any], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """The partition's parquet rows in record batches of at most ``chunk_rows``, file by file."""
    import pyarrow.parquet as pq

    folder = lake.partition_path(INPUT_ZONE, ds)
    for entry in manifest["files"]:
        if not entry["path"].endswith(".parquet"):
            continue
        path = f"{folder}/{entry['path']}"
        _verified_file(lake, path, entry["sha256"])
        with lake.fs.open(path, "rb") as handle:
            yield from pq.ParquetFile(handle).iter_batches(batch_size=chunk_rows)


def score_batch(model: LoadedModel, batch: pa.RecordBatch) -> pa.Table:
    """id, time, probability and label for one batch of input rows."""
    import numpy as np
    import pyarrow as pa

    spec = model.spec
    missing = [name for name in (spec.id_column, spec.time_column, *spec.names) if name not in batch.schema.names]
    if missing:
        raise ScoringError(f"the input lacks the column(s) {missing} the model's contract names")
    probabilities = np.asarray(model.predict_proba(batch.select(spec.names).to_pandas()), dtype=np.float64)
    labels = (probabilities >= spec.threshold).astype(np.int8)
    return pa.table(
        {
            spec.id_column: batch.column(spec.id_column),
            spec.time_column: batch.column(spec.time_column),
            PROBABILITY: pa.array(probabilities, type=pa.float64()),
            LABEL: pa.array(labels, type=pa.int8()),
        }
    )


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    """Deterministic parquet bytes (no pandas metadata, no timestamps): the same table, the same bytes."""
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True)
    return sink.getvalue()


def score_partition(
    lake: Lake,
    ds: str,
    model: LoadedModel,
    ref: ModelRef,
    *,
    dataset: str,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score ``validated/ds=<ds>`` into ``predictions/ds=<ds>`` (parts, then the manifest); returns the manifest.

    Raises :class:`PartitionMissing` for a day without a validated partition and
    :class:`NothingToScore` when the partition holds no rows (a run that scored nothing is no success)."""
    if chunk_rows < 1:
        raise ScoringError(f"chunk_rows must be at least 1, got {chunk_rows}")
    source = input_partition(lake, ds)
    if not source.get("row_count"):
        raise NothingToScore(f"ds={ds}: the validated partition {lake.partition_uri(INPUT_ZONE, ds)} holds no rows: nothing to score")
    folder = lake.partition_path(PREDICTIONS_ZONE, ds)
    lake.fs.makedirs(folder, exist_ok=True)
    started = time.monotonic()
    parts: list[dict[str, Any]] = []
    for index, batch in enumerate(iter_input_batches(lake, ds, source, chunk_rows)):
        if batch.num_rows == 0:
            continue
        data = table_to_parquet_bytes(score_batch(model, batch))
        digest = sha256_bytes(data)
        name = f"part-{index:05d}-{digest[:16]}.parquet"
        target = f"{folder}/{name}"
        if not (lake.exists(target) and lake.fs.size(target) == len(data)):  # content-addressed: same name, same bytes
            lake.write_bytes_atomic(target, data)
        parts.append({"path": name, "sha256": digest, "bytes": len(data), "rows": batch.num_rows})
    rows = sum(part["rows"] for part in parts)
    if rows != source["row_count"]:
        raise ScoringError(
            f"ds={ds}: scored {rows} rows but the validated manifest counts {source['row_count']}; nothing committed"
        )
    manifest: dict[str, Any] = {
        "zone": PREDICTIONS_ZONE,
        "ds": ds,
        "dataset": dataset,
        "files": parts,
        "row_count": rows,
        "columns": [model.spec.id_column, model.spec.time_column, PROBABILITY, LABEL],
        "threshold": model.spec.threshold,
        "chunk_rows": chunk_rows,
        "model": {**ref.to_dict(), "flavor": model.flavor},
        "input": {
            "zone": INPUT_ZONE,
            "ds": ds,
            "uri": lake.partition_uri(INPUT_ZONE, ds),
            "rows": source["row_count"],
            "digest": partition_digest(source),
            # the lake's version of the day, where it keeps versions: which data, by number and content
            **{key: source[key] for key in ("version", "version_digest") if key in source},
        },
        "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    previous = lake.read_manifest(PREDICTIONS_ZONE, ds) or {}
    lake.write_json_atomic(f"{folder}/{MANIFEST_NAME}", manifest)
    # The parts of the run this one replaced go at once; a file no manifest ever named may be an
    # overlapping run's, not committed yet: the lake's grace period applies to it.
    lake.remove_unreferenced(PREDICTIONS_ZONE, ds, released={f["path"] for f in previous.get("files", [])})
    log.info(
        "predictions ds=%s: %d rows in %d part(s) with %s version %s in %.1fs -> %s",
        ds, rows, len(parts), ref.name, ref.version, time.monotonic() - started, lake.partition_uri(PREDICTIONS_ZONE, ds),
    )  # fmt: skip
    return manifest


def read_predictions(lake: Lake, ds: str) -> pa.Table:
    """The committed predictions of ``ds`` as one table (checksums verified), parts in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = lake.read_manifest(PREDICTIONS_ZONE, ds)
    if manifest is None:
        raise PartitionMissing(f"no committed partition {PREDICTIONS_ZONE}/{partition_name(ds)} in {lake.uri}")
    tables = [pq.read_table(io.BytesIO(lake.read_partition_file(PREDICTIONS_ZONE, ds, entry))) for entry in manifest["files"]]
    return pa.concat_tables(tables)
