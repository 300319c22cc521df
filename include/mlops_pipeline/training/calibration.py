"""Fitting the calibration map of a candidate on the valid split, and measuring calibration error.

Two maps are fitted from the candidate's raw score to the label, both in the format of
:mod:`mlops_pipeline.contracts.calibration`:

* isotonic: a monotone piecewise-linear map (scikit-learn's IsotonicRegression, its thresholds);
* Platt: ``sigmoid(a * logit(raw) + b)``, an unpenalised logistic regression on the raw logit.

Which one is kept is decided by cross-validation on the valid split: it is cut into
``folds`` consecutive blocks (by event time); each method is fitted on the other blocks and
scores the held-out one, and the method with the lower Brier score over all held-out rows wins
(isotonic is flexible and overfits small slices; Platt has two parameters and cannot bend).
The winner is then refitted on the whole valid split. The out-of-fold probabilities also give an
honest "after" for the calibration error on valid; the holdout gives another.

Pure: arrays in, a :class:`CalibrationFit` out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_pipeline.contracts.calibration import ISOTONIC, PLATT, CalibrationError, apply, check

if TYPE_CHECKING:
    import numpy as np

METHODS = (ISOTONIC, PLATT)
ECE_BINS = 10
# The fewest rows of each class the fitting part of a cross-validation fold needs: fewer cannot
# place even a two-parameter sigmoid.
MIN_CLASS_ROWS = 10
_LOGIT_EPSILON = 1e-6  # the clip of contracts.calibration.apply for Platt


class CalibrationFitError(ValueError):
    """No calibration map could be fitted (too few rows of a class, scores not in [0, 1] ...)."""


@dataclass(frozen=True)
class CalibrationFit:
    method: str
    block: dict[str, Any]  # metadata.mlops.calibration
    cv_brier: dict[str, float]  # per method: Brier score of its out-of-fold probabilities
    valid_before: dict[str, float]  # brier, ece of the raw score on valid
    valid_after: dict[str, float]  # brier, ece of the chosen method's out-of-fold probabilities
    folds: int
    notes: tuple[str, ...] = ()

    def report(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "folds": self.folds,
            "cv_brier": dict(self.cv_brier),
            "valid_before": dict(self.valid_before),
            "valid_after_cv": dict(self.valid_after),
            "points": len(self.block.get("x", [])) if self.method == ISOTONIC else 2,
            "notes": list(self.notes),
        }


def expected_calibration_error(labels: Any, proba: Any, bins: int = ECE_BINS) -> float:
    """ECE: over ``bins`` equal-width probability bins, the row-weighted |observed rate - mean probability|."""
    import numpy as np

    y = np.asarray(labels, dtype="float64")
    p = np.clip(np.asarray(proba, dtype="float64"), 0.0, 1.0)
    if len(y) == 0:
        return math.nan
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    observed = np.bincount(index, weights=y, minlength=bins)
    predicted = np.bincount(index, weights=p, minlength=bins)
    filled = counts > 0
    gaps = np.abs(observed[filled] - predicted[filled])  # = count * |rate - mean probability|
    return float(gaps.sum() / len(y))


def calibration_error(labels: Any, proba: Any) -> dict[str, float]:
    import numpy as np

    y = np.asarray(labels, dtype="float64")
    p = np.asarray(proba, dtype="float64")
    return {"brier": float(np.mean((p - y) ** 2)) if len(y) else math.nan, "ece": expected_calibration_error(y, p)}


def fit_isotonic(raw: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(raw, labels)
    x, y = [float(v) for v in model.X_thresholds_], [float(v) for v in model.y_thresholds_]
    if len(x) < 2:
        raise CalibrationFitError(f"isotonic calibration found {len(x)} distinct score(s); a map needs two")
    return _checked({"method": ISOTONIC, "x": x, "y": y})


def fit_platt(raw: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    clipped = np.clip(raw, _LOGIT_EPSILON, 1.0 - _LOGIT_EPSILON)
    logits = np.log(clipped / (1.0 - clipped)).reshape(-1, 1)
    model = LogisticRegression(C=np.inf, max_iter=1000).fit(logits, labels)
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    if not a > 0:
        raise CalibrationFitError(f"Platt calibration has slope {a:.4f}: the raw score does not rank valid rows")
    return _checked({"method": PLATT, "a": a, "b": b})


FITTERS = {ISOTONIC: fit_isotonic, PLATT: fit_platt}


def _checked(block: dict[str, Any]) -> dict[str, Any]:
    """The block as the contract validates it (what serving will read back)."""
    checked = check(block)
    if checked is None:
        raise CalibrationFitError("no calibration block")
    return checked


def _check_inputs(raw: np.ndarray, labels: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (fit, held-out) index pairs of the cross-validation; raises when a fold cannot be fitted."""
    import numpy as np

    if len(raw) != len(labels):
        raise CalibrationFitError(f"{len(raw)} score(s) for {len(labels)} label(s)")
    if not np.all(np.isfinite(raw)) or np.any((raw < 0) | (raw > 1)):
        bad = int(np.sum(~np.isfinite(raw) | (raw < 0) | (raw > 1)))
        raise CalibrationFitError(f"{bad} raw score(s) are not probabilities in [0, 1]")
    if not set(np.unique(labels).tolist()) <= {0, 1}:
        raise CalibrationFitError("labels must be 0/1")
    n = len(raw)
    bounds = [n * k // folds for k in range(folds + 1)]
    pairs = []
    for k in range(folds):
        held = np.arange(bounds[k], bounds[k + 1])
        fit = np.concatenate([np.arange(0, bounds[k]), np.arange(bounds[k + 1], n)])
        positives = int(labels[fit].sum())
        if len(held) == 0 or min(positives, len(fit) - positives) < MIN_CLASS_ROWS:
            raise CalibrationFitError(
                f"the valid split ({n} rows, {int(labels.sum())} of them positive) is too small to cross-validate calibration "
                f"in {folds} blocks: block {k + 1} leaves {positives} positive and {len(fit) - positives} negative "
                f"row(s) to fit on, fewer than {MIN_CLASS_ROWS} of a class"
            )
        pairs.append((fit, held))
    return pairs


def choose_calibration(raw: Any, labels: Any, folds: int) -> CalibrationFit:
    """Fit isotonic and Platt, keep the one with the lower cross-validated Brier score; see the module docstring.

    Raises :class:`CalibrationFitError` when the valid split cannot support it or no method fits."""
    import numpy as np

    raw = np.asarray(raw, dtype="float64")
    labels = np.asarray(labels).astype(int)
    pairs = _check_inputs(raw, labels, folds)
    out_of_fold: dict[str, np.ndarray] = {}
    notes = []
    for method in METHODS:
        proba = np.empty(len(raw))
        try:
            for fit, held in pairs:
                proba[held] = apply(raw[held], FITTERS[method](raw[fit], labels[fit]))
        except (CalibrationFitError, CalibrationError) as exc:
            notes.append(f"{method}: {exc}")
            continue
        if np.all(np.isfinite(proba)):
            out_of_fold[method] = proba
        else:
            notes.append(f"{method}: non-finite probabilities")
    if not out_of_fold:
        raise CalibrationFitError(f"no calibration method fits: {'; '.join(notes)}")
    cv_brier = {method: float(np.mean((proba - labels) ** 2)) for method, proba in out_of_fold.items()}
    method = min(out_of_fold, key=lambda m: (cv_brier[m], METHODS.index(m)))
    try:
        block = FITTERS[method](raw, labels)
    except (CalibrationFitError, CalibrationError) as exc:
        raise CalibrationFitError(f"{method} calibration on the whole valid split failed: {exc}") from exc
    return CalibrationFit(
        method=method,
        block=block,
        cv_brier=cv_brier,
        valid_before=calibration_error(labels, raw),
        valid_after=calibration_error(labels, out_of_fold[method]),
        folds=folds,
        notes=tuple(notes),
    )
