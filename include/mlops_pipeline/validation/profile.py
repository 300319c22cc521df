"""Bootstrap an expectation suite from a reference window, for a person to review and commit.

What it writes, per family: the exact column set; a row-count band around the observed daily
counts; types by family (numeric, text, timestamp); no nulls where none were seen (else a
``mostly`` just under what was seen); numeric ranges widened by a margin (never below zero for a
column that never went below zero); category sets as observed; uniqueness of the id column.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mlops_pipeline.datasets import DatasetSpec

NUMERIC_TYPES = ["float64", "float32", "int64", "int32", "int16", "int8", "Float64", "Int64", "Int32"]
TEXT_TYPES = ["StringDtype"]  # resolved under pandas string_storage=pyarrow (see gx_runner)
TIME_TYPES = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]"]  # validated as naive UTC
LABEL_TYPES = ["int64", "int32", "int8", "Int64", "bool", "boolean"]


def _expectation(type_: str, notes: str | None = None, **kwargs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "kwargs": kwargs}
    if notes:
        out["meta"] = {"notes": notes}
    return out


def _rounded(value: float, down: bool) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    magnitude = 10 ** (math.floor(math.log10(abs(value))) - 2)
    return (math.floor if down else math.ceil)(value / magnitude) * magnitude


def profile_suite(
    daily_frames: dict[str, pd.DataFrame],
    spec: DatasetSpec,
    *,
    suite_name: str | None = None,
    range_margin: float = 0.25,
    row_count_margin: float = 0.5,
) -> dict[str, Any]:
    """A GX suite dict from one or more daily frames of a reference window."""
    import pandas as pd

    if not daily_frames:
        raise ValueError("cannot profile an empty reference window: no daily batches given")
    frame = pd.concat(list(daily_frames.values()), ignore_index=True)
    if frame.empty:
        raise ValueError("cannot profile a reference window with no rows")
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise ValueError(f"reference window lacks columns the dataset file declares: {missing}")
    counts = [len(f) for f in daily_frames.values()]
    days = sorted(daily_frames)
    expectations = [
        _expectation("expect_table_columns_to_match_set", column_set=spec.columns, exact_match=True),
        _expectation(
            "expect_table_row_count_to_be_between",
            notes=f"observed {min(counts)}..{max(counts)} rows a day",
            min_value=max(1, int(min(counts) * (1 - row_count_margin))),
            max_value=int(math.ceil(max(counts) * (1 + row_count_margin))),
        ),
        _expectation("expect_column_values_to_be_unique", column=spec.id_column),
    ]
    for column in spec.columns:
        series = frame[column]
        null_share = float(series.isna().mean())
        if null_share == 0:
            expectations.append(_expectation("expect_column_values_to_not_be_null", column=column))
        else:
            mostly = max(0.0, round(1 - null_share * 2 - 0.01, 3))
            expectations.append(
                _expectation(
                    "expect_column_values_to_not_be_null",
                    notes=f"observed {null_share:.2%} nulls",
                    column=column,
                    mostly=mostly,
                )
            )
        if column == spec.time_column:
            expectations.append(_expectation("expect_column_values_to_be_in_type_list", column=column, type_list=TIME_TYPES))
        elif column == spec.target:
            observed = sorted(int(v) for v in series.dropna().unique())
            expectations.append(_expectation("expect_column_values_to_be_in_type_list", column=column, type_list=LABEL_TYPES))
            expectations.append(_expectation("expect_column_values_to_be_in_set", column=column, value_set=observed))
        elif column in spec.numeric_features:
            low, high = float(series.min()), float(series.max())
            margin = (high - low) * range_margin
            lower = low - margin if low < 0 else max(0.0, low - margin)
            expectations.append(_expectation("expect_column_values_to_be_in_type_list", column=column, type_list=NUMERIC_TYPES))
            expectations.append(
                _expectation(
                    "expect_column_values_to_be_between",
                    notes=f"observed [{low}, {high}], widened by {range_margin:.0%}",
                    column=column,
                    min_value=_rounded(lower, down=True),
                    max_value=_rounded(high + margin, down=False),
                )
            )
        elif column in spec.categorical_features or column == spec.id_column:
            expectations.append(_expectation("expect_column_values_to_be_in_type_list", column=column, type_list=TEXT_TYPES))
            if column != spec.id_column:
                values = sorted(str(v) for v in series.dropna().unique())
                expectations.append(_expectation("expect_column_values_to_be_in_set", column=column, value_set=values))
    return {
        "name": suite_name or f"{spec.name}_suite",
        "expectations": expectations,
        "meta": {
            "profiled_from": {"dataset": spec.name, "days": [days[0], days[-1]], "rows": int(len(frame))},
            "notes": "Bootstrapped from a reference window; review before committing.",
        },
    }
