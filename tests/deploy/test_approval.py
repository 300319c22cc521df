"""The approval before promotion: whether to ask, and the request a person answers."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from mlops_pipeline.config import DeploySettings
from mlops_pipeline.deploy.approval import (
    Evidence,
    approval_required,
    gather_evidence,
    mlflow_run_url,
    model_card_url,
    rejection_reason,
    render_request,
)

GATE = {
    "passed": True, "reason": "non-inferior: lower bound -0.0041 above -0.01", "metric": "roc_auc",
    "candidate_score": 0.9123, "champion_score": 0.9087, "champion_version": "3", "floor": 0.65, "margin": 0.01,
    "mode": "non_inferiority", "n": 1200, "positives": 310, "difference": 0.0036, "interval": [-0.0041, 0.0113],
    "method": "delong", "confidence": 0.95, "resamples": None, "seed": None, "notes": [], "status": "passed",
}  # fmt: skip
STEPS = [
    {"passed": True, "percent": 5, "reason": "all checks passed", "checks": [
        {"name": "error_rate", "status": "passed", "detail": "5xx 0.0% vs 0.0%", "value": 0.0, "limit": 0.01},
        {"name": "prediction_shift", "status": "passed", "detail": "PSI 0.031 <= 0.2", "value": 0.031, "limit": 0.2},
    ]},
    {"passed": True, "percent": 100, "reason": "no check had data", "checks": []},
]  # fmt: skip
DRIFT = {
    "trigger_reason": "drift",
    "trigger_window": json.dumps({"ds": "2026-03-04", "end": "2026-03-05T00:00:00+00:00"}),
    "trigger_change_start": "2026-03-01",
    "trigger_report": "file:///lake/monitoring/reports/ds=2026-03-04/report.html",
}


def evidence(**changes: Any) -> Evidence:
    values: dict[str, Any] = {
        "model_name": "churn", "version": "4", "deployment_id": "churn-v4-20260305T010000Z-abc123", "champion": "3",
        "steps": STEPS, "gate": GATE, "trigger": DRIFT,
        "model_card_url": "http://mlflow:5000/#/experiments/1/runs/r4/artifactPath/model_card.md",
        "run_url": "http://mlflow:5000/#/experiments/1/runs/r4",
    }  # fmt: skip
    return Evidence(**{**values, **changes})


def test_approval_is_asked_only_before_promote_and_a_typo_is_an_error() -> None:
    assert approval_required("before_promote") is True
    assert approval_required("off") is False
    with pytest.raises(ValueError, match="'before_promte'"):
        approval_required("before_promte")


def test_the_request_shows_the_gate_every_step_the_drift_decision_and_the_model_card() -> None:
    request = render_request(evidence(), timeout=timedelta(hours=24), timeout_action="reject")
    body = request["body"]

    assert request["subject"] == "Promote churn v4 to @champion?"
    assert "deployment `churn-v4-20260305T010000Z-abc123`; current champion: v3" in body
    # the gate: decision, both scores, the interval, the method and the rows it was decided on
    assert "- Decision: **passed**: non-inferior: lower bound -0.0041 above -0.01" in body
    assert "- roc_auc: candidate 0.9123, champion v3 0.9087 (floor 0.6500)" in body
    assert "- Difference 0.0036, 95% interval [-0.0041, 0.0113], non_inferiority margin 0.0100" in body
    assert "- Method: delong; n = 1200, 310 positives" in body
    # every step's checks, one table row each; a step without checks shows its reason
    assert "| 5 % | passed | error_rate | passed | 5xx 0.0% vs 0.0% |" in body
    assert "| 5 % | passed | prediction_shift | passed | PSI 0.031 <= 0.2 |" in body
    assert "| 100 % | passed | - | - | no check had data |" in body
    # why it was trained: the monitor's decision
    assert "- Trained because: `drift`, asked for by the monitor:" in body
    assert "  - change_start: `2026-03-01`" in body
    assert "  - window: ds `2026-03-04`, end `2026-03-05T00:00:00+00:00`" in body
    assert "  - report: `file:///lake/monitoring/reports/ds=2026-03-04/report.html`" in body
    assert "[model card](http://mlflow:5000/#/experiments/1/runs/r4/artifactPath/model_card.md)" in body
    assert "Without an answer within 24 h it is rolled back (stable keeps serving)." in body


def test_the_request_says_what_is_missing_and_what_a_timeout_does() -> None:
    bare = evidence(gate=None, steps=[], trigger={"trigger_reason": "manual"}, model_card_url=None, run_url=None, champion=None)
    body = render_request(bare, timeout=timedelta(minutes=30), timeout_action="approve")["body"]

    assert "No gate decision is recorded on this version (no `gate_decision` tag)." in body
    assert "No canary step has been analysed." in body
    assert "- Trained because: `manual` (no monitoring decision asked for this training)" in body
    assert "No MLflow UI to link to" in body
    assert "current champion: none" in body
    assert "Without an answer within 30 min it is promoted." in body


def test_a_check_detail_cannot_break_the_table() -> None:
    steps = [{"passed": False, "percent": 5, "reason": "x", "checks": [{"name": "a|b", "status": "failed", "detail": "1\n2"}]}]
    body = render_request(evidence(steps=steps), timeout=timedelta(hours=1), timeout_action="reject")["body"]

    assert "| 5 % | failed | a\\|b | failed | 1 2 |" in body


def test_links_need_an_mlflow_server() -> None:
    assert mlflow_run_url("http://127.0.0.1:5680/", "7", "abc") == "http://127.0.0.1:5680/#/experiments/7/runs/abc"
    assert model_card_url("https://mlflow.example.org", "7", "abc") == (
        "https://mlflow.example.org/#/experiments/7/runs/abc/artifactPath/model_card.md"
    )
    assert model_card_url("file:///tmp/mlruns", "7", "abc") is None
    assert mlflow_run_url("sqlite:///mlflow.db", "7", "abc") is None


def test_the_rejection_reason_names_who_or_the_timeout() -> None:
    assert rejection_reason("ann", "2026-03-05T10:00:00+00:00", timed_out=False) == (
        "promotion rejected by ann at 2026-03-05T10:00:00+00:00"
    )
    assert rejection_reason(None, "2026-03-06T10:00:00+00:00", timed_out=True) == (
        "promotion not approved in time: the approval request timed out at 2026-03-06T10:00:00+00:00"
    )


class FakeClient:
    def __init__(self, version_tags: dict[str, str], run_tags: dict[str, str], run_id: str | None = "r4") -> None:
        self.version = SimpleNamespace(tags=version_tags, run_id=run_id)
        self.run = SimpleNamespace(data=SimpleNamespace(tags=run_tags), info=SimpleNamespace(experiment_id="9"))
        self.asked: list[tuple[str, ...]] = []

    def get_model_version(self, name: str, version: str) -> SimpleNamespace:
        self.asked.append(("version", name, version))
        return self.version

    def get_run(self, run_id: str) -> SimpleNamespace:
        self.asked.append(("run", run_id))
        return self.run


PLAN = {"model_name": "churn", "version": "4", "deployment_id": "churn-v4-x", "champion": "3"}


def test_evidence_comes_from_the_version_and_its_training_run() -> None:
    client = FakeClient({"gate_decision": json.dumps(GATE), "gate_status": "passed"}, {**DRIFT, "winner": "xgboost"})

    found = gather_evidence(client, PLAN, STEPS, "http://127.0.0.1:5680")  # type: ignore[arg-type]

    assert client.asked == [("version", "churn", "4"), ("run", "r4")]
    assert found.gate == GATE and found.steps == STEPS and found.champion == "3"
    assert found.trigger == DRIFT  # only the trigger_* tags
    assert found.model_card_url == "http://127.0.0.1:5680/#/experiments/9/runs/r4/artifactPath/model_card.md"


def test_a_version_without_gate_or_run_still_makes_a_request() -> None:
    found = gather_evidence(FakeClient({}, {}, run_id=None), PLAN, [], "http://127.0.0.1:5680")  # type: ignore[arg-type]

    assert found.gate is None and found.trigger == {} and found.model_card_url is None
    assert "Trained because: `unknown`" in render_request(found, timeout=timedelta(hours=1), timeout_action="reject")["body"]


def test_approval_settings_default_off_and_take_env_values(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (DeploySettings().approval, DeploySettings().approval_timeout_action) == ("off", "reject")
    monkeypatch.setenv("MLOPS_DEPLOY_APPROVAL", "before_promote")
    monkeypatch.setenv("MLOPS_DEPLOY_APPROVAL_TIMEOUT_SECONDS", "600")
    monkeypatch.setenv("MLOPS_DEPLOY_APPROVAL_TIMEOUT_ACTION", "approve")

    settings = DeploySettings()

    assert (settings.approval, settings.approval_timeout_seconds, settings.approval_timeout_action) == (
        "before_promote", 600, "approve"
    )
    monkeypatch.setenv("MLOPS_DEPLOY_APPROVAL", "always")
    with pytest.raises(ValueError, match="approval"):
        DeploySettings()


def test_the_dataset_policy_can_ask_for_approval(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_pipeline.config import SettingsError, get_settings
    from tests.test_config import write_dataset

    for name in [k for k in os.environ if k.startswith("MLOPS_DEPLOY_")]:
        monkeypatch.delenv(name)
    policy = "policy:\n  deploy: {approval: before_promote, approval_timeout_action: approve}\n"
    monkeypatch.setenv("MLOPS_DATASET", write_dataset(tmp_path, policy))
    get_settings.cache_clear()
    try:
        deploy = get_settings().deploy
        assert (deploy.approval, deploy.approval_timeout_action) == ("before_promote", "approve")
        monkeypatch.setenv("MLOPS_DEPLOY_APPROVAL", "off")  # the environment wins over the policy
        get_settings.cache_clear()
        assert get_settings().deploy.approval == "off"
        monkeypatch.delenv("MLOPS_DEPLOY_APPROVAL")
        monkeypatch.setenv("MLOPS_DATASET", write_dataset(tmp_path, "policy:\n  deploy: {approval: maybe}\n"))
        get_settings.cache_clear()
        with pytest.raises(SettingsError, match="policy.deploy.approval"):
            get_settings()
    finally:
        get_settings.cache_clear()
