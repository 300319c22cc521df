"""A window's validation is cheap without changing what a reader sees: without a GX checkpoint, with
memoised expectation configurations, plain-JSON metric ids and result objects kept as they are, the
results and the Data Docs pages equal those of GX's own checkpoint run (with an UpdateDataDocsAction
and GX's JSON results store), and the BASIC result format still carries what the failure messages
and watch findings are built from."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from mlops_pipeline.data.synthetic import Scenario, generate_day
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.validation import gx_runner
from mlops_pipeline.validation.parsing import normalise_for_validation
from mlops_pipeline.validation.suites import load_dataset_suites

DAY = date(2026, 3, 2)
SCENARIOS = pytest.mark.parametrize(
    "scenarios",
    [set(), {Scenario.BAD_BATCH}, {Scenario.COVARIATE_DRIFT}],
    ids=["passing", "gate-fails", "watch-finds"],
)


def _frame(scenarios: set[Scenario]) -> Any:
    spec = load_dataset_spec("churn")
    return normalise_for_validation(generate_day(DAY, seed=11, rows=2000, scenarios=scenarios), spec.time_column)


def _batch(scenarios: set[Scenario]) -> tuple[Any, list[Any]]:
    spec = load_dataset_spec("churn")
    suites = load_dataset_suites(spec)
    frame = _frame(scenarios)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    window = gx_runner.window_expectation(spec.time_column, start, start + timedelta(days=1))
    assert suites.watch is not None
    return frame, [gx_runner._gx_suite(suites.gate, [window], "critical"), gx_runner._gx_suite(suites.watch, [], "warning")]


def _checkpoint_run(frame: Any, suites: list[Any], docs_dir: Path) -> dict[str, Any]:
    """The same validation the way GX's documentation runs it: a checkpoint of one validation
    definition per suite, with a Data Docs action."""
    import great_expectations as gx
    import pandas as pd
    from great_expectations.core.run_identifier import RunIdentifier

    with mock.patch.object(gx_runner, "_keep_results_as_dicts", lambda store: None):  # GX's own store
        context, batch_definition, site_names = gx_runner.new_context(docs_dir)
    definitions = [
        context.validation_definitions.add(gx.ValidationDefinition(name=s.name, data=batch_definition, suite=context.suites.add(s)))
        for s in suites
    ]
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="reference",
            validation_definitions=definitions,
            actions=[gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=site_names)],
            result_format=dict(gx_runner.RESULT_FORMAT),
        )
    )
    with pd.option_context("mode.string_storage", "pyarrow"):
        run = checkpoint.run(batch_parameters={"dataframe": gx_runner._gx_view(frame)}, run_id=RunIdentifier(run_name=f"ds={DAY}"))
    return {v.suite_name: v for v in run.run_results.values()}


def _comparable(validation: Any) -> dict[str, Any]:
    result = validation.to_json_dict()
    # Run times and ids; a checkpoint also notes its own id and its validation definition's.
    result.pop("meta", None)
    # Each run adds its suites afresh, and GX gives every expectation a new random id.
    result["results"] = [
        {**r, "expectation_config": {k: v for k, v in r["expectation_config"].items() if k != "id"}} for r in result["results"]
    ]
    return result


_VOLATILE = re.compile(
    r"\b\d{10}\.\d+\b|\d{8}T\d{6}\.\d+Z|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(\+00:00|Z)?|[0-9a-f]{32}|[0-9a-f-]{36}"
)


def _pages(docs_dir: Path) -> dict[str, str]:
    return {
        _VOLATILE.sub("*", str(p.relative_to(docs_dir))): _VOLATILE.sub("*", p.read_text())
        for p in sorted(docs_dir.rglob("*.html"))
    }


def _same(ours: dict[str, Any], ours_docs: Path, reference: dict[str, Any], reference_docs: Path) -> None:
    assert ours.keys() == reference.keys() and len(ours) == 2
    for name in ours:
        assert _comparable(ours[name]) == _comparable(reference[name]), name
    our_pages, reference_pages = _pages(ours_docs), _pages(reference_docs)
    assert our_pages.keys() == reference_pages.keys()
    assert sum(name.startswith("validations/") for name in our_pages) == 2
    for name, page in our_pages.items():
        assert page == reference_pages[name], name


@SCENARIOS
def test_results_and_data_docs_equal_a_checkpoint_run(scenarios: set[Scenario], tmp_path: Path) -> None:
    frame, suites = _batch(scenarios)
    ours = gx_runner.validate_suites(frame, suites, run_name=f"ds={DAY}", docs_dir=tmp_path / "ours")
    reference = _checkpoint_run(frame, suites, tmp_path / "checkpoint")
    _same(ours, tmp_path / "ours", reference, tmp_path / "checkpoint")
    gate, watch = (ours[s.name] for s in suites)
    assert gate.success is (Scenario.BAD_BATCH not in scenarios)
    if Scenario.COVARIATE_DRIFT in scenarios:
        assert not watch.success


@SCENARIOS
def test_memoised_configurations_give_gx_own_results(scenarios: set[Scenario], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame, suites = _batch(scenarios)
    memoised = gx_runner.validate_suites(frame, suites, run_name=f"ds={DAY}", docs_dir=tmp_path / "memo")
    monkeypatch.setattr(gx_runner, "_memoised_configurations", contextlib.nullcontext)
    plain = gx_runner.validate_suites(frame, suites, run_name=f"ds={DAY}", docs_dir=tmp_path / "plain")
    _same(memoised, tmp_path / "memo", plain, tmp_path / "plain")


def test_basic_results_still_name_counts_and_samples() -> None:
    suites = load_dataset_suites(load_dataset_spec("churn"))
    run = gx_runner.run_suites(_frame({Scenario.BAD_BATCH}), suites.gate, suites.watch, run_name=f"ds={DAY}")
    unexpected = [m for m in run.gate.failures if "values unexpected" in m]
    assert unexpected, run.gate.failures
    # "<n> of <total> values unexpected ..., e.g. [samples]": the count and a non-empty sample.
    assert all(re.search(r": \d+ of \d+ values unexpected.*, e\.g\. \[.+\]", m) for m in unexpected), unexpected
    counted = [r["result"] for r in run.gate.result["results"] if r["result"].get("unexpected_count")]
    assert counted and all(r.get("partial_unexpected_list") for r in counted)


def test_the_memo_lives_only_inside_its_block() -> None:
    from great_expectations.expectations.core import ExpectColumnValuesToNotBeNull

    expectation = ExpectColumnValuesToNotBeNull(column="tenure")
    with gx_runner._memoised_configurations():
        assert expectation.configuration is expectation.configuration
    assert expectation.configuration is not expectation.configuration  # GX's own: a new one per read
    expectation.column = "plan"
    with gx_runner._memoised_configurations():
        assert expectation.configuration.kwargs["column"] == "plan"


def test_metric_kwargs_share_one_expectation_per_configuration_only_inside_the_block() -> None:
    from great_expectations.expectations import expectation as expectation_module
    from great_expectations.expectations.core import ExpectColumnValuesToBeBetween
    from great_expectations.expectations.registry import get_metric_kwargs as gx_get_metric_kwargs

    expectation = ExpectColumnValuesToBeBetween(column="tenure", min_value=0, max_value=120, mostly=0.9)
    metric = "column_values.between.unexpected_count"
    runtime = {"result_format": dict(gx_runner.RESULT_FORMAT)}
    gx_own = gx_get_metric_kwargs(metric, expectation.configuration, runtime)
    with gx_runner._memoised_configurations():
        configuration = expectation.configuration
        first = expectation_module.get_metric_kwargs(metric_name=metric, configuration=configuration, runtime_configuration=runtime)
        second = expectation_module.get_metric_kwargs(metric_name=metric, configuration=configuration, runtime_configuration=runtime)
        assert first == second == gx_own
        # One expectation built from the configuration, kept for the block.
        assert [entry[0] for entry in gx_runner._memo.domain_entries.values()] == [configuration]
        # Elsewhere in the block, to_domain_obj is GX's own: a new object on every call.
        assert configuration.to_domain_obj() is not configuration.to_domain_obj()
    assert getattr(gx_runner._memo, "domain_entries", None) is None
    assert expectation_module.get_metric_kwargs(metric_name=metric, configuration=expectation.configuration, runtime_configuration=runtime) == gx_own


PLAIN_KWARGS = [
    {"column": "tenure", "batch_id": "lake-batch"},
    {"column": "plan", "value_set": ["basic", "pro", 3], "mostly": 0.95, "parse_strings_as_datetimes": None, "strict": True},
    {"column_list": ("a", "b"), "row_condition": {"column": "x", "values": [1.5, -2, "z"]}, "ignore_row_if": "never"},
    {"min_value": float("inf"), "max_value": -0.0},
]
OTHER_KWARGS = [
    {"column": "tenure"},  # one key: GX's own short form
    {"a": float("nan"), "b": 1},  # GX writes NaN as null
    {"a": "x", "b": {2, 1}},
    {"a": "x", "b": {1: "one"}},
    {"a": datetime(2026, 1, 1, tzinfo=UTC), "b": 1},
]


def test_plain_metric_ids_equal_gx_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    from great_expectations.core import id_dict
    from great_expectations.core.id_dict import IDDict

    others = [*OTHER_KWARGS, {"a": np.int64(3), "b": np.float64(0.5)}, {"a": [np.nan], "b": "x"}]
    gx_ids = [IDDict(kwargs).to_id() for kwargs in PLAIN_KWARGS + others]
    with gx_runner._memoised_configurations():
        # Plain kwargs never reach GX's generic conversion; the others still do.
        with monkeypatch.context() as patched:
            patched.setattr(id_dict, "convert_to_json_serializable", mock.Mock(side_effect=AssertionError("GX's conversion")))
            assert [IDDict(kwargs).to_id() for kwargs in PLAIN_KWARGS] == gx_ids[: len(PLAIN_KWARGS)]
        assert [IDDict(kwargs).to_id() for kwargs in others] == gx_ids[len(PLAIN_KWARGS) :]
    converted = mock.Mock(wraps=id_dict.convert_to_json_serializable)
    monkeypatch.setattr(id_dict, "convert_to_json_serializable", converted)
    assert IDDict(PLAIN_KWARGS[0]).to_id() == gx_ids[0] and converted.called  # outside a run: GX's own


def test_results_store_keeps_dicts_only_in_our_contexts(tmp_path: Path) -> None:
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResult

    result = ExpectationSuiteValidationResult(success=False, results=[], suite_name="gate", statistics={"evaluated_expectations": 0})
    store = gx_runner.new_context(tmp_path)[0].validation_results_store
    kept = store.serialize(result)
    assert kept == result.to_json_dict()
    assert store.deserialize(kept).to_json_dict() == result.to_json_dict()
    assert isinstance(gx.get_context(mode="ephemeral").validation_results_store.serialize(result), str)  # GX's own
