"""The gate's rule (pure), and how its decision lands on a real registry."""

from __future__ import annotations

import math

import pytest

from mlops_pipeline.registry.gate import GateConfig, GateDecision, decide

CONFIG = GateConfig(metric="roc_auc", floor=0.70, max_relative_drop=0.01)


def test_without_champion_the_floor_decides():
    assert decide(0.75, CONFIG).passed
    assert "no @champion yet" in decide(0.75, CONFIG).reason
    below = decide(0.69, CONFIG)
    assert not below.passed and below.reason == "candidate roc_auc 0.6900 is below the floor 0.7000"


def test_floor_applies_even_when_the_champion_is_worse():
    decision = decide(0.65, CONFIG, champion_score=0.60, champion_version="3")
    assert not decision.passed and "below the floor" in decision.reason


def test_relative_margin_against_the_champion():
    # required = 0.80 * (1 - 0.01) = 0.792
    assert decide(0.792, CONFIG, champion_score=0.80, champion_version="4").passed
    assert decide(0.81, CONFIG, champion_score=0.80, champion_version="4").passed
    rejected = decide(0.7919, CONFIG, champion_score=0.80, champion_version="4")
    assert not rejected.passed
    assert rejected.required_score == pytest.approx(0.792)
    assert "champion v4 roc_auc 0.8000" in rejected.reason and "(1 - 0.01)" in rejected.reason


def test_not_a_number_never_passes():
    assert not decide(math.nan, CONFIG).passed


def test_unscorable_champion_is_explained():
    decision = decide(0.75, CONFIG, champion_version="2", champion_note="champion v2 cannot be scored (no column x)")
    assert decision.passed and "cannot be scored" in decision.reason


def test_decision_round_trips():
    decision = decide(0.7919, CONFIG, champion_score=0.80, champion_version="4")
    data = decision.to_dict()
    assert data["status"] == "rejected"
    assert GateDecision.from_dict(data) == decision
