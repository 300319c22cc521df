"""Run a dataset's suites on one batch and explain the outcome.

Suite files are Great Expectations' own JSON (``ExpectationSuite.to_json_dict()``), so they can be
reviewed and edited like any GX suite. Two run on every batch, as two GX suites of one checkpoint
(so the batch's Data Docs show both): the gate, whose failures quarantine the batch, and the watch
suite, whose findings are recorded and never quarantine (its expectations carry GX's ``warning``
severity, the gate's ``critical``). At run time one gate expectation is added that depends on the
window: every event time must fall in [window start, window end).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class ValidationOutcome:
    success: bool
    suite_name: str
    failures: list[str]
    statistics: dict[str, Any]
    result: dict[str, Any]
    docs_dir: Path | None = None
    docs_page: str | None = None
    notes: list[str] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)

    def summary(self, where: str) -> str:
        if self.success:
            return f"{where} passed {self.statistics.get('evaluated_expectations')} expectations of suite {self.suite_name}"
        listed = "; ".join(self.failures)
        return f"{where} failed {len(self.failures)} expectation(s) of suite {self.suite_name}: {listed}"


def _naive_utc(moment: datetime) -> str:
    from datetime import UTC

    return moment.astimezone(UTC).replace(tzinfo=None).isoformat()


def window_expectation(time_column: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Every event in [start, end); GX sees timestamps as naive UTC (see :func:`_gx_view`)."""
    return {
        "type": "expect_column_values_to_be_between",
        "kwargs": {
            "column": time_column,
            "min_value": _naive_utc(start),
            "max_value": _naive_utc(end),
            "strict_max": True,
        },
        "meta": {"notes": "added at run time: events must fall inside the batch's data interval"},
    }


def _describe_failure(result: Any) -> str:
    config = result.expectation_config
    kwargs = config.kwargs
    target = kwargs.get("column") or kwargs.get("column_list") or "table"
    label = f"{config.type}({target})"
    exception = (result.exception_info or {}) if hasattr(result, "exception_info") else {}
    if exception.get("raised_exception"):
        message = str(exception.get("exception_message", "")).splitlines()[0][:200]
        return f"{label}: could not be evaluated: {message}"
    details = result.result or {}
    if config.type == "expect_table_columns_to_match_set":
        observed = set(details.get("observed_value") or [])
        expected = set(kwargs.get("column_set") or [])
        missing, extra = sorted(expected - observed), sorted(observed - expected)
        return f"{label}: missing columns {missing}, unexpected columns {extra}"
    if config.type == "expect_column_values_to_be_in_type_list":
        return f"{label}: observed type {details.get('observed_value')!r}, expected one of {kwargs.get('type_list')}"
    if config.type == "expect_table_row_count_to_be_between":
        return (
            f"{label}: {details.get('observed_value')} rows, "
            f"expected between {kwargs.get('min_value')} and {kwargs.get('max_value')}"
        )
    if details.get("unexpected_count") is not None:
        sample = details.get("partial_unexpected_list") or []
        total = details.get("element_count")
        bounds = ""
        if "min_value" in kwargs or "max_value" in kwargs:
            bounds = f" outside [{kwargs.get('min_value')}, {kwargs.get('max_value')}]"
        if "value_set" in kwargs:
            bounds = " not in the allowed set"
        return f"{label}: {details['unexpected_count']} of {total} values unexpected{bounds}, e.g. {sample[:5]}"
    return f"{label}: observed {details.get('observed_value')!r}"


WATCH_KINDS = {
    "expect_column_values_to_be_in_set": "new_category",
    "expect_column_values_to_be_between": "out_of_range",
    "expect_column_values_to_not_be_null": "null_share_up",
    "expect_table_row_count_to_be_between": "row_count",
}


def _finding(result: Any) -> dict[str, Any]:
    """One failed watch expectation as data: the column, what kind of change, how much, a sample."""
    config = result.expectation_config
    kwargs = config.kwargs
    details = result.result or {}
    sample = list(details.get("partial_unexpected_list") or [])[:10]
    finding: dict[str, Any] = {
        "column": kwargs.get("column") or "(table)",
        "kind": WATCH_KINDS.get(config.type, config.type),
        "expectation": config.type,
        "message": _describe_failure(result),
    }
    if details.get("unexpected_count") is not None:
        finding["unexpected_count"] = int(details["unexpected_count"])
        finding["element_count"] = int(details.get("element_count") or 0)
    if config.type == "expect_column_values_to_be_in_set":
        finding["values"] = sorted({str(v) for v in sample})
    elif config.type == "expect_column_values_to_be_between":
        high, low = kwargs.get("max_value"), kwargs.get("min_value")
        above = high is not None and any(_number(v) > _number(high) for v in sample)
        below = low is not None and any(_number(v) < _number(low) for v in sample)
        finding["direction"] = "both" if above and below else "above" if above else "below" if below else "unknown"
        finding["bounds"] = [low, high]
        finding["sample"] = sample
    elif config.type == "expect_column_values_to_not_be_null":
        finding["null_share"] = float(details.get("unexpected_percent") or 0.0) / 100
        finding["allowed_null_share"] = round(1 - float(kwargs.get("mostly", 1.0)), 4)
    elif config.type == "expect_table_row_count_to_be_between":
        finding["rows"] = details.get("observed_value")
        finding["bounds"] = [kwargs.get("min_value"), kwargs.get("max_value")]
    return finding


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _gx_view(frame: pd.DataFrame) -> pd.DataFrame:
    """GX 1.x matches pandas dtypes by equality with what a type name resolves to, which no name
    does for a tz-aware dtype: it validates timestamps as naive UTC instead."""
    import pandas as pd

    aware = [c for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)]
    if not aware:
        return frame
    view = frame.copy(deep=False)
    for column in aware:
        view[column] = frame[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return view


@dataclass
class SuiteRun:
    """The gate's outcome (decides quarantine) and the watch suite's (recorded, never decides)."""

    gate: ValidationOutcome
    watch: ValidationOutcome | None

    def watch_summary(self, note: str | None = None) -> dict[str, Any]:
        """The ``watch`` block of a manifest: success, and every finding with its column and kind."""
        if self.watch is None:
            return {"suite": None, "success": None, "findings": [], "note": note or "no watch suite"}
        return {
            "suite": self.watch.suite_name,
            "success": self.watch.success,
            "evaluated": self.watch.statistics.get("evaluated_expectations"),
            "findings": self.watch.findings,
        }


def _gx_suite(suite_dict: dict[str, Any], extra: list[dict[str, Any]], severity: str) -> Any:
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    return ExpectationSuite(
        name=suite_dict["name"],
        expectations=[
            ExpectationConfiguration(
                type=e["type"], kwargs=e["kwargs"], meta=e.get("meta"), severity=e.get("severity", severity)
            ).to_domain_obj()
            for e in [*suite_dict["expectations"], *extra]
        ],
        meta=suite_dict.get("meta") or {},
    )


def run_suites(
    frame: pd.DataFrame,
    gate: dict[str, Any],
    watch: dict[str, Any] | None = None,
    *,
    extra_expectations: list[dict[str, Any]] = (),  # type: ignore[assignment]
    run_name: str,
    docs_dir: Path | None = None,
) -> SuiteRun:
    """Validate ``frame`` with the gate (plus ``extra_expectations``) and the watch suite in one GX
    checkpoint; with ``docs_dir``, also build a Data Docs site for this run there, both suites in it."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    import pandas as pd
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if watch is not None and watch["name"] == gate["name"]:
        raise ValueError(f"the gate and the watch suite are both named {gate['name']!r}; GX needs two names")
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    site_names: list[str] = []
    if docs_dir is not None:
        from mlops_pipeline.validation.docs_view import site_config

        # GX's TypedDict for this argument lists only some of SiteBuilder's keys (its own note says so).
        context.add_data_docs_site(site_name="batch", site_config=site_config(str(docs_dir)))  # type: ignore[arg-type]
        site_names = ["batch"]
    asset = context.data_sources.add_pandas("lake").add_dataframe_asset("batch")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")

    suites = [("gate", _gx_suite(gate, list(extra_expectations), "critical"))]
    if watch is not None:
        suites.append(("watch", _gx_suite(watch, [], "warning")))
    definitions = [
        context.validation_definitions.add(gx.ValidationDefinition(name=role, data=batch_definition, suite=context.suites.add(suite)))
        for role, suite in suites
    ]
    actions: list[Any] = [gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=site_names)] if site_names else []
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="ingest",
            validation_definitions=definitions,
            actions=actions,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 10},
        )
    )
    # With pyarrow string storage, the type name "StringDtype" resolves to the arrow-backed dtype.
    with pd.option_context("mode.string_storage", "pyarrow"):
        run = checkpoint.run(batch_parameters={"dataframe": _gx_view(frame)}, run_id=RunIdentifier(run_name=run_name))
    by_suite = {validation.suite_name: validation for validation in run.run_results.values()}
    docs_pages: list[str] = []
    if docs_dir is not None:
        docs_pages = sorted(str(p.relative_to(docs_dir)) for p in docs_dir.glob("validations/**/*.html"))

    def outcome(suite_dict: dict[str, Any], *, findings: bool) -> ValidationOutcome:
        validation = by_suite[suite_dict["name"]]
        failed = [r for r in validation.results if not r.success]
        pages = [p for p in docs_pages if f"/{suite_dict['name']}/" in f"/{p}"]
        return ValidationOutcome(
            success=bool(validation.success),
            suite_name=suite_dict["name"],
            failures=[_describe_failure(r) for r in failed],
            statistics=dict(validation.statistics),
            result=validation.to_json_dict() if not findings else {},  # the watch's findings say enough
            docs_dir=docs_dir,
            docs_page=(pages[-1] if pages else "index.html") if docs_dir is not None else None,
            findings=[_finding(r) for r in failed] if findings else [],
        )

    return SuiteRun(gate=outcome(gate, findings=False), watch=outcome(watch, findings=True) if watch is not None else None)


def run_suite(
    frame: pd.DataFrame,
    suite_dict: dict[str, Any],
    *,
    extra_expectations: list[dict[str, Any]] = (),  # type: ignore[assignment]
    run_name: str,
    docs_dir: Path | None = None,
) -> ValidationOutcome:
    """One suite alone (see :func:`run_suites`)."""
    return run_suites(frame, suite_dict, extra_expectations=extra_expectations, run_name=run_name, docs_dir=docs_dir).gate


def new_docs_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mlops-datadocs-"))
