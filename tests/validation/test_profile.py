from datetime import date, timedelta

import pytest

from mlops_pipeline.data.synthetic import Scenario, generate_day
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.validation.gx_runner import run_suite
from mlops_pipeline.validation.parsing import normalise_for_validation
from mlops_pipeline.validation.profile import profile_suite

SPEC = load_dataset_spec("churn")


def day_frame(day, scenarios=frozenset()):
    return normalise_for_validation(generate_day(day, seed=5, rows=1000, scenarios=scenarios), SPEC.time_column)


@pytest.fixture(scope="module")
def suite():
    start = date(2026, 1, 1)
    return profile_suite({(start + timedelta(days=i)).isoformat(): day_frame(start + timedelta(days=i)) for i in range(4)}, SPEC)


def kinds(suite):
    return {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}


def test_profile_covers_every_family(suite):
    found = kinds(suite)
    assert ("expect_table_columns_to_match_set", None) in found
    assert ("expect_table_row_count_to_be_between", None) in found
    assert ("expect_column_values_to_be_unique", "customer_id") in found
    for column in SPEC.columns:
        assert ("expect_column_values_to_not_be_null", column) in found
        assert ("expect_column_values_to_be_in_type_list", column) in found
    for column in SPEC.numeric_features:
        assert ("expect_column_values_to_be_between", column) in found
    for column in SPEC.categorical_features:
        assert ("expect_column_values_to_be_in_set", column) in found


def test_ranges_get_a_margin_but_never_go_negative_for_non_negative_columns(suite):
    tenure = next(e for e in suite["expectations"] if e["kwargs"].get("column") == "tenure_months" and "min_value" in e["kwargs"])
    assert tenure["kwargs"]["min_value"] == 0.0
    assert tenure["kwargs"]["max_value"] > 60


def test_profiled_suite_accepts_another_normal_day_and_rejects_a_bad_one(suite):
    assert run_suite(day_frame(date(2026, 1, 9)), suite, run_name="ok").success
    outcome = run_suite(day_frame(date(2026, 1, 9), {Scenario.BAD_BATCH}), suite, run_name="bad")
    assert not outcome.success
    assert any("tenure_months" in failure for failure in outcome.failures)
    assert any("monthly_charges" in failure for failure in outcome.failures)


def test_empty_reference_window_is_refused():
    with pytest.raises(ValueError, match="empty reference window"):
        profile_suite({}, SPEC)


def test_suite_cli_writes_a_reviewable_suite(tmp_path, lake_uri):
    import json

    from mlops_pipeline.cli import main

    out = tmp_path / "suite.json"
    assert main(["suite", "--start", "2026-01-01", "--days", "2", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["name"] == "churn_suite"
    assert written["meta"]["profiled_from"]["days"] == ["2026-01-01", "2026-01-02"]
