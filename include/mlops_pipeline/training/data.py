"""Training data: the last N validated days before a date, and a split by event time.

The window of a run is a pure function of (lake contents, as-of date, N): the N most recent
``validated/ds=...`` partitions with ``ds`` before the as-of date (the run's data interval end or
logical date). A backfill run for an old date therefore sees exactly the data it would have seen
then. Every partition is read through its manifest, so each file's sha256 is verified.

The split never shuffles: rows are ordered by event time (then id) and cut into train / valid /
holdout by row share; the cut points are timestamps, so the same split can be rebuilt from the
window and the two boundaries alone (the gate does that to score the champion).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.datasets import DatasetSpec

log = logging.getLogger(__name__)

ZONE = "validated"
SPLITS = ("train", "valid", "holdout")


class TrainingDataError(ValueError):
    """The data cannot train a model (empty window, one class, missing column ...); retrying will not help."""


@dataclass(frozen=True)
class PartitionRef:
    """One validated partition as the run used it: where it is, the checksums of its files, and the
    lake version they are (its number and digest): the pin that finds these exact bytes again after
    the day was re-ingested. A reference from before versions existed has no number; its digest is
    computed from the checksums, the same way the lake computes it."""

    ds: str
    uri: str
    sha256s: tuple[str, ...]
    rows: int
    version: int | None = None
    version_digest: str | None = None

    @property
    def digest(self) -> str:
        from mlops_pipeline.data.lake import version_digest

        return self.version_digest or version_digest(self.sha256s)

    @property
    def pin(self) -> str:
        """How messages and tags name the pinned version: ``ds@vN:digest``."""
        return f"{self.ds}@v{self.version if self.version is not None else '?'}:{self.digest}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ds": self.ds, "uri": self.uri, "sha256s": list(self.sha256s), "rows": self.rows,
            "version": self.version, "version_digest": self.digest,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartitionRef:
        version = data.get("version")
        return cls(
            ds=data["ds"], uri=data["uri"], sha256s=tuple(data["sha256s"]), rows=int(data["rows"]),
            version=int(version) if version is not None else None, version_digest=data.get("version_digest"),
        )  # fmt: skip


class PinnedDataMissing(TrainingDataError):
    """The exact partition versions a run was trained on are no longer in the lake."""

    def __init__(self, lake_uri: str, missing: list[PartitionRef]):
        self.lake_uri, self.missing = lake_uri, list(missing)
        names = ", ".join(f"{ZONE}/ds={p.ds} version {p.version if p.version is not None else '?'} (digest {p.digest})" for p in missing)
        super().__init__(
            f"{len(missing)} pinned partition version(s) are gone from {lake_uri}: {names}; they were pruned or "
            "deleted (retention keeps the versions registered models use, see MLOPS_LAKE_KEEP_VERSIONS)"
        )

    def __reduce__(self) -> tuple[type[PinnedDataMissing], tuple[str, list[PartitionRef]]]:
        return type(self), (self.lake_uri, self.missing)


@dataclass(frozen=True)
class TrainingWindow:
    lake_uri: str
    as_of: str  # ISO date: partitions have ds < as_of
    days_requested: int
    partitions: tuple[PartitionRef, ...]

    @property
    def first_ds(self) -> str:
        return self.partitions[0].ds

    @property
    def last_ds(self) -> str:
        return self.partitions[-1].ds

    @property
    def label(self) -> str:
        return f"ds={self.first_ds}..{self.last_ds} ({len(self.partitions)} day(s)) of {self.lake_uri}/{ZONE}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "lake_uri": self.lake_uri,
            "as_of": self.as_of,
            "days_requested": self.days_requested,
            "partitions": [p.to_dict() for p in self.partitions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingWindow:
        return cls(
            lake_uri=data["lake_uri"],
            as_of=data["as_of"],
            days_requested=int(data["days_requested"]),
            partitions=tuple(PartitionRef.from_dict(p) for p in data["partitions"]),
        )


@dataclass(frozen=True)
class TimeSplit:
    """Split boundaries: train < valid_start <= valid < holdout_start <= holdout (ISO timestamps)."""

    valid_start: str
    holdout_start: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TimeSplit:
        return cls(valid_start=data["valid_start"], holdout_start=data["holdout_start"])


@dataclass
class Splits:
    train: pd.DataFrame
    valid: pd.DataFrame
    holdout: pd.DataFrame
    boundaries: TimeSplit

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        return [("train", self.train), ("valid", self.valid), ("holdout", self.holdout)]


def as_of_date(moment: datetime | date) -> date:
    """The as-of day of a run: partitions strictly before it are eligible."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError(f"as-of moment must be timezone-aware, got {moment!r}")
        return moment.astimezone(UTC).date()
    return moment


def select_window(lake: Lake, as_of: datetime | date, days: int) -> TrainingWindow:
    """The validated partitions of the ``days`` calendar days before ``as_of``: ``as_of - days <= ds <
    as_of``. A day missing from the lake (quarantined, not ingested) leaves a gap; it is never filled
    with older data, so a window never mixes in a period long before the one asked for."""
    from mlops_pipeline.data.lake import manifest_digest

    cutoff_day = as_of_date(as_of)
    cutoff, first = cutoff_day.isoformat(), (cutoff_day - timedelta(days=days)).isoformat()
    chosen = [ds for ds in lake.list_partitions(ZONE) if first <= ds < cutoff]
    if not chosen:
        raise TrainingDataError(
            f"empty training window: no validated partition before ds={cutoff} in the {days} day(s) from ds={first}, "
            f"in {lake.uri}/{ZONE}; run mlops_ingest for those days first"
        )
    if len(chosen) < days:
        log.warning("only %d of the %d day(s) before %s are validated in %s", len(chosen), days, cutoff, lake.uri)
    partitions = []
    for ds in chosen:
        manifest = lake.read_manifest(ZONE, ds)
        if manifest is None:  # removed between listing and reading
            raise TrainingDataError(f"validated/ds={ds} in {lake.uri} disappeared while the window was assembled")
        partitions.append(
            PartitionRef(
                ds=ds,
                uri=lake.partition_uri(ZONE, ds),
                sha256s=tuple(sorted(f["sha256"] for f in manifest["files"])),
                rows=int(manifest.get("row_count") or 0),
                version=manifest.get("version"),
                version_digest=manifest_digest(manifest),
            )
        )
    return TrainingWindow(lake_uri=lake.uri, as_of=cutoff, days_requested=days, partitions=tuple(partitions))


def pinned_manifests(lake: Lake, window: TrainingWindow) -> list[dict[str, Any]]:
    """The manifest of each pinned partition version of ``window`` (the head or a kept older version);
    raises :class:`PinnedDataMissing` naming every one that is gone."""
    found, missing = [], []
    for part in window.partitions:
        manifest = lake.find_version(ZONE, part.ds, part.digest)
        if manifest is None:
            missing.append(part)
            continue
        current = tuple(sorted(f["sha256"] for f in manifest["files"]))
        if current != part.sha256s:  # the digest matched a prefix of another content: refuse rather than guess
            raise TrainingDataError(
                f"validated/ds={part.ds} in {lake.uri}: version {part.pin} lists files {list(current)}, "
                f"the run pinned {list(part.sha256s)}"
            )
        found.append(manifest)
    if missing:
        raise PinnedDataMissing(lake.uri, missing)
    return found


def load_window(lake: Lake, dataset: DatasetSpec, window: TrainingWindow) -> pd.DataFrame:
    """All rows of the window's pinned partition versions (a day re-ingested since is read as it was),
    ordered by event time then id; checks each partition's columns and checksums."""
    import pandas as pd

    needed = dataset.columns
    frames = []
    for part, manifest in zip(window.partitions, pinned_manifests(lake, window), strict=True):
        frame = lake.read_manifest_frame(manifest)
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise TrainingDataError(
                f"validated/ds={part.ds} in {lake.uri} lacks column(s) {missing} that dataset {dataset.name!r} "
                f"needs (it has {list(frame.columns)})"
            )
        frames.append(frame.loc[:, needed])
    frame = pd.concat(frames, ignore_index=True)
    frame[dataset.time_column] = pd.to_datetime(frame[dataset.time_column], utc=True)
    return frame.sort_values([dataset.time_column, dataset.id_column], kind="mergesort").reset_index(drop=True)


def time_boundaries(frame: pd.DataFrame, dataset: DatasetSpec, valid_fraction: float, holdout_fraction: float) -> TimeSplit:
    """Cut points at the event times of the row-share quantiles (``frame`` ordered by event time)."""
    n = len(frame)
    times = frame[dataset.time_column]
    valid_at = min(n - 1, int(n * (1.0 - valid_fraction - holdout_fraction)))
    holdout_at = min(n - 1, int(n * (1.0 - holdout_fraction)))
    return TimeSplit(valid_start=times.iloc[valid_at].isoformat(), holdout_start=times.iloc[holdout_at].isoformat())


def apply_split(frame: pd.DataFrame, dataset: DatasetSpec, boundaries: TimeSplit) -> Splits:
    import pandas as pd

    times = frame[dataset.time_column]
    valid_start = pd.Timestamp(boundaries.valid_start)
    holdout_start = pd.Timestamp(boundaries.holdout_start)
    train = frame.loc[times < valid_start].reset_index(drop=True)
    valid = frame.loc[(times >= valid_start) & (times < holdout_start)].reset_index(drop=True)
    holdout = frame.loc[times >= holdout_start].reset_index(drop=True)
    return Splits(train=train, valid=valid, holdout=holdout, boundaries=boundaries)


def split_by_time(
    frame: pd.DataFrame,
    dataset: DatasetSpec,
    *,
    valid_fraction: float,
    holdout_fraction: float,
) -> Splits:
    if frame.empty:
        raise TrainingDataError("empty training window: the partitions hold no rows")
    return apply_split(frame, dataset, time_boundaries(frame, dataset, valid_fraction, holdout_fraction))


def check_trainable(splits: Splits, dataset: DatasetSpec, window: TrainingWindow, min_rows: int) -> None:
    """Each split needs ``min_rows`` rows and both classes of a 0/1 target."""
    target = dataset.target
    for name, part in splits.items():
        if len(part) < min_rows:
            raise TrainingDataError(
                f"training window {window.label}: the {name} split has {len(part)} row(s), fewer than {min_rows}; "
                "use more days or other split fractions"
            )
        values = part[target]
        if values.isna().any():
            raise TrainingDataError(f"training window {window.label}: {target} has nulls in the {name} split")
        classes = sorted(values.unique().tolist())
        if not set(classes) <= {0, 1}:
            raise TrainingDataError(
                f"training window {window.label}: {target} must be 0/1, found values {classes[:10]} in the {name} split"
            )
        if len(classes) < 2:
            raise TrainingDataError(
                f"training window {window.label}: the {name} split has a single class "
                f"({target}={classes[0]} in all {len(part)} rows); a classifier needs both classes"
            )


def split_digest(window: TrainingWindow, split: str, boundaries: TimeSplit) -> str:
    """A digest of one split's exact rows: its partitions' file checksums and the time boundaries."""
    payload = {
        "split": split,
        "partitions": [[p.ds, list(p.sha256s)] for p in window.partitions],
        "boundaries": boundaries.to_dict(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def split_partitions(window: TrainingWindow, part: pd.DataFrame, dataset: DatasetSpec) -> list[PartitionRef]:
    """The partitions that contribute rows to ``part`` (a split of this window)."""
    if part.empty:
        return []
    times = part[dataset.time_column]
    first, last = times.min().date().isoformat(), times.max().date().isoformat()
    return [p for p in window.partitions if first <= p.ds <= last]
