"""Turn a raw batch file into a frame fit for validation, or say clearly why it cannot be read.

Nothing is coerced that the suite should judge: a numeric column that arrives as text stays text
so the type expectation fails on it. Only lossless normalisation happens here: text columns become
pandas' arrow-backed string dtype (validation is several times faster on it than on object
dtype), and the time column is parsed to UTC timestamps when every value parses.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


class BatchParseError(ValueError):
    """The batch file cannot be read at all (empty, corrupt, not the declared format)."""


def read_batch(data: bytes, fmt: str, *, where: str) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not data:
        raise BatchParseError(f"{where}: the file is empty (0 bytes)")
    if fmt == "parquet":
        try:
            frame = pq.read_table(io.BytesIO(data)).to_pandas()
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise BatchParseError(f"{where}: not a readable parquet file ({type(exc).__name__}: {exc})") from exc
    elif fmt == "csv":
        try:
            frame = pd.read_csv(io.BytesIO(data), compression="infer")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
            raise BatchParseError(f"{where}: not a readable CSV file ({type(exc).__name__}: {exc})") from exc
    else:
        raise BatchParseError(f"{where}: unknown batch format {fmt!r} (expected parquet or csv)")
    return frame


def normalise_for_validation(frame: pd.DataFrame, time_column: str) -> pd.DataFrame:
    import pandas as pd
    from pandas.api.types import is_object_dtype, is_string_dtype

    frame = frame.copy()
    for column in frame.columns:
        series = frame[column]
        if column == time_column:
            frame[column] = _parse_times(series)
        elif is_object_dtype(series.dtype) or (is_string_dtype(series.dtype) and series.dtype != "string[pyarrow]"):
            non_null = series.dropna()
            if non_null.map(type).eq(str).all():
                frame[column] = series.astype("string[pyarrow]")
    if time_column in frame.columns and isinstance(frame[time_column].dtype, pd.DatetimeTZDtype):
        frame[time_column] = frame[time_column].dt.tz_convert("UTC")
    return frame


def _parse_times(series: pd.Series) -> pd.Series:
    import pandas as pd

    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series
    if pd.api.types.is_datetime64_dtype(series.dtype):
        return series.dt.tz_localize("UTC")  # naive timestamps are taken as UTC
    if pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype):
        try:
            return pd.to_datetime(series, utc=True, format="ISO8601")
        except (ValueError, TypeError):
            return series  # left as text: the type expectation reports it
    return series
