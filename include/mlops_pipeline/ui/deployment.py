"""Deployment state for the view: the audit log's newest events, the latest canary checks, the live router.

The audit log is read from its tail (the newest ``limit`` event files, not the whole history).
The live weights come from HAProxy's runtime API through the configured backend; a router that
is not running is a state ("no router"), not an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.config import DeploySettings, Settings
    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.deploy.audit import AuditEvent

ANALYSIS_EVENTS = ("analysis_passed", "analysis_failed")
# Events that end a deployment: after one of them no canary of that deployment takes traffic.
FINAL_EVENTS = ("promoted", "rolled_back", "rollback_deferred", "deployed", "rolled_back_to", "nothing_to_deploy", "reconciled")


def recent_events(lake: Lake, limit: int = 50, prefix: str | None = None) -> list[AuditEvent]:
    """The newest ``limit`` audit events, newest first (only those files are read)."""
    from mlops_pipeline.deploy.audit import AUDIT_PREFIX, AuditEvent

    base = lake.path((prefix or AUDIT_PREFIX).strip("/"))
    if not lake.exists(base):
        return []
    # Event file names sort in the order the events were written (see deploy.audit).
    names = sorted(
        (entry.rstrip("/").rsplit("/", 1)[-1] for entry in lake.fs.ls(base, detail=False) if entry.endswith(".json")),
        reverse=True,
    )[: max(limit, 0)]
    return [AuditEvent.from_dict(json.loads(lake.read_bytes(f"{base}/{name}"))) for name in names]


@dataclass(frozen=True)
class CanaryChecks:
    """The latest traffic step's analysis, and where its deployment stands."""

    deployment_id: str | None
    version: str | None
    percent: int | None
    passed: bool
    reason: str
    ts: str
    checks: list[dict[str, Any]] = field(default_factory=list)
    outcome: str | None = None  # the deployment's final event, when it has one among the events read
    current_percent: int | None = None  # the latest traffic_shifted of that deployment


def latest_canary_checks(events_newest_first: Sequence[AuditEvent]) -> CanaryChecks | None:
    """From events (newest first): the latest ``analysis_*`` event and what its deployment did after it."""
    analysis = next((event for event in events_newest_first if event.event in ANALYSIS_EVENTS), None)
    if analysis is None:
        return None
    same = [event for event in events_newest_first if analysis.deployment_id and event.deployment_id == analysis.deployment_id]
    outcome = next((event.event for event in same if event.event in FINAL_EVENTS), None)
    shifted = next((event for event in same if event.event == "traffic_shifted"), None)
    percent = analysis.details.get("percent")
    current = shifted.details.get("percent") if shifted is not None else None
    return CanaryChecks(
        deployment_id=analysis.deployment_id,
        version=analysis.version,
        percent=int(percent) if percent is not None else None,
        passed=analysis.event == "analysis_passed",
        reason=analysis.reason,
        ts=analysis.ts,
        checks=[dict(check) for check in analysis.details.get("checks") or [] if isinstance(check, dict)],
        outcome=outcome,
        current_percent=int(current) if current is not None else None,
    )


@dataclass(frozen=True)
class TrafficShift:
    ts: str
    percent: int


@dataclass(frozen=True)
class CanaryAnalysis:
    """One step's analysis: at which traffic share, whether it passed, and each check's result."""

    ts: str
    percent: int | None
    passed: bool
    reason: str
    checks: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CanaryTimeline:
    """A canary deployment's steps over time (oldest first), as far as the events read go back."""

    deployment_id: str
    version: str | None
    shifts: list[TrafficShift] = field(default_factory=list)
    analyses: list[CanaryAnalysis] = field(default_factory=list)
    outcome: str | None = None
    outcome_ts: str | None = None


def _percent(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def canary_timelines(events_newest_first: Sequence[AuditEvent], limit: int = 2) -> list[CanaryTimeline]:
    """The newest ``limit`` deployments that shifted traffic or analysed a step, newest first."""
    steps = ("traffic_shifted", *ANALYSIS_EVENTS)
    deployment_ids: list[str] = []
    for event in events_newest_first:
        if event.event in steps and event.deployment_id and event.deployment_id not in deployment_ids:
            deployment_ids.append(event.deployment_id)
    timelines = []
    for deployment_id in deployment_ids[: max(limit, 0)]:
        own = [event for event in reversed(events_newest_first) if event.deployment_id == deployment_id]
        final = next((event for event in own if event.event in FINAL_EVENTS), None)
        shifts = [
            TrafficShift(event.ts, percent)
            for event in own
            if event.event == "traffic_shifted" and (percent := _percent(event.details.get("percent"))) is not None
        ]
        analyses = [
            CanaryAnalysis(
                ts=event.ts,
                percent=_percent(event.details.get("percent")),
                passed=event.event == "analysis_passed",
                reason=event.reason,
                checks=[dict(check) for check in event.details.get("checks") or [] if isinstance(check, dict)],
            )
            for event in own
            if event.event in ANALYSIS_EVENTS
        ]
        timelines.append(
            CanaryTimeline(
                deployment_id=deployment_id,
                version=next((event.version for event in reversed(own) if event.version), None),
                shifts=shifts,
                analyses=analyses,
                outcome=final.event if final else None,
                outcome_ts=final.ts if final else None,
            )
        )
    return timelines


@dataclass(frozen=True)
class RouterState:
    backend: str
    namespace: str
    running: bool
    url: str | None = None
    slots: dict[str, dict[str, Any]] = field(default_factory=dict)  # slot -> address, weight, admin, status, server
    servers: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def canary_percent(self) -> float | None:
        """The canary slot's share of the traffic (weights are relative), None without live slots."""
        from mlops_pipeline.deploy.backends import CANARY

        if not self.slots:
            return None
        live = {name: int(slot.get("weight") or 0) for name, slot in self.slots.items() if slot.get("up")}
        total = sum(live.values())
        return round(100.0 * live.get(CANARY, 0) / total, 1) if total else 0.0


def router_state(settings: Settings, deploy: DeploySettings | None = None, timeout: float = 3.0) -> RouterState:
    """The router's slots (weights, health, which server each points at) and the serving servers."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.backends import ROUTER_BACKEND, get_backend
    from mlops_pipeline.deploy.haproxy import HAProxyRuntime

    deploy = deploy or get_settings().deploy
    backend = get_backend(settings, deploy)
    servers = backend.servers()
    endpoint = backend.router()
    listed = [
        {key: value for key, value in server.to_dict().items() if key not in ("model_ref", "sha256", "id")}
        for server in servers
    ]
    if endpoint is None:
        return RouterState(backend=backend.kind, namespace=deploy.namespace, running=False, servers=listed)
    try:
        slots = HAProxyRuntime(endpoint.runtime_address, timeout=timeout).server_state(ROUTER_BACKEND)
    except (OSError, RuntimeError) as exc:  # a router that does not answer is part of the state
        return RouterState(backend.kind, deploy.namespace, True, endpoint.url, servers=listed, error=str(exc))
    for slot in slots.values():
        server = next(
            (s for s in servers if s.running and s.address == slot.get("address") and s.port == slot.get("port")), None
        )
        slot["server"] = server.name if server else None
        slot["version"] = server.version if server else None
    return RouterState(backend.kind, deploy.namespace, True, endpoint.url, slots=dict(slots), servers=listed)
