"""The performance estimate on simulated scores: calibrated scores (labels drawn with the score's own
probability) must give estimates that match the realised metrics; the binned curve must match the
exact expected curve within its stated bound; streaming in blocks changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mlops_pipeline.monitoring.estimate import (
    PerformanceEstimator,
    estimate_against_labels,
    estimate_error,
    estimate_performance,
    realised_performance,
)


def calibrated(rows: int, a: float, b: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores p ~ Beta(a, b) and labels y ~ Bernoulli(p): calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, rows)
    return p, (rng.uniform(size=rows) < p).astype("int64")


def exact_expected_auc(p: np.ndarray) -> float:
    """The area under the expected ROC curve from the exact scores (tied scores form one step)."""
    p = np.sort(p)[::-1]
    _, starts = np.unique(-p, return_index=True)
    tp, fp = np.add.reduceat(p, starts), np.add.reduceat(1.0 - p, starts)
    return float(np.sum(fp * (np.cumsum(tp) - tp + tp / 2.0)) / (p.sum() * (1.0 - p).sum()))


@pytest.mark.parametrize(("a", "b", "threshold"), [(1.2, 3.5, 0.3), (0.6, 0.6, 0.5), (4.0, 2.0, 0.7), (30.0, 30.0, 0.5)])
def test_on_calibrated_scores_the_estimate_matches_the_realised_metrics(a, b, threshold):
    p, y = calibrated(200_000, a, b, seed=7)
    estimate = estimate_performance(p, threshold)
    predicted = (p >= threshold).astype("int64")
    assert estimate["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=0.005)
    assert estimate["accuracy"] == pytest.approx(float(np.mean(predicted == y)), abs=0.005)
    assert estimate["precision"] == pytest.approx(y[predicted == 1].mean(), abs=0.01)
    assert estimate["recall"] == pytest.approx(predicted[y == 1].mean(), abs=0.01)
    assert estimate["expected_positive_rate"] == pytest.approx(y.mean(), abs=0.005)
    assert estimate["predicted_positive_rate"] == pytest.approx(predicted.mean())
    assert estimate["rows"] == 200_000 and estimate["threshold"] == threshold


@pytest.mark.parametrize(("rows", "a", "b"), [(2000, 1.2, 3.5), (300_000, 1.2, 3.5), (50_000, 40.0, 40.0)])
def test_the_binned_auc_is_the_exact_expected_curves_area_within_the_stated_bound(rows, a, b):
    p, _ = calibrated(rows, a, b, seed=3)
    estimate = estimate_performance(p, 0.5)
    exact = exact_expected_auc(p)
    assert abs(estimate["roc_auc"] - exact) <= estimate["roc_auc_error_bound"]
    assert estimate["roc_auc_error_bound"] < 2e-5  # 1000 bins: far below any realised AUC's noise


def test_fewer_bins_widen_the_bound_and_it_still_holds():
    p, _ = calibrated(100_000, 1.2, 3.5, seed=5)
    coarse = estimate_performance(p, 0.5, bins=10)
    assert coarse["roc_auc_error_bound"] > estimate_performance(p, 0.5)["roc_auc_error_bound"] * 50
    assert abs(coarse["roc_auc"] - exact_expected_auc(p)) <= coarse["roc_auc_error_bound"]


def test_streaming_in_blocks_gives_the_one_pass_result():
    p, _ = calibrated(50_000, 1.2, 3.5, seed=11)
    streamed = PerformanceEstimator(0.3)
    for start in range(0, len(p), 7_001):
        streamed.update(p[start : start + 7_001])
    whole = estimate_performance(p, 0.3)
    result = streamed.result()
    assert result["rows"] == whole["rows"]
    for key in ("roc_auc", "accuracy", "precision", "recall", "f1"):
        assert result[key] == pytest.approx(whole[key], rel=1e-12)


def test_the_expected_roc_curve_sums_p_and_one_minus_p_above_each_threshold():
    p = np.array([0.9, 0.7, 0.7, 0.2, 0.05])
    estimator = PerformanceEstimator(0.5, bins=10)
    estimator.update(p)
    fpr, tpr = estimator.roc_curve()
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, pytest.approx(1.0), pytest.approx(1.0))
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    # The rule p >= 0.7 (edges from 1.0 down: after bins 9, 8, 7): TP = 0.9 + 0.7 + 0.7, FP = 0.1 + 0.3 + 0.3.
    assert tpr[3] == pytest.approx(2.3 / p.sum()) and fpr[3] == pytest.approx(0.7 / (1 - p).sum())
    result = estimator.result()
    assert result["confusion_matrix"] == pytest.approx({"tp": 2.3, "fp": 0.7, "fn": 0.25, "tn": 1.75})
    assert result["accuracy"] == pytest.approx((2.3 + 1.75) / 5)
    assert result["f1"] == pytest.approx(2 * 2.3 / (2 * 2.3 + 0.7 + 0.25))


def test_invalid_probabilities_are_counted_and_left_out():
    result = estimate_performance(np.array([0.2, np.nan, 1.5, -0.1, 0.8, 1.0, 0.0]), 0.5)
    assert (result["rows"], result["invalid"]) == (4, 3)
    assert result["accuracy"] == pytest.approx((0.8 + 1.0 + 0.8 + 1.0) / 4)


def test_no_rows_or_one_expected_class_give_no_auc():
    assert estimate_performance(np.array([]), 0.5)["roc_auc"] is None
    assert estimate_performance(np.array([]), 0.5)["accuracy"] is None
    certain = estimate_performance(np.zeros(100), 0.5)
    assert certain["roc_auc"] is None and certain["accuracy"] == 1.0


@pytest.mark.parametrize(("threshold", "bins"), [(1.5, 1000), (0.5, 0)])
def test_a_bad_threshold_or_grid_is_refused(threshold, bins):
    with pytest.raises(ValueError, match="threshold|bin"):
        PerformanceEstimator(threshold, bins)


def test_uncalibrated_scores_give_a_wrong_estimate():
    """The estimate rests on calibration: the same ranking with overconfident scores (the true
    probability cubed) estimates a different AUC, while the realised AUC is unchanged (same order)."""
    p, y = calibrated(200_000, 1.2, 3.5, seed=13)
    overconfident = p**3
    assert roc_auc_score(y, overconfident) == pytest.approx(roc_auc_score(y, p))
    assert abs(estimate_performance(overconfident, 0.5)["roc_auc"] - roc_auc_score(y, p)) > 0.03


def test_a_changed_concept_is_invisible_to_the_estimate():
    """Labels drawn from another mechanism than the scores say: the realised AUC falls, the estimate
    (a function of the scores alone) does not move."""
    p, y = calibrated(200_000, 1.2, 3.5, seed=17)
    rng = np.random.default_rng(18)
    new_concept = np.clip(0.5 * p + 0.5 * rng.beta(1.2, 3.5, len(p)), 0, 1)
    y_new = (rng.uniform(size=len(p)) < new_concept).astype("int64")
    estimate = estimate_performance(p, 0.5)["roc_auc"]
    assert estimate == pytest.approx(roc_auc_score(y, p), abs=0.005)
    assert estimate - roc_auc_score(y_new, p) > 0.1


def test_estimate_against_labels_reports_both_and_the_error():
    p, y = calibrated(20_000, 1.2, 3.5, seed=19)
    tracked = estimate_against_labels(y, p, 0.3)
    assert tracked["rows"] == 20_000
    assert tracked["realised_roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert tracked["roc_auc_error"] == pytest.approx(tracked["estimated_roc_auc"] - tracked["realised_roc_auc"])
    assert tracked["accuracy_error"] == pytest.approx(tracked["estimated_accuracy"] - tracked["realised_accuracy"])
    assert abs(tracked["roc_auc_error"]) < 0.02
    assert realised_performance([1, 1], [0.2, 0.9], 0.5)["roc_auc"] is None  # one class: undefined
    assert estimate_error({"roc_auc": 0.8, "accuracy": None}, {"roc_auc": 0.75, "accuracy": 0.9}) == {
        "roc_auc_error": pytest.approx(0.05), "accuracy_error": None,
    }
