"""The A/B test's verdict on labelled rows: a fixed-horizon two-sided Welch test of the Brier score.
The release itself runs on the scheduler in ``tests/e2e/test_release_strategies.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_pipeline.deploy.ab import describe, outcome_test


def arm(seed: int, noise: float, n: int = 3000) -> pd.DataFrame:
    """Rows of one variant: outcomes drawn from the truth, predictions the truth plus ``noise``."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.05, 0.95, n)
    return pd.DataFrame({"probability": np.clip(truth + rng.normal(0, noise, n), 0, 1), "target": (rng.uniform(size=n) < truth).astype(int)})


def test_the_better_variant_wins_and_an_equal_pair_keeps_a() -> None:
    good, poor = arm(1, 0.02), arm(2, 0.3)

    b_wins = outcome_test(poor, good, alpha=0.05, min_labelled=200)
    a_wins = outcome_test(good, poor, alpha=0.05, min_labelled=200)
    equal = outcome_test(arm(3, 0.05), arm(4, 0.05), alpha=0.05, min_labelled=200)

    assert b_wins["winner"] == "B" and b_wins["brier_b"] < b_wins["brier_a"] and b_wins["p_value"] < 0.05
    assert describe(b_wins, "1", "2").startswith("v2 (B) wins: Brier")
    assert a_wins["winner"] == "A" and describe(a_wins, "1", "2").startswith("v1 (A) wins, so it stays")
    assert equal["winner"] is None and equal["status"] == "no_difference", equal
    assert describe(equal, "1", "2").startswith("no significant difference, so v1 (A) stays")
    assert 0 < equal["min_detectable"] < 0.05


def test_too_few_labelled_rows_decide_nothing() -> None:
    outcome = outcome_test(arm(1, 0.02, n=150), arm(2, 0.3), alpha=0.05, min_labelled=200)
    assert outcome["status"] == "insufficient" and outcome["winner"] is None
    assert "150 labelled rows of v1 (A)" in describe(outcome, "1", "2")


def test_equal_variants_are_declared_different_about_alpha_of_the_time() -> None:
    declared = sum(outcome_test(arm(2 * i, 0.05, 400), arm(2 * i + 1, 0.05, 400), alpha=0.05, min_labelled=200)["winner"] is not None for i in range(300))
    assert 0.015 <= declared / 300 <= 0.09  # 0.05 within about 3 standard errors of 300 draws


def test_a_business_metric_the_dataset_names_decides_instead_of_the_brier_score() -> None:
    """Revenue per row: B's customers spend more although B's probabilities are worse; with
    ``ab_outcome`` the metric decides (higher is better), and ``minimize`` turns that round."""
    rng = np.random.default_rng(7)
    a, b = arm(1, 0.02), arm(2, 0.3)
    a["revenue"], b["revenue"] = rng.normal(10.0, 3.0, len(a)), rng.normal(10.6, 3.0, len(b))

    by_brier = outcome_test(a, b, alpha=0.05, min_labelled=200)
    by_revenue = outcome_test(a, b, alpha=0.05, min_labelled=200, metric="revenue")
    by_cost = outcome_test(a, b, alpha=0.05, min_labelled=200, metric="revenue", goal="minimize")

    assert by_brier["winner"] == "A" and by_brier["metric"] == "brier"
    assert by_revenue["winner"] == "B" and by_revenue["mean_b"] > by_revenue["mean_a"] and by_revenue["metric"] == "revenue"
    assert describe(by_revenue, "1", "2").startswith("v2 (B) wins: mean revenue (higher is better)")
    assert by_cost["winner"] == "A" and "lower is better" in describe(by_cost, "1", "2")


def test_an_outcome_column_that_is_missing_or_not_numeric_is_named() -> None:
    import pytest

    a, b = arm(1, 0.02), arm(2, 0.3)
    with pytest.raises(ValueError, match="'revenue' .* is not in A's labelled rows"):
        outcome_test(a, b, alpha=0.05, min_labelled=200, metric="revenue")
    a["revenue"], b["revenue"] = "high", "low"
    with pytest.raises(ValueError, match="'revenue' .* is not numeric"):
        outcome_test(a, b, alpha=0.05, min_labelled=200, metric="revenue")
