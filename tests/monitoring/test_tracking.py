"""What each window's monitoring run gets as metrics: the estimate, the quality on labelled days with
the estimate on the same rows beside it, and (later) the realised performance of its own rows."""

from __future__ import annotations

import pytest

from mlops_pipeline.monitoring.tracking import headline_metrics, realised_metrics

TRACKED = {
    "rows": 800, "estimated_roc_auc": 0.78, "estimated_accuracy": 0.8, "realised_roc_auc": 0.75,
    "realised_accuracy": 0.79, "roc_auc_error": 0.03, "accuracy_error": 0.01,
}  # fmt: skip


def test_headline_metrics_carry_the_estimate_and_the_labelled_days_beside_it():
    summary = {
        "drift": {"rows": 2000, "drift_share": 0.1, "drifted_features": ["a"], "features": {"a": {"value": 0.2}}},
        "estimate": {"rows": 1990, "roc_auc": 0.77, "accuracy": 0.81, "roc_auc_error_bound": 1e-6, "precision": None},
        "quality": {"rows": 800, "metrics": {"roc_auc": 0.75, "accuracy": 0.79}, "estimate": TRACKED},
    }
    metrics = headline_metrics(summary)
    assert metrics["estimated_rows"] == 1990 and metrics["estimated_roc_auc"] == 0.77 and metrics["estimated_accuracy"] == 0.81
    assert metrics["estimated_roc_auc_error_bound"] == 1e-6 and "estimated_precision" not in metrics
    assert (metrics["quality.roc_auc"], metrics["quality.accuracy"], metrics["quality.estimated_roc_auc"]) == (0.75, 0.79, 0.78)
    assert metrics["quality.estimate_error_roc_auc"] == pytest.approx(0.03)
    assert "realised_roc_auc" not in metrics  # the window's own rows have no labels yet


def test_a_window_without_an_estimate_logs_none():
    metrics = headline_metrics({"drift": {"rows": 0}, "quality": {"rows": 0}})
    assert not any(name.startswith("estimated") for name in metrics)


def test_realised_metrics_of_a_windows_own_rows():
    assert realised_metrics(TRACKED) == {
        "realised_rows": 800, "realised_roc_auc": 0.75, "realised_accuracy": 0.79,
        "estimate_error_roc_auc": 0.03, "estimate_error_accuracy": 0.01,
    }  # fmt: skip
    assert realised_metrics({**TRACKED, "realised_roc_auc": None, "roc_auc_error": None}).keys() == {
        "realised_rows", "realised_accuracy", "estimate_error_accuracy",
    }  # fmt: skip
