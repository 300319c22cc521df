"""The gate's rule (pure): the floor, a champion that cannot be scored, the decision as a record."""

from __future__ import annotations

import math

import numpy as np

from mlops_pipeline.registry.gate import GateConfig, GateDecision, compare, decide

CONFIG = GateConfig(metric="roc_auc", floor=0.70, margin=0.02)


def test_without_champion_the_floor_decides():
    assert decide(0.75, CONFIG, n=1000, positives=250).passed
    assert "no @champion yet" in decide(0.75, CONFIG).reason
    below = decide(0.69, CONFIG, n=1000, positives=250)
    assert not below.passed and below.reason == "candidate roc_auc 0.6900 is below the floor 0.7000"


def test_floor_applies_even_when_the_champion_is_worse():
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=2000) < 0.3).astype(int)
    weak = y * 0.5 + rng.normal(size=2000)
    weaker = y * 0.2 + rng.normal(size=2000)
    comparison = compare(y, weak, weaker, CONFIG)
    decision = decide(comparison.candidate_score, CONFIG, comparison=comparison, champion_version="3")
    assert comparison.difference > 0 and not decision.passed and "below the floor" in decision.reason


def test_not_a_number_never_passes():
    assert not decide(math.nan, CONFIG).passed


def test_unscorable_champion_is_explained():
    decision = decide(0.75, CONFIG, champion_version="2", champion_note="champion v2 cannot be scored (no column x)")
    assert decision.passed and "cannot be scored" in decision.reason


def test_decision_round_trips():
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=1500) < 0.3).astype(int)
    scores = y + rng.normal(size=1500)
    comparison = compare(y, scores, scores + rng.normal(scale=0.3, size=1500), CONFIG)
    decision = decide(comparison.candidate_score, CONFIG, comparison=comparison, champion_version="4")
    data = decision.to_dict()
    assert data["status"] == decision.status and data["method"] == "delong" and len(data["interval"]) == 2
    assert GateDecision.from_dict(data) == decision
