"""The canary scenario on the ``docker`` backend: model containers and the HAProxy router container
on a user-defined network, images built per model version from the verified registry artifact.

Needs nothing installed beforehand: the session fixture starts a Docker engine and the project
scripts build the base images offline. See ``tests/deploy/canary_scenario.py`` for the scenario.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.canary_scenario import model_dirs, run_scenario, scenario_env  # noqa: F401 (fixtures)

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("scenario_env", ["docker"], indirect=True)
def test_canary_promotion_rollback_and_reconcile_in_containers(
    docker_client: Any,
    scenario_env: dict[str, str],  # noqa: F811
    model_dirs,  # noqa: F811
) -> None:
    remove_stale_scenarios(docker_client)
    timings = run_scenario(scenario_env, model_dirs)
    check_containers(docker_client, scenario_env)
    print(json.dumps({"docker": {k: round(v, 1) for k, v in timings.items()}}))


def check_containers(client: Any, env: dict[str, str]) -> None:
    """What runs after the scenario: a hardened stable container of v4 and the router, labelled."""
    namespace = env["MLOPS_DEPLOY_NAMESPACE"]
    containers = client.containers.list(filters={"label": f"org.mlops.deployment={namespace}"})
    roles = sorted(c.labels["org.mlops.role"] for c in containers)
    assert roles == ["router", "stable"], roles

    stable = next(c for c in containers if c.labels["org.mlops.role"] == "stable")
    host = stable.attrs["HostConfig"]
    assert stable.labels["org.mlops.model.version"] == "4"
    assert stable.labels["org.mlops.model.name"] == env["MLOPS_MODEL_NAME"]
    assert len(stable.labels["org.mlops.model.sha256"]) == 64 and stable.labels["org.mlops.model.run_id"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert stable.attrs["Config"]["User"] == "10001:10001"
    assert list(stable.attrs["NetworkSettings"]["Networks"]) == [namespace]
    assert all(binding["HostIp"] == "127.0.0.1" for binding in host["PortBindings"]["8080/tcp"])
    image_labels = client.images.get(stable.image.id).labels
    assert image_labels["org.mlops.model.sha256"] == stable.labels["org.mlops.model.sha256"]

    router = next(c for c in containers if c.labels["org.mlops.role"] == "router")
    bindings = router.attrs["HostConfig"]["PortBindings"]
    assert bindings["8000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": env["MLOPS_ROUTER_PORT"]}]
    assert all(b["HostIp"] == "127.0.0.1" for key in ("9999/tcp", "8404/tcp") for b in bindings[key])


def remove_stale_scenarios(client: Any, older_than_s: float = 3 * 3600) -> None:
    """Containers and networks an interrupted scenario left behind (never a running one's: too young)."""
    from datetime import UTC, datetime

    def age(created: str) -> float:
        moment = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
        return (datetime.now(UTC) - moment).total_seconds()

    for container in client.containers.list(all=True, filters={"label": "org.mlops.e2e=canary"}):
        if age(container.attrs["Created"]) > older_than_s:
            container.remove(force=True, v=True)
    for network in client.networks.list(filters={"label": "org.mlops.e2e=canary"}):
        if age(network.attrs["Created"]) > older_than_s:
            try:
                network.remove()
            except Exception:  # still in use
                pass
