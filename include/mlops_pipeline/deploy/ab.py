"""An A/B test between the serving version (A) and a new one (B): each entity is served by one of
them for the whole test, and the outcome decides which stays.

**Assignment.** HAProxy hashes the ``X-Entity-Id`` header a client sends (the customer, the
account) onto its servers by their weights (consistent hashing), so B serves ``ab_split`` % of the
entities and one entity always sees one variant. Requests without the header are spread by the
weights request by request, as in a canary.

**Outcome.** The label, when it arrives: each variant's rows are joined to the lake's validated
partitions on the dataset's id and event time, and scored by their Brier score (the squared error
of the predicted probability; lower is better). Or a business metric: ``ab_outcome`` names a
numeric column of those rows (revenue, say), compared as it is, higher better unless
``ab_outcome_goal`` is ``minimize``.

**The test** is fixed-horizon, so its error rates are the stated ones: it runs once, when each
variant has ``ab_samples`` labelled rows (at the earliest after ``ab_seconds``), or when
``ab_max_seconds`` end with fewer. A two-sided Welch t-test on the per-row Brier scores at
``quality_alpha`` (on the per-row outcome values when ``ab_outcome`` is set): an equal pair is
declared different that often, and the result states the
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


BRIER = "brier"


def outcome_test(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    alpha: float,
    min_labelled: int,
    metric: str | None = None,
    goal: str = "maximize",
) -> dict[str, Any]:
    """A and B's labelled rows (``probability``, ``target``, and the ``metric`` column when one is
    named) compared: ``winner`` is "A", "B" or None. Without ``metric`` the per-row Brier score
    (lower is better); with it, the column's values (higher is better, or lower with ``goal``
    "minimize")."""
    import numpy as np
    from scipy import stats

    from mlops_pipeline.monitoring.labels import TARGET

    name = metric or BRIER
    result: dict[str, Any] = {"rows_a": len(a), "rows_b": len(b), "alpha": alpha, "winner": None, "metric": name}
    if len(a) < min_labelled or len(b) < min_labelled:
        return {**result, "status": "insufficient"}
    if metric:
        for variant, frame in (("A", a), ("B", b)):
            if metric not in frame.columns:
                raise ValueError(f"the A/B outcome column {metric!r} (MLOPS_DEPLOY_AB_OUTCOME) is not in {variant}'s labelled rows")
            if not pd_numeric(frame[metric]):
                raise ValueError(f"the A/B outcome column {metric!r} (MLOPS_DEPLOY_AB_OUTCOME) is not numeric: {frame[metric].dtype}")
        values = [frame[metric].to_numpy(dtype=np.float64) for frame in (a, b)]
        values = [v[np.isfinite(v)] for v in values]
        lower_is_better = goal == "minimize"
    else:
        values = [
            (frame["probability"].to_numpy(dtype=np.float64) - frame[TARGET].to_numpy(dtype=np.float64)) ** 2
            for frame in (a, b)
        ]
        lower_is_better = True
    mean_a, mean_b = float(values[0].mean()), float(values[1].mean())
    test = stats.ttest_ind(values[1], values[0], equal_var=False)
    p_value = float(test.pvalue) if np.isfinite(test.pvalue) else 1.0
    if p_value < alpha:
        result["winner"] = "B" if (mean_b < mean_a) == lower_is_better else "A"
    se = math.sqrt(float(values[0].var(ddof=1)) / len(values[0]) + float(values[1].var(ddof=1)) / len(values[1]))
    z = stats.norm.ppf
    means = {"brier_a": round(mean_a, 5), "brier_b": round(mean_b, 5)} if not metric else {
        "mean_a": round(mean_a, 5), "mean_b": round(mean_b, 5), "goal": goal,
    }  # fmt: skip
    return {
        **result,
        **means,
        "status": "decided" if result["winner"] else "no_difference",
        "p_value": round(p_value, 6),
        "min_detectable": round(float((z(1 - alpha / 2) + z(POWER)) * se), 5),
    }


def pd_numeric(values: Any) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return bool(is_numeric_dtype(values) and not is_bool_dtype(values))


def describe(outcome: dict[str, Any], a: str, b: str) -> str:
    """The outcome in words, with its numbers."""
    if outcome["status"] == "insufficient":
        return f"{outcome['rows_a']} labelled rows of v{a} (A) and {outcome['rows_b']} of v{b} (B); the test needs enough of both"
    p = "p<1e-6" if outcome["p_value"] < 1e-6 else f"p={outcome['p_value']:.3g}"
    if outcome.get("metric", BRIER) == BRIER:
        what, mean_b, mean_a = "Brier", outcome["brier_b"], outcome["brier_a"]
    else:
        better = "higher" if outcome.get("goal", "maximize") == "maximize" else "lower"
        what, mean_b, mean_a = f"mean {outcome['metric']} ({better} is better)", outcome["mean_b"], outcome["mean_a"]
    numbers = (
        f"{what} {mean_b} for v{b} (B, {outcome['rows_b']} labelled rows) vs {mean_a} for v{a} "
        f"(A, {outcome['rows_a']}); two-sided Welch t-test {p} at alpha {outcome['alpha']}, detects {outcome['min_detectable']} "
        f"with {POWER:.0%} power"
    )
    if outcome["winner"] == "B":
        return f"v{b} (B) wins: {numbers}"
    if outcome["winner"] == "A":
        return f"v{a} (A) wins, so it stays: {numbers}"
    return f"no significant difference, so v{a} (A) stays: {numbers}"
