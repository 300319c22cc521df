"""An A/B test between the serving version (A) and a new one (B): each entity is served by one of
them for the whole test, and the outcome decides which stays.

**Assignment.** HAProxy hashes the ``X-Entity-Id`` header a client sends (the customer, the
account) onto its servers by their weights (consistent hashing), so B serves ``ab_split`` % of the
entities and one entity always sees one variant. Requests without the header are spread by the
weights request by request, as in a canary.

**Outcome.** The label, when it arrives: each variant's rows are joined to the lake's validated
partitions on the dataset's id and event time, and scored by their Brier score (the squared error
of the predicted probability; lower is better).

**The test** is fixed-horizon, so its error rates are the stated ones: it runs once, when each
variant has ``ab_samples`` labelled rows (at the earliest after ``ab_seconds``), or when
``ab_max_seconds`` end with fewer. A two-sided Welch t-test on the per-row Brier scores at
``quality_alpha``: an equal pair is declared different that often, and the result states the
smallest difference the test finds with 80 % power at the rows it had. B wins when it is better
at that level and becomes ``@champion``; when A is better, or neither is, A stays and B is rolled
back (a new version has to earn the change). With fewer than ``min_labelled`` labelled rows a
variant, there is no outcome to judge, and ``insufficient_traffic`` decides (rollback by default).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

POWER = 0.8


def outcome_test(a: pd.DataFrame, b: pd.DataFrame, *, alpha: float, min_labelled: int) -> dict[str, Any]:
    """A and B's labelled rows (``probability``, ``target``) compared: ``winner`` is "A", "B" or None."""
    import numpy as np
    from scipy import stats

    from mlops_pipeline.monitoring.labels import TARGET

    result: dict[str, Any] = {"rows_a": len(a), "rows_b": len(b), "alpha": alpha, "winner": None}
    if len(a) < min_labelled or len(b) < min_labelled:
        return {**result, "status": "insufficient"}
    brier = [
        (frame["probability"].to_numpy(dtype=np.float64) - frame[TARGET].to_numpy(dtype=np.float64)) ** 2 for frame in (a, b)
    ]
    mean_a, mean_b = float(brier[0].mean()), float(brier[1].mean())
    test = stats.ttest_ind(brier[1], brier[0], equal_var=False)
    p_value = float(test.pvalue) if np.isfinite(test.pvalue) else 1.0
    if p_value < alpha:
        result["winner"] = "B" if mean_b < mean_a else "A"
    se = math.sqrt(float(brier[0].var(ddof=1)) / len(a) + float(brier[1].var(ddof=1)) / len(b))
    z = stats.norm.ppf
    return {
        **result,
        "status": "decided" if result["winner"] else "no_difference",
        "brier_a": round(mean_a, 5),
        "brier_b": round(mean_b, 5),
        "p_value": round(p_value, 6),
        "min_detectable": round(float((z(1 - alpha / 2) + z(POWER)) * se), 5),
    }


def describe(outcome: dict[str, Any], a: str, b: str) -> str:
    """The outcome in words, with its numbers."""
    if outcome["status"] == "insufficient":
        return f"{outcome['rows_a']} labelled rows of v{a} (A) and {outcome['rows_b']} of v{b} (B); the test needs enough of both"
    p = "p<1e-6" if outcome["p_value"] < 1e-6 else f"p={outcome['p_value']:.3g}"
    numbers = (
        f"Brier {outcome['brier_b']} for v{b} (B, {outcome['rows_b']} labelled rows) vs {outcome['brier_a']} for v{a} "
        f"(A, {outcome['rows_a']}); two-sided Welch t-test {p} at alpha {outcome['alpha']}, detects {outcome['min_detectable']} "
        f"with {POWER:.0%} power"
    )
    if outcome["winner"] == "B":
        return f"v{b} (B) wins: {numbers}"
    if outcome["winner"] == "A":
        return f"v{a} (A) wins, so it stays: {numbers}"
    return f"no significant difference, so v{a} (A) stays: {numbers}"
