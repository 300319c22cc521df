"""Run a dataset's suites on one batch and explain the outcome.

Suite files are Great Expectations' own JSON (``ExpectationSuite.to_json_dict()``), so they can be
reviewed and edited like any GX suite. Two run on every batch, into one Data Docs site (so the
batch's pages show both): the gate, whose failures quarantine the batch, and the watch
suite, whose findings are recorded and never quarantine (its expectations carry GX's ``warning``
severity, the gate's ``critical``). At run time one gate expectation is added that depends on the
window: every event time must fall in [window start, window end).

Six measured choices keep a window's validation cheap (it runs once per window of every
backfill); together they cut a window's CPU by about two thirds:

* GX's ``BASIC`` result format: every expectation's outcome, observed value, unexpected count and
  share, and a sample of up to 10 unexpected values (all that the failure messages, the watch
  findings and the Data Docs pages show); what ``SUMMARY`` adds, value counts of that sample and the
  row indexes of a pandas frame, is not used here. About a quarter less CPU.
* :func:`_memoised_configurations`: GX 1.x rebuilds an expectation's configuration from the
  pydantic model every time it reads one kwarg of it, about a hundred times per expectation and run;
  during one run each expectation object keeps the first one it built. About a quarter less CPU again, with
  results equal to GX's own.
* One expectation per configuration in ``get_metric_kwargs``
  (:func:`_install_shared_metric_kwargs_expectations`): GX builds an expectation object from its
  configuration for each metric an expectation depends on, only to read its kwargs; during a run
  the first one built is reused. About a twentieth less CPU.
* Plain metric ids (:func:`_install_plain_metric_ids`): GX names each of the thousands of metric
  configurations a run builds by an md5 of its kwargs as JSON, after a generic conversion that
  tests each value against numpy, pandas and geometry types. For kwargs of plain JSON values the
  same md5 of the same JSON is taken directly, during a run only. About a sixth less CPU.
* Results kept as GX's JSON dicts in the run's in-memory store, not also written out as indented
  JSON text and parsed back for the Data Docs (:func:`_keep_results_as_dicts`).
* No ``Checkpoint``: each suite is validated by GX's validator, its result stored in the context and
  the Data Docs built for both results, as a checkpoint with an ``UpdateDataDocsAction`` does. What
  is left out is the bookkeeping of a checkpoint and its validation definitions, which serialise
  themselves and compare against their stores before they run ("freshness"), and which cost more
  CPU than the batch's metrics.

``tests/validation/test_gx_runner.py`` checks that results and Data Docs pages equal those of GX's
own checkpoint run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 10}

_memo = threading.local()
_memo_lock = threading.Lock()


def _memoised_per_object(memo_name: str, build: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``build(obj)``, kept per object in this thread's memo ``memo_name`` while the memo is set (a
    dict, inside :func:`_memoised_configurations`); with no memo set, ``build`` as it is."""

    def memoised(self: Any) -> Any:
        memo: dict[int, tuple[Any, Any]] | None = getattr(_memo, memo_name, None)
        if memo is None:
            return build(self)
        hit = memo.get(id(self))
        if hit is not None and hit[0] is self:
            return hit[1]
        built = build(self)
        # The entry holds the object itself, so its id cannot be reused while the memo lives.
        memo[id(self)] = (self, built)
        return built

    return memoised


def _install_memoised_configuration() -> None:
    """Give ``Expectation.configuration`` a memo that is consulted only while this thread is inside
    :func:`_memoised_configurations`; anywhere else it is GX's own property, unchanged."""
    from great_expectations.expectations.expectation import Expectation

    with _memo_lock:
        own = Expectation.__dict__["configuration"]
        if getattr(own.fget, "_mlops_memo", False):
            return
        build = own.fget
        configuration = _memoised_per_object("entries", build)
        configuration._mlops_memo = True  # type: ignore[attr-defined]
        configuration.__doc__ = build.__doc__
        Expectation.configuration = property(configuration)  # type: ignore[method-assign,assignment]


def _plain_json(value: Any) -> bool:
    """True when ``value`` is built only of what GX's ``convert_to_json_serializable`` returns as it
    is: str, int, bool, None, floats other than NaN, and lists, tuples and str-keyed dicts of them."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return value == value  # GX turns NaN into None
    if kind is list or kind is tuple:
        return all(_plain_json(item) for item in value)
    if kind is dict:
        return all(type(key) is str and _plain_json(item) for key, item in value.items())
    return False


def _install_plain_metric_ids() -> None:
    """Give ``IDDict.to_id`` (the id of every metric configuration GX builds, thousands per run) a
    short way for kwargs of plain JSON values, consulted only while this thread is inside
    :func:`_memoised_configurations`: the same md5 of the same sorted JSON, without GX's generic
    conversion, which tests every value against a list of numpy, pandas and geometry types first.
    Anything else, and everywhere outside a run, is GX's own method."""
    from great_expectations.core.id_dict import IDDict

    with _memo_lock:
        own = IDDict.__dict__["to_id"]
        if getattr(own, "_mlops_plain", False):
            return

        def to_id(self: Any, id_keys: Any = None, id_ignore_keys: Any = None) -> Any:
            if id_keys is None and id_ignore_keys is None and getattr(_memo, "entries", None) is not None:
                keys = set(self.keys()) - set(self._id_ignore_keys)
                if len(keys) > 1:
                    data = {key: self[key] for key in keys}
                    if _plain_json(data):
                        return hashlib.md5(json.dumps(data, sort_keys=True).encode("utf-8"), usedforsecurity=False).hexdigest()
            return own(self, id_keys, id_ignore_keys)

        to_id._mlops_plain = True  # type: ignore[attr-defined]
        to_id.__doc__ = own.__doc__
        IDDict.to_id = to_id  # type: ignore[method-assign]


def _install_shared_metric_kwargs_expectations() -> None:
    """Give GX's ``get_metric_kwargs`` (called for every metric an expectation depends on, a few
    thousand times per run) one expectation object per configuration, consulted only while this
    thread is inside :func:`_memoised_configurations`. GX rebuilds the expectation from its
    configuration on each call (a pydantic validation of every kwarg) only to read its runtime kwargs;
    the configurations it is given are the memoised ones, not changed during the run, so the first
    expectation built from each stays right. ``to_domain_obj`` called anywhere else, also during a
    run, is GX's own and builds a new object as before."""
    from great_expectations.expectations import expectation as expectation_module
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    with _memo_lock:
        own_kwargs = expectation_module.get_metric_kwargs
        if getattr(own_kwargs, "_mlops_shared", False):
            return
        own_domain = ExpectationConfiguration.to_domain_obj
        to_domain_obj = _memoised_per_object("domains", own_domain)

        def get_metric_kwargs(metric_name: str, configuration: Any = None, runtime_configuration: Any = None) -> Any:
            entries = getattr(_memo, "entries", None)
            if entries is None or getattr(_memo, "domains", None) is not None:
                return own_kwargs(metric_name, configuration, runtime_configuration)
            _memo.domains = _memo.domain_entries
            try:
                return own_kwargs(metric_name, configuration, runtime_configuration)
            finally:
                _memo.domains = None

        to_domain_obj._mlops_shared = True  # type: ignore[attr-defined]
        to_domain_obj.__doc__ = own_domain.__doc__
        get_metric_kwargs._mlops_shared = True  # type: ignore[attr-defined]
        get_metric_kwargs.__doc__ = own_kwargs.__doc__
        ExpectationConfiguration.to_domain_obj = to_domain_obj  # type: ignore[method-assign,assignment]
        expectation_module.get_metric_kwargs = get_metric_kwargs


@contextlib.contextmanager
def _memoised_configurations() -> Iterator[None]:
    """Within the block, each expectation object builds its configuration once. The expectations a
    run validates are created by GX from the suite for that run and not changed while it runs, so the
    first configuration stays right for the block; the memo ends with it."""
    _install_memoised_configuration()
    _install_plain_metric_ids()
    _install_shared_metric_kwargs_expectations()
    outer = getattr(_memo, "entries", None)
    outer_domains = getattr(_memo, "domain_entries", None)
    _memo.entries = {} if outer is None else outer
    _memo.domain_entries = {} if outer_domains is None else outer_domains
    try:
        yield
    finally:
        _memo.entries = outer
        _memo.domain_entries = outer_domains


def run_suites(
    frame: pd.DataFrame,
    gate: dict[str, Any],
    watch: dict[str, Any] | None = None,
    *,
    extra_expectations: list[dict[str, Any]] = (),  # type: ignore[assignment]
    run_name: str,
    docs_dir: Path | None = None,
) -> SuiteRun:
    """Validate ``frame`` with the gate (plus ``extra_expectations``) and the watch suite; with
    ``docs_dir``, also build a Data Docs site for this run there, both suites in it."""
    if watch is not None and watch["name"] == gate["name"]:
        raise ValueError(f"the gate and the watch suite are both named {gate['name']!r}; GX needs two names")
    suites = [_gx_suite(gate, list(extra_expectations), "critical")]
    if watch is not None:
        suites.append(_gx_suite(watch, [], "warning"))
    by_suite = validate_suites(frame, suites, run_name=run_name, docs_dir=docs_dir)
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
            # GX's whole result, for the quarantine's validation_result.json: a failed gate's only (a
            # passing batch keeps its statistics and Data Docs; the watch's findings say enough).
            result=validation.to_json_dict() if not findings and not validation.success else {},
            docs_dir=docs_dir,
            docs_page=(pages[-1] if pages else "index.html") if docs_dir is not None else None,
            findings=[_finding(r) for r in failed] if findings else [],
        )

    return SuiteRun(gate=outcome(gate, findings=False), watch=outcome(watch, findings=True) if watch is not None else None)


def _base_context() -> tuple[Any, Any]:
    """An ephemeral GX context with the batch's pandas asset: (context, its batch definition)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    _keep_results_as_dicts(context.validation_results_store)
    asset = context.data_sources.add_pandas("lake").add_dataframe_asset("batch")
    return context, asset.add_batch_definition_whole_dataframe("whole")


# A base context built ahead by prepare_context(): (the pid that built it, (context, batch definition)).
_prepared: tuple[int, tuple[Any, Any]] | None = None


def prepare_context() -> None:
    """Build the base context of the next :func:`new_context` now, for the processes forked from this
    one: each finds its own copy, unused, and takes it once. This process never takes it (it builds
    a new one each time), so no context serves two runs. A task process forked from a worker that
    inherited it (see :mod:`mlops_pipeline.orchestration.executor`) saves GX's context set-up, about
    a twentieth of a window's CPU."""
    global _prepared
    _prepared = (os.getpid(), _base_context())


def new_context(docs_dir: Path | None) -> tuple[Any, Any, list[str]]:
    """An ephemeral GX context with the batch's pandas asset: (context, batch definition, the names
    of its Data Docs sites: one site in ``docs_dir`` if given). The base context is the one
    :func:`prepare_context` built before this process forked, if there is one, else a new one."""
    global _prepared
    prepared = _prepared
    if prepared is not None and prepared[0] != os.getpid():
        from great_expectations.data_context.data_context.context_factory import project_manager

        _prepared = None
        context, batch_definition = prepared[1]
        project_manager.set_project(context)  # GX's current context, as get_context would have set it
    else:
        context, batch_definition = _base_context()
    site_names: list[str] = []
    if docs_dir is not None:
        from mlops_pipeline.validation.docs_view import site_config

        # GX's TypedDict for this argument lists only some of SiteBuilder's keys (its own note says so).
        context.add_data_docs_site(site_name="batch", site_config=site_config(str(docs_dir)))  # type: ignore[arg-type]
        site_names = ["batch"]
    return context, batch_definition, site_names


def _keep_results_as_dicts(store: Any) -> None:
    """This context's results store (in memory, gone with the context) keeps each result as GX's JSON
    dict, where GX would also write it out as indented JSON text on ``set`` and parse that back on
    every ``get``: the same values reach the Data Docs, without the text in between."""
    schema = store._expectationSuiteValidationResultSchema

    def to_dict(value: Any) -> Any:
        return value.to_json_dict()

    def from_dict(value: Any) -> Any:
        return schema.load(value) if isinstance(value, dict) else schema.loads(value)

    store.serialize = to_dict
    store.deserialize = from_dict


def validate_suites(frame: pd.DataFrame, suites: list[Any], *, run_name: str, docs_dir: Path | None) -> dict[str, Any]:
    """GX's validation result of each suite on ``frame``, by suite name; with ``docs_dir``, their Data
    Docs there. What a checkpoint with an ``UpdateDataDocsAction`` does, without its bookkeeping (see
    the module's note); each result's meta as a validation definition's run sets it."""
    import pandas as pd
    from great_expectations.constants import DATAFRAME_REPLACEMENT_STR
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.validator.v1_validator import Validator

    context, batch_definition, site_names = new_context(docs_dir)
    view = _gx_view(frame)
    run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
    results: dict[str, Any] = {}
    identifiers: list[Any] = []
    # With pyarrow string storage, the type name "StringDtype" resolves to the arrow-backed dtype.
    with pd.option_context("mode.string_storage", "pyarrow"), _memoised_configurations():
        for suite in suites:
            context.suites.add(suite)
            validator = Validator(
                batch_definition=batch_definition, batch_parameters={"dataframe": view}, result_format=dict(RESULT_FORMAT)
            )
            validation = validator.validate_expectation_suite(suite)
            validation.meta["run_id"] = run_id
            validation.meta["validation_time"] = run_id.run_time
            validation.meta["batch_parameters"] = {"dataframe": DATAFRAME_REPLACEMENT_STR}  # type: ignore[typeddict-unknown-key]
            suite_id = ExpectationSuiteIdentifier(name=suite.name)
            result_id = ValidationResultIdentifier(
                batch_identifier=validator.active_batch_id, expectation_suite_identifier=suite_id, run_id=run_id
            )
            context.validation_results_store.store_validation_results(validation, result_id, suite_id)
            results[suite.name] = validation
            identifiers += [result_id, suite_id]
        if site_names:
            context.build_data_docs(site_names=site_names, resource_identifiers=identifiers, dry_run=False, build_index=True)
    return results


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
