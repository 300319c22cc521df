"""Deployment state for the view: the audit log's tail, the latest canary checks, the router."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_pipeline.deploy.audit import AuditLog
from mlops_pipeline.ui.deployment import RouterState, latest_canary_checks, recent_events, router_state

CHECKS = [
    {"name": "errors", "status": "passed", "detail": "5xx rate 0.0000 vs 0.0000", "value": 0.0, "limit": 0.01},
    {"name": "latency", "status": "passed", "detail": "p95 12 ms vs 11 ms", "value": 12.0, "limit": 61.0},
    {"name": "prediction_shift", "status": "insufficient", "detail": "120 rows < 200", "value": None, "limit": 0.2},
]


def write_rollout(audit: AuditLog, deployment_id: str, version: str, *, finished: bool) -> None:
    common = {"actor": "airflow:mlops_deploy/manual__1", "model_name": "churn", "version": version, "deployment_id": deployment_id}
    audit.append("deployment_planned", reason=f"canary of v{version} against the champion v1", **common)
    audit.append("canary_started", reason="canary server is ready, at 0% of the traffic", **common)
    for percent in (5, 25):
        audit.append("traffic_shifted", reason=f"{percent}% of the traffic", details={"percent": percent}, **common)
        audit.append("analysis_passed", reason=f"canary v{version} at {percent}%: all checks passed", details={"percent": percent, "checks": CHECKS}, **common)
    if finished:
        audit.append("promoted", reason=f"v{version} passed every traffic step", **common)


def test_recent_events_are_the_newest_first(lake) -> None:
    audit = AuditLog(lake)
    write_rollout(audit, "churn-v2-a", "2", finished=True)
    write_rollout(audit, "churn-v3-b", "3", finished=False)

    events = recent_events(lake, limit=4)

    assert [e.event for e in events] == ["analysis_passed", "traffic_shifted", "analysis_passed", "traffic_shifted"]
    assert all(e.deployment_id == "churn-v3-b" for e in events)
    assert [e.event_id for e in recent_events(lake, limit=100)] == [e.event_id for e in reversed(audit.events())]


def test_an_empty_audit_log(lake) -> None:
    assert recent_events(lake) == []
    assert latest_canary_checks([]) is None


def test_latest_canary_checks_of_a_running_and_of_a_finished_rollout(lake) -> None:
    audit = AuditLog(lake)
    write_rollout(audit, "churn-v2-a", "2", finished=True)
    finished = latest_canary_checks(recent_events(lake))
    assert finished is not None
    assert (finished.version, finished.percent, finished.passed, finished.outcome) == ("2", 25, True, "promoted")
    assert [c["name"] for c in finished.checks] == ["errors", "latency", "prediction_shift"]

    write_rollout(audit, "churn-v3-b", "3", finished=False)
    audit.append("traffic_shifted", actor="a", reason="50%", version="3", deployment_id="churn-v3-b", details={"percent": 50})
    running = latest_canary_checks(recent_events(lake))
    assert running is not None
    assert (running.deployment_id, running.percent, running.current_percent, running.outcome) == ("churn-v3-b", 25, 50, None)


def test_canary_share_from_the_live_weights() -> None:
    up = {"weight": 75, "up": True}
    assert RouterState("local", "ns", True, slots={"stable": up, "canary": {"weight": 25, "up": True}}).canary_percent == 25.0
    assert RouterState("local", "ns", True, slots={"stable": up, "canary": {"weight": 25, "up": False}}).canary_percent == 0.0
    assert RouterState("local", "ns", False).canary_percent is None


def test_no_router_running_is_a_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_pipeline.config import DeploySettings, Settings

    monkeypatch.setenv("MLOPS_RUN_DIR", str(tmp_path / "run"))
    state = router_state(Settings(deploy_backend="local"), DeploySettings(namespace="ui-none"))

    assert (state.backend, state.namespace, state.running, state.slots, state.error) == ("local", "ui-none", False, {}, None)


def test_canary_timelines_are_the_newest_deployments_steps_oldest_first(lake) -> None:
    from mlops_pipeline.ui.deployment import canary_timelines

    audit = AuditLog(lake)
    write_rollout(audit, "churn-v2-a", "2", finished=True)
    write_rollout(audit, "churn-v3-b", "3", finished=False)
    common = {"actor": "airflow:mlops_deploy/manual__2", "model_name": "churn", "version": "3", "deployment_id": "churn-v3-b"}
    failed = [{"name": "latency", "status": "failed", "detail": "p95 90 ms > 62 ms", "value": 90.0, "limit": 62.0}]
    audit.append("traffic_shifted", reason="50% of the traffic", details={"percent": 50}, **common)
    audit.append("analysis_failed", reason="canary v3 at 50%: latency", details={"percent": 50, "checks": failed}, **common)
    audit.append("rolled_back", reason="latency at 50%", **common)

    newest, older = canary_timelines(recent_events(lake, limit=100))

    assert (newest.deployment_id, newest.version, newest.outcome) == ("churn-v3-b", "3", "rolled_back")
    assert [shift.percent for shift in newest.shifts] == [5, 25, 50]
    assert [(a.percent, a.passed) for a in newest.analyses] == [(5, True), (25, True), (50, False)]
    assert newest.analyses[2].checks == failed and newest.analyses[0].checks == CHECKS
    assert newest.outcome_ts is not None and newest.shifts[0].ts < newest.analyses[0].ts < newest.outcome_ts
    assert (older.deployment_id, older.outcome, [s.percent for s in older.shifts]) == ("churn-v2-a", "promoted", [5, 25])
    assert [t.deployment_id for t in canary_timelines(recent_events(lake, limit=100), limit=1)] == ["churn-v3-b"]
    # Events with no traffic step (a blue-green switch, a first deployment) make no timeline.
    assert canary_timelines([e for e in recent_events(lake, limit=100) if e.event == "deployment_planned"]) == []
