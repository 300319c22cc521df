"""The serving images for real: base, serving base and model images, hardened model containers, and
the HAProxy router container in front of them on a user-defined network.

Needs nothing installed beforehand: the session fixture starts a Docker engine, and the project
scripts build the base images offline when no registry is reachable.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlops_pipeline.deploy.haproxy import (
    CONFIG_PATH_IN_IMAGE,
    HAProxyRuntime,
    HAProxyRuntimeError,
    render_config,
)
from mlops_pipeline.deploy.images import (
    SERVING_BASE_LABEL,
    build_model_image,
    build_serving_base,
    ensure_base_images,
    image_labels,
    repo_root_default,
    serving_base_tag,
)
from tests.e2e.conftest import TEST_LABELS  # what tests/e2e/conftest.py cleans up
from tests.serving.model_fixture import build_model_dir, make_records

pytestmark = pytest.mark.docker

REPO_ROOT = repo_root_default()  # this checkout, or MLOPS_REPO_ROOT
SERVING_UID = 10001
HEALTHCHECK_TIMEOUT_S = 90


@dataclass
class ModelImage:
    tag: str
    labels: dict[str, str]
    model_dir: Path


@dataclass
class Images:
    base: str
    router: str
    serving_base: str
    models: dict[str, ModelImage]  # by model version


@pytest.fixture(scope="module")
def images(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Images:
    bases = ensure_base_images(REPO_ROOT, wheelhouse=False)
    serving_base = build_serving_base(REPO_ROOT)
    models: dict[str, ModelImage] = {}
    for shift in (0.0, 2.0):  # version 1 (stable) and a clearly different version 2 (canary)
        model_dir = build_model_dir(tmp_path_factory.mktemp("model") / "model", shift=shift)
        info = json.loads((model_dir / "model_info.json").read_text())
        labels = {
            "name": info["model_name"],
            "version": str(info["model_version"]),
            "run_id": info["run_id"],
            "sha256": info["artifact_sha256"],
        }
        models[labels["version"]] = ModelImage(
            build_model_image(model_dir, labels, serving_base), labels, model_dir
        )
    return Images(bases["base"], bases["router"], serving_base, models)


# ---------------------------------------------------------------------------------------------
# containers
# ---------------------------------------------------------------------------------------------
def wait_http(url: str, container: Any, timeout: float = HEALTHCHECK_TIMEOUT_S) -> bytes:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        container.reload()
        if container.status not in {"created", "running"}:
            break
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = exc
        time.sleep(0.3)
    logs = container.logs(tail=60).decode(errors="replace")
    raise AssertionError(
        f"{url} never answered 200 ({last}); {container.name} is {container.status}:\n{logs}"
    )


def post_json(url: str, payload: object) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def host_port(container: Any, port: str) -> int:
    container.reload()
    return int(container.ports[port][0]["HostPort"])


@dataclass
class ServingContainer:
    container: Any
    name: str
    url: str
    log_dir: Path


@dataclass
class Stack:
    network: Any
    stable: ServingContainer
    canary: ServingContainer


HARDENING: dict[str, Any] = {
    "read_only": True,
    "tmpfs": {"/tmp": "rw,size=64m"},
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
}


def run_serving(client: Any, image: str, name: str, network: str, log_dir: Path) -> ServingContainer:
    log_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(log_dir, SERVING_UID, SERVING_UID)
    else:
        log_dir.chmod(0o777)
    container = client.containers.run(
        image,
        name=name,
        detach=True,
        network=network,
        user=str(SERVING_UID),
        volumes={str(log_dir): {"bind": "/var/log/mlops/predictions", "mode": "rw"}},
        ports={"8080/tcp": ("127.0.0.1", None)},
        labels=TEST_LABELS,
        **HARDENING,
    )
    return ServingContainer(container, name, f"http://127.0.0.1:{host_port(container, '8080/tcp')}", log_dir)


@pytest.fixture(scope="module")
def stack(docker_client: Any, images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:8]
    network = docker_client.networks.create(f"mlops-test-{suffix}", driver="bridge", labels=TEST_LABELS)
    containers: list[Any] = []
    try:
        logs = tmp_path_factory.mktemp("predictions")
        stable = run_serving(
            docker_client,
            images.models["1"].tag,
            f"mlops-test-stable-{suffix}",
            network.name,
            logs / "stable",
        )
        containers.append(stable.container)
        canary = run_serving(
            docker_client,
            images.models["2"].tag,
            f"mlops-test-canary-{suffix}",
            network.name,
            logs / "canary",
        )
        containers.append(canary.container)
        for serving in (stable, canary):
            wait_http(f"{serving.url}/ready", serving.container)
        yield Stack(network, stable, canary)
    finally:
        for container in containers:
            container.remove(force=True, v=True)
        network.remove()


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------
def test_model_image_is_labelled_with_the_model_version(docker_client: Any, images: Images) -> None:
    for version, model in images.models.items():
        labels = image_labels(model.tag)

        assert model.tag == f"mlops/model-churn-model:{version}"
        for key in ("name", "version", "run_id", "sha256"):
            assert labels[f"org.mlops.model.{key}"] == model.labels[key]
        assert labels[SERVING_BASE_LABEL] == images.serving_base

    config = docker_client.images.get(images.models["1"].tag).attrs["Config"]
    assert config["User"] == f"{SERVING_UID}:{SERVING_UID}"
    assert "/health" in " ".join(config["Healthcheck"]["Test"])
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]


def test_building_a_model_image_again_reuses_it(docker_client: Any, images: Images) -> None:
    model = images.models["1"]
    before = docker_client.images.get(model.tag).id

    started = time.monotonic()
    tag = build_model_image(model.model_dir, model.labels, images.serving_base)

    assert tag == model.tag
    assert docker_client.images.get(tag).id == before
    assert time.monotonic() - started < 5


def test_serving_base_tag_follows_the_sources(docker_client: Any, images: Images, tmp_path: Path) -> None:
    base_id = docker_client.images.get(images.base).id
    copy = tmp_path / "checkout"
    for part in ("serving", "include/mlops_pipeline/contracts"):
        shutil.copytree(REPO_ROOT / part, copy / part, symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "include/mlops_pipeline/__init__.py", copy / "include/mlops_pipeline/__init__.py")
    tag = serving_base_tag(copy, base_id)

    assert tag.startswith("mlops/serving-base:") and len(tag.partition(":")[2]) == 16
    assert serving_base_tag(copy, base_id) == tag
    (copy / "serving/mlops_serving/__init__.py").write_text("# changed\n", encoding="utf-8")
    changed = serving_base_tag(copy, base_id)
    assert changed != tag
    (copy / "include/mlops_pipeline/contracts/psi.py").write_text("# changed\n", encoding="utf-8")
    assert serving_base_tag(copy, base_id) != changed  # the contract the server imports is part of the image
    assert serving_base_tag(copy, "sha256:another-base") != serving_base_tag(copy, base_id)


# ---------------------------------------------------------------------------------------------
# one hardened model container
# ---------------------------------------------------------------------------------------------
def test_hardened_model_container_predicts(stack: Stack) -> None:
    records = make_records(3, seed=5)

    status, body = post_json(f"{stack.stable.url}/predict", {"records": records})

    assert status == 200, body
    assert body["model_version"] == "1"
    assert len(body["predictions"]) == 3
    assert all(0.0 <= p["probability"] <= 1.0 for p in body["predictions"])
    version = json.loads(wait_http(f"{stack.stable.url}/version", stack.stable.container))
    assert version["model_version"] == "1"


def test_model_container_runs_unprivileged_on_a_read_only_root(stack: Stack) -> None:
    container = stack.stable.container

    uid = container.exec_run(["python", "-c", "import os; print(os.getuid())"])
    write = container.exec_run(["python", "-c", "open('/opt/app/probe', 'w')"])
    health = container.exec_run(container.image.attrs["Config"]["Healthcheck"]["Test"][1:])

    assert uid.output.decode().strip() == str(SERVING_UID)
    assert write.exit_code != 0 and b"Read-only file system" in write.output
    assert health.exit_code == 0, health.output.decode()


def test_predictions_are_logged_to_the_mounted_dir(stack: Stack) -> None:
    status, _ = post_json(f"{stack.stable.url}/predict", {"records": make_records(2, seed=6)})
    assert status == 200

    deadline = time.monotonic() + 20
    while not [p for p in stack.stable.log_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]:
        assert time.monotonic() < deadline, "no prediction log written under the mounted log dir"
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------------
# the router container in front
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def router(
    docker_client: Any, images: Images, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    config = render_config(
        "0.0.0.0:8000",
        [
            {"name": "stable", "address": stack.stable.name, "port": 8080, "weight": 100},
            {"name": "canary", "address": stack.canary.name, "port": 8080, "weight": 0},
        ],
        runtime_api_bind="0.0.0.0:9999",
        metrics_bind="0.0.0.0:8404",
        socket_path="/run/haproxy/admin.sock",
        check_interval_ms=500,
        dns_resolvers=True,
    )
    config_path = tmp_path_factory.mktemp("router") / "haproxy.cfg"
    config_path.write_text(config)
    config_path.chmod(0o644)
    container = docker_client.containers.run(
        images.router,
        name=f"{stack.network.name}-router",
        detach=True,
        network=stack.network.name,
        volumes={str(config_path): {"bind": CONFIG_PATH_IN_IMAGE, "mode": "ro"}},
        ports={port: ("127.0.0.1", None) for port in ("8000/tcp", "8404/tcp", "9999/tcp")},
        labels=TEST_LABELS,
        read_only=True,
        tmpfs={"/run/haproxy": "rw,size=1m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
    )
    try:
        runtime = HAProxyRuntime(f"127.0.0.1:{host_port(container, '9999/tcp')}")
        deadline = time.monotonic() + 60
        while True:
            try:
                runtime.wait_until("models", ["stable", "canary"], timeout=5)
                break
            except HAProxyRuntimeError as exc:
                container.reload()
                if container.status != "running" or time.monotonic() > deadline:
                    logs = container.logs(tail=60).decode(errors="replace")
                    raise AssertionError(f"router not ready ({exc}); {container.status}:\n{logs}") from None
        yield {
            "container": container,
            "runtime": runtime,
            "url": f"http://127.0.0.1:{host_port(container, '8000/tcp')}",
            "metrics_url": f"http://127.0.0.1:{host_port(container, '8404/tcp')}/metrics",
        }
    finally:
        container.remove(force=True, v=True)


def versions_through(router: dict, requests: int) -> Counter:
    served = Counter()
    for seed in range(requests):
        status, body = post_json(f"{router['url']}/predict", {"records": make_records(1, seed=seed)})
        assert status == 200, body
        served[body["model_version"]] += 1
    return served


def test_router_container_serves_and_splits_traffic_by_runtime_weights(router: dict) -> None:
    runtime: HAProxyRuntime = router["runtime"]

    assert versions_through(router, 6) == {"1": 6}

    runtime.set_weights("models", {"stable": 50, "canary": 50})
    served = versions_through(router, 400)
    # The router hashes X-Entity-Id consistently; without it, requests follow the weights along its ring, so
    # the split is a share over hundreds of requests (within 10 points: see tests/deploy/test_haproxy_config.py).
    assert set(served) == {"1", "2"} and abs(served["2"] / 400 - 0.5) <= 0.10, served

    runtime.set_weights("models", {"stable": 0, "canary": 100})
    assert versions_through(router, 4) == {"2": 4}

    stats = runtime.stats("models")
    assert stats["canary"]["hrsp_2xx"] >= 9  # type: ignore[operator]
    assert stats["stable"]["hrsp_5xx"] == 0 and stats["canary"]["hrsp_5xx"] == 0


def test_router_container_runs_unprivileged_and_exports_metrics(router: dict) -> None:
    container = router["container"]

    user = container.exec_run(["id", "-un"]).output.decode().strip()
    write = container.exec_run(["touch", "/etc/probe"])
    with urllib.request.urlopen(router["metrics_url"], timeout=10) as response:
        metrics = response.read().decode()

    assert user == "haproxy"
    assert write.exit_code != 0
    assert 'haproxy_server_http_responses_total{proxy="models",server="stable",code="2xx"}' in metrics
    assert 'haproxy_server_weight{proxy="models",server="canary"}' in metrics


def test_the_router_container_serves_https_with_the_configured_certificate(
    docker_client: Any, images: Images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``MLOPS_ROUTER_TLS_CERT`` on the Docker backend: the certificate reaches the unprivileged HAProxy of
    the read-only router container, its client port speaks HTTPS only, and the copy the container reads
    sits in a folder no other local user can enter."""
    import http.client
    import ssl

    from mlops_pipeline.config import DeploySettings, Settings, get_settings
    from mlops_pipeline.deploy.docker_backend import DockerBackend
    from tests.deploy.test_haproxy_config import free_port
    from tests.deploy.test_router_tls import self_signed_pem

    pem, ca = self_signed_pem(tmp_path)
    monkeypatch.setenv("MLOPS_RUN_DIR", str(tmp_path / "run"))
    get_settings.cache_clear()
    backend = DockerBackend(
        Settings(lake_uri=str(tmp_path / "lake"), router_port=free_port(), router_tls_cert=pem, deploy_backend="docker"),
        DeploySettings(namespace=f"mlops-tls-{uuid.uuid4().hex[:8]}", check_interval_ms=500),
    )
    try:
        endpoint = backend.ensure_router({"stable": None, "canary": None})
        assert endpoint.url.startswith("https://"), endpoint.url
        host, port = endpoint.url.removeprefix("https://").rsplit(":", 1)
        context = ssl.create_default_context(cafile=str(ca))
        context.check_hostname = host == "127.0.0.1"  # the certificate names 127.0.0.1, not a container address
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
        connection.request("GET", "/ready")
        # No serving slot is filled: HAProxy itself answers, over TLS, that no server is available.
        assert connection.getresponse().status == 503
        connection.close()
        plain = http.client.HTTPConnection(host, int(port), timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/ready")
            plain.getresponse()
        plain.close()
        private = backend.base / "router-tls"
        assert private.stat().st_mode & 0o777 == 0o700
    finally:
        backend.teardown()
        get_settings.cache_clear()
