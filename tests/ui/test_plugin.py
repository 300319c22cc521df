"""The plugin module: cheap to import (every Airflow process loads plugins), and what it registers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PLUGIN = REPO / "plugins" / "mlops_ui.py"
HEAVY = ["pandas", "numpy", "mlflow", "evidently", "sklearn", "docker", "boto3", "pyarrow"]
BUILT_LAZILY = ["mlops_pipeline.ui", "airflow.api_fastapi.core_api.security"]


def test_importing_the_plugin_loads_nothing_heavy(tmp_path: Path) -> None:
    code = (
        "import json, runpy, sys\n"
        f"module = runpy.run_path({str(PLUGIN)!r})\n"
        "plugin = module['MlopsUIPlugin']\n"
        "print(json.dumps({'loaded': sorted(m for m in "
        f"{HEAVY + BUILT_LAZILY!r} if m in sys.modules), 'name': plugin.name,"
        " 'apps': [a['url_prefix'] for a in plugin.fastapi_apps], 'views': plugin.external_views}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False", MLOPS_HOME=str(REPO))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])

    assert found["loaded"] == [], f"importing the plugin loaded {found['loaded']}"
    assert found["name"] == "mlops_ui" and found["apps"] == ["/mlops"]
    (view,) = found["views"]
    assert view["url_route"] == "mlops" and view["destination"] == "nav" and not view["href"].startswith("/")
