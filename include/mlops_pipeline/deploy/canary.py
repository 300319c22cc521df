"""Canary analysis: stable and canary compared on the same traffic. Pure functions, no I/O.

A :class:`Sample` is what one serving slot has counted so far: the router's view (HAProxy's
per-server response and error counters) and the server's own (its Prometheus histograms of request
latency and predicted probability). Counters only grow, so the traffic of a time window is the
difference of two samples (:func:`delta`). At each traffic step the canary's window (since the step
began) is compared with the stable's window since the canary started:

- **errors**: canary 5xx rate (5xx answers, failed responses and connections, as the router saw
  them, or as the server counted them when that is more) at most ``max_5xx_rate_increase`` above
  the stable's;
- **latency**: canary p95 at most ``max_p95_ratio`` times the stable's, or within ``p95_slack_ms``;
- **prediction shift**: the population stability index (:func:`psi`) of the two probability
  histograms at most ``max_psi`` (0.1 is usually read as "no shift", above 0.25 as "a large one")
  above the shift the offline holdout predicted between the two versions (``expected_psi``, from
  :func:`expected_shift` at the training gate): a version retrained because the data changed is
  meant to predict differently, by about as much as the holdout showed, and no more.

A check without enough data is *insufficient*. At the end of the longest bake window a step with an
insufficient check fails (``insufficient_traffic`` ``rollback`` or ``hold``, which waits longer
first): no promotion without evidence. ``proceed`` (skip what lacks data) must be set explicitly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

LATENCY_METRIC = "mlops_serving_request_latency_seconds"
PROBABILITY_METRIC = "mlops_serving_prediction_probability"
REQUESTS_METRIC = "mlops_serving_requests_total"
SCORING_ENDPOINTS = ("predict", "invocations")
ROUTER_ERROR_COUNTERS = ("hrsp_5xx", "eresp", "econ")
ROUTER_RESPONSE_COUNTERS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")

# The servers' probability histogram buckets (upper bounds; mlops_serving.metrics.PROBABILITY_BUCKETS and +Inf).
PROBABILITY_BOUNDS: tuple[float, ...] = (*(round(0.05 * i, 2) for i in range(1, 21)), math.inf)

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# ---------------------------------------------------------------------------------------------
# samples
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """Cumulative counters of one slot at one moment (JSON-able for XCom: :meth:`to_dict`)."""

    server_id: str = ""
    version: str = ""
    taken_at: float = 0.0
    requests: float = 0.0  # responses the router got from this server
    errors: float = 0.0  # 5xx, failed responses and connections, as the router saw them
    served_requests: float = 0.0  # scoring requests the server counted
    served_errors: float = 0.0  # ... that it answered with a 5xx
    latency_bounds: list[float] = field(default_factory=list)  # histogram upper bounds (seconds, +Inf last)
    latency_counts: list[float] = field(default_factory=list)  # cumulative counts per bound
    probability_bounds: list[float] = field(default_factory=list)
    probability_counts: list[float] = field(default_factory=list)

    @property
    def rows(self) -> float:
        """Predicted rows (the probability histogram's total)."""
        return self.probability_counts[-1] if self.probability_counts else 0.0

    @property
    def error_count(self) -> float:
        return max(self.errors, self.served_errors)

    @property
    def request_count(self) -> float:
        return max(self.requests, self.served_requests)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (the ``+Inf`` bucket bound as the string ``"+Inf"``: XCom has no infinity)."""
        data = asdict(self)
        for key in ("latency_bounds", "probability_bounds"):
            data[key] = ["+Inf" if math.isinf(bound) else bound for bound in data[key]]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sample:
        known = set(cls.__dataclass_fields__)
        values = {key: value for key, value in data.items() if key in known}
        for key in ("latency_bounds", "probability_bounds"):
            if key in values:
                values[key] = [float(bound) for bound in values[key]]  # float("+Inf") is inf
        return cls(**values)


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """``(name, labels, value)`` of every sample line of a Prometheus text exposition."""
    samples = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        name, _, labels_text, value = match.group(1), match.group(2), match.group(3), match.group(4)
        try:
            number = float(value)
        except ValueError:
            continue
        labels = {key: val.replace('\\"', '"').replace("\\\\", "\\") for key, val in _LABEL.findall(labels_text or "")}
        samples.append((name, labels, number))
    return samples


def _histogram(
    samples: Iterable[tuple[str, dict[str, str], float]], metric: str, endpoints: Sequence[str] | None = None
) -> tuple[list[float], list[float]]:
    """Cumulative bucket counts of ``metric`` summed over its series (``endpoints`` filters by label)."""
    buckets: dict[float, float] = {}
    for name, labels, value in samples:
        if name != f"{metric}_bucket" or "le" not in labels:
            continue
        if endpoints is not None and labels.get("endpoint") not in endpoints:
            continue
        bound = math.inf if labels["le"] in ("+Inf", "Inf", "inf") else float(labels["le"])
        buckets[bound] = buckets.get(bound, 0.0) + value
    bounds = sorted(buckets)
    return bounds, [buckets[bound] for bound in bounds]


def server_counters(metrics_text: str) -> dict[str, Any]:
    """The fields of a :class:`Sample` that come from a serving container's ``/metrics``."""
    samples = parse_prometheus(metrics_text)
    served = errors = 0.0
    for name, labels, value in samples:
        if name == REQUESTS_METRIC and labels.get("endpoint") in SCORING_ENDPOINTS:
            served += value
            if labels.get("status", "").startswith("5"):
                errors += value
    latency_bounds, latency_counts = _histogram(samples, LATENCY_METRIC, SCORING_ENDPOINTS)
    probability_bounds, probability_counts = _histogram(samples, PROBABILITY_METRIC)
    return {
        "served_requests": served,
        "served_errors": errors,
        "latency_bounds": latency_bounds,
        "latency_counts": latency_counts,
        "probability_bounds": probability_bounds,
        "probability_counts": probability_counts,
    }


def router_counters(stats_row: Mapping[str, object] | None) -> dict[str, float]:
    """The fields of a :class:`Sample` that come from HAProxy's ``show stat`` row of a slot."""
    row = stats_row or {}

    def total(keys: Sequence[str]) -> float:
        return float(sum(value for key in keys if isinstance(value := row.get(key), int | float)))

    return {"requests": total(ROUTER_RESPONSE_COUNTERS), "errors": total(ROUTER_ERROR_COUNTERS)}


def delta(now: Sample, then: Sample | None) -> Sample:
    """The traffic between two samples of one slot.

    Counters of another server (the slot was pointed elsewhere) or counters that went down (a
    restart) make ``then`` meaningless: everything ``now`` counted belongs to the window.
    """
    if then is None or then.server_id != now.server_id or not _counters_grew(now, then):
        return replace(now)
    return replace(
        now,
        requests=now.requests - then.requests,
        errors=now.errors - then.errors,
        served_requests=now.served_requests - then.served_requests,
        served_errors=now.served_errors - then.served_errors,
        latency_counts=_minus(now.latency_counts, now.latency_bounds, then.latency_counts, then.latency_bounds),
        probability_counts=_minus(
            now.probability_counts, now.probability_bounds, then.probability_counts, then.probability_bounds
        ),
    )


def _counters_grew(now: Sample, then: Sample) -> bool:
    pairs = [
        (now.requests, then.requests),
        (now.served_requests, then.served_requests),
        (now.rows, then.rows),
        (now.latency_counts[-1] if now.latency_counts else 0.0, then.latency_counts[-1] if then.latency_counts else 0.0),
    ]
    return all(a >= b for a, b in pairs)


def _minus(counts: list[float], bounds: list[float], old_counts: list[float], old_bounds: list[float]) -> list[float]:
    old = dict(zip(old_bounds, old_counts, strict=False))
    return [max(count - old.get(bound, 0.0), 0.0) for bound, count in zip(bounds, counts, strict=False)]


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def histogram_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket; None without observations."""
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    if not bounds or not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in zip(bounds, cumulative, strict=False):
        if count >= rank:
            if math.isinf(bound):  # beyond the last finite bucket: its bound is the best estimate
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    return previous_bound


def bin_counts(cumulative: Sequence[float]) -> list[float]:
    """Per-bucket counts from cumulative ones."""
    return [max(count - previous, 0.0) for previous, count in zip([0.0, *cumulative[:-1]], cumulative, strict=False)]


def coarsen(counts: Sequence[float], bins: int) -> list[float]:
    """Merge adjacent bins into ``bins`` groups (as even as the input allows)."""
    if bins >= len(counts):
        return list(counts)
    edges = [round(i * len(counts) / bins) for i in range(bins + 1)]
    return [float(sum(counts[edges[i] : edges[i + 1]])) for i in range(bins)]


def probability_counts(probabilities: Sequence[float] | Any) -> list[float]:
    """Cumulative counts of ``probabilities`` over the servers' buckets, as their histogram reports them."""
    import numpy as np

    index = np.searchsorted(np.asarray(PROBABILITY_BOUNDS), np.asarray(probabilities, dtype=np.float64), side="left")
    return np.cumsum(np.bincount(index, minlength=len(PROBABILITY_BOUNDS))).astype(float).tolist()


def expected_shift(stable: Sequence[float] | Any, candidate: Sequence[float] | Any, bins: int) -> float:
    """The prediction shift (PSI) between two versions' probabilities on the same rows, binned the way
    the canary check bins the servers' histograms: what a canary of ``candidate`` should show."""
    return psi(coarsen(bin_counts(probability_counts(stable)), bins), coarsen(bin_counts(probability_counts(candidate)), bins))


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of ``actual`` against ``expected`` (counts over the same bins): the
    project's one implementation (:mod:`mlops_pipeline.contracts.psi`, the monitor's too)."""
    from mlops_pipeline.contracts.psi import psi as contract_psi

    return contract_psi(expected, actual)


# ---------------------------------------------------------------------------------------------
# the verdict
# ---------------------------------------------------------------------------------------------
CheckStatus = Literal["passed", "failed", "insufficient"]


@dataclass(frozen=True)
class Thresholds:
    min_requests: int = 50
    min_rows: int = 200
    max_5xx_rate_increase: float = 0.01
    max_p95_ratio: float = 1.5
    p95_slack_ms: float = 50.0
    max_psi: float = 0.2
    psi_bins: int = 10
    insufficient_traffic: Literal["rollback", "hold", "proceed"] = "rollback"
    expected_psi: float | None = None  # the shift the holdout predicted between the two versions

    @classmethod
    def from_settings(cls, settings: Any) -> Thresholds:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__ if hasattr(settings, name)})

    @property
    def psi_limit(self) -> float:
        return self.max_psi + (self.expected_psi or 0.0)


@dataclass(frozen=True)
class Check:
    name: str
    status: CheckStatus
    detail: str
    value: float | None = None
    limit: float | None = None


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    checks: list[Check]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reason": self.reason, "checks": [asdict(check) for check in self.checks]}


def enough_traffic(canary: Sample, stable: Sample, thresholds: Thresholds) -> bool:
    """Has the window seen what every check needs?"""
    return (
        canary.request_count >= thresholds.min_requests
        and canary.rows >= thresholds.min_rows
        and stable.rows >= thresholds.min_rows
        and stable.request_count >= thresholds.min_requests
    )


def check_errors(canary: Sample, stable: Sample, thresholds: Thresholds) -> Check:
    requests, errors = canary.request_count, canary.error_count
    stable_rate = stable.error_count / stable.request_count if stable.request_count else 0.0
    limit = stable_rate + thresholds.max_5xx_rate_increase
    if requests <= 0:
        return Check("errors", "insufficient", "the canary answered no requests")
    rate = errors / requests
    detail = f"canary 5xx rate {rate:.2%} ({errors:g}/{requests:g}) vs stable {stable_rate:.2%}, limit {limit:.2%}"
    if rate > limit and (errors > 0 and (requests >= thresholds.min_requests or errors >= 3)):
        return Check("errors", "failed", detail, rate, limit)
    if requests < thresholds.min_requests:
        return Check("errors", "insufficient", f"{detail}; fewer than {thresholds.min_requests} requests", rate, limit)
    return Check("errors", "passed", detail, rate, limit)


def check_latency(canary: Sample, stable: Sample, thresholds: Thresholds) -> Check:
    canary_n = canary.latency_counts[-1] if canary.latency_counts else 0.0
    stable_n = stable.latency_counts[-1] if stable.latency_counts else 0.0
    if canary_n < thresholds.min_requests or stable_n < thresholds.min_requests:
        return Check(
            "latency",
            "insufficient",
            f"p95 needs {thresholds.min_requests} requests per side, got canary {canary_n:g}, stable {stable_n:g}",
        )
    canary_p95 = histogram_quantile(0.95, canary.latency_bounds, canary.latency_counts) or 0.0
    stable_p95 = histogram_quantile(0.95, stable.latency_bounds, stable.latency_counts) or 0.0
    limit = max(stable_p95 * thresholds.max_p95_ratio, stable_p95 + thresholds.p95_slack_ms / 1000.0)
    detail = f"canary p95 {canary_p95 * 1000:.1f} ms vs stable {stable_p95 * 1000:.1f} ms, limit {limit * 1000:.1f} ms"
    return Check("latency", "failed" if canary_p95 > limit else "passed", detail, canary_p95, limit)


def check_prediction_shift(canary: Sample, stable: Sample, thresholds: Thresholds) -> Check:
    if canary.rows < thresholds.min_rows or stable.rows < thresholds.min_rows:
        return Check(
            "prediction_shift",
            "insufficient",
            f"PSI needs {thresholds.min_rows} predicted rows per side, got canary {canary.rows:g}, stable {stable.rows:g}",
        )
    if canary.probability_bounds != stable.probability_bounds:
        return Check("prediction_shift", "insufficient", "stable and canary report different probability buckets")
    expected = coarsen(bin_counts(stable.probability_counts), thresholds.psi_bins)
    actual = coarsen(bin_counts(canary.probability_counts), thresholds.psi_bins)
    value = psi(expected, actual)
    limit = thresholds.psi_limit
    basis = (
        f" ({thresholds.max_psi:g} above the {thresholds.expected_psi:.3f} the holdout predicted between the versions)"
        if thresholds.expected_psi
        else ""
    )
    detail = (
        f"prediction shift PSI {value:.3f} (canary {canary.rows:g} rows vs stable {stable.rows:g} rows, "
        f"mean probability {_mean_probability(canary):.3f} vs {_mean_probability(stable):.3f}), limit {limit:.3g}{basis}"
    )
    return Check("prediction_shift", "failed" if value > limit else "passed", detail, value, limit)


def _mean_probability(sample: Sample) -> float:
    """The mean from bucket midpoints (the histogram's sum is not kept in a sample)."""
    counts = bin_counts(sample.probability_counts)
    lows = [0.0, *sample.probability_bounds[:-1]]
    total = sum(counts)
    if total <= 0:
        return float("nan")
    mids = [(low + min(high, 1.0)) / 2 for low, high in zip(lows, sample.probability_bounds, strict=False)]
    return sum(mid * count for mid, count in zip(mids, counts, strict=False)) / total


def analyse(canary: Sample, stable: Sample, thresholds: Thresholds, *, label: str = "canary") -> Verdict:
    """All checks on one window; the verdict's reason names each failure (or what was skipped)."""
    checks = [
        check_errors(canary, stable, thresholds),
        check_latency(canary, stable, thresholds),
        check_prediction_shift(canary, stable, thresholds),
    ]
    failed = [check for check in checks if check.status == "failed"]
    insufficient = [check for check in checks if check.status == "insufficient"]
    if failed:
        return Verdict(False, f"{label}: " + "; ".join(check.detail for check in failed), checks)
    if insufficient and thresholds.insufficient_traffic != "proceed":
        reason = f"{label}: not enough traffic to judge: " + "; ".join(check.detail for check in insufficient)
        return Verdict(False, reason, checks)
    passed = "; ".join(check.detail for check in checks if check.status == "passed") or "no check had data"
    skipped = f" (skipped for lack of traffic: {', '.join(c.name for c in insufficient)})" if insufficient else ""
    return Verdict(True, f"{label}: {passed}{skipped}", checks)
