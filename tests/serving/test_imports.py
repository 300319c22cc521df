"""The model server's dependencies: no Airflow, no MLflow, and of the project only the contract package.

The serving image holds ``mlops_serving/`` and, of ``mlops_pipeline``, just ``__init__.py`` and
``contracts/``; a copy of that layout, with the repo's own package hidden, must import and serve.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from .conftest import ServerProcess, free_port, wait_until_ready
from .model_fixture import make_records

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "include" / "mlops_pipeline"

CHECK = r"""
import sys
sys.path = [p for p in sys.path if p.rstrip("/") != {hidden!r}]
import mlops_serving.app, mlops_serving.model
loaded = {{m.split(".")[0] for m in sys.modules}}
print(sorted(loaded & {{"airflow", "mlflow", "pandas", "sklearn", "xgboost"}}))
print(sorted(m for m in sys.modules if m.startswith("mlops_pipeline")))
print(sys.modules["mlops_pipeline"].__file__)
"""


SERVE = r"""
import runpy, sys
sys.path = [p for p in sys.path if p.rstrip("/") != {hidden!r}]
sys.argv = ["mlops_serving"]
runpy.run_module("mlops_serving", run_name="__main__", alter_sys=True)
"""


def image_layout(root: Path) -> Path:
    """``/opt/app`` of the serving image: the server and the contract package, nothing else."""
    shutil.copytree(REPO / "serving" / "mlops_serving", root / "mlops_serving", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "mlops_pipeline" / "contracts").mkdir(parents=True)
    shutil.copy2(PACKAGE / "__init__.py", root / "mlops_pipeline" / "__init__.py")
    for source in (PACKAGE / "contracts").glob("*.py"):
        shutil.copy2(source, root / "mlops_pipeline" / "contracts" / source.name)
    return root


def test_the_server_imports_without_airflow_mlflow_or_the_rest_of_the_project(tmp_path: Path) -> None:
    app = image_layout(tmp_path / "app")
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(hidden=str(REPO / "include"))],
        cwd=app,
        env={"PYTHONPATH": str(app), "PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    heavy, project, origin = result.stdout.splitlines()
    assert heavy == "[]"  # the model libraries load with a model of their flavour, never at import
    assert project == str(
        ["mlops_pipeline", "mlops_pipeline.contracts", "mlops_pipeline.contracts.calibration", "mlops_pipeline.contracts.features"]
    )
    assert origin == str(app / "mlops_pipeline" / "__init__.py")


def test_the_image_layout_serves(tmp_path: Path, xgb_model_dir: Path) -> None:
    app = image_layout(tmp_path / "app")
    port = free_port()
    env = {
        "PYTHONPATH": str(app),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": "/usr/bin:/bin",
        "MLOPS_MODEL_DIR": str(xgb_model_dir),
        "MLOPS_SERVING_HOST": "127.0.0.1",
        "MLOPS_SERVING_PORT": str(port),
        "MLOPS_PREDICTION_LOG_DIR": str(tmp_path / "predictions"),
    }
    log_file = tmp_path / "server.log"
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE.format(hidden=str(REPO / "include"))],
            cwd=app, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log_file)
    try:
        wait_until_ready(server)
        response = httpx.post(f"{server.url}/predict", json={"records": make_records(3, seed=8)}, timeout=10)
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 3
    finally:
        server.stop()
