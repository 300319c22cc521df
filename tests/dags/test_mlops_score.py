"""mlops_score: the DAG's shape, a light parse, and real `airflow dags test` runs against a lake of
validated days and an MLflow registry with a ``@champion``: the predictions partition it writes holds
the model server's answers for the same rows; a day without data and a model without a champion fail
naming them."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.scoring.conftest import champion, scoring_env  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "mlops_score.py"
HEAVY = ("pandas", "mlflow", "xgboost", "sklearn", "numpy", "pyarrow")


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
    dag = bag.dags["mlops_score"]
    assert {t.task_id for t in dag.tasks} == {"wait_for_partition", "resolve_model", "score"}
    assert dag.get_task("wait_for_partition").downstream_task_ids == {"resolve_model"}
    assert dag.get_task("resolve_model").downstream_task_ids == {"score"}
    assert dag.get_task("wait_for_partition").mode == "reschedule"
    # Backfillable: a timetable of daily windows, like mlops_ingest, and no Airflow start date.
    assert type(dag.timetable).__name__ == "DailyWindowTimetable" and dag.timetable.summary == "0 0 * * *"
    assert dag.start_date is None and not dag.catchup
    params = dag.params.dump()
    assert params["model_version"] == "" and params["chunk_rows"] == 100_000
    assert [o.name for o in dag.get_task("score").outlets] == ["mlops_predictions"]


def _dags_test(stack, env_extra: dict[str, str], logical_date: str, conf: dict | None = None, *, fails: bool = False):
    env = {**stack.env, **env_extra}
    argv = [sys.executable, "-m", "mlops_dev.services", "exec", "--", "airflow", "dags", "test", "mlops_score", logical_date]
    if conf is not None:
        argv += ["--conf", json.dumps(conf)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert (done.returncode != 0) is fails, f"dags test {'succeeded' if fails else 'failed'}:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.mark.integration
def test_dags_test_scores_the_day_with_the_champion_as_the_server_does(airflow_stack, scoring_env, champion, tmp_path):  # noqa: F811
    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.deploy.artifacts import download_verified
    from mlops_pipeline.registry.client import mlflow_client
    from mlops_pipeline.scoring.batch import LABEL, PROBABILITY, read_predictions
    from tests.mlflow_fixtures import quiet_mlflow_environment
    from tests.scoring.test_parity import TOLERANCE, as_records, served_probabilities

    env = {
        **quiet_mlflow_environment(),
        "MLOPS_LAKE_URI": scoring_env.lake.uri,
        "MLFLOW_TRACKING_URI": scoring_env.tracking_uri,
        "MLOPS_MODEL_NAME": scoring_env.model_name,
    }
    _dags_test(airflow_stack, env, "2026-01-03", conf={"chunk_rows": 750})

    lake = Lake(scoring_env.lake.uri)
    manifest = lake.read_manifest("predictions", "2026-01-03")
    assert manifest["dag_run_id"].startswith("manual__")  # dags test names its run by the wall clock
    assert manifest["window"] == {"start": "2026-01-03T00:00:00+00:00", "end": "2026-01-04T00:00:00+00:00"}
    assert manifest["model"]["version"] == champion.version and manifest["model"]["source"] == "champion"
    assert manifest["model"]["artifact_sha256"] == champion.artifact_sha256
    assert manifest["row_count"] == 2000 and [f["rows"] for f in manifest["files"]] == [750, 750, 500]
    predictions = read_predictions(lake, "2026-01-03").to_pandas()

    frame = lake.read_frame("validated", "2026-01-03")
    client = mlflow_client()
    model_dir = Path(download_verified(client, champion.name, champion.version, tmp_path / "model").model_dir)
    from mlops_pipeline.registry.models import load_model

    spec = load_model(str(model_dir)).spec
    records = as_records(frame, spec.names, spec.id_column, spec.time_column)
    served, labels, _ = served_probabilities(model_dir, tmp_path / "predlog", records)
    assert predictions[spec.id_column].astype(str).tolist() == [r[spec.id_column] for r in records]
    assert np.abs(predictions[PROBABILITY].to_numpy() - served).max() <= TOLERANCE
    assert predictions[LABEL].tolist() == labels


@pytest.mark.integration
def test_dags_test_fails_naming_a_day_without_data_and_a_model_without_champion(airflow_stack, scoring_env, champion):  # noqa: F811
    from tests.mlflow_fixtures import quiet_mlflow_environment

    env = {
        **quiet_mlflow_environment(),
        "MLOPS_LAKE_URI": scoring_env.lake.uri,
        "MLFLOW_TRACKING_URI": scoring_env.tracking_uri,
        "MLOPS_MODEL_NAME": scoring_env.model_name,
    }
    done = _dags_test(airflow_stack, env, "2026-02-20", fails=True)
    assert "ds=2026-02-20 has no validated partition" in done.stdout + done.stderr
    env["MLOPS_MODEL_NAME"] = f"churn-unregistered-{uuid.uuid4().hex[:6]}"
    done = _dags_test(airflow_stack, env, "2026-01-02", fails=True)
    assert f"model '{env['MLOPS_MODEL_NAME']}' has no @champion alias" in done.stdout + done.stderr
    from mlops_pipeline.data.lake import Lake

    assert Lake(scoring_env.lake.uri).read_manifest("predictions", "2026-01-02") is None
