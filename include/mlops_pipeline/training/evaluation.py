"""Metrics of a binary classifier, and the decision threshold chosen on the valid split."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Metrics where larger is better; the others (log loss, Brier) are losses.
HIGHER_IS_BETTER = ("roc_auc", "pr_auc", "f1", "precision", "recall")


def choose_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The probability cut that maximises F1 on these labels (rounded to 4 decimals, so it reads well)."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, proba)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    if len(thresholds) == 0:
        return 0.5
    best = int(np.argmax(f1))  # the first maximum: the lowest threshold with the best F1
    return float(np.round(thresholds[best], 4))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier score and the thresholded F1/precision/recall."""
    import numpy as np
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y_true = np.asarray(y_true).astype(int)
    proba = np.clip(np.asarray(proba, dtype="float64"), 1e-7, 1 - 1e-7)
    labels = (proba >= threshold).astype(int)
    return {
        "roc_auc": float(roc_auc_score(y_true, proba)),
        "pr_auc": float(average_precision_score(y_true, proba)),
        "log_loss": float(log_loss(y_true, proba, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, proba)),
        "f1": float(f1_score(y_true, labels, zero_division=0)),
        "precision": float(precision_score(y_true, labels, zero_division=0)),
        "recall": float(recall_score(y_true, labels, zero_division=0)),
        "positive_rate": float(labels.mean()),
        "base_rate": float(y_true.mean()),
        "rows": float(len(y_true)),
    }
