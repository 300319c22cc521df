"""Every deployment step is safe to run again: a retry (after an error, or after the task's process
died with its worker or scheduler) does only what the first attempt left undone.

The steps run against an in-memory backend, router and registry; the audit log is a real one in a
temp lake.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

from mlops_pipeline.config import DeploySettings
from mlops_pipeline.deploy.audit import AuditLog
from mlops_pipeline.deploy.backends import BackendError, RouterEndpoint, Server
from mlops_pipeline.deploy.rollout import Deployer

MODEL = "churn"


class FakeBackend:
    kind = "fake"

    def __init__(self) -> None:
        self.running: list[Server] = []
        self.started: list[Server] = []
        self.router_up = True

    def servers(self) -> list[Server]:
        return list(self.running)

    def start_server(self, role: str, model_ref: str, labels: dict[str, str]) -> Server:
        n = len(self.started) + 1
        server = Server(
            id=f"{role}-{n}", name=f"{role}-v{labels['version']}-{n}", role=role, model_name=labels["name"],
            version=labels["version"], run_id=labels["run_id"], sha256=labels["sha256"], model_ref=model_ref,
            url=f"http://127.0.0.1:{9000 + n}", address="127.0.0.1", port=9000 + n, running=True, started_at=float(n),
        )  # fmt: skip
        self.started.append(server)
        self.running.append(server)
        return server

    def wait_ready(self, server: Server, timeout: float | None = None) -> Server:
        return server

    def stop_server(self, server: Server) -> None:
        self.running = [s for s in self.running if s.id != server.id]

    def has_model(self, model_ref: str, sha256: str) -> bool:
        return True

    def router(self) -> RouterEndpoint | None:
        return RouterEndpoint("127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3") if self.router_up else None


class FakeRouter:
    def __init__(self) -> None:
        self.slots: dict[str, str | None] = {"stable": None, "canary": None}
        self.weights = {"stable": 100, "canary": 0}

    def point(self, slot: str, server: Server) -> None:
        self.slots[slot] = server.id

    def split(self, percent: int) -> None:
        self.weights = {"stable": 100 - percent, "canary": percent}

    def empty(self, slot: str) -> None:
        self.slots[slot] = None

    def slot_of(self, server: Server) -> str | None:
        return next((slot for slot, held in self.slots.items() if held == server.id), None)

    def drop_orphans(self, servers: list[Server]) -> list[str]:
        return []

    def hand_over_stable(self, server: Server) -> None:
        self.point("stable", server)
        self.split(0)
        self.empty("canary")


class FakeRegistry:
    """The MlflowClient calls the steps make: aliases and version tags."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.tags: dict[str, dict[str, str]] = defaultdict(dict)

    def get_model_version(self, name: str, version: str) -> Any:
        return SimpleNamespace(version=str(version), tags=dict(self.tags[str(version)]), run_id=None)

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.tags[str(version)][key] = value

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.aliases[alias] = str(version)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self.aliases.pop(alias, None)

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        if alias not in self.aliases:
            raise MlflowException(f"no alias {alias}", error_code=RESOURCE_DOES_NOT_EXIST)
        return self.get_model_version(name, self.aliases[alias])


def prepared(version: str) -> dict[str, Any]:
    return {"model_ref": f"/models/{version}", "labels": {"name": MODEL, "version": version, "run_id": f"run{version}", "sha256": f"{version}" * 64}}


@pytest.fixture
def deployer(lake) -> Deployer:
    backend, router = FakeBackend(), FakeRouter()
    deployer = Deployer(
        settings=SimpleNamespace(),  # type: ignore[arg-type]
        deploy=DeploySettings(warmup_requests=0),  # the fake servers answer no HTTP (warm-up: test_warmup.py)
        backend=backend,  # type: ignore[arg-type]
        client=FakeRegistry(),  # type: ignore[arg-type]
        audit=AuditLog(lake),
        actor="test",
        model_name=MODEL,
    )
    deployer.router = lambda: router  # type: ignore[method-assign]
    deployer._rollout_router = lambda: router  # type: ignore[method-assign]
    deployer.sample = lambda: {}  # type: ignore[method-assign]
    deployer.fake_router = router  # type: ignore[attr-defined]
    return deployer


def plan(version: str, mode: str = "canary", action: str = "deploy", champion: str | None = "1") -> dict[str, Any]:
    return {"deployment_id": f"{MODEL}-v{version}-key", "action": action, "mode": mode, "version": version,
            "reason": "test", "champion": champion, "steps": [5, 100]}  # fmt: skip


def serving(deployer: Deployer) -> list[tuple[str, str]]:
    return [(s.role, s.version) for s in deployer.backend.servers()]


def test_a_retried_start_canary_reuses_the_canary_its_first_attempt_started(deployer: Deployer) -> None:
    deployer.backend.start_server("stable", "/models/1", prepared("1")["labels"])  # type: ignore[attr-defined]
    first = deployer.start_canary(plan("2"), prepared("2"))
    again = deployer.start_canary(plan("2"), prepared("2"))

    assert first["canary"] == again["canary"] and serving(deployer) == [("stable", "1"), ("canary", "2")]
    assert len(deployer.backend.started) == 2  # type: ignore[attr-defined]  # one stable, one canary
    assert deployer.fake_router.weights == {"stable": 100, "canary": 0}  # type: ignore[attr-defined]
    started = [e.reason for e in deployer.audit.events() if e.event == "canary_started"]
    assert started[-1].endswith("(started by an earlier attempt)")


def test_a_retried_start_canary_replaces_a_canary_of_another_version(deployer: Deployer) -> None:
    deployer.backend.start_server("stable", "/models/1", prepared("1")["labels"])  # type: ignore[attr-defined]
    deployer.backend.start_server("canary", "/models/7", prepared("7")["labels"])  # type: ignore[attr-defined]
    deployer.start_canary(plan("2"), prepared("2"))
    assert serving(deployer) == [("stable", "1"), ("canary", "2")]


def test_a_retried_direct_deployment_starts_one_server_and_tags_the_replaced_champion(deployer: Deployer) -> None:
    registry: FakeRegistry = deployer.client  # type: ignore[assignment]
    deployer.backend.start_server("stable", "/models/1", prepared("1")["labels"])  # type: ignore[attr-defined]
    registry.aliases["champion"] = "1"
    promote_plan = plan("2", mode="direct", action="promote")

    first = deployer.deploy_direct(promote_plan, prepared("2"))
    registry.tags["1"].clear()  # as if the first attempt died before tagging the old champion
    again = deployer.deploy_direct(promote_plan, prepared("2"))

    assert first["server"] == again["server"] and serving(deployer) == [("stable", "2")]
    assert registry.aliases["champion"] == "2" and again["previous"] == "1"
    assert registry.tags["1"]["deploy_status"] == "retired" and registry.tags["2"]["previous_champion"] == "1"


def test_a_retried_promotion_finishes_what_the_first_attempt_began(deployer: Deployer) -> None:
    registry: FakeRegistry = deployer.client  # type: ignore[assignment]
    deployer.backend.start_server("stable", "/models/1", prepared("1")["labels"])  # type: ignore[attr-defined]
    registry.aliases["champion"] = "1"
    deployer.start_canary(plan("2"), prepared("2"))

    first = deployer.promote(plan("2"))
    again = deployer.promote(plan("2"))

    assert first["server"] == again["server"] and serving(deployer) == [("stable", "2")]
    assert registry.aliases["champion"] == "2" and registry.tags["1"]["deploy_status"] == "retired"


def test_a_rollout_step_never_starts_a_router_it_waits_for_it(deployer: Deployer) -> None:
    """A router that is down mid-canary (restarting) fails the step (retried later); starting a new one
    would drop the canary's slot."""
    from mlops_pipeline.deploy.rollout import Deployer as Real

    deployer.backend.start_server("stable", "/models/1", prepared("1")["labels"])  # type: ignore[attr-defined]
    deployer.start_canary(plan("2"), prepared("2"))
    deployer.backend.router_up = False  # type: ignore[attr-defined]
    with pytest.raises(BackendError, match="router is not running"):
        Real._rollout_router(deployer)
