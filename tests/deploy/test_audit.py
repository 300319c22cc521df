"""The audit log: one object per event, read back in the order written, never rewritten."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mlops_pipeline.data.lake import Lake
from mlops_pipeline.deploy.audit import AUDIT_PREFIX, AuditLog


@pytest.fixture
def audit(tmp_path) -> AuditLog:
    return AuditLog(Lake((tmp_path / "lake").as_uri()))


def test_events_come_back_in_the_order_written(audit: AuditLog) -> None:
    for index in range(60):  # many within the same millisecond
        audit.append("traffic_shifted", actor="test", reason=f"step {index}", model_name="churn", version=index)

    events = audit.events()

    assert [event.reason for event in events] == [f"step {index}" for index in range(60)]
    assert [event.ts for event in events] == sorted(event.ts for event in events)
    assert len({event.event_id for event in events}) == 60


def test_each_event_is_its_own_json_object_with_who_what_when_why(audit: AuditLog, tmp_path) -> None:
    audit.append(
        "rolled_back",
        actor="airflow:mlops_deploy/manual__1",
        reason="canary v3 at 5%: prediction shift PSI 4.2 > 0.2",
        model_name="churn",
        version=3,
        deployment_id="churn-v3-x",
        details={"percent": 5, "when": datetime(2026, 1, 1, tzinfo=UTC)},
    )

    files = sorted((tmp_path / "lake" / AUDIT_PREFIX).glob("*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["event"] == "rolled_back" and record["actor"] == "airflow:mlops_deploy/manual__1"
    assert record["version"] == "3" and record["details"] == {"percent": 5, "when": "2026-01-01 00:00:00+00:00"}
    assert datetime.fromisoformat(record["ts"]).tzinfo is not None


def test_filters_by_model_deployment_and_time(audit: AuditLog) -> None:
    audit.append("planned", actor="a", reason="r", model_name="churn", deployment_id="d1")
    audit.append("planned", actor="a", reason="r", model_name="other", deployment_id="d2")
    middle = datetime.now(UTC).isoformat()
    audit.append("promoted", actor="a", reason="r", model_name="churn", deployment_id="d1")

    assert [e.event for e in audit.events(model_name="churn")] == ["planned", "promoted"]
    assert [e.model_name for e in audit.events(deployment_id="d2")] == ["other"]
    assert [e.event for e in audit.events(since=middle)] == ["promoted"]


def test_an_empty_log_reads_as_no_events(audit: AuditLog) -> None:
    assert audit.events() == []


def test_unfinished_writes_are_not_events(audit: AuditLog, tmp_path) -> None:
    audit.append("planned", actor="a", reason="r")
    folder = tmp_path / "lake" / AUDIT_PREFIX
    (folder / "20260101T000000.000000Z-000000-x.json.tmp-abc").write_text("{")

    assert [e.event for e in audit.events()] == ["planned"]
