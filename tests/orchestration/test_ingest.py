"""The ingest adapter with a fake context: a synthetic day into the lake, and the runs that must fail at once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlops_pipeline.orchestration import ingest
from tests.orchestration.fakes import day, use_settings

REPO = Path(__file__).resolve().parents[2]


def file_dataset(folder: Path, start_date: str) -> Path:
    """The churn columns and suite, read from ``folder/<ds>.csv``."""
    spec = (REPO / "include" / "datasets" / "churn.yaml").read_text()
    spec = spec.replace("name: churn\n", "name: churn_files\n", 1)
    head, _, rest = spec.partition("source:\n")
    rest = rest[rest.index("id_column:"):]
    rest = re.sub(r"(?m)^start_date:.*\n", "", rest)  # this copy starts where the test says
    text = (
        f"{head}source:\n  kind: file\n  path_template: {folder}/{{ds}}.csv\nstart_date: {start_date}\n"
        + rest.replace("suite: ../gx/churn_suite.json", f"suite: {REPO / 'include' / 'gx' / 'churn_suite.json'}")
    )
    path = folder / "churn_files.yaml"
    path.write_text(text)
    return path


def test_scenario_of_follows_the_schedule_unless_one_is_forced():
    assert ingest.scenario_of(None) is None
    assert ingest.scenario_of({"scenario": "schedule"}) is None
    assert ingest.scenario_of({"scenario": "covariate_drift"}) == "covariate_drift"


def test_a_day_is_extracted_and_validated_into_xcom_able_dicts(monkeypatch, tmp_path):
    # The synthetic source has every day; churn.yaml starts in 2026, so the test moves the start date back.
    lake_uri = use_settings(monkeypatch, tmp_path / "lake", MLOPS_SYNTHETIC_ROWS_PER_DAY="300", MLOPS_START_DATE="2013-01-01")
    start, end = day("2013-02-09")

    raw = ingest.extract(start, end, params={"scenario": "schedule"}, run_id="manual__2013-02-09")
    assert raw["ds"] == "2013-02-09" and raw["uri"] == f"{lake_uri}/raw/ds=2013-02-09"
    assert len(raw["files"]) == 1 and raw["source"]["kind"] == "synthetic"
    validated = ingest.validate(start, end, run_id="manual__2013-02-09")
    assert (validated["status"], validated["ds"], validated["rows"]) == ("validated", "2013-02-09", 300)
    assert "manifest" not in validated
    assert ingest.asset_extra(validated) == {"ds": "2013-02-09", "rows": 300, "uri": f"{lake_uri}/validated/ds=2013-02-09"}
    json.dumps([raw, validated])  # what XCom stores
    assert (tmp_path / "lake" / "validated" / "ds=2013-02-09" / "_manifest.json").is_file()


def test_a_window_before_the_start_date_fails_at_once_naming_both_dates_and_where_to_change_it(monkeypatch, tmp_path):
    use_settings(monkeypatch, tmp_path / "lake", MLOPS_START_DATE="2013-01-01")
    with pytest.raises(AirflowFailException) as failed:
        ingest.extract(*day("2012-12-30"), params={}, run_id="manual__2012-12-30")
    message = str(failed.value)
    assert "mlops_ingest for 2012-12-30 is before the configured start date 2013-01-01" in message
    assert "start_date in the dataset file (or MLOPS_START_DATE)" in message
    assert not (tmp_path / "lake" / "raw").exists()


def test_a_day_without_a_source_file_fails_at_once_naming_the_file(monkeypatch, tmp_path):
    spec = file_dataset(tmp_path, "2013-01-01")
    use_settings(monkeypatch, tmp_path / "lake", MLOPS_DATASET=str(spec))
    with pytest.raises(AirflowFailException, match=rf"mlops_ingest ds=2013-01-05: dataset churn_files: no source file for ds=2013-01-05 at {tmp_path}/2013-01-05.csv"):
        ingest.extract(*day("2013-01-05"), params={}, run_id="manual__2013-01-05")
    # The dataset file's start date applies to it.
    with pytest.raises(AirflowFailException, match=r"before the configured start date 2013-01-01 of dataset"):
        ingest.extract(*day("2012-12-31"), params={}, run_id="manual__2012-12-31")


def test_a_scenario_the_source_cannot_play_is_bad_input(monkeypatch, tmp_path):
    spec = file_dataset(tmp_path, "2013-01-01")
    use_settings(monkeypatch, tmp_path / "lake", MLOPS_DATASET=str(spec))
    with pytest.raises(AirflowFailException, match=r"mlops_ingest cannot extract ds=2013-01-05: scenario 'bad_batch' applies to the synthetic source only"):
        ingest.extract(*day("2013-01-05"), params={"scenario": "bad_batch"}, run_id="manual__2013-01-05")


def test_a_bad_batch_is_quarantined_and_fails_at_once_naming_the_checks(monkeypatch, tmp_path):
    use_settings(monkeypatch, tmp_path / "lake", MLOPS_SYNTHETIC_ROWS_PER_DAY="300")
    start, end = day("2026-01-06")
    ingest.extract(start, end, params={"scenario": "bad_batch"}, run_id="manual__2026-01-06")
    with pytest.raises(AirflowFailException, match=r"batch ds=2026-01-06 of dataset churn failed 3 check\(s\)"):
        ingest.validate(start, end, run_id="manual__2026-01-06")
    assert (tmp_path / "lake" / "quarantine" / "ds=2026-01-06" / "_manifest.json").is_file()
