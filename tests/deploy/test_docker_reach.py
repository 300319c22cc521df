"""How the Docker backend reaches its containers: published ports on 127.0.0.1 (the deployer on the
Docker host) or addresses on the namespace network (the deployer in a container on it, as in compose).

The container objects are plain stand-ins for the docker SDK's (only ``attrs``, ``labels``, ``status``
are read); the real engine path is covered by tests/reliability/test_docker_faults.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlops_pipeline.config import DeploySettings, Settings
from mlops_pipeline.deploy.docker_backend import DockerBackend

NAMESPACE = "mlops-reach"


def backend(reach: str) -> DockerBackend:
    instance = DockerBackend.__new__(DockerBackend)  # no engine needed to map attributes to URLs
    instance.settings = Settings(lake_uri="/tmp/lake", router_bind="127.0.0.1", router_port=8000)
    instance.deploy = DeploySettings(namespace=NAMESPACE, docker_reach=reach)
    instance.namespace = NAMESPACE
    return instance


def container(ports: dict, address: str = "172.20.0.5", status: str = "running") -> SimpleNamespace:
    return SimpleNamespace(
        id="c1", name="mlops-reach-stable-1", status=status,
        labels={"org.mlops.role": "stable", "org.mlops.model.version": "3"},
        attrs={"NetworkSettings": {"Ports": ports, "Networks": {NAMESPACE: {"IPAddress": address}}}},
    )


ROUTER_PORTS = {
    "8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}],
    "9999/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41001"}],
    "8404/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41002"}],
}


def test_published_ports_on_the_host_by_default():
    server = backend("published")._server(container({"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40123"}]}))
    assert (server.url, server.address, server.running) == ("http://127.0.0.1:40123", "172.20.0.5", True)
    endpoint = backend("published")._endpoint(container(ROUTER_PORTS))
    assert endpoint is not None
    assert (endpoint.runtime_address, endpoint.url, endpoint.metrics_url) == (
        "127.0.0.1:41001", "http://127.0.0.1:8000", "http://127.0.0.1:41002/metrics",
    )


def test_unpublished_server_is_not_running_when_reached_through_the_host():
    assert not backend("published")._server(container({})).running


def test_network_addresses_when_the_deployer_runs_on_the_namespace_network():
    server = backend("network")._server(container({}))
    assert (server.url, server.running) == ("http://172.20.0.5:8080", True)
    endpoint = backend("network")._endpoint(container(ROUTER_PORTS, address="172.20.0.9"))
    assert endpoint is not None
    assert (endpoint.runtime_address, endpoint.url, endpoint.metrics_url) == (
        "172.20.0.9:9999", "http://172.20.0.9:8000", "http://172.20.0.9:8404/metrics",
    )
    assert backend("network")._endpoint(container(ROUTER_PORTS, address="")) is None


def test_reach_is_validated():
    with pytest.raises(ValueError, match="docker_reach"):
        DeploySettings(docker_reach="tunnel")
