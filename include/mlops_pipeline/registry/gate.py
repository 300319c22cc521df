"""The champion/challenger gate: may a freshly registered version become ``@challenger``?

The candidate and the current ``@champion`` are scored on the same rows: the candidate's holdout,
the most recent labelled data of its window. The decision rests on the *paired* difference
candidate - champion on those rows and its confidence interval, not on two point scores: on a
holdout of a couple of thousand rows the standard error of a ROC AUC near 0.76 is about 0.016, so
"within 1 % of the champion" is a coin flip. The interval is

* DeLong's for ROC AUC (the exact asymptotic variance of two correlated AUCs on the same rows;
  DeLong, DeLong & Clarke-Pearson 1988, in Sun & Xu's fast form), or
* a paired bootstrap over rows for the other metrics (``resamples`` and ``seed`` recorded).

The candidate passes when its score reaches the absolute ``floor`` and

* ``non_inferiority`` (the default): the interval's lower bound is at least ``-margin``: it is not
  worse than the champion by more than the margin, with the stated confidence; or
* ``superiority``: the lower bound is above 0.

Too little evidence is a rejection that says so: fewer than ``min_rows`` rows, fewer than
``min_class_rows`` of either class, or an interval whose half-width exceeds the margin (then not even
a copy of the champion could be shown non-inferior). Without a champion the floor alone decides.

MLflow's ``validate_evaluation_results`` compares point metrics against absolute and relative
thresholds; it has no notion of the uncertainty of either score, which is what this adds.

A passing version gets ``@challenger``; a failing one stays registered, tagged ``rejected=true``
with a ``rejection_reason``, and no alias moves. The decision (n, the interval, the method) is
recorded on the version's ``gate_decision`` tag, so running the gate again returns the recorded
decision instead of deciding twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_pipeline.contracts.tags import GATE_DECISION, GATE_STATUS, REJECTION_REASON
from mlops_pipeline.contracts.tags import REJECTED as REJECTED_TAG
from mlops_pipeline.registry.aliases import set_challenger

if TYPE_CHECKING:
    import numpy as np
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mlops_pipeline.config import RegistrySettings

GATE_STATUS_TAG = GATE_STATUS
GATE_DECISION_TAG = GATE_DECISION
PASSED = "passed"
REJECTED = "rejected"
NON_INFERIORITY = "non_inferiority"
SUPERIORITY = "superiority"


@dataclass(frozen=True)
class GateConfig:
    metric: str = "roc_auc"
    floor: float = 0.70
    margin: float = 0.02
    mode: str = NON_INFERIORITY
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 42
    min_rows: int = 200
    min_class_rows: int = 20

    @classmethod
    def from_settings(cls, registry: RegistrySettings) -> GateConfig:
        """The ``MLOPS_REGISTRY_GATE_*`` settings (and the dataset's ``policy.gate``)."""
        return cls(
            metric=registry.gate_metric, floor=registry.gate_floor, margin=registry.gate_margin, mode=registry.gate_mode,
            confidence=registry.gate_confidence, resamples=registry.gate_resamples, seed=registry.gate_seed,
            min_rows=registry.gate_min_rows, min_class_rows=registry.gate_min_class_rows,
        )  # fmt: skip

    def __post_init__(self) -> None:
        if self.mode not in (NON_INFERIORITY, SUPERIORITY):
            raise ValueError(f"gate mode must be {NON_INFERIORITY!r} or {SUPERIORITY!r}, got {self.mode!r}")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"gate confidence must be in (0.5, 1), got {self.confidence}")


@dataclass(frozen=True)
class Comparison:
    """The paired evidence: both scores on the same rows and the interval of their difference."""

    n: int
    positives: int
    candidate_score: float
    champion_score: float
    difference: float
    low: float
    high: float
    method: str  # delong | paired_bootstrap
    confidence: float
    resamples: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    metric: str
    candidate_score: float
    floor: float
    margin: float = 0.0
    mode: str = NON_INFERIORITY
    champion_version: str | None = None
    champion_score: float | None = None
    n: int | None = None
    positives: int | None = None
    difference: float | None = None
    interval: list[float] | None = None
    method: str | None = None
    confidence: float | None = None
    resamples: int | None = None
    seed: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return PASSED if self.passed else REJECTED

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateDecision:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


# --- the statistics ---------------------------------------------------------------------------------


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _midranks(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values, method="average")


def delong(y: np.ndarray, first: np.ndarray, second: np.ndarray) -> tuple[float, float, float]:
    """AUC of ``first``, AUC of ``second`` and the variance of their difference on the same rows
    (DeLong's structural components, computed with midranks as in Sun & Xu 2014)."""
    import numpy as np

    y = np.asarray(y).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    aucs, v10, v01 = [], [], []
    for scores in (np.asarray(first, dtype=float), np.asarray(second, dtype=float)):
        pos, neg = scores[y], scores[~y]
        tx, ty, tz = _midranks(pos), _midranks(neg), _midranks(np.concatenate([pos, neg]))
        aucs.append(float((tz[:positives].sum() - positives * (positives + 1) / 2) / (positives * negatives)))
        v10.append((tz[:positives] - tx) / negatives)
        v01.append(1.0 - (tz[positives:] - ty) / positives)
    s10 = np.cov(np.vstack(v10))
    s01 = np.cov(np.vstack(v01))
    covariance = s10 / positives + s01 / negatives
    variance = float(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    return aucs[0], aucs[1], max(variance, 0.0)


def compare(
    y: Any,
    candidate: Any,
    champion: Any,
    config: GateConfig,
    metric: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> Comparison:
    """Candidate vs champion on the same labelled rows: DeLong for ROC AUC, else a paired bootstrap
    of ``metric(y, scores)``."""
    import numpy as np

    y = np.asarray(y).astype(int)
    candidate, champion = np.asarray(candidate, dtype=float), np.asarray(champion, dtype=float)
    n, positives = len(y), int(y.sum())
    z = _z(config.confidence)
    if config.metric == "roc_auc" and metric is None:
        first, second, variance = delong(y, candidate, champion)
        difference = first - second
        half = z * math.sqrt(variance)
        return Comparison(n, positives, first, second, difference, difference - half, difference + half, "delong", config.confidence)
    if metric is None:
        raise ValueError(f"no metric function for gate metric {config.metric!r}")
    rng = np.random.default_rng(config.seed)
    first, second = metric(y, candidate), metric(y, champion)
    differences = []
    for _ in range(config.resamples):
        rows = rng.integers(0, n, n)
        if y[rows].min() == y[rows].max():  # a resample with one class has no score
            continue
        differences.append(metric(y[rows], candidate[rows]) - metric(y[rows], champion[rows]))
    tail = (1 - config.confidence) / 2
    low, high = (float(v) for v in np.quantile(differences, [tail, 1 - tail]))
    return Comparison(
        n, positives, float(first), float(second), float(first - second), low, high, "paired_bootstrap",
        config.confidence, config.resamples, config.seed,
    )


# --- the rule ----------------------------------------------------------------------------------------


def decide(
    candidate_score: float,
    config: GateConfig,
    *,
    comparison: Comparison | None = None,
    champion_version: str | None = None,
    champion_note: str | None = None,
    n: int | None = None,
    positives: int | None = None,
) -> GateDecision:
    """Pure decision. ``comparison`` is the paired evidence against the champion (None: no champion
    to compare with, ``champion_note`` says why)."""
    metric = config.metric
    base: dict[str, Any] = {
        "metric": metric, "candidate_score": candidate_score, "floor": config.floor, "margin": config.margin,
        "mode": config.mode, "champion_version": champion_version, "n": n, "positives": positives,
    }  # fmt: skip
    if comparison is not None:
        base.update(
            champion_score=comparison.champion_score, n=comparison.n, positives=comparison.positives,
            difference=comparison.difference, interval=[comparison.low, comparison.high], method=comparison.method,
            confidence=comparison.confidence, resamples=comparison.resamples, seed=comparison.seed,
        )  # fmt: skip

    def decision(passed: bool, reason: str) -> GateDecision:
        return GateDecision(passed=passed, reason=reason, **base)

    rows = base["n"]
    if not math.isfinite(candidate_score):
        return decision(False, f"candidate {metric} is not a number ({candidate_score})")
    if rows is not None and (rows < config.min_rows or min(base["positives"] or 0, rows - (base["positives"] or 0)) < config.min_class_rows):
        return decision(
            False,
            f"too few rows to decide: {rows} holdout rows with {base['positives']} positives (the gate needs "
            f"{config.min_rows} rows and {config.min_class_rows} of each class)",
        )
    if candidate_score < config.floor:
        return decision(False, f"candidate {metric} {candidate_score:.4f} is below the floor {config.floor:.4f}")
    if comparison is None:
        why = champion_note or "no @champion yet"
        return decision(True, f"candidate {metric} {candidate_score:.4f} reaches the floor {config.floor:.4f}; {why}")

    c = comparison
    evidence = (
        f"candidate - champion v{champion_version} {metric} = {c.difference:+.4f}, {c.confidence:.0%} interval "
        f"[{c.low:+.4f}, {c.high:+.4f}] ({c.method}, n={c.n})"
    )
    half_width = (c.high - c.low) / 2
    if not (math.isfinite(c.low) and math.isfinite(c.high)):
        return decision(False, f"no interval for the difference: {evidence}")
    if config.mode == NON_INFERIORITY:
        if c.low >= -config.margin:
            return decision(True, f"non-inferior: {evidence}; lower bound >= -{config.margin:g}")
        if half_width > config.margin:
            return decision(
                False,
                f"interval too wide to decide: {evidence}; its half-width {half_width:.4f} exceeds the margin "
                f"{config.margin:g}, so more holdout rows are needed",
            )
        return decision(False, f"worse than the champion beyond the margin: {evidence}; lower bound < -{config.margin:g}")
    if c.low > 0:
        return decision(True, f"superior: {evidence}; lower bound > 0")
    return decision(False, f"not shown superior: {evidence}; lower bound <= 0")


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
        client.set_model_version_tag(model_name, version, REJECTED_TAG, "true")
        client.set_model_version_tag(model_name, version, REJECTION_REASON, decision.reason[:5000])
    client.set_model_version_tag(model_name, version, GATE_DECISION_TAG, json.dumps(decision.to_dict(), sort_keys=True))
    client.set_model_version_tag(model_name, version, GATE_STATUS_TAG, decision.status)
