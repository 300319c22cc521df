"""The champion/challenger gate: may a freshly registered version become ``@challenger``?

Both the candidate and the current ``@champion`` are scored on the same holdout (by the caller).
The candidate passes when

* its score is at least the absolute ``floor``, and
* with a champion: its score is at least ``champion_score * (1 - max_relative_drop)``.

Without a champion the floor alone decides. A passing version gets ``@challenger``; a failing one
stays registered, tagged ``rejected=true`` with a ``rejection_reason``, and no alias moves. The
decision is recorded on the version (``gate_*`` tags), so running the gate again returns the
recorded decision instead of deciding twice.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlops_pipeline.registry.aliases import set_challenger

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

GATE_STATUS_TAG = "gate_status"
GATE_DECISION_TAG = "gate_decision"
PASSED = "passed"
REJECTED = "rejected"


@dataclass(frozen=True)
class GateConfig:
    metric: str = "roc_auc"
    floor: float = 0.70
    max_relative_drop: float = 0.01


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    metric: str
    candidate_score: float
    floor: float
    max_relative_drop: float
    champion_version: str | None = None
    champion_score: float | None = None
    required_score: float | None = None

    @property
    def status(self) -> str:
        return PASSED if self.passed else REJECTED

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateDecision:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def decide(
    candidate_score: float,
    config: GateConfig,
    *,
    champion_score: float | None = None,
    champion_version: str | None = None,
    champion_note: str | None = None,
) -> GateDecision:
    """Pure decision from the scores; ``champion_note`` explains a champion that could not be scored."""
    metric = config.metric

    def decision(passed: bool, reason: str, required: float | None = None) -> GateDecision:
        return GateDecision(
            passed=passed,
            reason=reason,
            metric=metric,
            candidate_score=candidate_score,
            floor=config.floor,
            max_relative_drop=config.max_relative_drop,
            champion_version=champion_version,
            champion_score=champion_score,
            required_score=required,
        )

    if not math.isfinite(candidate_score):
        return decision(False, f"candidate {metric} is not a number ({candidate_score})")
    if candidate_score < config.floor:
        return decision(False, f"candidate {metric} {candidate_score:.4f} is below the floor {config.floor:.4f}")
    if champion_score is None:
        why = champion_note or "no @champion yet"
        return decision(True, f"candidate {metric} {candidate_score:.4f} reaches the floor {config.floor:.4f}; {why}")
    required = champion_score * (1.0 - config.max_relative_drop)
    versus = f"{required:.4f} = champion v{champion_version} {metric} {champion_score:.4f} * (1 - {config.max_relative_drop:g})"
    if candidate_score < required:
        return decision(False, f"candidate {metric} {candidate_score:.4f} is below {versus}", required)
    return decision(
        True, f"candidate {metric} {candidate_score:.4f} reaches the floor {config.floor:.4f} and {versus}", required
    )


def recorded_decision(version: ModelVersion) -> GateDecision | None:
    """The decision an earlier gate run stored on ``version``, if any."""
    tags = version.tags or {}
    if tags.get(GATE_STATUS_TAG) not in (PASSED, REJECTED) or GATE_DECISION_TAG not in tags:
        return None
    return GateDecision.from_dict(json.loads(tags[GATE_DECISION_TAG]))


def record_decision(client: MlflowClient, model_name: str, version: str, decision: GateDecision) -> None:
    """Apply the decision: ``@challenger`` on a pass; ``rejected`` tags on a failure (no alias moves).

    The alias is set before the status tag, so a crash in between is healed by running the gate
    again (the version has no recorded status yet, the decision is the same, the alias is set again).
    """
    if decision.passed:
        set_challenger(client, model_name, version)
    else:
        client.set_model_version_tag(model_name, version, "rejected", "true")
        client.set_model_version_tag(model_name, version, "rejection_reason", decision.reason)
    client.set_model_version_tag(model_name, version, GATE_DECISION_TAG, json.dumps(decision.to_dict(), sort_keys=True))
    client.set_model_version_tag(model_name, version, GATE_STATUS_TAG, decision.status)

