"""Performance estimated from the served probabilities alone, before any label arrives.

Confidence-based performance estimation (CBPE, as NannyML calls it): when the served probability
``p`` of each row is calibrated, ``p`` *is* ``P(y = 1 | x)``, so every row counts as ``p`` of a
positive and ``1 - p`` of a negative. The expected confusion matrix at the model's threshold ``t``
follows at once (rows with ``p >= t`` are predicted positive)::

    TP = sum(p | p >= t)      FP = sum(1 - p | p >= t)
    FN = sum(p | p <  t)      TN = sum(1 - p | p <  t)

and so do expected accuracy, precision, recall and F1. The expected ROC curve is, at every
threshold ``s``, ``TPR(s) = sum(p | p >= s) / sum(p)`` and ``FPR(s) = sum(1 - p | p >= s) / sum(1 - p)``;
the estimated ROC AUC is the area under it.

What it can and cannot see
    The estimate is as good as the calibration it rests on. Under *covariate shift* (the features
    move, ``P(y | x)`` stays) a calibrated model stays calibrated where it was right, and the
    estimate follows the realised metric: rows moving to regions where the model is less sure
    lower the estimate, before any label says so. Under *concept drift* (``P(y | x)`` itself
    changes) the probabilities are simply wrong and nothing in them says so: the estimate stays
    where it was while the realised metric falls. Only labels show that.

Streaming, and the error bound
    A window can hold millions of rows, so nothing keeps them: :class:`PerformanceEstimator`
    accumulates, per block, the exact confusion-matrix sums at ``t`` and, on a fixed grid of
    ``bins`` equal-width probability bins, each bin's row count ``n_b`` and sum of ``p``. The
    curve is then exact at every bin edge; inside a bin the order of the rows is unknown, and
    treating them as tied (a straight segment) can only *under*-state the area, by at most half
    the pairs' probability gaps::

        0 <= AUC(exact curve) - AUC(binned) <= w * sum_b n_b (n_b - 1) / (4 * P * N),   w = 1 / bins

    with ``P = sum(p)`` and ``N = sum(1 - p)``. The reported value is the middle of that interval
    and ``roc_auc_error_bound`` its half-width: the area under the exact expected curve lies within
    ``roc_auc +/- roc_auc_error_bound``. The bound hardly depends on the number of rows, only on how
    they spread over the bins: with 1,000 bins it is about ``1e-6`` for probabilities spread like a
    churn model's (2,000 rows or a million alike), far below the sampling noise of any realised
    AUC; it grows only when most rows share a few bins. Accuracy and the confusion matrix are exact.

Cost: one ``bincount`` pair and two masked sums per block, ``O(rows)``; memory is two arrays of
``bins`` numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

GRID_BINS = 1000


class PerformanceEstimator:
    """Expected ROC AUC and confusion matrix of a stream of calibrated probabilities.

    Feed blocks with :meth:`update`, read :meth:`result`. Values that are missing or outside
    ``[0, 1]`` are counted as ``invalid`` and left out."""

    def __init__(self, threshold: float, bins: int = GRID_BINS):
        import numpy as np

        if bins < 1:
            raise ValueError(f"an estimate needs at least one probability bin, got bins={bins}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"the decision threshold must lie in [0, 1], got {threshold}")
        self.threshold = float(threshold)
        self.bins = int(bins)
        self.counts = np.zeros(self.bins, dtype="int64")
        self.sums = np.zeros(self.bins, dtype="float64")
        self.rows = 0
        self.invalid = 0
        # Exact expected confusion matrix at the threshold.
        self.tp = self.fp = self.fn = self.tn = 0.0
        self.predicted_positive = 0

    def update(self, probabilities: Any) -> None:
        import numpy as np

        values = np.asarray(probabilities, dtype="float64")
        valid = values[(values >= 0.0) & (values <= 1.0)]  # NaN compares False: left out too
        self.invalid += int(values.size - valid.size)
        if not valid.size:
            return
        self.rows += int(valid.size)
        index = np.minimum((valid * self.bins).astype("int64"), self.bins - 1)
        self.counts += np.bincount(index, minlength=self.bins)
        self.sums += np.bincount(index, weights=valid, minlength=self.bins)
        positive = valid >= self.threshold
        predicted = int(np.count_nonzero(positive))
        above = float(valid[positive].sum())
        below = float(valid.sum()) - above
        self.tp += above
        self.fp += predicted - above
        self.fn += below
        self.tn += (valid.size - predicted) - below
        self.predicted_positive += predicted

    def roc_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The expected ROC curve at the bin edges, from (0, 0) to (1, 1): expected FPR and TPR of the
        rule ``p >= edge`` for every edge from above 1 down to 0 (empty arrays without both classes)."""
        import numpy as np

        positives, negatives = self._classes()
        if positives <= 0 or negatives <= 0:
            return np.array([]), np.array([])
        tp = np.concatenate([[0.0], np.cumsum(self.sums[::-1])])
        fp = np.concatenate([[0.0], np.cumsum((self.counts - self.sums)[::-1])])
        return fp / negatives, tp / positives

    def roc_auc(self) -> tuple[float | None, float]:
        """The area under the expected ROC curve and its error bound (see the module docstring)."""
        import numpy as np

        positives, negatives = self._classes()
        if positives <= 0 or negatives <= 0:
            return None, 0.0
        tp_bin = self.sums[::-1]  # from the highest bin down
        fp_bin = (self.counts - self.sums)[::-1]
        tp_before = np.cumsum(tp_bin) - tp_bin
        binned = float(np.sum(fp_bin * (tp_before + tp_bin / 2.0))) / (positives * negatives)
        counts = self.counts.astype("float64")
        gap = float(np.sum(counts * (counts - 1.0))) / (4.0 * self.bins * positives * negatives)
        return min(binned + gap / 2.0, 1.0), gap / 2.0

    def result(self) -> dict[str, Any]:
        """The estimate: ROC AUC (with its bound), accuracy, precision, recall, F1 at the threshold,
        expected and predicted positive rates; metrics are None where undefined (no rows, one class)."""
        roc_auc, bound = self.roc_auc()
        n = self.rows
        positives, _ = self._classes()
        return {
            "rows": n,
            "invalid": self.invalid,
            "threshold": self.threshold,
            "bins": self.bins,
            "roc_auc": roc_auc,
            "roc_auc_error_bound": bound,
            "accuracy": _ratio(self.tp + self.tn, n),
            "precision": _ratio(self.tp, self.tp + self.fp),
            "recall": _ratio(self.tp, self.tp + self.fn),
            "f1": _ratio(2.0 * self.tp, 2.0 * self.tp + self.fp + self.fn),
            "expected_positive_rate": _ratio(positives, n),
            "predicted_positive_rate": _ratio(self.predicted_positive, n),
            "confusion_matrix": {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn},
        }

    def _classes(self) -> tuple[float, float]:
        positives = float(self.sums.sum())
        return positives, float(self.rows) - positives


def estimate_performance(probabilities: Any, threshold: float, bins: int = GRID_BINS) -> dict[str, Any]:
    """:meth:`PerformanceEstimator.result` of one array of calibrated probabilities."""
    estimator = PerformanceEstimator(threshold, bins)
    estimator.update(probabilities)
    return estimator.result()


def realised_performance(labels: Any, probabilities: Any, threshold: float) -> dict[str, Any]:
    """ROC AUC and accuracy of labelled predictions (the numbers an estimate is compared with);
    ROC AUC is None with labels of one class."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels).astype("int64")
    p = np.asarray(probabilities, dtype="float64")
    rows = int(y.size)
    return {
        "rows": rows,
        "roc_auc": float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None,
        "accuracy": float(np.mean((p >= threshold).astype("int64") == y)) if rows else None,
        "base_rate": float(y.mean()) if rows else None,
    }


def estimate_error(estimated: Mapping[str, Any], realised: Mapping[str, Any]) -> dict[str, float | None]:
    """Estimate minus realised, per metric, on the same rows (positive: the estimate was too hopeful)."""
    errors: dict[str, float | None] = {}
    for metric in ("roc_auc", "accuracy"):
        a, b = estimated.get(metric), realised.get(metric)
        errors[f"{metric}_error"] = None if a is None or b is None else float(a) - float(b)
    return errors


def estimate_against_labels(labels: Any, probabilities: Any, threshold: float, bins: int = GRID_BINS) -> dict[str, Any]:
    """The estimate and the realised numbers on the same labelled rows, and the estimate's error
    (``roc_auc_error``, ``accuracy_error``: estimate minus realised)."""
    estimated = estimate_performance(probabilities, threshold, bins)
    realised = realised_performance(labels, probabilities, threshold)
    return {
        "rows": realised["rows"],
        "estimated_roc_auc": estimated["roc_auc"],
        "estimated_accuracy": estimated["accuracy"],
        "realised_roc_auc": realised["roc_auc"],
        "realised_accuracy": realised["accuracy"],
        **estimate_error(estimated, realised),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    if denominator <= 0:
        return None
    value = numerator / denominator
    return value if math.isfinite(value) else None
