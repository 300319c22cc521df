"""Bad suite input: a declaration contradicting the gate suite, a suite file that is not JSON, an
unknown column in ``domains``. ``mlops suite`` and ingestion both stop with a message naming the file
and the key."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from mlops_pipeline.datasets import DATASETS_DIR, DatasetSpecError, load_dataset_spec
from mlops_pipeline.validation.suites import SuiteError
from tests.conftest import day_window

GX_DIR = DATASETS_DIR.parent / "gx"
DAY = date(2026, 3, 1)


def own_dataset(folder: Path, *, edit=lambda text: text, copy_suites: bool = True) -> Path:
    """churn.yaml under another name in ``folder``, its suites copied beside it."""
    text = (DATASETS_DIR / "churn.yaml").read_text().replace("name: churn", "name: own").replace("suite: ../gx/churn_suite.json", "suite: own_suite.json")
    path = folder / "own.yaml"
    path.write_text(edit(text))
    if copy_suites:
        shutil.copy(GX_DIR / "churn_suite.json", folder / "own_suite.json")
        shutil.copy(GX_DIR / "churn_watch.json", folder / "own_watch.json")
    return path


def ingest_one_day(yaml_path: Path):
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.ingest import extract, validate
    from mlops_pipeline.storage import open_lake

    spec = load_dataset_spec(str(yaml_path))
    settings = get_settings()
    lake = open_lake(settings)
    extract(lake, spec, day_window(DAY), settings)
    return lake, lambda: validate(lake, spec, day_window(DAY), build_docs=False)


def run_cli_suite(yaml_path: Path, capsys) -> tuple[int, str]:
    from mlops_pipeline.cli import main

    code = main(["suite", "--dataset", str(yaml_path), "--start", DAY.isoformat(), "--days", "2"])
    return code, capsys.readouterr().err


def test_the_copied_suites_validate_a_normal_day(tmp_path, lake_uri):
    lake, run = ingest_one_day(own_dataset(tmp_path))
    result = run()
    assert result["status"] == "validated"
    watch = lake.read_manifest("validated", DAY.isoformat())["watch"]
    assert watch["suite"] == "churn_watch" and watch["success"] is True and watch["findings"] == []


def test_a_declared_domain_contradicting_the_gate_suite_stops_ingestion(tmp_path, lake_uri):
    yaml_path = own_dataset(tmp_path, edit=lambda t: t.replace("age: {min: 18, max: 120,", "age: {min: 18, max: 100,"))
    lake, run = ingest_one_day(yaml_path)
    with pytest.raises(SuiteError) as caught:
        run()
    message = str(caught.value)
    assert str(yaml_path) in message and "domains.age.max is 100.0" in message and "own_suite.json" in message
    assert lake.list_partitions("validated") == [] and lake.list_partitions("quarantine") == []  # nothing judged


def test_allow_new_contradicting_a_set_check_in_the_gate_suite_is_named(tmp_path, lake_uri):
    yaml_path = own_dataset(tmp_path, edit=lambda t: t.replace("west], allow_new: false", "west], allow_new: true"))
    _, run = ingest_one_day(yaml_path)
    with pytest.raises(SuiteError, match=r"domains\.region\.allow_new is true"):
        run()


def test_mlops_suite_refuses_a_reference_window_that_contradicts_a_declaration(tmp_path, lake_uri, capsys):
    yaml_path = own_dataset(tmp_path, edit=lambda t: t.replace("age: {min: 18, max: 120,", "age: {min: 30, max: 120,"))
    code, err = run_cli_suite(yaml_path, capsys)
    assert code == 2
    assert str(yaml_path) in err and "domains.age.min" in err and f"ds={DAY.isoformat()}" in err
    assert json.loads((tmp_path / "own_suite.json").read_text()) == json.loads((GX_DIR / "churn_suite.json").read_text())  # untouched


def test_a_suite_file_that_is_not_json_stops_ingestion_and_mlops_suite(tmp_path, lake_uri, capsys):
    yaml_path = own_dataset(tmp_path)
    (tmp_path / "own_watch.json").write_text('{"name": "own_watch", "expectations": [}')
    _, run = ingest_one_day(yaml_path)
    with pytest.raises(SuiteError) as caught:
        run()
    assert str(tmp_path / "own_watch.json") in str(caught.value) and "not valid JSON: line 1" in str(caught.value)

    code, err = run_cli_suite(yaml_path, capsys)
    assert code == 2 and str(tmp_path / "own_watch.json") in err and "not valid JSON" in err


def test_a_gate_suite_that_is_not_json_is_named(tmp_path, lake_uri):
    yaml_path = own_dataset(tmp_path)
    (tmp_path / "own_suite.json").write_text("not json")
    _, run = ingest_one_day(yaml_path)
    with pytest.raises(SuiteError, match=r"own_suite\.json is not valid JSON"):
        run()


def test_an_unknown_column_in_domains_stops_ingestion_and_mlops_suite(tmp_path, lake_uri, capsys):
    yaml_path = own_dataset(tmp_path, edit=lambda t: t.replace("  age: {min: 18", "  agee: {min: 0}\n  age: {min: 18"))
    with pytest.raises(DatasetSpecError) as caught:
        load_dataset_spec(str(yaml_path))
    assert str(yaml_path) in str(caught.value) and "domains.agee: unknown column 'agee'" in str(caught.value)

    code, err = run_cli_suite(yaml_path, capsys)
    assert code == 2 and str(yaml_path) in err and "domains.agee" in err


def test_a_range_on_a_categorical_column_is_refused(tmp_path):
    yaml_path = own_dataset(tmp_path, edit=lambda t: t.replace("  plan: {categories: [basic, standard, premium], allow_new: false,", "  plan: {min: 0,"))
    with pytest.raises(DatasetSpecError, match=r"domains\.plan: plan is a categorical feature"):
        load_dataset_spec(str(yaml_path))


def test_without_a_watch_suite_the_gate_runs_and_the_manifest_says_so(tmp_path, lake_uri):
    yaml_path = own_dataset(tmp_path)
    (tmp_path / "own_watch.json").unlink()
    lake, run = ingest_one_day(yaml_path)
    assert run()["status"] == "validated"
    watch = lake.read_manifest("validated", DAY.isoformat())["watch"]
    assert watch["success"] is None and "no watch suite at" in watch["note"]


def test_a_named_watch_suite_must_exist(tmp_path, lake_uri):
    yaml_path = own_dataset(tmp_path, edit=lambda t: t + "watch_suite: elsewhere.json\n")
    _, run = ingest_one_day(yaml_path)
    with pytest.raises(SuiteError, match=r"elsewhere\.json does not exist"):
        run()
