"""mlops_train: the DAG's shape, a light parse, and two real `airflow dags test` runs against MLflow.

The runs use a throwaway Airflow home (the ``airflow_stack`` fixture), the session's lake of 10
validated synthetic days and the session's MLflow server, with a small search. The first run registers version 1 and
gives it ``@challenger``; the second, with conf that cripples the only candidate, registers
version 2, which the gate rejects: no alias moves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "mlops_train.py"
HEAVY = ("pandas", "mlflow", "xgboost", "sklearn", "numpy", "matplotlib")


def test_dag_file_imports_nothing_heavy():
    code = (
        "import runpy, sys, json\n"
        f"runpy.run_path({str(DAG_FILE)!r})\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_dag_shape():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert bag.import_errors == {}
    dag = bag.dags["mlops_train"]
    assert {t.task_id for t in dag.tasks} == {"train", "gate", "announce_challenger"}
    assert dag.get_task("train").pool == "training" and dag.get_task("gate").pool == "training"
    assert dag.get_task("gate").downstream_task_ids == {"announce_challenger"}
    assert dag.max_active_runs == 1 and not dag.catchup
    assert dag.start_date is None  # any date may be trained for; train checks the configured start date
    params = dag.params.dump()
    assert params["reason"] == "manual" and params["days"] is None and params["hyperparameters"] == {}
    assert [o.name for o in dag.get_task("announce_challenger").outlets] == ["mlops_challenger"]


def _dags_test(stack, env_extra: dict[str, str], logical_date: str, conf: dict | None = None, *, fails: bool = False):
    env = {**stack.env, **env_extra}
    argv = [sys.executable, "-m", "mlops_dev.services", "exec", "--", "airflow", "dags", "test", "mlops_train", logical_date]
    if conf is not None:
        argv += ["--conf", json.dumps(conf)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert (done.returncode != 0) is fails, f"dags test {'succeeded' if fails else 'failed'}:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.mark.integration
def test_a_date_before_the_start_date_or_without_data_fails_naming_it(airflow_stack, validated_lake, mlflow_server):
    from tests.mlflow_fixtures import quiet_mlflow_environment

    env = {
        **quiet_mlflow_environment(),
        "MLOPS_LAKE_URI": validated_lake.uri,
        "MLFLOW_TRACKING_URI": mlflow_server.uri,  # train checks that MLflow answers before it reads the lake
        "MLOPS_START_DATE": "2026-01-01",
    }
    done = _dags_test(airflow_stack, env, "2013-03-01T03:00:00+00:00", fails=True)
    assert "mlops_train for 2013-03-01 is before the configured start date 2026-01-01" in done.stdout + done.stderr
    # On the start date itself the run may train, but no validated day precedes it.
    done = _dags_test(airflow_stack, env, "2026-01-01T03:00:00+00:00", fails=True)
    assert "no validated partition before ds=2026-01-01" in done.stdout + done.stderr


@pytest.mark.integration
def test_two_runs_register_a_challenger_then_a_rejected_version(airflow_stack, validated_lake, mlflow_server):
    import uuid

    from mlflow import MlflowClient

    from mlops_pipeline.registry.aliases import CHALLENGER, CHAMPION, version_for_alias
    from mlops_pipeline.registry.lineage import LAKE_SOURCE_TYPE, version_lineage
    from tests.mlflow_fixtures import quiet_mlflow_environment, small_search_environment

    name = f"churn-dag-{uuid.uuid4().hex[:8]}"
    env = {
        **quiet_mlflow_environment(),
        **small_search_environment(),
        "MLOPS_LAKE_URI": validated_lake.uri,
        "MLFLOW_TRACKING_URI": mlflow_server.uri,
        "MLOPS_MODEL_NAME": name,
    }
    client = MlflowClient(mlflow_server.uri)

    _dags_test(airflow_stack, env, validated_lake.day_after.isoformat())
    assert version_for_alias(client, name, CHALLENGER).version == "1"
    assert version_for_alias(client, name, CHAMPION) is None
    lineage = version_lineage(client, name, 1)
    run = client.get_run(lineage["run_id"])
    assert run.data.tags["trigger_reason"] == "manual"
    assert run.data.tags["dag_run_id"].startswith("manual__")
    assert run.data.params["window.as_of"] == "2026-01-11"  # the logical date, not the wall clock
    assert (run.data.params["window.first_ds"], run.data.params["window.last_ds"]) == ("2026-01-01", "2026-01-10")
    assert len(run.data.tags["git_commit"]) == 40 or run.data.tags["git_commit"] == "unknown"
    assert {d["context"] for d in lineage["datasets"]} == {"training", "validation", "holdout"}
    for dataset in lineage["datasets"]:
        assert dataset["source_type"] == LAKE_SOURCE_TYPE and dataset["digest"]
        assert all(uri.startswith(f"{validated_lake.uri}/validated/ds=2026-01-") for uri in dataset["source"]["uris"])
    assert {"explain/shap_importance.png", "model_card.md", "tuning/xgboost.json"} <= set(lineage["artifacts"])
    assert lineage["version_tags"]["gate_status"] == "passed"
    # the search and the candidates are nested under the training run, as the MLflow UI shows them
    nested = client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert sorted(r.data.tags["mlops.candidate"] for r in nested) == ["baseline", "xgboost"]
    assert all(len(client.search_runs([run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{r.info.run_id}'")) == 3
               for r in nested)  # fmt: skip

    crippled = {
        "reason": "drift",
        "report": "reports/drift/ds=2026-01-11",
        "candidates": ["xgboost"],
        "hyperparameters": {"xgboost": {"max_depth": 1, "n_estimators": 1, "learning_rate": 0.3}},
    }
    _dags_test(airflow_stack, env, "2026-01-12", conf=crippled)
    rejected = client.get_model_version(name, "2")
    assert rejected.tags["rejected"] == "true" and "below" in rejected.tags["rejection_reason"]
    assert client.get_run(rejected.run_id).data.tags["trigger_reason"] == "drift"
    assert client.get_run(rejected.run_id).data.params["window.as_of"] == "2026-01-12"
    assert client.get_run(rejected.run_id).data.tags["trigger_report"] == "reports/drift/ds=2026-01-11"
    assert version_for_alias(client, name, CHALLENGER).version == "1"  # no alias moved
    assert version_for_alias(client, name, CHAMPION) is None
    assert "model_card.md" in version_lineage(client, name, 2)["artifacts"]
