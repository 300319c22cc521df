"""The population stability index, one implementation for the canary check and the monitor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FLOOR = 1e-4  # a bin empty on one side counts as very unlikely rather than impossible


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, floor: float = FLOOR) -> float:
    """PSI of ``actual`` against ``expected``: counts over the same bins.

    ``sum((a - e) * ln(a / e))`` over the bins' proportions, each floored at ``floor``."""
    expected_counts = np.asarray(expected, dtype=np.float64)
    actual_counts = np.asarray(actual, dtype=np.float64)
    if expected_counts.shape != actual_counts.shape:
        raise ValueError(f"PSI needs the same bins on both sides, got {len(expected_counts)} and {len(actual_counts)}")
    if expected_counts.sum() <= 0 or actual_counts.sum() <= 0:
        raise ValueError("PSI needs observations on both sides")
    e = np.maximum(expected_counts / expected_counts.sum(), floor)
    a = np.maximum(actual_counts / actual_counts.sum(), floor)
    return float(np.sum((a - e) * np.log(a / e)))
