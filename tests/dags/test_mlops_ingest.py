"""`airflow dags test mlops_ingest` for a good day, a bad-batch day and a day before the start date, as a
user runs it; and the DAG's shape."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "mlops_ingest.py"


def test_dag_shape():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    dag = bag.dags["mlops_ingest"]
    # One task per window: extract and validate, each visible in its log (one task start, not two).
    assert {t.task_id for t in dag.tasks} == {"ingest"}
    # No Airflow start date: a run for a date before it would get no task and count as a success.
    # The configured start date is checked by the task instead.
    assert dag.start_date is None and not dag.catchup
    assert all(task.start_date is None for task in dag.tasks)
    assert [o.name for o in dag.get_task("ingest").outlets] == ["mlops_validated"]


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
def test_a_day_before_the_start_date_runs_its_first_task_and_fails_saying_where_to_change_it(airflow_stack):
    env = {**airflow_stack.env, "MLOPS_START_DATE": "2026-01-01"}
    argv = [sys.executable, "-m", "mlops_dev.services", "exec", "--", "airflow", "dags", "test", "mlops_ingest", "2013-02-09"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-4000:]  # not a success with nothing run
    assert "mlops_ingest for 2013-02-09 is before the configured start date 2026-01-01 of dataset 'churn'" in output
    assert "Set start_date in the dataset file (or MLOPS_START_DATE)" in output
    assert not (airflow_stack.lake_dir / "raw" / "ds=2013-02-09").exists()
