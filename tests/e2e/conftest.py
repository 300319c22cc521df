"""Fixtures for tests that need a real Docker engine.

The session starts one when none answers (serving/docker/ensure-engine.sh installs Debian's docker.io
and runs dockerd), so these tests run, never skip, on a machine without Docker. Everything a test
creates carries the label ``org.mlops.test=<pid of the pytest process>`` (``TEST_LABELS``) and is
removed afterwards; leftovers of an interrupted session (its process gone) are removed when the next
one starts, while a concurrent session's objects are left alone.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from mlops_pipeline.deploy.images import repo_root_default

REPO_ROOT = repo_root_default()  # this checkout, or MLOPS_REPO_ROOT
TEST_LABEL = "org.mlops.test"
TEST_LABELS = {TEST_LABEL: str(os.getpid())}  # what every test object carries


def _owner_gone(labels: dict[str, str] | None) -> bool:
    owner = (labels or {}).get(TEST_LABEL, "")
    if owner == str(os.getpid()):
        return True
    if not owner.isdigit():
        return True
    return not os.path.exists(f"/proc/{owner}")


def remove_test_objects(client: Any) -> None:
    """Containers, then networks, labelled as test objects of this session or of a dead one."""
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        if _owner_gone(container.labels):
            container.remove(force=True, v=True)
    for network in client.networks.list(filters={"label": TEST_LABEL}):
        if _owner_gone(network.attrs.get("Labels")):
            network.remove()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    started = subprocess.run(
        ["bash", str(REPO_ROOT / "serving/docker/ensure-engine.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert started.returncode == 0, f"no Docker engine could be started:\n{started.stderr}"

    import docker

    client = docker.from_env(timeout=600)
    remove_test_objects(client)
    yield client
    remove_test_objects(client)
    client.close()
