"""The lake: zones of daily partitions on any fsspec filesystem (``file://`` or ``s3://``).

Layout under the lake root::

    raw/ds=YYYY-MM-DD/           what the source gave, as it gave it
    validated/ds=YYYY-MM-DD/     batches that passed the expectation suite, as typed parquet
    quarantine/ds=YYYY-MM-DD/    batches that failed, with the validation result beside them
    data_docs/                   Great Expectations Data Docs (index.html)
    reports/...                  monitoring reports

A partition is a folder of data files plus ``_manifest.json``. The manifest is the commit
point: it is written last, atomically, and lists every file with its sha256; readers trust only
the files it names. Data files are content-addressed (the name carries the sha256), so a rewrite
never overwrites a file a reader may be using, and rewriting the same content is a no-op. Files a
new manifest no longer names are removed after it is committed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

MANIFEST_NAME = "_manifest.json"
ZONES = ("raw", "validated", "quarantine", "predictions")


class LakeError(RuntimeError):
    pass


class ManifestMismatchError(LakeError):
    pass


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def partition_name(ds: str) -> str:
    return f"ds={ds}"


@dataclass(frozen=True)
class DataFile:
    """A file to put into a partition: ``stem`` + ``suffix`` name it, the sha256 is added."""

    stem: str
    suffix: str
    data: bytes
    rows: int | None = None

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)

    @property
    def name(self) -> str:
        return f"{self.stem}-{self.sha256[:16]}{self.suffix}"


def frame_to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Deterministic parquet bytes: the same frame always gives the same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True)
    return sink.getvalue()


class Lake:
    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None = None):
        import fsspec

        self.uri = uri.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(self.uri, **self.storage_options)
        self.root = self.root.rstrip("/")
        self._local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    # --- paths ------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return "/".join([self.root, *[p.strip("/") for p in parts if p]])

    def uri_of(self, *parts: str) -> str:
        return "/".join([self.uri, *[p.strip("/") for p in parts if p]])

    def partition_path(self, zone: str, ds: str) -> str:
        if zone not in ZONES:
            raise LakeError(f"unknown lake zone {zone!r}; expected one of {ZONES}")
        return self.path(zone, partition_name(ds))

    def partition_uri(self, zone: str, ds: str) -> str:
        return self.uri_of(zone, partition_name(ds))

    # --- primitive I/O ------------------------------------------------------------------
    def write_bytes_atomic(self, path: str, data: bytes) -> None:
        """Readers see the old bytes or the new ones, never a part."""
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self._local:
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        else:  # an object store PUT is atomic per object
            self.fs.pipe_file(path, data)

    def read_bytes(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def write_json_atomic(self, path: str, payload: Any) -> None:
        self.write_bytes_atomic(path, (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode())

    # --- partitions ---------------------------------------------------------------------
    def read_manifest(self, zone: str, ds: str) -> dict[str, Any] | None:
        path = f"{self.partition_path(zone, ds)}/{MANIFEST_NAME}"
        try:
            return json.loads(self.read_bytes(path))
        except FileNotFoundError:
            return None

    def list_partitions(self, zone: str) -> list[str]:
        """The ``ds`` values of committed partitions in ``zone``, sorted."""
        base = self.path(zone)
        if not self.fs.exists(base):
            return []
        found = []
        for entry in self.fs.ls(base, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name.startswith("ds=") and self.fs.exists(f"{entry.rstrip('/')}/{MANIFEST_NAME}"):
                found.append(name[3:])
        return sorted(found)

    def write_partition(
        self,
        zone: str,
        ds: str,
        files: list[DataFile],
        metadata: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Replace partition ``zone/ds`` with ``files``: data first, then the manifest, then cleanup."""
        folder = self.partition_path(zone, ds)
        self.fs.makedirs(folder, exist_ok=True)
        entries: list[dict[str, Any]] = []
        for data_file in files:
            target = f"{folder}/{data_file.name}"
            if not self._same_file_present(target, data_file):
                self.write_bytes_atomic(target, data_file.data)
            entries.append(
                {"path": data_file.name, "sha256": data_file.sha256, "bytes": len(data_file.data), "rows": data_file.rows}
            )
        manifest = {
            "zone": zone,
            "ds": ds,
            "files": entries,
            "row_count": sum(f.rows for f in files if f.rows is not None),
            "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **metadata,
        }
        self.write_json_atomic(f"{folder}/{MANIFEST_NAME}", manifest)
        self._remove_unlisted(folder, {f.name for f in files})
        return manifest

    def _same_file_present(self, path: str, data_file: DataFile) -> bool:
        try:
            return self.fs.size(path) == len(data_file.data) and sha256_bytes(self.read_bytes(path)) == data_file.sha256
        except FileNotFoundError:
            return False

    def _remove_unlisted(self, folder: str, keep: set[str]) -> None:
        """Remove what the committed manifest does not name, but not another writer's fresh temp
        file (two runs of one window may overlap, e.g. a scheduled run and a backfill)."""
        import time

        for info in self.fs.ls(folder, detail=True):
            entry = info["name"]
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name == MANIFEST_NAME or name in keep:
                continue
            if ".tmp-" in name and time.time() - float(info.get("mtime") or info.get("created") or 0) < 3600:
                continue
            self.fs.rm(entry, recursive=True)

    def delete_partition(self, zone: str, ds: str) -> bool:
        """Remove a partition: the manifest first, so readers stop trusting it at once."""
        folder = self.partition_path(zone, ds)
        if not self.fs.exists(folder):
            return False
        manifest_path = f"{folder}/{MANIFEST_NAME}"
        if self.fs.exists(manifest_path):
            self.fs.rm(manifest_path)
        self.fs.rm(folder, recursive=True)
        return True

    def read_partition_file(self, zone: str, ds: str, entry: Mapping[str, Any], verify: bool = True) -> bytes:
        data = self.read_bytes(f"{self.partition_path(zone, ds)}/{entry['path']}")
        if verify and sha256_bytes(data) != entry["sha256"]:
            raise ManifestMismatchError(
                f"{zone}/ds={ds}/{entry['path']}: sha256 {sha256_bytes(data)} does not match the manifest's {entry['sha256']}"
            )
        return data

    def verify_partition(self, zone: str, ds: str) -> dict[str, Any]:
        manifest = self.read_manifest(zone, ds)
        if manifest is None:
            raise LakeError(f"no committed partition {zone}/ds={ds} in {self.uri}")
        for entry in manifest["files"]:
            self.read_partition_file(zone, ds, entry, verify=True)
        return manifest

    def read_frame(self, zone: str, ds: str) -> pd.DataFrame:
        """The parquet files of a committed partition as one frame (checksums verified)."""
        import pandas as pd
        import pyarrow.parquet as pq

        manifest = self.read_manifest(zone, ds)
        if manifest is None:
            raise LakeError(f"no committed partition {zone}/ds={ds} in {self.uri}")
        frames = [
            pq.read_table(io.BytesIO(self.read_partition_file(zone, ds, entry))).to_pandas()
            for entry in manifest["files"]
            if entry["path"].endswith(".parquet")
        ]
        if not frames:
            raise LakeError(f"partition {zone}/ds={ds} has no parquet files")
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
