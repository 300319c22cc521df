"""``python -m mlops_pipeline.deploy``: an expected failure is one line naming it and exit code 2."""

from __future__ import annotations

import socket
import subprocess
import sys


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_registry_is_a_one_line_error(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "MLOPS_HOME": str(tmp_path),
        "MLOPS_LAKE_URI": str(tmp_path / "lake"),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_closed_port()}",
        "MLOPS_REGISTRY_CONNECT_ATTEMPTS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "mlops_pipeline.deploy", "status"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: RegistryUnavailable: MLflow tracking server http://127.0.0.1:"), last
