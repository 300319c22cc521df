"""Every DAG file imports cleanly, fast, and without heavy libraries at module level."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
HEAVY = ["pandas", "numpy", "mlflow", "evidently", "great_expectations", "xgboost", "sklearn", "docker", "boto3", "scipy", "pyarrow", "matplotlib"]


def test_dagbag_has_no_import_errors(airflow_stack):
    code = (
        "import json; from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(REPO / 'dags')!r})\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()}, 'dags': sorted(bag.dag_ids),"
        " 'tags': {d: sorted(bag.dags[d].tags) for d in bag.dag_ids}}))"
    )
    done = airflow_stack.run("exec", "--", sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert {"mlops_ingest", "mlops_train", "mlops_deploy", "mlops_monitor", "mlops_score"} <= set(report["dags"])
    for dag_id, tags in report["tags"].items():
        assert "mlops" in tags, f"{dag_id} lacks the 'mlops' tag"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[p.stem for p in DAG_FILES])
def test_dag_file_imports_no_heavy_library_at_module_level(dag_file, airflow_stack):
    code = (
        "import json, runpy, sys\n"
        f"runpy.run_path({str(dag_file)!r})\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    done = airflow_stack.run("exec", "--", sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], f"{dag_file.name} imports heavy modules at parse time"
