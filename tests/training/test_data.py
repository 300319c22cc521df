"""The training window (as-of semantics, checksums) and the split by event time."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from mlops_pipeline.data.lake import Lake
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.training.data import (
    PartitionRef,
    PinnedDataMissing,
    TimeSplit,
    TrainingDataError,
    TrainingWindow,
    apply_split,
    check_trainable,
    load_window,
    select_window,
    split_by_time,
    split_digest,
)
from tests.training.lake_helpers import synthetic_lake, write_validated


@pytest.fixture
def dataset():
    return load_dataset_spec("churn")


def test_window_is_the_last_n_days_strictly_before_the_as_of_date(tmp_path):
    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 6, rows=100)
    window = select_window(lake, datetime(2026, 1, 5, 3, 0, tzinfo=UTC), days=3)
    assert [p.ds for p in window.partitions] == ["2026-01-02", "2026-01-03", "2026-01-04"]
    assert window.as_of == "2026-01-05"
    assert window.partitions[0].uri == f"{lake.uri}/validated/ds=2026-01-02"
    assert len(window.partitions[0].sha256s[0]) == 64
    # fewer days than asked: what exists; a date object works like midnight UTC
    assert [p.ds for p in select_window(lake, date(2026, 1, 3), days=10).partitions] == ["2026-01-01", "2026-01-02"]
    assert TrainingWindow.from_dict(window.to_dict()) == window


def test_a_gap_is_not_filled_with_older_days(tmp_path):
    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 3, rows=100)  # 01..03
    later = synthetic_lake(tmp_path / "later", date(2026, 2, 1), 2, rows=100)  # 02-01..02
    for ds in ("2026-02-01", "2026-02-02"):
        write_validated(lake, ds, later.read_frame("validated", ds))
    window = select_window(lake, date(2026, 2, 3), days=7)
    assert [p.ds for p in window.partitions] == ["2026-02-01", "2026-02-02"]


def test_empty_window_names_the_date_and_the_lake(tmp_path):
    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 2, rows=100)
    with pytest.raises(TrainingDataError, match=r"empty training window: no validated partition before ds=2026-01-01 in the 7 day\(s\) from ds=2025-12-25, in file://"):
        select_window(lake, date(2026, 1, 1), days=7)
    # data long before the window does not count
    with pytest.raises(TrainingDataError, match=r"before ds=2026-03-01 in the 7 day\(s\) from ds=2026-02-22"):
        select_window(lake, date(2026, 3, 1), days=7)
    with pytest.raises(TrainingDataError, match="empty training window"):
        select_window(Lake((tmp_path / "nothing").as_uri()), date(2026, 3, 1), days=7)


def test_missing_column_names_partition_and_column(tmp_path, dataset):
    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 3, rows=100)
    broken = lake.read_frame("validated", "2026-01-02").drop(columns=["tenure_months"])
    write_validated(lake, "2026-01-02", broken)
    window = select_window(lake, date(2026, 1, 4), days=3)
    with pytest.raises(TrainingDataError, match=r"validated/ds=2026-01-02 .* lacks column\(s\) \['tenure_months'\]"):
        load_window(lake, dataset, window)


def test_a_partition_rewritten_after_selection_is_read_as_pinned(tmp_path, dataset):
    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 2, rows=100)
    window = select_window(lake, date(2026, 1, 3), days=2)
    pinned = window.partitions[0]
    assert (pinned.version, len(pinned.digest)) == (1, 32)
    assert PartitionRef.from_dict(pinned.to_dict()) == pinned
    write_validated(lake, "2026-01-01", lake.read_frame("validated", "2026-01-01").head(50))
    assert lake.read_manifest("validated", "2026-01-01")["version"] == 2
    assert len(load_window(lake, dataset, window)) == 200  # the version the window pinned, not the new head
    assert len(load_window(lake, dataset, select_window(lake, date(2026, 1, 3), days=2))) == 150

    # A reference from before versions existed (checksums only) finds its version by the computed digest.
    legacy = {k: v for k, v in pinned.to_dict().items() if k not in ("version", "version_digest")}
    assert PartitionRef.from_dict(legacy).digest == pinned.digest


def test_a_pinned_version_that_is_gone_is_named(tmp_path, dataset):
    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 2, rows=100)
    window = select_window(lake, date(2026, 1, 3), days=2)
    write_validated(lake, "2026-01-01", lake.read_frame("validated", "2026-01-01").head(50))
    assert lake.prune("validated", "2026-01-01", keep=1, protected=set()) == [1]
    gone = window.partitions[0]
    with pytest.raises(PinnedDataMissing, match=rf"1 pinned partition version\(s\) are gone from file://.*: validated/ds=2026-01-01 version 1 \(digest {gone.digest}\)"):
        load_window(lake, dataset, window)


def test_split_is_by_event_time_and_rebuildable(tmp_path, dataset):
    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 4, rows=300)
    window = select_window(lake, date(2026, 1, 5), days=4)
    frame = load_window(lake, dataset, window)
    splits = split_by_time(frame, dataset, valid_fraction=0.15, holdout_fraction=0.15)
    t = dataset.time_column
    assert splits.train[t].max() < splits.valid[t].min() <= splits.valid[t].max() < splits.holdout[t].min()
    assert len(splits.train) + len(splits.valid) + len(splits.holdout) == len(frame) == 1200
    assert abs(len(splits.holdout) - 180) <= 2 and abs(len(splits.valid) - 180) <= 2
    again = apply_split(load_window(lake, dataset, window), dataset, TimeSplit.from_dict(splits.boundaries.to_dict()))
    assert again.holdout.equals(splits.holdout)
    assert split_digest(window, "holdout", splits.boundaries) != split_digest(window, "train", splits.boundaries)
    assert len(split_digest(window, "holdout", splits.boundaries)) <= 36  # MLflow's digest column


def test_single_class_window_is_refused(tmp_path, dataset):
    def no_churn(frame):
        return frame.assign(churned=0)

    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 3, rows=200, alter=no_churn)
    window = select_window(lake, date(2026, 1, 4), days=3)
    splits = split_by_time(load_window(lake, dataset, window), dataset, valid_fraction=0.15, holdout_fraction=0.15)
    with pytest.raises(TrainingDataError, match=r"the train split has a single class \(churned=0 in all \d+ rows\)"):
        check_trainable(splits, dataset, window, min_rows=10)


def test_tiny_split_is_refused(tmp_path, dataset):
    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 1), 1, rows=100)
    window = select_window(lake, date(2026, 1, 2), days=1)
    splits = split_by_time(load_window(lake, dataset, window), dataset, valid_fraction=0.15, holdout_fraction=0.15)
    with pytest.raises(TrainingDataError, match=r"the valid split has \d+ row\(s\), fewer than 50"):
        check_trainable(splits, dataset, window, min_rows=50)
