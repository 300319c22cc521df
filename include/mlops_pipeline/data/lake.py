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
never overwrites a file a reader may be using.

Versions: every write of new content is a new version of the day, and old versions are kept::

    validated/ds=YYYY-MM-DD/_manifest.json            the head: the newest version (what readers see)
    validated/ds=YYYY-MM-DD/_versions/v000001.json    each version: a full manifest copy with
    validated/ds=YYYY-MM-DD/_versions/v000002.json    ``version``, ``version_digest``, ``committed_at``

The ``version_digest`` is a digest over the sha256s of the version's files, so it names the
content: writing the same files again (a retry, an identical re-ingest) creates no version. A
version file is created only if absent (a hard link on a local disk, a conditional PUT on S3), so
two writers of one day never share a number; the head is written after the version file and
follows the newest version. ``Lake.read_frame(zone, ds, version=N or digest)`` reads an old one.

Retention (``keep_versions``): after a write, versions beyond the newest K are removed unless
``protected_versions`` names their digest (the data a registered model was trained on, see
``registry.lineage.protected_data_versions``); when it cannot tell (``None``: the registry is
down), nothing is pruned. A data file is removed once no kept version names it; files no version
names at all (a writer that died before its commit) are removed only after an hour, so another
writer's files that are not committed yet are never taken.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"
VERSIONS_DIR = "_versions"
ZONES = ("raw", "validated", "quarantine", "predictions")
ORPHAN_GRACE_SECONDS = 3600.0  # unlisted files younger than this may belong to a writer that has not committed yet
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")

ProtectedVersions = Callable[[], "set[str] | None"]


class LakeError(RuntimeError):
    pass


class ManifestMismatchError(LakeError):
    pass


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def partition_name(ds: str) -> str:
    return f"ds={ds}"


def version_digest(sha256s: Iterable[str]) -> str:
    """The digest of a version: over the sorted sha256s of its files, so it names the content."""
    return sha256_bytes("\n".join(sorted(sha256s)).encode())[:32]


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """A manifest's version digest (computed for a head written before versions existed)."""
    return str(manifest.get("version_digest") or version_digest(f["sha256"] for f in manifest["files"]))


def version_file_name(number: int) -> str:
    return f"v{number:06d}.json"


def _synced_temp_file(path: str, data: bytes) -> str:
    """A complete, fsynced temp file beside ``path`` (local disk), for a rename or link into place."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return tmp

class VersionCollision(LakeError):
    """Another writer created the same version number first."""


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
    """A lake at ``uri``. ``keep_versions``: how many versions of a day to keep (None: all);
    ``protected_versions``: returns the version digests that must stay whatever their age, or None
    when that is unknown (then nothing is pruned). Called only when a write finds versions to prune."""

    def __init__(
        self,
        uri: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        keep_versions: int | None = None,
        protected_versions: ProtectedVersions | None = None,
    ):
        import fsspec

        if keep_versions is not None and keep_versions < 1:
            raise LakeError(f"keep_versions must be at least 1 (the head), got {keep_versions}")
        self.uri = uri.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = fsspec.core.url_to_fs(self.uri, **self.storage_options)
        self.root = self.root.rstrip("/")
        self._local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        self.keep_versions = keep_versions
        self.protected_versions = protected_versions

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
            os.replace(_synced_temp_file(path, data), path)
        else:  # an object store PUT is atomic per object
            self.fs.pipe_file(path, data)

    def read_bytes(self, path: str) -> bytes:
        return self.fs.cat_file(path)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def write_json_atomic(self, path: str, payload: Any) -> None:
        self.write_bytes_atomic(path, _json_bytes(payload))

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
        """Commit ``files`` as the new version of ``zone/ds``: data first, then the version file, then
        the head, then retention. The same files as the newest version commit nothing new: that
        version is returned (a retry, or an identical re-ingest, is a no-op)."""
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
        head = self.read_manifest(zone, ds)
        if head is not None and _same_files(head, entries):
            return head
        manifest: dict[str, Any] | None = None
        for _attempt in range(20):
            numbers = self.version_numbers(zone, ds)
            if not numbers and head is not None and "version" not in head:
                numbers = [self._adopt_unversioned_head(zone, ds, head)]
            newest = self.read_version(zone, ds, numbers[-1]) if numbers else None
            if newest is not None and _same_files(newest, entries):
                manifest = newest  # a concurrent writer committed these files, or the head was deleted since
                break
            number = (numbers[-1] if numbers else 0) + 1
            candidate = {
                "zone": zone,
                "ds": ds,
                "files": entries,
                "row_count": sum(f.rows for f in files if f.rows is not None),
                **metadata,
                "version": number,
                "version_digest": version_digest(e["sha256"] for e in entries),
                "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            if self._create_if_absent(self.version_path(zone, ds, number), _json_bytes(candidate)):
                manifest = candidate
                break
            log.info("%s/ds=%s: version %d was taken by another writer; trying the next number", zone, ds, number)
        if manifest is None:
            raise LakeError(f"{zone}/ds={ds} in {self.uri}: no free version number after 20 attempts (too many writers)")
        self._publish_head(zone, ds, manifest)
        self.prune(zone, ds)
        return manifest

    def _same_file_present(self, path: str, data_file: DataFile) -> bool:
        try:
            return self.fs.size(path) == len(data_file.data) and sha256_bytes(self.read_bytes(path)) == data_file.sha256
        except FileNotFoundError:
            return False

    def _create_if_absent(self, path: str, data: bytes) -> bool:
        """Write ``path`` only if nobody has: False when it exists. Local: a hard link of a complete temp
        file (atomic, fails if the name exists). S3: a conditional PUT (``If-None-Match: *``); an
        S3-compatible server that ignores the condition leaves a best effort (check, then PUT)."""
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self._local:
            tmp = _synced_temp_file(path, data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            return True
        if self.fs.exists(path):
            return False
        try:
            self.fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except OSError as exc:
            if "PreconditionFailed" in str(exc) or "412" in str(exc):
                return False
            raise
        return True

    def _adopt_unversioned_head(self, zone: str, ds: str, head: dict[str, Any]) -> int:
        """A head written before versions existed becomes version 1, so the next write keeps it."""
        adopted = {**head, "version": 1, "version_digest": manifest_digest(head)}
        self._create_if_absent(self.version_path(zone, ds, 1), _json_bytes(adopted))
        return 1

    def _publish_head(self, zone: str, ds: str, manifest: dict[str, Any]) -> None:
        """Write the head; if a concurrent writer committed a later version meanwhile, the head follows it."""
        head_path = f"{self.partition_path(zone, ds)}/{MANIFEST_NAME}"
        self.write_bytes_atomic(head_path, _json_bytes(manifest))
        for _attempt in range(5):
            numbers = self.version_numbers(zone, ds)
            if not numbers or numbers[-1] <= int(manifest["version"]):
                return
            newest = self.read_version(zone, ds, numbers[-1])
            if newest is None:  # pruned meanwhile
                return
            manifest = newest
            self.write_bytes_atomic(head_path, _json_bytes(manifest))

    # --- versions -------------------------------------------------------------------------
    def version_path(self, zone: str, ds: str, number: int) -> str:
        return f"{self.partition_path(zone, ds)}/{VERSIONS_DIR}/{version_file_name(number)}"

    def version_numbers(self, zone: str, ds: str) -> list[int]:
        """The version numbers of ``zone/ds`` that have a version file, ascending."""
        folder = f"{self.partition_path(zone, ds)}/{VERSIONS_DIR}"
        try:
            names = [entry.rstrip("/").rsplit("/", 1)[-1] for entry in self.fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(_VERSION_FILE.match, names) if m)

    def read_version(self, zone: str, ds: str, number: int) -> dict[str, Any] | None:
        try:
            return json.loads(self.read_bytes(self.version_path(zone, ds, number)))
        except FileNotFoundError:
            return None

    def list_versions(self, zone: str, ds: str) -> list[dict[str, Any]]:
        """Every kept version of ``zone/ds`` (full manifests), oldest first."""
        found = (self.read_version(zone, ds, n) for n in self.version_numbers(zone, ds))
        return [manifest for manifest in found if manifest is not None]

    def find_version(self, zone: str, ds: str, version: int | str | None = None) -> dict[str, Any] | None:
        """The manifest of one version: None = the head, an int = that number, a str = a version
        digest (or a prefix of 8+ characters; the newest match). A head written before versions
        existed is found by its computed digest."""
        if version is None:
            return self.read_manifest(zone, ds)
        if isinstance(version, int):
            return self.read_version(zone, ds, version)
        wanted = version.strip().lower()
        if len(wanted) < 8:
            raise LakeError(f"version digest {version!r} of {zone}/ds={ds} is too short: give 8 or more characters")
        for manifest in reversed(self.list_versions(zone, ds)):
            if manifest_digest(manifest).startswith(wanted):
                return manifest
        head = self.read_manifest(zone, ds)
        if head is not None and manifest_digest(head).startswith(wanted):
            return head
        return None

    def prune(self, zone: str, ds: str, *, keep: int | None = None, protected: set[str] | None = None) -> list[int]:
        """Retention for ``zone/ds``: drop versions beyond the newest ``keep`` whose digest is not
        protected, then the data files no kept version names. Returns the dropped version numbers.

        ``keep``/``protected`` default to the lake's ``keep_versions``/``protected_versions()``;
        unknown protection (None) prunes no version (a warning says so), only old orphan files."""
        keep = self.keep_versions if keep is None else keep
        numbers = self.version_numbers(zone, ds)
        dropped: list[int] = []
        released: set[str] = set()
        if keep is not None and len(numbers) > keep:
            if protected is None and self.protected_versions is not None:
                protected = self.protected_versions()
            elif protected is None:
                protected = set()  # no source of protection: this lake's owner says nothing is pinned
            if protected is None:
                log.warning(
                    "%s/ds=%s in %s: %d version(s), %d to keep, but the versions registered models use are unknown "
                    "(registry unreachable); pruning nothing this time",
                    zone, ds, self.uri, len(numbers), keep,
                )  # fmt: skip
            else:
                for number in numbers[:-keep]:
                    manifest = self.read_version(zone, ds, number)
                    if manifest is not None and manifest_digest(manifest) in protected:
                        continue
                    self.fs.rm(self.version_path(zone, ds, number))
                    dropped.append(number)
                    released.update(f["path"] for f in (manifest or {}).get("files", []))
        self.remove_unreferenced(zone, ds, released)
        if dropped:
            log.info("%s/ds=%s in %s: pruned version(s) %s (keeping %s)", zone, ds, self.uri, dropped, keep)
        return dropped

    def remove_unreferenced(self, zone: str, ds: str, released: set[str]) -> None:
        """Remove data files no kept version (nor the head) names. ``released`` are the files of the
        versions just dropped: committed once, they go at once. A file no version ever named may be
        another writer's, not committed yet: it goes only when older than the grace period."""
        folder = self.partition_path(zone, ds)
        head = self.read_manifest(zone, ds)
        referenced = {f["path"] for m in [*self.list_versions(zone, ds), *([head] if head else [])] for f in m["files"]}
        try:
            listing = self.fs.ls(folder, detail=True)
        except FileNotFoundError:
            return
        now = time.time()
        for info in listing:
            entry = info["name"]
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name in (MANIFEST_NAME, VERSIONS_DIR) or name in referenced or info.get("type") == "directory":
                continue
            if name in released or now - _modified(info) >= ORPHAN_GRACE_SECONDS:
                self.fs.rm(entry)

    def delete_partition(self, zone: str, ds: str) -> bool:
        """Withdraw a partition: the head goes, so readers stop seeing the day at once. Its versions
        stay (a model trained on one can still be reproduced) until retention drops them.
        True when there was a head to remove."""
        manifest_path = f"{self.partition_path(zone, ds)}/{MANIFEST_NAME}"
        if not self.fs.exists(manifest_path):
            return False
        head = self.read_manifest(zone, ds)
        if head is not None and "version" not in head and not self.version_numbers(zone, ds):
            self._adopt_unversioned_head(zone, ds, head)
        self.fs.rm(manifest_path)
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

    def read_frame(self, zone: str, ds: str, version: int | str | None = None) -> pd.DataFrame:
        """The parquet files of a committed partition as one frame (checksums verified): the head, or
        an older version by number or digest (see :meth:`find_version`)."""
        manifest = self.find_version(zone, ds, version)
        if manifest is None:
            if version is None:
                raise LakeError(f"no committed partition {zone}/ds={ds} in {self.uri}")
            kept = self.version_numbers(zone, ds)
            raise LakeError(f"no version {version!r} of {zone}/ds={ds} in {self.uri} (kept versions: {kept or 'none'})")
        return self.read_manifest_frame(manifest)

    def read_manifest_frame(self, manifest: Mapping[str, Any]) -> pd.DataFrame:
        """The parquet files a manifest (head or version) names, as one frame (checksums verified)."""
        import pandas as pd
        import pyarrow.parquet as pq

        zone, ds = manifest["zone"], manifest["ds"]
        frames = [
            pq.read_table(io.BytesIO(self.read_partition_file(zone, ds, entry))).to_pandas()
            for entry in manifest["files"]
            if entry["path"].endswith(".parquet")
        ]
        if not frames:
            raise LakeError(f"partition {zone}/ds={ds} has no parquet files")
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _same_files(manifest: Mapping[str, Any], entries: list[dict[str, Any]]) -> bool:
    return [(f["path"], f["sha256"]) for f in manifest.get("files", [])] == [(e["path"], e["sha256"]) for e in entries]


def _json_bytes(payload: Any) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n").encode()


def _modified(info: Mapping[str, Any]) -> float:
    """Modification time of an fsspec listing entry, in seconds since the epoch (0 when unknown)."""
    value = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)
