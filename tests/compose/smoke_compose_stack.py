"""Smoke test of the compose stack brought up for real: ``make compose-smoke`` (not part of ``make test``).

One module-scoped stack, brought up the way ``make compose-up`` does (offline images built when
missing, docker-compose.yaml + include/compose/offline/offline.yaml), under its own project name,
its own .env (fresh secrets, under .run/compose/) and free host ports, so it runs beside anything
else on the host; torn down with its volumes at the end. Then:

- every service of the stack is healthy (the one-shot jobs exited 0);
- one ``mlops_ingest`` run, triggered through Airflow's REST API, succeeds, and its task instances
  ran on the Celery worker container (their hostname is that container's);
- MLflow answers /health, refuses an API call without credentials and lets the reader identity in;
- Prometheus scrapes a model server: a model image built by the deploy code's image builder,
  started with the labels mlops_deploy gives a stable server on the "mlops" network, is an ``up == 1``
  target of the ``serving`` job.

It takes many minutes (image builds on a cold machine, then the stack's start), so ``make test`` does
not collect it: its file name is not ``test_*.py``, and ``make compose-smoke`` names the file.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlops_dev import compose
from mlops_dev.airflow_api import AirflowAPI

pytestmark = [pytest.mark.docker, pytest.mark.integration]

PROJECT = os.environ.get("MLOPS_COMPOSE_PROJECT", "mlops-smoke")
ENV_FILE = compose.RUN / f"{PROJECT}.env"
INGEST_DAY = "2026-01-05"


def compose_cli(*args: str) -> str:
    return subprocess.run([*compose.compose_command(PROJECT, ENV_FILE), *args], check=True, text=True,
                          capture_output=True).stdout


def host_port(service: str, port: int) -> int:
    return int(compose_cli("port", service, str(port)).strip().rsplit(":", 1)[1])


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, str]]:
    ENV_FILE.unlink(missing_ok=True)  # fresh secrets for a fresh stack
    try:
        states = compose.up(PROJECT, ENV_FILE, ephemeral_ports=True, timeout=1200)
        yield states
    finally:
        if os.environ.get("MLOPS_COMPOSE_KEEP") != "1":
            compose.down(PROJECT, ENV_FILE)


def test_every_service_is_healthy(stack: dict[str, str]) -> None:
    states = compose.service_states(PROJECT)
    expected = set(yaml_services())
    assert set(states) == expected
    for name, state in states.items():
        wanted = "exited(0)" if name in compose.ONE_SHOT_SERVICES else "healthy"
        assert state == wanted, f"{name} is {state}"


def yaml_services() -> list[str]:
    import yaml

    return list(yaml.safe_load((compose.RUN / PROJECT / "docker-compose.yaml").read_text())["services"])


def test_mlflow_answers(stack: dict[str, str]) -> None:
    port = host_port("mlflow", 5000)
    # The server only answers the host names it is told (--allowed-hosts): the published port is a
    # free one here, so the request names the one it would be on.
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers={"Host": "localhost:5000"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.read().strip() == b"OK"
    # With authentication: no credentials are refused, and the reader identity airflow-init created
    # (with the password of its Airflow connection, from .env) is let in.
    search = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(search, headers={"Host": "localhost:5000"}), timeout=10)
    assert refused.value.code == 401
    reader = base64.b64encode(f"reader:{compose.read_env(ENV_FILE)['MLOPS_MLFLOW_READER_PASSWORD']}".encode()).decode()
    answer = get_json(search, headers={"Host": "localhost:5000", "Authorization": f"Basic {reader}"})
    assert "experiments" in answer, answer


def test_one_ingest_run_succeeds_on_the_celery_worker(stack: dict[str, str]) -> None:
    password = compose.read_env(ENV_FILE)["AIRFLOW_ADMIN_PASSWORD"]
    api = AirflowAPI(f"http://127.0.0.1:{host_port('airflow-apiserver', 8080)}", password=password)
    api.wait_for_dag("mlops_ingest", timeout=300)
    api.set_paused("mlops_ingest", False)
    run = api.trigger("mlops_ingest", logical_date=f"{INGEST_DAY}T00:00:00Z")
    runs = api.wait_for_runs("mlops_ingest", {run["dag_run_id"]}, timeout=900)
    instances = api.task_instances("mlops_ingest", run["dag_run_id"])
    assert runs[0]["state"] == "success", {ti["task_id"]: ti["state"] for ti in instances}
    worker_hosts = {c["Config"]["Hostname"] for c in compose.containers(PROJECT)
                    if c["Config"]["Labels"].get("com.docker.compose.service") == "airflow-worker"}
    assert {ti["task_id"] for ti in instances} == {"ingest"}
    for ti in instances:
        assert ti["state"] == "success"
        assert ti["hostname"] in worker_hosts, f"{ti['task_id']} ran on {ti['hostname']}, workers: {worker_hosts}"


@pytest.fixture(scope="module")
def serving_container(stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A model server as mlops_deploy starts one: its image built by the deploy code, its labels."""
    import docker

    from mlops_pipeline.deploy.backends import DEPLOYMENT_LABEL, ROLE_LABEL, model_labels
    from mlops_pipeline.deploy.images import build_model_image, build_serving_base
    from tests.serving.model_fixture import build_model_dir

    model_dir = build_model_dir(tmp_path_factory.mktemp("model") / "model")
    info = json.loads((model_dir / "model_info.json").read_text())
    labels = {"name": info["model_name"], "version": str(info["model_version"]), "run_id": info["run_id"],
              "sha256": info["artifact_sha256"]}
    tag = build_model_image(model_dir, labels, build_serving_base(compose.REPO))
    client = docker.from_env()
    container = client.containers.run(
        tag,
        name=f"{PROJECT}-stable-v{labels['version']}",
        detach=True,
        network="mlops",
        labels={DEPLOYMENT_LABEL: "mlops", ROLE_LABEL: "stable", **model_labels(labels, tag),
                "org.mlops.compose.smoke": PROJECT},
        tmpfs={"/tmp": "rw,size=64m"},
    )
    try:
        yield container
    finally:
        container.remove(force=True)


def test_prometheus_scrapes_a_serving_container(serving_container: Any) -> None:
    url = f"http://127.0.0.1:{host_port('prometheus', 9090)}/api/v1/query?" + urllib.parse.urlencode(
        {"query": 'up{job="serving"} == 1'})
    deadline = time.monotonic() + 120  # docker_sd refreshes every 15 s, then one scrape interval
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = [r for r in get_json(url)["data"]["result"]
                 if r["metric"].get("container") == serving_container.name]
        if found:
            break
        time.sleep(5)
    assert found, f"no up==1 target for {serving_container.name} in Prometheus"
    assert found[0]["metric"]["role"] == "stable"


def test_env_file_is_not_tracked() -> None:
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(ENV_FILE)], cwd=Path(compose.REPO),
                             capture_output=True).returncode == 0
    assert not tracked
