"""Run an expectation suite on one batch and explain the outcome.

The suite file is Great Expectations' own JSON (``ExpectationSuite.to_json_dict()``), so it can be
reviewed and edited like any GX suite. At run time one expectation is added that depends on the
window: every event time must fall in [window start, window end).
"""

from __future__ import annotations

import json
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

    def summary(self, where: str) -> str:
        if self.success:
            return f"{where} passed {self.statistics.get('evaluated_expectations')} expectations of suite {self.suite_name}"
        listed = "; ".join(self.failures)
        return f"{where} failed {len(self.failures)} expectation(s) of suite {self.suite_name}: {listed}"


def load_suite_dict(path: Path) -> dict[str, Any]:
    try:
        suite = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"expectation suite {path} does not exist (see `mlops suite --help` to create one)") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"expectation suite {path} is not valid JSON: {exc}") from exc
    if not isinstance(suite, dict) or "expectations" not in suite or "name" not in suite:
        raise ValueError(f"expectation suite {path} must be a GX suite object with 'name' and 'expectations'")
    return suite


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


def run_suite(
    frame: pd.DataFrame,
    suite_dict: dict[str, Any],
    *,
    extra_expectations: list[dict[str, Any]] = (),  # type: ignore[assignment]
    run_name: str,
    docs_dir: Path | None = None,
) -> ValidationOutcome:
    """Validate ``frame``; with ``docs_dir``, also build a Data Docs site for this run there."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    import pandas as pd
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    site_names: list[str] = []
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="batch",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            },
        )
        site_names = ["batch"]
    asset = context.data_sources.add_pandas("lake").add_dataframe_asset("batch")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")

    configs = [*suite_dict["expectations"], *extra_expectations]
    suite = ExpectationSuite(
        name=suite_dict["name"],
        expectations=[
            ExpectationConfiguration(type=e["type"], kwargs=e["kwargs"], meta=e.get("meta")).to_domain_obj()
            for e in configs
        ],
        meta=suite_dict.get("meta") or {},
    )
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="batch", data=batch_definition, suite=suite))
    actions: list[Any] = [gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=site_names)] if site_names else []
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="ingest",
            validation_definitions=[definition],
            actions=actions,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 10},
        )
    )
    # With pyarrow string storage, the type name "StringDtype" resolves to the arrow-backed dtype.
    with pd.option_context("mode.string_storage", "pyarrow"):
        run = checkpoint.run(batch_parameters={"dataframe": _gx_view(frame)}, run_id=RunIdentifier(run_name=run_name))
    (validation,) = run.run_results.values()
    failures = [_describe_failure(r) for r in validation.results if not r.success]
    docs_page = None
    if docs_dir is not None:
        pages = sorted(str(p.relative_to(docs_dir)) for p in docs_dir.glob("validations/**/*.html"))
        docs_page = pages[-1] if pages else "index.html"
    return ValidationOutcome(
        success=bool(validation.success),
        suite_name=suite_dict["name"],
        failures=failures,
        statistics=dict(validation.statistics),
        result=validation.to_json_dict(),
        docs_dir=docs_dir,
        docs_page=docs_page,
    )


def new_docs_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mlops-datadocs-"))
