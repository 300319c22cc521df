"""Many datasets in one installation: discovery, each dataset's own names, and a broken file whose
own DAGs say what is wrong while the others are parsed as usual (a real DagBag, as the DAG processor
parses the files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_pipeline.config import dataset_entries, get_settings, load_settings
from mlops_pipeline.datasets import DATASETS_DIR

REPO = Path(__file__).resolve().parents[1]
STEPS = ("mlops_ingest", "mlops_train", "mlops_deploy", "mlops_monitor", "mlops_score")


def write_dataset(folder: Path, name: str, **extra: object) -> Path:
    """A copy of the churn file under another name (its suite by absolute path)."""
    spec = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    spec.update(name=name, suite=str((DATASETS_DIR / spec["suite"]).resolve()), **extra)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def datasets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "datasets"
    folder.mkdir()
    monkeypatch.setenv("MLOPS_DATASETS_DIR", str(folder))
    monkeypatch.delenv("MLOPS_DATASET", raising=False)
    monkeypatch.delenv("MLOPS_DATASET_SCOPE", raising=False)
    get_settings.cache_clear()
    yield folder
    os.environ.pop("MLOPS_DATASET_SCOPE", None)  # what a task's callback sets, whatever a test left
    get_settings.cache_clear()


def test_the_primary_comes_first_then_every_file_of_the_folders(datasets_dir: Path) -> None:
    write_dataset(datasets_dir, "fraud")
    write_dataset(datasets_dir, "leads")
    entries = dataset_entries()
    assert [(e.name, e.primary, e.error) for e in entries] == [("churn", True, None), ("fraud", False, None), ("leads", False, None)]
    assert [e.dag_id("mlops_ingest") for e in entries] == ["mlops_ingest", "mlops_ingest__fraud", "mlops_ingest__leads"]


def test_a_primary_file_elsewhere_replaces_the_built_in_one_of_its_name(datasets_dir: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    monkeypatch.setenv("MLOPS_DATASET", str(write_dataset(own, "churn")))
    entries = dataset_entries()
    assert [(e.name, e.primary, e.path) for e in entries] == [("churn", True, own / "churn.yaml")]


def test_two_files_with_one_name_are_an_error_naming_both(datasets_dir: Path) -> None:
    write_dataset(datasets_dir, "fraud")
    copy = datasets_dir / "fraud_copy.yaml"
    copy.write_text((datasets_dir / "fraud.yaml").read_text())
    broken = [e for e in dataset_entries() if e.error]
    assert len(broken) == 1 and broken[0].name == "fraud_copy"
    assert str(copy) in broken[0].error and str(datasets_dir / "fraud.yaml") in broken[0].error


def test_each_other_dataset_gets_its_own_names_and_the_primary_keeps_the_plain_ones(datasets_dir: Path,
                                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_LAKE_URI", "s3://bucket/lake")
    monkeypatch.setenv("MLOPS_MODEL_NAME", "churn-model")
    monkeypatch.setenv("MLOPS_DEPLOY_NAMESPACE", "prod")
    path = write_dataset(datasets_dir, "fraud", router_port=8123, start_date="2025-06-01",
                         policy={"deploy": {"steps": [50, 100]}})
    primary = load_settings()
    fraud = load_settings(scope=path)
    assert (primary.registered_model_name, primary.lake_uri, primary.deploy.namespace, primary.router_port) == (
        "churn-model", "s3://bucket/lake", "prod", 8000)
    assert (fraud.registered_model_name, fraud.training_experiment, fraud.lake_uri, fraud.deploy.namespace, fraud.router_port) == (
        "fraud", "fraud", "s3://bucket/lake/datasets/fraud", "prod-fraud", 8123)
    assert fraud.prediction_log_dir == primary.prediction_log_dir / "datasets" / "fraud"
    assert fraud.monitor.experiment_for(fraud.registered_model_name) == "fraud-monitoring"
    assert str(fraud.start_date) == "2025-06-01" and fraud.deploy.steps == [50, 100]  # the file's own policy
    assert primary.deploy.steps != [50, 100]


def test_a_derived_router_port_is_stable_and_avoids_the_other_services(datasets_dir: Path) -> None:
    path = write_dataset(datasets_dir, "fraud")
    first, second = load_settings(scope=path), load_settings(scope=path)
    assert first.router_port == second.router_port
    assert 8001 <= first.router_port <= 9000 and first.router_port not in {8000, 8080, 5000, 5433}


def test_a_task_process_follows_its_dataset(datasets_dir: Path) -> None:
    """What a task's first callback does: the process's settings become its dataset's, and back."""
    import mlops_pipeline.config as config  # the module's current function (other tests reload the module)
    from mlops_pipeline.datasets import DatasetEntry
    from mlops_pipeline.orchestration.datasets import UseDataset

    path = write_dataset(datasets_dir, "fraud")
    UseDataset(DatasetEntry(name="fraud", path=path))()
    assert config.get_settings().registered_model_name == "fraud"
    UseDataset(DatasetEntry(name="churn", path=DATASETS_DIR / "churn.yaml", primary=True))()
    assert config.get_settings().registered_model_name == "churn"


def test_a_tasks_messages_name_its_own_datasets_dag(datasets_dir: Path) -> None:
    """A run before the start date of another dataset's ingest fails naming mlops_ingest__<name>, not
    the primary dataset's DAG."""
    from datetime import UTC, datetime

    from airflow.sdk.exceptions import AirflowFailException

    from mlops_pipeline.datasets import DatasetEntry
    from mlops_pipeline.orchestration.context import scoped
    from mlops_pipeline.orchestration.datasets import UseDataset
    from mlops_pipeline.orchestration.ingest import extract

    assert scoped("mlops_ingest") == "mlops_ingest"
    path = write_dataset(datasets_dir, "fraud", start_date="2026-01-01")
    UseDataset(DatasetEntry(name="fraud", path=path))()
    assert scoped("mlops_ingest") == "mlops_ingest__fraud"
    day = datetime(2025, 6, 1, tzinfo=UTC)
    with pytest.raises(AirflowFailException, match=r"^mlops_ingest__fraud for 2025-06-01 is before the configured start date"):
        extract(day, datetime(2025, 6, 2, tzinfo=UTC), params={}, run_id="manual__x")


def _dagbag(env: dict[str, str]) -> dict:
    code = (
        "import json; from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()}, 'dags': sorted(bag.dag_ids),"
        " 'trigger': bag.dags['mlops_monitor__fraud'].get_task('trigger_retrain').trigger_dag_id,"
        " 'deploy_on': [a.name for a in bag.dags['mlops_deploy__fraud'].timetable.asset_condition.objects],"
        " 'announces': [o.name for o in bag.dags['mlops_train__fraud'].get_task('announce_challenger').outlets],"
        " 'steps': sorted(t for t in bag.dags['mlops_deploy__fraud'].task_ids if t.endswith('.shift')),"
        " 'broken': {d: [bag.dags[d].description, bag.dags[d].task_ids, sorted(bag.dags[d].tags)]"
        "            for d in bag.dag_ids if d.endswith('__leads')}}))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_broken_file_gets_dags_that_name_it_and_hides_no_other(datasets_dir: Path, tmp_path: Path) -> None:
    write_dataset(datasets_dir, "fraud", policy={"deploy": {"steps": [50, 100]}})
    (datasets_dir / "leads.yaml").write_text("name: leads\nsource: {kind: ftp}\n")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "PYTHONPATH": str(REPO / "include")}
    report = _dagbag(env)
    assert report["errors"] == {}  # an import error would make Airflow stop every DAG of the file
    assert set(report["dags"]) == {f"{step}{suffix}" for step in STEPS for suffix in ("", "__fraud", "__leads")}
    for step in STEPS:
        description, task_ids, tags = report["broken"][f"{step}__leads"]
        assert str(datasets_dir / "leads.yaml") in description
        assert task_ids == ["dataset_file_error"] and "broken-dataset" in tags
    assert report["trigger"] == "mlops_train__fraud"
    assert report["deploy_on"] == ["mlops_challenger__fraud"] and report["announces"] == ["mlops_challenger__fraud"]
    assert report["steps"] == ["step_100pct.shift", "step_50pct.shift"]  # the dataset's own deploy policy


def test_the_broken_dags_task_fails_at_once_naming_the_file(datasets_dir: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_pipeline.datasets import DatasetEntry
    from mlops_pipeline.orchestration.datasets import _broken_dag

    entry = DatasetEntry(name="leads", path=datasets_dir / "leads.yaml", error="dataset file /x/leads.yaml is invalid: source")
    dag = _broken_dag("mlops_ingest__leads", entry)
    task = dag.get_task("dataset_file_error")
    assert task.retries == 0
    with pytest.raises(AirflowFailException, match=r"mlops_ingest__leads: dataset file /x/leads.yaml is invalid"):
        task.python_callable()
