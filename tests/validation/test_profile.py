import json
from datetime import date, timedelta

import pandas as pd
import pytest

from mlops_pipeline.data.synthetic import Scenario, generate_day
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.validation.gx_runner import run_suites
from mlops_pipeline.validation.parsing import normalise_for_validation
from mlops_pipeline.validation.profile import SuiteBootstrapError, WatchMargins, bootstrap, watch_suite

SPEC = load_dataset_spec("churn")


def day_frame(day, scenarios=frozenset(), rows=1000):
    return normalise_for_validation(generate_day(day, seed=5, rows=rows, scenarios=scenarios), SPEC.time_column)


@pytest.fixture(scope="module")
def suites():
    start = date(2026, 1, 1)
    return bootstrap({(start + timedelta(days=i)).isoformat(): day_frame(start + timedelta(days=i)) for i in range(4)}, SPEC)


def kinds(suite):
    return {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}


def by_column(suite, type_, column):
    return [e["kwargs"] for e in suite["expectations"] if e["type"] == type_ and e["kwargs"].get("column") == column]


def test_gate_holds_schema_id_and_declared_domains_only(suites):
    gate = suites.gate
    found = kinds(gate)
    assert ("expect_table_columns_to_match_set", None) in found
    assert ("expect_column_values_to_be_unique", "customer_id") in found
    assert ("expect_column_values_to_not_be_null", "customer_id") in found
    for column in SPEC.columns:
        assert ("expect_column_values_to_be_in_type_list", column) in found
    # every value check is a declaration, with the declared bounds, never what the window held
    for e in gate["expectations"]:
        if e["type"] in ("expect_column_values_to_be_between", "expect_column_values_to_be_in_set"):
            column = e["kwargs"]["column"]
            domain = SPEC.domains[column]
            assert e["meta"]["gate"].startswith(f"domains.{column}")
            if "value_set" in e["kwargs"]:
                assert e["kwargs"]["value_set"] == domain.categories and not domain.allow_new
            else:
                assert (e["kwargs"]["min_value"], e["kwargs"]["max_value"]) == (domain.min, domain.max)
        assert e["severity"] == "critical"
    assert not by_column(gate, "expect_column_values_to_be_in_set", "payment_method")  # allow_new: true
    rows = next(e for e in gate["expectations"] if e["type"] == "expect_table_row_count_to_be_between")
    assert rows["kwargs"] == {"min_value": SPEC.min_batch_rows, "max_value": None}


def test_watch_covers_every_family_and_never_the_id(suites):
    watch = suites.watch
    found = kinds(watch)
    assert ("expect_table_row_count_to_be_between", None) in found
    for column in SPEC.numeric_features:
        assert ("expect_column_values_to_be_between", column) in found
    for column in [*SPEC.categorical_features, SPEC.target]:
        assert ("expect_column_values_to_be_in_set", column) in found
    for column in [*SPEC.feature_columns, SPEC.target]:
        assert ("expect_column_values_to_not_be_null", column) in found
    assert not any(column in (SPEC.id_column, SPEC.time_column) for _, column in found)
    assert {e["severity"] for e in watch["expectations"]} == {"warning"}
    assert watch["meta"]["profiled_from"]["days"] == ["2026-01-01", "2026-01-04"]


def _frames(values_by_day, column="tenure_months"):
    """Churn days whose ``column`` holds the given values (other columns as generated)."""
    frames = {}
    for offset, values in enumerate(values_by_day):
        day = date(2026, 1, 1) + timedelta(days=offset)
        frame = day_frame(day, rows=len(values))
        frame[column] = pd.Series(values, dtype="float64")
        frames[day.isoformat()] = frame
    return frames


def test_ranges_widen_by_the_spread_of_the_daily_extremes():
    frames = _frames([[10, 20, 30], [12, 20, 40], [11, 20, 50]])
    suite, _ = watch_suite(frames, SPEC, margins=WatchMargins(range_share=0.0))
    (bounds,) = by_column(suite, "expect_column_values_to_be_between", "tenure_months")
    # daily maxima 30..50 spread 20 above the highest; daily minima 10..12 spread 2 below the lowest
    assert (bounds["min_value"], bounds["max_value"]) == (8, 70)


def test_a_declared_domain_clips_the_watch_range_and_nothing_else_does():
    frames = _frames([[0, 5, 30], [3, 5, 31]])
    suite, _ = watch_suite(frames, SPEC)
    (bounds,) = by_column(suite, "expect_column_values_to_be_between", "tenure_months")
    assert bounds["min_value"] == 0  # domains.tenure_months.min, not the window's habit
    undeclared = SPEC.model_copy(update={"domains": {}})
    suite, _ = watch_suite(frames, undeclared)
    (bounds,) = by_column(suite, "expect_column_values_to_be_between", "tenure_months")
    assert bounds["min_value"] < 0


def test_null_share_comes_from_the_worst_day_plus_a_margin():
    frames = _frames([[1.0] * 100, [None] * 2 + [1.0] * 98, [None] * 10 + [1.0] * 90])
    suite, _ = watch_suite(frames, SPEC, margins=WatchMargins(null_share_floor=0.01, null_share_relative=0.5))
    (nulls,) = by_column(suite, "expect_column_values_to_not_be_null", "tenure_months")
    assert nulls["mostly"] == pytest.approx(1 - (0.10 + 0.05))


def test_categories_are_the_union_of_the_days_and_the_declared_values():
    frames = {}
    for offset, methods in enumerate([["card", "card"], ["paypal", "card"]]):
        day = date(2026, 1, 1) + timedelta(days=offset)
        frame = day_frame(day, rows=2)
        frame["payment_method"] = pd.Series(methods, dtype="string[pyarrow]")
        frames[day.isoformat()] = frame
    suite, _ = watch_suite(frames, SPEC)
    (kwargs,) = by_column(suite, "expect_column_values_to_be_in_set", "payment_method")
    assert kwargs["value_set"] == sorted(set(SPEC.domains["payment_method"].categories) | {"card", "paypal"})


def test_drifted_day_passes_the_gate_and_the_watch_notes_it_while_a_bad_batch_is_stopped(suites):
    day = date(2026, 1, 9)
    normal = run_suites(day_frame(day), suites.gate, suites.watch, run_name="ok")
    assert normal.gate.success, normal.gate.failures

    drifted = run_suites(day_frame(day, {Scenario.COVARIATE_DRIFT, Scenario.CONCEPT_DRIFT}), suites.gate, suites.watch, run_name="drift")
    assert drifted.gate.success, drifted.gate.failures
    noted = {(f["kind"], f["column"]) for f in drifted.watch_summary()["findings"]}
    assert ("out_of_range", "monthly_charges") in noted, noted  # +25 on the charges: above the profile
    assert not drifted.watch.success

    bad = run_suites(day_frame(day, {Scenario.BAD_BATCH}), suites.gate, suites.watch, run_name="bad")
    assert not bad.gate.success
    failed = " ".join(bad.gate.failures)
    assert "expect_column_values_to_be_between(tenure_months)" in failed
    assert "expect_column_values_to_not_be_null(monthly_charges)" in failed
    assert "expect_column_values_to_be_in_set(plan)" in failed
    assert {f["kind"] for f in bad.watch_summary()["findings"]} >= {"new_category", "null_share_up"}


def test_empty_reference_window_is_refused():
    with pytest.raises(SuiteBootstrapError, match="empty reference window"):
        bootstrap({}, SPEC)


def test_a_reference_day_breaking_a_declared_domain_is_refused_naming_the_file_the_key_and_the_day():
    day = date(2026, 1, 1)
    frame = day_frame(day)
    frame.loc[:2, "age"] = 150.0
    with pytest.raises(SuiteBootstrapError) as caught:
        bootstrap({day.isoformat(): frame}, SPEC)
    message = str(caught.value)
    assert "ds=2026-01-01" in message and "domains.age.max" in message and str(SPEC.spec_path) in message


def test_suite_cli_writes_both_suites_and_a_report(tmp_path, lake_uri, capsys):
    from mlops_pipeline.cli import main

    out = tmp_path / "churn_suite.json"
    assert main(["suite", "--start", "2026-01-01", "--days", "3", "--out", str(out)]) == 0
    gate = json.loads(out.read_text())
    watch = json.loads((tmp_path / "churn_watch.json").read_text())
    report = (tmp_path / "churn_suite_report.md").read_text()
    assert gate["name"] == "churn_suite" and gate["meta"]["role"] == "gate"
    assert watch["name"] == "churn_watch" and watch["meta"]["profiled_from"]["days"] == ["2026-01-01", "2026-01-03"]
    assert "## Gate" in report and "## Watch" in report and "domains.age.min/max" in report
    assert "daily max" in report  # each range says which spread it came from
    # a second run reports what changed against the files it replaces
    assert main(["suite", "--start", "2026-01-04", "--days", "3", "--out", str(out)]) == 0
    assert "Changes to the watch suite" in (tmp_path / "churn_suite_report.md").read_text()
