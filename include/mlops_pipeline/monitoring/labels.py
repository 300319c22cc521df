"""Labels that have arrived, joined to the predictions they belong to.

Labels come late: a row's label is known ``label_delay_days`` after its event day (the dataset
says how many). The source of truth is the lake: each ``validated/ds=<event day>`` partition
carries the target column. A monitor run for the window ending at ``end`` may therefore use a
label only when ``event day + label_delay_days <= end``; the quality it reports is that of the
latest ``performance_window_days`` event days that satisfy this (and lie before ``end``).

Predictions and labels are joined on the dataset's id column *and* its event time (to the
millisecond), so an id that occurs twice is never matched to the wrong event. When a row was
predicted more than once (a client retry), the latest prediction counts.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.datasets import DatasetSpec

log = logging.getLogger(__name__)

TARGET = "target"


def window_end_day(end: datetime) -> date:
    """The first day at or after ``end`` (a window ending at midnight ends on that day)."""
    end = end.astimezone(UTC)
    day = end.date()
    return day if end.time() == time(0) else day + timedelta(days=1)


def label_has_arrived(event_day: date, label_delay_days: int, window_end: datetime) -> bool:
    """Whether the label of an event on ``event_day`` is known by ``window_end``."""
    arrival = datetime.combine(event_day + timedelta(days=label_delay_days), time(0), tzinfo=UTC)
    return arrival <= window_end.astimezone(UTC)


def labelled_days(window_end: datetime, label_delay_days: int, days: int) -> list[date]:
    """The latest ``days`` event days whose labels have arrived by ``window_end`` (oldest first)."""
    end_day = window_end_day(window_end)
    last = min(end_day - timedelta(days=label_delay_days), end_day - timedelta(days=1))
    while not label_has_arrived(last, label_delay_days, window_end):  # a window ending mid-day
        last -= timedelta(days=1)
    return [last - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def read_labels(
    lake: Lake, spec: DatasetSpec, days: list[date], extra: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, list[str]]:
    """``[id, time, target, *extra]`` of the validated partitions of ``days``, and the days that had
    none. ``extra``: columns that arrive with the labels (an A/B test's outcome column)."""
    import pandas as pd

    frames, missing = [], []
    available = set(lake.list_partitions("validated"))
    wanted = [spec.id_column, spec.time_column, spec.target, *(c for c in extra if c != spec.target)]
    for day in days:
        ds = day.isoformat()
        if ds not in available:
            missing.append(ds)
            continue
        frame = lake.read_frame("validated", ds)
        absent = [c for c in wanted if c not in frame.columns]
        if absent:
            raise ValueError(f"validated/ds={ds} in {lake.uri} lacks column(s) {absent} needed to join labels")
        frames.append(frame[wanted])
    if not frames:
        empty = pd.DataFrame({"id": pd.Series(dtype="string"), "time": pd.Series(dtype="datetime64[ms, UTC]"), TARGET: []})
        return empty.assign(**{c: pd.Series(dtype="float64") for c in extra if c != TARGET}), missing
    labels = pd.concat(frames, ignore_index=True)
    labels = pd.DataFrame(
        {
            "id": labels[spec.id_column].astype("string"),
            "time": normalise_times(labels[spec.time_column]),
            TARGET: labels[spec.target],
            **{c: labels[c] for c in extra if c not in (spec.target, TARGET)},
        }
    )
    return labels.dropna(subset=["id", "time", TARGET]), missing


def normalise_times(values: pd.Series) -> pd.Series:
    """UTC timestamps at millisecond precision (naive values are taken as UTC), the join key's form."""
    import pandas as pd

    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601") if values.dtype == object else values
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize("UTC")
    return parsed.dt.tz_convert("UTC").dt.floor("ms").astype("datetime64[ms, UTC]")


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Predictions ``[id, time, ts, probability, ...]`` with the ``target`` of their event; unmatched rows dropped."""
    if predictions.empty or labels.empty:
        return predictions.iloc[0:0].assign(**{TARGET: labels[TARGET].iloc[0:0]})
    latest = (
        predictions.assign(id=predictions["id"].astype("string"), time=normalise_times(predictions["time"]))
        .sort_values("ts", kind="stable")
        .drop_duplicates(subset=["id", "time"], keep="last")
    )
    unique_labels = labels.assign(id=labels["id"].astype("string"), time=normalise_times(labels["time"])).drop_duplicates(
        subset=["id", "time"], keep="last"
    )
    return latest.merge(unique_labels, on=["id", "time"], how="inner", validate="one_to_one").reset_index(drop=True)
