"""The optional approval before a canary is promoted: whether to ask, and what the request shows.

A person answering the request (Airflow's Required Actions, or the REST API) sees the evidence the
pipeline decided on: the statistical gate against ``@champion`` (interval, method, rows), every
canary step's checks, why the version was trained (the monitor's drift decision when a retrain was
asked for) and the version's model card. :func:`render_request` is pure; :func:`gather_evidence`
reads what it needs from the MLflow registry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from mlops_pipeline.contracts.tags import GATE_DECISION, TRIGGER_REASON

if TYPE_CHECKING:
    from mlflow import MlflowClient

ApprovalMode = Literal["off", "before_promote"]
TimeoutAction = Literal["reject", "approve"]
MODEL_CARD_ARTIFACT = "model_card.md"  # training.recorder logs it on every registered version's run
TRIGGER_TAG_PREFIX = "trigger_"  # the monitor's conf keys on the train run (orchestration.train.extra_tags)


def approval_required(mode: str) -> bool:
    """Does a canary that passed every step wait for a person before it is promoted?"""
    if mode == "before_promote":
        return True
    if mode == "off":
        return False
    raise ValueError(f"deploy approval must be 'off' or 'before_promote', got {mode!r}")


@dataclass(frozen=True)
class Evidence:
    """What a person decides a promotion on."""

    model_name: str
    version: str
    deployment_id: str
    champion: str | None
    steps: list[dict[str, Any]]  # analyse results: passed, reason, percent, checks [{name, status, detail}]
    gate: dict[str, Any] | None  # the version's gate_decision tag (registry.gate.GateDecision.to_dict)
    trigger: dict[str, str] = field(default_factory=dict)  # trigger_* tags of the training run
    model_card_url: str | None = None
    run_url: str | None = None


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    """The run's page in the MLflow UI; None when the tracking URI is not a server (a file store)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def model_card_url(tracking_uri: str, experiment_id: str, run_id: str) -> str | None:
    run_url = mlflow_run_url(tracking_uri, experiment_id, run_id)
    return None if run_url is None else f"{run_url}/artifactPath/{MODEL_CARD_ARTIFACT}"


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cell(text: Any) -> str:
    """Table cells: a ``|`` would end the cell, a newline the row."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _gate_lines(gate: Mapping[str, Any] | None, champion: str | None) -> list[str]:
    if not gate:
        return ["No gate decision is recorded on this version (no `gate_decision` tag)."]
    verdict = "passed" if gate.get("passed") else "rejected"
    metric = gate.get("metric", "score")
    lines = [f"- Decision: **{verdict}**: {gate.get('reason', '-')}"]
    against = gate.get("champion_version") or champion
    score = f"- {metric}: candidate {_number(gate.get('candidate_score'))}"
    if gate.get("champion_score") is not None:
        score += f", champion v{against} {_number(gate.get('champion_score'))}"
    score += f" (floor {_number(gate.get('floor'))})"
    lines.append(score)
    if gate.get("difference") is not None:
        interval = gate.get("interval") or [None, None]
        confidence = gate.get("confidence")
        level = f"{confidence:.0%} " if isinstance(confidence, float) else ""
        lines.append(
            f"- Difference {_number(gate.get('difference'))}, {level}interval "
            f"[{_number(interval[0])}, {_number(interval[1])}], {gate.get('mode', '-')} margin {_number(gate.get('margin'))}"
        )
    method = gate.get("method") or "no paired comparison"
    rows = f"n = {gate['n']}" if gate.get("n") is not None else "n = -"
    if gate.get("positives") is not None:
        rows += f", {gate['positives']} positives"
    resamples = f", {gate['resamples']} resamples" if gate.get("resamples") else ""
    lines.append(f"- Method: {method}{resamples}; {rows}")
    return lines


def _step_lines(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    if not steps:
        return ["No canary step has been analysed."]
    lines = ["| step | result | check | status | detail |", "| --- | --- | --- | --- | --- |"]
    for step in steps:
        percent = {"shadow": "shadow", "ab": "A/B"}.get(str(step.get("stage"))) or f"{step.get('percent', '?')} %"
        result = "passed" if step.get("passed") else "failed"
        checks = step.get("checks") or []
        if not checks:
            lines.append(f"| {percent} | {result} | - | - | {_cell(step.get('reason', '-'))} |")
        for check in checks:
            lines.append(
                f"| {percent} | {result} | {_cell(check.get('name', '-'))} | {_cell(check.get('status', '-'))} "
                f"| {_cell(check.get('detail', '-'))} |"
            )
    return lines


def _trigger_lines(trigger: Mapping[str, str]) -> list[str]:
    reason = trigger.get(TRIGGER_REASON) or "unknown"
    extra = {key.removeprefix(TRIGGER_TAG_PREFIX): value for key, value in trigger.items() if key != TRIGGER_REASON}
    if not extra:
        return [f"- Trained because: `{reason}` (no monitoring decision asked for this training)"]
    lines = [f"- Trained because: `{reason}`, asked for by the monitor:"]
    for key in sorted(extra):
        lines.append(f"  - {key}: {_describe(extra[key])}")
    return lines


def _describe(value: str) -> str:
    """A conf value as the train run stored it (JSON when it was not a string), made readable."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return f"`{value}`"
    if isinstance(parsed, dict):
        return ", ".join(f"{key} `{parsed[key]}`" for key in sorted(parsed))
    return f"`{parsed}`"


def render_request(evidence: Evidence, *, timeout: timedelta, timeout_action: TimeoutAction) -> dict[str, str]:
    """The request's subject and Markdown body."""
    hours = timeout.total_seconds() / 3600
    when = f"{hours:g} h" if hours >= 1 else f"{timeout.total_seconds() / 60:g} min"
    on_timeout = "promoted" if timeout_action == "approve" else "rolled back (stable keeps serving)"
    subject = f"Promote {evidence.model_name} v{evidence.version} to @champion?"
    champion = f"v{evidence.champion}" if evidence.champion else "none"
    links = []
    if evidence.model_card_url:
        links.append(f"[model card]({evidence.model_card_url})")
    if evidence.run_url:
        links.append(f"[training run]({evidence.run_url})")
    body = [
        f"The canary of **{evidence.model_name} v{evidence.version}** passed every traffic step "
        f"(deployment `{evidence.deployment_id}`; current champion: {champion}).",
        "",
        "**Approve** promotes it to `@champion` and retires the current stable server. "
        "**Reject** rolls it back: the canary is removed and stable keeps serving. "
        f"Without an answer within {when} it is {on_timeout}.",
        "",
        "### Gate against @champion",
        "",
        *_gate_lines(evidence.gate, evidence.champion),
        "",
        "### Canary steps",
        "",
        *_step_lines(evidence.steps),
        "",
        "### Why this version was trained",
        "",
        *_trigger_lines(evidence.trigger),
        "",
        "### Model card",
        "",
        " · ".join(links) if links else "No MLflow UI to link to (the tracking URI is not an MLflow server).",
    ]
    return {"subject": subject, "body": "\n".join(body)}


def rejection_reason(responded_by: str | None, responded_at: str | None, *, timed_out: bool) -> str:
    """The rollback reason tagged on the version and written to the audit log."""
    if timed_out:
        return f"promotion not approved in time: the approval request timed out at {responded_at or 'its deadline'}"
    return f"promotion rejected by {responded_by or 'an unnamed user'}" + (f" at {responded_at}" if responded_at else "")


def gather_evidence(
    client: MlflowClient, plan: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], tracking_uri: str
) -> Evidence:
    """The evidence for ``plan``'s version, from the registry: its gate decision, its training run's
    trigger tags and model card."""
    model_name, version = str(plan["model_name"]), str(plan["version"])
    registered = client.get_model_version(model_name, version)
    tags = registered.tags or {}
    gate = json.loads(tags[GATE_DECISION]) if tags.get(GATE_DECISION) else None
    trigger: dict[str, str] = {}
    card = run_url = None
    if registered.run_id:
        run = client.get_run(registered.run_id)
        trigger = {key: value for key, value in run.data.tags.items() if key.startswith(TRIGGER_TAG_PREFIX)}
        card = model_card_url(tracking_uri, run.info.experiment_id, registered.run_id)
        run_url = mlflow_run_url(tracking_uri, run.info.experiment_id, registered.run_id)
    return Evidence(
        model_name=model_name,
        version=version,
        deployment_id=str(plan["deployment_id"]),
        champion=plan.get("champion"),
        steps=[dict(step) for step in steps],
        gate=gate,
        trigger=trigger,
        model_card_url=card,
        run_url=run_url,
    )
