"""Label arrival (the dataset's delay) and the join of labels to predictions on id and event time."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest

from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.monitoring.labels import join_labels, label_has_arrived, labelled_days, read_labels
from tests.training.lake_helpers import synthetic_lake

END = datetime(2026, 1, 12, tzinfo=UTC)  # the window of 2026-01-11


@pytest.mark.parametrize(
    ("event_day", "delay", "arrived"),
    [
        (date(2026, 1, 9), 3, True),  # 9 + 3 = 12 <= window end
        (date(2026, 1, 10), 3, False),
        (date(2026, 1, 11), 0, True),  # no delay: the window's own day
        (date(2026, 1, 11), 1, True),
        (date(2026, 1, 12), 0, True),
    ],
)
def test_a_label_arrives_when_event_day_plus_delay_reaches_the_window_end(event_day, delay, arrived):
    assert label_has_arrived(event_day, delay, END) is arrived


def test_labelled_days_are_the_latest_days_with_arrived_labels():
    assert labelled_days(END, 3, 1) == [date(2026, 1, 9)]
    assert labelled_days(END, 3, 3) == [date(2026, 1, 7), date(2026, 1, 8), date(2026, 1, 9)]
    assert labelled_days(END, 0, 1) == [date(2026, 1, 11)]  # never a day after the window
    assert labelled_days(datetime(2026, 1, 12, 6, tzinfo=UTC), 1, 1) == [date(2026, 1, 11)]


def test_join_uses_id_and_event_time_and_the_latest_prediction():
    predictions = pd.DataFrame(
        {
            "id": ["a", "a", "b", "c", "d"],
            "time": pd.to_datetime(
                ["2026-01-09T10:00:00.123Z", "2026-01-09T10:00:00.123Z", "2026-01-09T11:00:00Z", "2026-01-09T12:00:00Z", "2026-01-09T13:00:00Z"],
                utc=True,
                format="ISO8601",
            ),
            "ts": pd.to_datetime(
                ["2026-01-09T10:01Z", "2026-01-09T10:02Z", "2026-01-09T11:01Z", "2026-01-09T12:01Z", "2026-01-09T13:01Z"],
                utc=True,
                format="ISO8601",
            ),
            "version": ["1"] * 5,
            "probability": [0.1, 0.9, 0.5, 0.5, 0.5],
        }
    )
    labels = pd.DataFrame(
        {
            "id": pd.Series(["a", "b", "c"], dtype="string"),
            # b: same id, another event time: not its label; naive times are UTC
            "time": pd.to_datetime(
                ["2026-01-09 10:00:00.123456", "2026-01-09T11:30:00Z", "2026-01-09 12:00:00"], utc=True, format="ISO8601"
            ),
            "target": [1, 0, 1],
        }
    )
    joined = join_labels(predictions, labels).sort_values("id")
    assert joined["id"].tolist() == ["a", "c"]
    assert joined["probability"].tolist() == [0.9, 0.5]  # the retry's prediction
    assert joined["target"].tolist() == [1, 1]


def test_labels_come_from_the_validated_partitions_and_missing_days_are_listed(tmp_path):
    spec = load_dataset_spec("churn")
    lake = synthetic_lake(tmp_path / "lake", date(2026, 1, 8), 2, rows=50)
    labels, missing = read_labels(lake, spec, [date(2026, 1, 7), date(2026, 1, 8), date(2026, 1, 9)])
    assert missing == ["2026-01-07"]
    assert len(labels) == 100 and set(labels.columns) == {"id", "time", "target"}
    assert str(labels["time"].dtype) == "datetime64[ms, UTC]"
