"""Calibrated probabilities: the ``calibration`` block of a model's ``metadata.mlops`` contract.

A model's raw score (the booster's or pipeline's probability) becomes the probability every
consumer sees — the threshold, the server's answers, the prediction log, the monitor's estimates —
through one map stored with the model::

    metadata:
      mlops:
        calibration:                 # optional: absent = the raw score is the probability
          method: isotonic           # piecewise-linear through (x, y), x ascending, flat beyond the ends
          x: [0.01, 0.07, ...]
          y: [0.00, 0.05, ...]
        # or
        calibration: {method: platt, a: 1.12, b: -0.31}   # p = sigmoid(a * logit(raw) + b)

Training fits the map on its validation slice and stores it; :func:`apply` is what training's
``predict_proba`` and the model server both call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

ISOTONIC = "isotonic"
PLATT = "platt"
_EPSILON = 1e-6


class CalibrationError(ValueError):
    """A calibration block that cannot be applied (the message names the key)."""


def check(block: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The block, validated (None stays None); raises :class:`CalibrationError` naming the key."""
    if block is None:
        return None
    method = block.get("method")
    if method == ISOTONIC:
        x, y = block.get("x"), block.get("y")
        if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y) or len(x) < 2:
            raise CalibrationError("calibration.x and calibration.y must be lists of the same length (at least 2)")
        if any(b < a for a, b in zip(x, x[1:], strict=False)):
            raise CalibrationError("calibration.x must be ascending")
        if any(not 0.0 <= v <= 1.0 for v in y):
            raise CalibrationError("calibration.y must lie in [0, 1]")
        return {"method": ISOTONIC, "x": [float(v) for v in x], "y": [float(v) for v in y]}
    if method == PLATT:
        try:
            a, b = float(block["a"]), float(block["b"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError("calibration.a and calibration.b must be numbers for method platt") from exc
        if not (math.isfinite(a) and math.isfinite(b)):
            raise CalibrationError("calibration.a and calibration.b must be finite")
        return {"method": PLATT, "a": a, "b": b}
    raise CalibrationError(f"calibration.method must be {ISOTONIC!r} or {PLATT!r}, got {method!r}")


def apply(raw: np.ndarray, block: Mapping[str, Any] | None) -> np.ndarray:
    """Calibrated probabilities for raw scores in [0, 1] (float64; the block as :func:`check` returns it)."""
    return calibrator(block)(raw)


def calibrator(block: Mapping[str, Any] | None) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`apply` with ``block`` bound and its arrays built once, for a caller that applies one map
    to many batches (the model server, per request)."""
    if block is None:
        return _identity
    if block["method"] == ISOTONIC:
        x = np.asarray(block["x"], dtype=np.float64)
        y = np.asarray(block["y"], dtype=np.float64)

        def isotonic(raw: np.ndarray) -> np.ndarray:
            return np.interp(np.asarray(raw, dtype=np.float64), x, y)

        return isotonic
    a, b = float(block["a"]), float(block["b"])

    def platt(raw: np.ndarray) -> np.ndarray:
        # sigmoid(a * logit(p) + b) for p clipped to [eps, 1 - eps], written with as few numpy calls
        # as exact rewrites allow (clip as maximum/minimum, the sign folded into a and b): for the
        # one-row batches the server sees, the calls are the cost.
        p = np.minimum(np.maximum(np.asarray(raw, dtype=np.float64), _EPSILON), 1.0 - _EPSILON)
        return 1.0 / (1.0 + np.exp(np.log(p / (1.0 - p)) * -a - b))

    return platt


def _identity(raw: np.ndarray) -> np.ndarray:
    return np.asarray(raw, dtype=np.float64)
