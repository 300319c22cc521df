"""The statistical gate: its interval covers the true paired difference at the nominal rate, an
identical candidate passes non-inferiority, a clearly worse one is rejected, too little evidence says so."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from mlops_pipeline.registry.gate import GateConfig, compare, decide, delong

CONFIG = GateConfig(metric="roc_auc", floor=0.70, margin=0.02)


def binormal_pair(rng: np.random.Generator, n: int, shift_a: float, shift_b: float, rho: float = 0.7, prevalence: float = 0.3):
    """Labels and two correlated model scores; within each class a score is N(shift * y, 1), so the
    population ROC AUC of a model is Phi(shift / sqrt(2)) whatever the correlation between the models."""
    y = (rng.uniform(size=n) < prevalence).astype(int)
    shared = rng.normal(size=n)
    noise = math.sqrt(1 - rho**2)
    a = shift_a * y + rho * shared + noise * rng.normal(size=n)
    b = shift_b * y + rho * shared + noise * rng.normal(size=n)
    return y, a, b


def true_auc(shift: float) -> float:
    from statistics import NormalDist

    return NormalDist().cdf(shift / math.sqrt(2))


def test_delong_aucs_are_the_usual_aucs():
    y, a, b = binormal_pair(np.random.default_rng(1), 1500, 1.2, 1.0)
    auc_a, auc_b, variance = delong(y, a, b)
    assert auc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert auc_b == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert 0 < variance < 0.01


def test_the_interval_covers_the_true_difference_at_its_nominal_rate():
    # 200 draws with a known population difference; a 95 % interval must cover it 95 % +- 3 points.
    rng = np.random.default_rng(20261201)
    truth = true_auc(1.2) - true_auc(1.0)
    covered = 0
    for _ in range(200):
        y, a, b = binormal_pair(rng, 2000, 1.2, 1.0)
        result = compare(y, a, b, CONFIG)
        covered += result.low <= truth <= result.high
    assert 0.92 <= covered / 200 <= 0.98, (covered, truth)


def test_a_candidate_identical_to_the_champion_passes_non_inferiority():
    y, a, _ = binormal_pair(np.random.default_rng(2), 3000, 1.1, 1.1)
    comparison = compare(y, a, a.copy(), CONFIG)
    decision = decide(comparison.candidate_score, CONFIG, comparison=comparison, champion_version="1")
    assert decision.passed and decision.difference == 0 and decision.interval == [0.0, 0.0]
    assert decision.method == "delong" and decision.n == 3000 and "non-inferior" in decision.reason


def test_a_candidate_005_worse_on_5000_rows_is_rejected():
    # champion AUC 0.80, candidate 0.75 (shifts from Phi^-1(AUC) * sqrt(2))
    y, candidate, champion = binormal_pair(np.random.default_rng(3), 5000, 0.954, 1.190)
    comparison = compare(y, candidate, champion, CONFIG)
    assert comparison.difference == pytest.approx(-0.05, abs=0.015)
    decision = decide(comparison.candidate_score, CONFIG, comparison=comparison, champion_version="4")
    assert not decision.passed and "worse than the champion beyond the margin" in decision.reason
    assert decision.interval is not None and decision.interval[1] < -0.02
    assert "champion v4" in decision.reason and "n=5000" in decision.reason


def test_too_few_rows_say_so():
    y, a, b = binormal_pair(np.random.default_rng(4), 120, 1.2, 1.2)
    comparison = compare(y, a, b, CONFIG)
    decision = decide(comparison.candidate_score, CONFIG, comparison=comparison, champion_version="2")
    assert not decision.passed and decision.reason.startswith("too few rows to decide: 120 holdout rows")


def test_an_interval_wider_than_the_margin_cannot_decide():
    config = GateConfig(metric="roc_auc", floor=0.5, margin=0.01, min_rows=100, min_class_rows=10)
    y, a, b = binormal_pair(np.random.default_rng(5), 400, 1.0, 1.0, rho=0.0)
    comparison = compare(y, a, b, config)
    decision = decide(comparison.candidate_score, config, comparison=comparison, champion_version="2")
    if comparison.low < -config.margin:
        assert not decision.passed and "interval too wide to decide" in decision.reason
    else:  # the draw happened to be narrow and favourable: then it passes for the stated reason
        assert decision.passed


def test_superiority_needs_a_lower_bound_above_zero():
    config = GateConfig(metric="roc_auc", floor=0.6, margin=0.02, mode="superiority")
    y, better, champion = binormal_pair(np.random.default_rng(6), 4000, 1.4, 1.0)
    comparison = compare(y, better, champion, config)
    assert decide(comparison.candidate_score, config, comparison=comparison, champion_version="1").passed
    same = compare(y, champion, champion.copy(), config)
    assert not decide(same.candidate_score, config, comparison=same, champion_version="1").passed


def test_other_metrics_use_a_seeded_paired_bootstrap():
    config = GateConfig(metric="pr_auc", floor=0.3, margin=0.03, resamples=300, seed=7)
    y, a, b = binormal_pair(np.random.default_rng(8), 1500, 1.2, 1.0)
    first = compare(y, a, b, config, metric=average_precision_score)
    again = compare(y, a, b, config, metric=average_precision_score)
    assert first == again and first.method == "paired_bootstrap" and first.resamples == 300 and first.seed == 7
    assert first.low < first.difference < first.high
    assert first.candidate_score == pytest.approx(average_precision_score(y, a))


def test_the_floor_applies_first_and_no_champion_leaves_it_alone():
    assert not decide(0.65, CONFIG, n=1000, positives=300).passed
    alone = decide(0.75, CONFIG, n=1000, positives=300)
    assert alone.passed and "no @champion yet" in alone.reason
    assert not decide(math.nan, CONFIG).passed
