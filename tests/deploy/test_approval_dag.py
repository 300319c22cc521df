"""The approval step of ``mlops_deploy``: its place in the DAG and its adapter with a fake context. A
real scheduler running a deployment that a person approves, then one they reject, answered over the
REST API as the UI's Required Actions does, is in ``tests/e2e/test_release_strategies.py``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowFailException

from mlops_pipeline.orchestration import deploy as adapter
from tests.deploy.test_approval import GATE, STEPS
from tests.deploy.test_mlops_deploy_dag import load_dag

PLAN = {
    "deployment_id": "churn-v4-x", "actor": "airflow:mlops_deploy/r1", "mode": "canary", "version": "4",
    "reason": "r", "model_name": "churn", "champion": "3", "steps": [5, 100],
}  # fmt: skip


# -- the DAG's shape ------------------------------------------------------------------------------------
def test_the_approval_sits_between_the_last_step_and_promote(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = load_dag(monkeypatch)
    decide, request = dag.get_task("approval.decide"), dag.get_task("approval.request")
    not_required, joined = dag.get_task("approval.not_required"), dag.get_task("approval.approved")

    assert decide.upstream_task_ids >= {f"step_{p}pct.analyse" for p in (5, 25, 50, 100)}  # every step's checks
    assert decide.downstream_task_ids == {"approval.request", "approval.not_required"}
    assert type(decide).__name__ == "_BranchPythonDecoratedOperator"
    assert isinstance(request, ApprovalOperator)
    assert request.response_timeout == timedelta(days=1) and request.defaults == ["Reject"]  # timeout = roll back
    assert "approval.decide" in request.subject and "approval_request" in request.body  # the branch's evidence
    assert not_required.upstream_task_ids == {"approval.decide", "reconcile"}
    # The join after the branch, and only after it: a direct deployment (canary path skipped) must skip it.
    assert joined.trigger_rule == "none_failed_min_one_success"
    assert joined.upstream_task_ids == {"approval.request", "approval.not_required"}
    assert dag.get_task("promote").upstream_task_ids == {"reconcile", "approval.approved"}
    assert dag.get_task("promote").trigger_rule == "all_success"
    # A rejection fails the request: the rollback, which runs on one failure, undoes the canary.
    assert "approval.request" in dag.get_task("rollback").upstream_task_ids
    assert dag.get_task("rollback").trigger_rule == "one_failed"


def test_the_timeout_and_its_answer_come_from_the_deploy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = load_dag(
        monkeypatch, MLOPS_DEPLOY_APPROVAL_TIMEOUT_SECONDS="90", MLOPS_DEPLOY_APPROVAL_TIMEOUT_ACTION="approve"
    )
    request = dag.get_task("approval.request")

    assert request.response_timeout == timedelta(seconds=90) and request.defaults == ["Approve"]


# -- the adapter, with fakes ----------------------------------------------------------------------------
class FakeTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


class RecordingDeployer:
    def __init__(self) -> None:
        version = SimpleNamespace(tags={"gate_decision": json.dumps(GATE)}, run_id="r4")
        run = SimpleNamespace(data=SimpleNamespace(tags={"trigger_reason": "drift"}), info=SimpleNamespace(experiment_id="2"))
        self.client = SimpleNamespace(get_model_version=lambda name, v: version, get_run=lambda run_id: run)
        self.records: list[tuple[str, str, dict]] = []
        self.rollbacks: list[str | None] = []

    def record(self, event: str, reason: str, plan: Any, **details: Any) -> None:
        self.records.append((event, reason, details))

    def canary_was_started(self, plan: Any) -> bool:
        return True

    def rollback(self, plan: Any, reason: str | None = None) -> dict[str, Any]:
        self.rollbacks.append(reason)
        return {"outcome": "rolled_back", "reason": reason}


@pytest.fixture
def deployer(monkeypatch: pytest.MonkeyPatch) -> RecordingDeployer:
    from mlops_pipeline.config import get_settings

    fake = RecordingDeployer()
    monkeypatch.setattr(adapter, "_deployer", lambda actor: fake)
    for key in ("MLOPS_DEPLOY_APPROVAL", "MLOPS_DEPLOY_APPROVAL_TIMEOUT_SECONDS", "MLOPS_DEPLOY_APPROVAL_TIMEOUT_ACTION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    get_settings.cache_clear()
    yield fake
    get_settings.cache_clear()


def test_approval_off_goes_round_the_request(deployer: RecordingDeployer) -> None:
    ti = FakeTI()

    assert adapter.approval_route(PLAN, STEPS, ti) == "approval.not_required"
    assert ti.pushed == {} and deployer.records == []
    assert adapter.approval_not_required(PLAN)["approval"] == "not_required"


def test_approval_on_asks_with_the_evidence(deployer: RecordingDeployer, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_pipeline.config import get_settings

    monkeypatch.setenv("MLOPS_DEPLOY_APPROVAL", "before_promote")
    get_settings.cache_clear()
    ti = FakeTI()

    assert adapter.approval_route(PLAN, STEPS, ti) == "approval.request"
    request = ti.pushed["approval_request"]
    assert request["subject"] == "Promote churn v4 to @champion?"
    assert "| 5 % | passed | prediction_shift | passed | PSI 0.031 <= 0.2 |" in request["body"]
    assert "- Method: delong; n = 1200, 310 positives" in request["body"]
    assert "http://mlflow.internal:5000/#/experiments/2/runs/r4/artifactPath/model_card.md" in request["body"]
    assert [(event, reason) for event, reason, _ in deployer.records] == [("approval_requested", request["subject"])]


def test_the_runs_approval_param_overrides_the_setting(deployer: RecordingDeployer, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_pipeline.config import get_settings

    assert adapter.approval_route({**PLAN, "approval": "before_promote"}, STEPS, FakeTI()) == "approval.request"
    monkeypatch.setenv("MLOPS_DEPLOY_APPROVAL", "before_promote")
    get_settings.cache_clear()
    off = {**PLAN, "approval": "off"}
    assert adapter.approval_route(off, STEPS, FakeTI()) == "approval.not_required"
    assert adapter.approval_not_required(off)["reason"] == "the run's approval Param is off"


def approval_operator(answer: str = "Reject") -> adapter.PromotionApproval:
    return adapter.PromotionApproval(task_id="request", timeout=timedelta(hours=1), timeout_answer=answer)


def event(chosen: str, *, by: str | None = "ann", timed_out: bool = False) -> dict[str, Any]:
    return {
        "chosen_options": [chosen],
        "params_input": {},
        "responded_at": datetime(2026, 3, 5, 10, tzinfo=UTC),
        "responded_by_user": {"id": by, "name": by} if by else None,
        "timedout": timed_out,
    }


def test_approve_goes_on_to_promote(deployer: RecordingDeployer) -> None:
    ti = FakeTI()
    answer = approval_operator().execute_complete({"ti": ti}, event("Approve"))

    assert answer["chosen_options"] == ["Approve"] and answer["timed_out"] is False and ti.pushed == {}
    outcome = adapter.approval_outcome(PLAN, answer)
    assert outcome["approval"] == "approved" and outcome["reason"] == "approved by ann"
    assert deployer.records == [("promotion_approved", "approved by ann", {"responded_by": "ann", "timed_out": False})]


def test_nobody_asked_is_said_at_the_join(deployer: RecordingDeployer) -> None:
    assert adapter.approval_outcome(PLAN, None) == {"approval": "not_required", "version": "4"}
    assert deployer.records == []


def test_reject_fails_the_request_at_once_and_rollback_says_who(deployer: RecordingDeployer) -> None:
    ti = FakeTI()
    with pytest.raises(AirflowFailException, match="promotion rejected by ann at 2026-03-05T10:00:00"):
        approval_operator().execute_complete({"ti": ti}, event("Reject"))

    rejection = ti.pushed["rejection"]
    assert rejection["responded_by"] == "ann" and rejection["timed_out"] is False
    assert adapter.rollback(PLAN, rejection)["outcome"] == "rolled_back"
    assert deployer.rollbacks == ["promotion rejected by ann at 2026-03-05T10:00:00+00:00"]


def test_a_timeout_takes_the_configured_answer(deployer: RecordingDeployer) -> None:
    ti = FakeTI()
    with pytest.raises(AirflowFailException, match="not approved in time"):
        approval_operator("Reject").execute_complete({"ti": ti}, event("Reject", by=None, timed_out=True))
    assert ti.pushed["rejection"]["timed_out"] is True

    answer = approval_operator("Approve").execute_complete({"ti": FakeTI()}, event("Approve", by=None, timed_out=True))
    assert adapter.approval_outcome(PLAN, answer)["reason"].startswith("approved on timeout")


def test_a_failed_check_still_rolls_back_with_its_own_reason(deployer: RecordingDeployer) -> None:
    adapter.rollback(PLAN, None)

    assert deployer.rollbacks == [None]  # the Deployer takes the failed analysis from the audit log
