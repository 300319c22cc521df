"""The approval step of ``mlops_deploy``: its place in the DAG, its adapter with a fake context, and
(integration) a real scheduler running a deployment that a person approves, then one they reject,
answered over the REST API as the UI's Required Actions does."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowFailException

from mlops_pipeline.orchestration import deploy as adapter
from tests.deploy.canary_scenario import model_dirs  # noqa: F401 (fixture)
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


# -- a real scheduler, and a person answering over the REST API -----------------------------------------


def wait_until_parked(stack: Any, run_id: str, timeout: float = 60.0) -> None:
    """Until the scheduler has handled the executor's report of the process that parked the request.

    An answer within that moment (about a second) races it on Airflow 3.3.2: the answer resumes the
    task (queued), then the report of the parked process finishing meets a queued task, and the
    scheduler marks the try up_for_retry, which asks again. A person reading the request is slower;
    a test must wait for the scheduler's "TaskInstance Finished ... state=awaiting_input" line."""
    log = Path(stack.env["MLOPS_RUN_DIR"]) / "logs" / "scheduler.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "TaskInstance Finished" in line and "task_id=approval.request" in line and run_id in line and (
                "state=awaiting_input" in line
            ):
                return
        time.sleep(0.5)
    raise AssertionError(f"the scheduler never saw approval.request of {run_id} parked (see {log})")


@pytest.mark.integration
@pytest.mark.timeout(1800)
def test_a_person_approves_one_promotion_and_rejects_the_next(
    airflow_stack, airflow_databases, mlflow_server, model_dirs, tmp_path  # noqa: F811
) -> None:
    """The scheduler (LocalExecutor) runs each deployment up to the approval request, which waits in
    ``awaiting_input``; the answer comes through the REST endpoint the UI's Required Actions page
    uses. Approve: v2 is promoted. Reject: v3 is rolled back with who rejected, v2 keeps serving."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.registry.aliases import CHAMPION, set_challenger, version_for_alias
    from mlops_pipeline.registry.client import mlflow_client
    from tests.deploy.canary_scenario import Client, deployment_env, register, router_url, running_servers
    from tests.deploy.test_mlops_deploy_dag import SchedulerStack

    scenario = {
        "MLOPS_DEPLOY_STEPS": "50,100",
        "MLOPS_DEPLOY_APPROVAL": "before_promote",
        "MLOPS_DEPLOY_APPROVAL_TIMEOUT_SECONDS": "1800",  # the answers come long before; a timeout would reject
    }
    with deployment_env("local", tmp_path, mlflow_server.uri, **scenario) as env:
        stack = SchedulerStack.beside(airflow_stack, airflow_databases.create(), tmp_path / "airflow", env)
        client, name = mlflow_client(get_settings()), env["MLOPS_MODEL_NAME"]
        assert [register(client, name, model_dirs[kind]) for kind in ("good", "good_resampled", "good")] == ["1", "2", "3"]
        steady = None
        answers: dict[str, Any] = {}
        try:
            stack.start("api-server")  # first: it writes the new home's airflow.cfg
            stack.start("scheduler", "dag-processor")  # no triggerer: Airflow 3.3 parks the request without one
            set_challenger(client, name, "1")
            first = stack.deploy_command("deploy", "--unpause")
            assert first.wait(timeout=600) == 0, first.output() + stack.failed_task_logs()
            assert "success: deployed v1" in first.output()  # a first deployment is direct: nothing to approve
            steady = Client(router_url()).start()

            for version, answer in (("2", "Approve"), ("3", "Reject")):
                set_challenger(client, name, version)
                follower = stack.deploy_command("deploy")
                run_id = stack.wait_for_run()
                stack.wait_for_task(run_id, "approval.request", "awaiting_input", timeout=900)
                wait_until_parked(stack, run_id)
                request = stack.api.required_action("mlops_deploy", run_id, "approval.request")
                assert follower.process.poll() is None  # the run waits for the answer
                response = stack.api.answer_required_action("mlops_deploy", run_id, "approval.request", [answer])
                assert follower.wait(timeout=300) == (0 if answer == "Approve" else 1), follower.output()
                instances = stack.api.task_instances("mlops_deploy", run_id)
                tasks = {t["task_id"]: t["state"] for t in instances}
                assert [t["try_number"] for t in instances if t["task_id"] == "approval.request"] == [1]  # asked once
                answers[version] = {"request": request, "response": response, "tasks": tasks, "output": follower.output()}
        finally:
            if steady is not None:
                steady.finish()
            stack.stop()

        approved, rejected = answers["2"], answers["3"]
        # What the person saw: the subject, every step's checks, the options and the timeout's answer.
        assert approved["request"]["subject"] == f"Promote {name} v2 to @champion?"
        body = approved["request"]["body"]
        assert "| 50 % | passed |" in body and "| 100 % | passed |" in body, body
        assert "### Gate against @champion" in body and "### Why this version was trained" in body
        assert f"{mlflow_server.uri}/#/experiments/" in body and "artifactPath/model_card.md" in body
        assert approved["request"]["options"] == ["Approve", "Reject"] and approved["request"]["defaults"] == ["Reject"]
        assert approved["response"]["chosen_options"] == ["Approve"]

        assert approved["tasks"]["approval.decide"] == "success" and approved["tasks"]["approval.not_required"] == "skipped"
        assert approved["tasks"]["approval.request"] == "success" and approved["tasks"]["approval.approved"] == "success"
        assert approved["tasks"]["promote"] == "success" and approved["tasks"]["rollback"] == "skipped", approved["tasks"]
        assert "success: promoted v2 (previous v1)" in approved["output"]

        assert rejected["tasks"]["approval.request"] == "failed" and rejected["tasks"]["rollback"] == "success"
        assert rejected["tasks"]["promote"] == "upstream_failed", rejected["tasks"]
        who = rejected["response"]["responded_by"]["name"]
        assert str(version_for_alias(client, name, CHAMPION).version) == "2"
        tags = client.get_model_version(name, "3").tags
        assert tags["deploy_status"] == "rolled_back" and tags["deploy_reason"].startswith(f"promotion rejected by {who} at ")
        assert running_servers() == [("stable", "2")]
    assert steady.failures == [], steady.failures[:5]
