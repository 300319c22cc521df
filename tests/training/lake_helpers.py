"""Small hand-made lakes for the bad-input tests (written straight into validated/, no suite run)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from mlops_pipeline.data.lake import DataFile, Lake, frame_to_parquet_bytes
from mlops_pipeline.data.synthetic import generate_day


def write_validated(lake: Lake, ds: str, frame: pd.DataFrame) -> None:
    data = DataFile("part-00000", ".parquet", frame_to_parquet_bytes(frame), rows=len(frame))
    lake.write_partition("validated", ds, [data], {"dataset": "churn", "status": "validated"})


def synthetic_lake(
    root: Path,
    first_day: date,
    days: int,
    *,
    rows: int = 600,
    alter: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> Lake:
    """``days`` synthetic days from ``first_day``, each passed through ``alter`` before writing."""
    lake = Lake(root.as_uri())
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        frame = generate_day(day, seed=42, rows=rows)
        for column in ("customer_id", "plan", "contract", "payment_method", "region"):
            frame[column] = frame[column].astype("string")
        write_validated(lake, day.isoformat(), alter(frame) if alter else frame)
    return lake
