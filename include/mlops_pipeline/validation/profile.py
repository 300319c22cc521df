"""Bootstrap a dataset's two expectation suites, for a person to review and commit.

The GATE suite quarantines a batch, so it holds only what is wrong whatever the season: the exact
column set (extra columns refused or allowed, a dataset setting), type families, the id column
not null and unique, the time column not null (the window check is added at run time), a declared
minimum row count, and the domains the dataset file declares (``domains:``). It is built from the
dataset file alone; nothing profiled goes in it.

The WATCH suite says what a multi-day reference window looked like and never quarantines: a
row-count band, null shares, numeric ranges and category sets, each derived from how the window
varied day to day (the worst day plus a margin, not one window's average), so a finding means "not
seen in the reference window", for the monitor to weigh.

:func:`bootstrap` returns both suites and a Markdown report of what it decided and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from mlops_pipeline.datasets import ColumnDomain, DatasetSpec

NUMERIC_TYPES = ["float64", "float32", "int64", "int32", "int16", "int8", "Float64", "Int64", "Int32"]
TEXT_TYPES = ["StringDtype"]  # resolved under pandas string_storage=pyarrow (see gx_runner)
TIME_TYPES = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]"]  # validated as naive UTC
LABEL_TYPES = ["int64", "int32", "int8", "Int64", "bool", "boolean"]

GATE_SEVERITY = "critical"
WATCH_SEVERITY = "warning"


class SuiteBootstrapError(ValueError):
    """The reference window cannot be profiled as asked (names the file, the key and the day)."""


@dataclass(frozen=True)
class WatchMargins:
    """How far past the reference window a value may go before the watch suite notes it."""

    range_share: float = 0.1  # of the window's whole range, at least, on each side
    row_count_share: float = 0.5  # of the smallest and largest daily counts
    null_share_floor: float = 0.01  # absolute, added to the worst day's null share
    null_share_relative: float = 0.5  # of the worst day's null share, if that is more


@dataclass(frozen=True)
class Bootstrap:
    gate: dict[str, Any]
    watch: dict[str, Any]
    report: str


def _expectation(type_: str, severity: str, meta: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "kwargs": kwargs, "severity": severity}
    if meta:
        out["meta"] = meta
    return out


def _rounded(value: float, down: bool) -> float:
    """Round outwards to three significant digits, so a bound never cuts into what was seen."""
    if value == 0 or not math.isfinite(value):
        return value
    magnitude = 10 ** (math.floor(math.log10(abs(value))) - 2)
    return float(round((math.floor if down else math.ceil)(value / magnitude) * magnitude, 10))


def _bound(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


# --- the gate: from the dataset file alone ---------------------------------------------------------


def gate_suite(spec: DatasetSpec, *, id_is_numeric: bool = False, name: str | None = None) -> dict[str, Any]:
    """The suite that quarantines: schema, types, id, time column, declared row minimum and domains."""

    def gate(type_: str, why: str, **kwargs: Any) -> dict[str, Any]:
        return _expectation(type_, GATE_SEVERITY, {"gate": why}, **kwargs)

    expectations = [
        gate("expect_table_columns_to_match_set", "the dataset file's columns; extra_columns: " + spec.extra_columns,
             column_set=spec.columns, exact_match=spec.extra_columns == "refuse"),
    ]  # fmt: skip
    if spec.min_batch_rows > 0:
        expectations.append(
            gate("expect_table_row_count_to_be_between", f"min_batch_rows: {spec.min_batch_rows}",
                 min_value=spec.min_batch_rows, max_value=None)
        )  # fmt: skip
    for column in spec.columns:
        expectations.append(gate("expect_column_values_to_be_in_type_list", "type family",
                                 column=column, type_list=_type_family(spec, column, id_is_numeric)))  # fmt: skip
    expectations.append(gate("expect_column_values_to_not_be_null", "id_column", column=spec.id_column))
    expectations.append(gate("expect_column_values_to_be_unique", "id_column", column=spec.id_column))
    expectations.append(gate("expect_column_values_to_not_be_null", "time_column", column=spec.time_column))
    for column, domain in spec.domains.items():
        expectations.extend(_declared_expectations(column, domain))
    return {
        "name": name or f"{spec.name}_suite",
        "expectations": expectations,
        "meta": {
            "role": "gate",
            "dataset": spec.name,
            "notes": "Quarantines a batch. Built from the dataset file (columns, extra_columns, min_batch_rows, "
            "domains); regenerate with `make suite` after changing them.",
        },
    }


def _type_family(spec: DatasetSpec, column: str, id_is_numeric: bool) -> list[str]:
    if column == spec.time_column:
        return TIME_TYPES
    if column == spec.target:
        return LABEL_TYPES
    if column in spec.numeric_features or (column == spec.id_column and id_is_numeric):
        return NUMERIC_TYPES
    return TEXT_TYPES


def _declared_expectations(column: str, domain: ColumnDomain) -> list[dict[str, Any]]:
    out = []
    if domain.nullable is False:
        out.append(_expectation("expect_column_values_to_not_be_null", GATE_SEVERITY,
                                {"gate": f"domains.{column}.nullable"}, column=column))  # fmt: skip
    if domain.min is not None or domain.max is not None:
        out.append(_expectation("expect_column_values_to_be_between", GATE_SEVERITY,
                                {"gate": f"domains.{column}.min/max"},
                                column=column, min_value=_bound(domain.min), max_value=_bound(domain.max)))  # fmt: skip
    if domain.categories is not None and not domain.allow_new:
        out.append(_expectation("expect_column_values_to_be_in_set", GATE_SEVERITY,
                                {"gate": f"domains.{column}.categories"}, column=column, value_set=list(domain.categories)))  # fmt: skip
    return out


def domain_violations(frame: pd.DataFrame, spec: DatasetSpec) -> list[tuple[str, str]]:
    """``(key, what)`` for every declared domain ``frame`` breaks, checked with pandas alone."""
    import pandas as pd

    found = []
    for column, domain in spec.domains.items():
        if column not in frame.columns:
            continue
        series = frame[column]
        if domain.nullable is False and series.isna().any():
            found.append((f"domains.{column}.nullable", f"{int(series.isna().sum())} null(s)"))
        values = series.dropna()
        if domain.min is not None or domain.max is not None:
            numbers = pd.to_numeric(values, errors="coerce")
            low = numbers < domain.min if domain.min is not None else pd.Series(False, index=numbers.index)
            high = numbers > domain.max if domain.max is not None else pd.Series(False, index=numbers.index)
            if low.any():
                found.append((f"domains.{column}.min", f"{int(low.sum())} value(s) below {domain.min}, e.g. {numbers[low].head(3).tolist()}"))
            if high.any():
                found.append((f"domains.{column}.max", f"{int(high.sum())} value(s) above {domain.max}, e.g. {numbers[high].head(3).tolist()}"))
        if domain.categories is not None and not domain.allow_new:
            unknown = sorted({str(v) for v in values} - {str(v) for v in domain.categories})
            if unknown:
                found.append((f"domains.{column}.categories", f"values not declared: {unknown[:5]}"))
    return found


# --- the watch suite: from how the reference window varied ----------------------------------------


@dataclass
class _Decision:
    column: str
    kind: str
    bound: str
    why: str


def watch_suite(
    daily_frames: dict[str, pd.DataFrame],
    spec: DatasetSpec,
    *,
    margins: WatchMargins = WatchMargins(),
    name: str | None = None,
) -> tuple[dict[str, Any], list[_Decision]]:
    """The watch suite and the reasons for each of its bounds."""
    days = sorted(daily_frames)
    counts = [len(daily_frames[d]) for d in days]
    decisions: list[_Decision] = []

    def watch(type_: str, why: str, **kwargs: Any) -> dict[str, Any]:
        return _expectation(type_, WATCH_SEVERITY, {"watch": why}, **kwargs)

    low_rows = max(0, int(min(counts) * (1 - margins.row_count_share)))
    high_rows = int(math.ceil(max(counts) * (1 + margins.row_count_share)))
    row_why = f"{min(counts)}..{max(counts)} rows a day, widened by {margins.row_count_share:.0%}"
    expectations = [watch("expect_table_row_count_to_be_between", row_why, min_value=low_rows, max_value=high_rows)]
    decisions.append(_Decision("(table)", "row count", f"[{low_rows}, {high_rows}]", row_why))

    for column in [*spec.feature_columns, spec.target]:
        per_day = [daily_frames[d][column] for d in days]
        null_shares = [float(s.isna().mean()) if len(s) else 0.0 for s in per_day]
        worst = max(null_shares)
        allowed = min(1.0, worst + max(margins.null_share_floor, worst * margins.null_share_relative))
        null_why = f"worst day {worst:.2%} nulls (mean {sum(null_shares) / len(null_shares):.2%}); noted above {allowed:.2%}"
        expectations.append(watch("expect_column_values_to_not_be_null", null_why, column=column, mostly=round(1 - allowed, 4)))
        decisions.append(_Decision(column, "null share", f"<= {allowed:.2%}", null_why))

        if column in spec.numeric_features:
            expectation, decision = _watch_range(column, per_day, spec.domains.get(column), margins)
            if expectation:
                expectations.append(watch("expect_column_values_to_be_between", decision.why, **expectation))
            decisions.append(decision)
        else:
            declared = spec.domains.get(column)
            seen = sorted({_category(v) for s in per_day for v in s.dropna().unique()}, key=str)
            known = sorted(set(seen) | {_category(v) for v in (declared.categories or [])} if declared else set(seen), key=str)
            if known:
                per_day_counts = [s.dropna().nunique() for s in per_day]
                why = f"union of {len(days)} days ({min(per_day_counts)}..{max(per_day_counts)} values a day)"
                if declared and declared.categories:
                    why += " and the declared categories"
                expectations.append(watch("expect_column_values_to_be_in_set", why, column=column, value_set=known))
                decisions.append(_Decision(column, "categories", ", ".join(map(str, known)), why))
    suite = {
        "name": name or f"{spec.name}_watch",
        "expectations": expectations,
        "meta": {
            "role": "watch",
            "dataset": spec.name,
            "profiled_from": {"dataset": spec.name, "days": [days[0], days[-1]], "day_count": len(days), "rows": int(sum(counts))},
            "notes": "Never quarantines: its findings go to the manifests, Data Docs and the monitor. "
            "Bootstrapped from a reference window; review before committing.",
        },
    }
    return suite, decisions


def _category(value: Any) -> Any:
    """Category values as JSON keeps them: numpy scalars become Python ones."""
    return value.item() if hasattr(value, "item") else value


def _watch_range(
    column: str, per_day: list[pd.Series], declared: ColumnDomain | None, margins: WatchMargins
) -> tuple[dict[str, Any] | None, _Decision]:
    mins = [float(s.min()) for s in per_day if s.notna().any()]
    maxs = [float(s.max()) for s in per_day if s.notna().any()]
    if not mins:
        return None, _Decision(column, "range", "none", "no values in the reference window")
    low, high = min(mins), max(maxs)
    floor = margins.range_share * (high - low)
    # The day-to-day spread of the extremes is how far the next day's extreme may plausibly move.
    below = max(max(mins) - low, floor)
    above = max(max(maxs) - min(maxs), floor)
    lower, upper = low - below, high + above
    # Physics comes from the declaration (e.g. min: 0), never from what the window happened to hold.
    if declared is not None:
        lower = max(lower, declared.min) if declared.min is not None else lower
        upper = min(upper, declared.max) if declared.max is not None else upper
    lower, upper = _rounded(lower, down=True), _rounded(upper, down=False)
    why = (
        f"daily min {low:g}..{max(mins):g}, daily max {min(maxs):g}..{high:g}; "
        f"widened by the spread of the daily extremes (at least {margins.range_share:.0%} of the range)"
        + (", clipped to the declared domain" if declared is not None and (declared.min is not None or declared.max is not None) else "")
    )
    return {"column": column, "min_value": _bound(lower), "max_value": _bound(upper)}, _Decision(column, "range", f"[{lower:g}, {upper:g}]", why)


# --- both, and the report --------------------------------------------------------------------------


def bootstrap(
    daily_frames: dict[str, pd.DataFrame],
    spec: DatasetSpec,
    *,
    margins: WatchMargins = WatchMargins(),
    previous: Mapping[str, dict[str, Any] | None] | None = None,
) -> Bootstrap:
    """Both suites from a reference window of one frame per day, and the report for the reviewer.

    Refuses a window with no days, no rows, a missing column, or a value that breaks a declared
    domain: the gate would quarantine that day, so it cannot describe normal data."""
    import pandas as pd

    if not daily_frames:
        raise SuiteBootstrapError("cannot profile an empty reference window: no daily batches given")
    if all(frame.empty for frame in daily_frames.values()):
        raise SuiteBootstrapError("cannot profile a reference window with no rows")
    where = f"dataset file {spec.spec_path}" if spec.spec_path else f"dataset {spec.name}"
    for ds, frame in sorted(daily_frames.items()):
        missing = [c for c in spec.columns if c not in frame.columns]
        if missing:
            raise SuiteBootstrapError(f"reference day ds={ds} lacks columns the {where} declares: {missing}")
        broken = domain_violations(frame, spec)
        if broken:
            listed = "; ".join(f"{key}: {what}" for key, what in broken)
            raise SuiteBootstrapError(
                f"reference day ds={ds} contradicts the {where}: {listed}. Fix the declaration or pick a "
                "reference window without broken days"
            )
    id_is_numeric = all(pd.api.types.is_numeric_dtype(f[spec.id_column].dtype) for f in daily_frames.values())
    gate = gate_suite(spec, id_is_numeric=id_is_numeric, name=_suite_name(spec.suite_path.stem, f"{spec.name}_suite"))
    watch, decisions = watch_suite(daily_frames, spec, margins=margins, name=_suite_name(spec.watch_suite_path.stem, f"{spec.name}_watch"))
    report = _report(spec, daily_frames, gate, watch, decisions, margins, previous or {})
    return Bootstrap(gate=gate, watch=watch, report=report)


def _suite_name(stem: str, default: str) -> str:
    return stem if stem else default


def _keys(suite: dict[str, Any] | None) -> dict[tuple[str, str], dict[str, Any]]:
    if not suite:
        return {}
    def comparable(kwargs: dict[str, Any]) -> dict[str, Any]:
        if "value_set" in kwargs:  # a set: its order means nothing
            return {**kwargs, "value_set": sorted(kwargs["value_set"], key=str)}
        return kwargs

    return {(e["type"], str(e["kwargs"].get("column") or "table")): comparable(e["kwargs"]) for e in suite.get("expectations", [])}


def _changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    old, new = _keys(before), _keys(after)
    lines = [f"- added `{t}({c})`" for (t, c) in sorted(new.keys() - old.keys())]
    lines += [f"- removed `{t}({c})`" for (t, c) in sorted(old.keys() - new.keys())]
    lines += [f"- changed `{t}({c})`: {old[(t, c)]} -> {new[(t, c)]}" for (t, c) in sorted(old.keys() & new.keys()) if old[(t, c)] != new[(t, c)]]
    return lines


def _report(
    spec: DatasetSpec,
    daily_frames: dict[str, pd.DataFrame],
    gate: dict[str, Any],
    watch: dict[str, Any],
    decisions: list[_Decision],
    margins: WatchMargins,
    previous: Mapping[str, dict[str, Any] | None],
) -> str:
    days = sorted(daily_frames)
    counts = [len(daily_frames[d]) for d in days]
    lines = [
        f"# Expectation suites of dataset `{spec.name}`",
        "",
        f"Bootstrapped from {len(days)} day(s), {days[0]} .. {days[-1]}, {sum(counts)} rows "
        f"({min(counts)}..{max(counts)} a day). Review, then commit the suites with this report.",
        "",
        f"## Gate: `{spec.suite_path.name}` (quarantines a batch)",
        "",
        "Built from the dataset file only; nothing here was profiled.",
        "",
        "| check | column | from |",
        "| --- | --- | --- |",
    ]
    for e in gate["expectations"]:
        column = e["kwargs"].get("column") or "(table)"
        lines.append(f"| `{e['type']}` | {column} | {e['meta']['gate']} |")
    undeclared = [c for c in spec.feature_columns if c not in spec.domains]
    if undeclared:
        lines += ["", f"No declared domain (values checked by the watch suite only): {', '.join(undeclared)}."]
    lines += [
        "",
        f"## Watch: `{spec.watch_suite_path.name}` (never quarantines)",
        "",
        f"Margins: ranges widened by the day-to-day spread of the daily extremes, at least "
        f"{margins.range_share:.0%} of the range; null share noted above the worst day plus "
        f"max({margins.null_share_floor:.0%}, {margins.null_share_relative:.0%} of it); row count "
        f"{margins.row_count_share:.0%} around the daily counts; categories: the union of the days.",
        "",
        "| column | check | bound | why |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {d.column} | {d.kind} | {d.bound} | {d.why} |" for d in decisions]
    for label, path, suite in (("gate", spec.suite_path, gate), ("watch", spec.watch_suite_path, watch)):
        if path.name not in previous:
            continue
        changes = _changes(previous[path.name], suite)
        lines += ["", f"## Changes to the {label} suite since the file it replaces", ""]
        lines += changes or ["- none"]
    return "\n".join(lines) + "\n"
