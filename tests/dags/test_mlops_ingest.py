"""`airflow dags test mlops_ingest` for a good day and for a bad-batch day, as a user runs it."""

from __future__ import annotations

import hashlib
import json

import pytest

pytestmark = pytest.mark.integration


def test_good_day_is_validated_with_matching_checksums(airflow_stack):
    done = airflow_stack.airflow("dags", "test", "mlops_ingest", "2026-01-05")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    partition = airflow_stack.lake_dir / "validated" / "ds=2026-01-05"
    manifest = json.loads((partition / "_manifest.json").read_text())
    assert manifest["row_count"] == 2000
    assert manifest["window"] == {"start": "2026-01-05T00:00:00+00:00", "end": "2026-01-06T00:00:00+00:00"}
    for entry in manifest["files"]:
        assert hashlib.sha256((partition / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    assert (airflow_stack.lake_dir / "data_docs" / "index.html").is_file()
    assert not (airflow_stack.lake_dir / "quarantine" / "ds=2026-01-05").exists()


def test_bad_batch_day_is_quarantined_and_the_run_fails_naming_the_expectations(airflow_stack):
    done = airflow_stack.airflow("dags", "test", "mlops_ingest", "2026-01-06", "--conf", '{"scenario": "bad_batch"}')
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-4000:]
    assert "batch ds=2026-01-06 of dataset churn failed" in output
    for expectation in (
        "expect_column_values_to_not_be_null(monthly_charges)",
        "expect_column_values_to_be_between(tenure_months)",
        "expect_column_values_to_be_in_set(plan)",
    ):
        assert expectation in output
    quarantine = airflow_stack.lake_dir / "quarantine" / "ds=2026-01-06"
    manifest = json.loads((quarantine / "_manifest.json").read_text())
    assert manifest["status"] == "quarantined" and len(manifest["failures"]) == 3
    result_file = next(quarantine.glob("validation_result-*.json"))
    result = json.loads(result_file.read_text())
    assert result["gx_result"]["success"] is False
    assert not (airflow_stack.lake_dir / "validated" / "ds=2026-01-06").exists()
