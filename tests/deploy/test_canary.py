"""Canary analysis maths: Prometheus parsing, windows between samples, p95, PSI and the verdict."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from mlops_pipeline.deploy.canary import (
    PROBABILITY_BOUNDS,
    Sample,
    Thresholds,
    analyse,
    bin_counts,
    coarsen,
    delta,
    enough_traffic,
    expected_shift,
    histogram_quantile,
    parse_prometheus,
    probability_counts,
    psi,
    router_counters,
    server_counters,
)

LATENCY_BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, math.inf]


def cumulative(values: list[float], bounds: list[float]) -> list[float]:
    return [float(sum(1 for v in values if v <= bound)) for bound in bounds]


def sample(
    probabilities: list[float],
    latencies: list[float] | None = None,
    *,
    errors: int = 0,
    server_id: str = "s1",
) -> Sample:
    latencies = latencies if latencies is not None else [0.004] * max(len(probabilities) // 10, 1)
    return Sample(
        server_id=server_id,
        requests=float(len(latencies)),
        errors=float(errors),
        served_requests=float(len(latencies)),
        latency_bounds=LATENCY_BOUNDS,
        latency_counts=cumulative(latencies, LATENCY_BOUNDS),
        probability_bounds=list(PROBABILITY_BOUNDS),
        probability_counts=cumulative(probabilities, list(PROBABILITY_BOUNDS)),
    )


def spread(n: int, low: float = 0.02, high: float = 0.9) -> list[float]:
    return [low + (high - low) * (i + 0.5) / n for i in range(n)]


THRESHOLDS = Thresholds(min_requests=20, min_rows=200)

METRICS_TEXT = """\
# HELP mlops_serving_requests_total HTTP requests by endpoint and status code.
# TYPE mlops_serving_requests_total counter
mlops_serving_requests_total{endpoint="predict",status="200"} 90.0
mlops_serving_requests_total{endpoint="predict",status="503"} 2.0
mlops_serving_requests_total{endpoint="invocations",status="200"} 8.0
mlops_serving_requests_total{endpoint="ready",status="200"} 500.0
mlops_serving_request_latency_seconds_bucket{endpoint="predict",le="0.005"} 80.0
mlops_serving_request_latency_seconds_bucket{endpoint="predict",le="+Inf"} 92.0
mlops_serving_request_latency_seconds_bucket{endpoint="invocations",le="0.005"} 8.0
mlops_serving_request_latency_seconds_bucket{endpoint="invocations",le="+Inf"} 8.0
mlops_serving_request_latency_seconds_bucket{endpoint="ready",le="0.005"} 500.0
mlops_serving_request_latency_seconds_bucket{endpoint="ready",le="+Inf"} 500.0
mlops_serving_prediction_probability_bucket{le="0.5"} 30.0
mlops_serving_prediction_probability_bucket{le="1.0"} 100.0
mlops_serving_prediction_probability_bucket{le="+Inf"} 100.0
mlops_serving_model_info{model_name="churn \\"x\\"",model_version="3"} 1.0
"""


def test_parse_prometheus_reads_names_labels_and_values() -> None:
    parsed = parse_prometheus(METRICS_TEXT)

    assert ("mlops_serving_requests_total", {"endpoint": "predict", "status": "503"}, 2.0) in parsed
    info = [labels for name, labels, _ in parsed if name == "mlops_serving_model_info"]
    assert info == [{"model_name": 'churn "x"', "model_version": "3"}]
    assert all(not name.startswith("#") for name, _, _ in parsed)


def test_server_counters_keep_the_scoring_endpoints_only() -> None:
    counters = server_counters(METRICS_TEXT)

    assert counters["served_requests"] == 100.0 and counters["served_errors"] == 2.0
    assert counters["latency_bounds"] == [0.005, math.inf]
    assert counters["latency_counts"] == [88.0, 100.0]
    assert counters["probability_counts"] == [30.0, 100.0, 100.0]


def test_router_counters_sum_responses_and_failures() -> None:
    row = {"hrsp_2xx": 95, "hrsp_4xx": 3, "hrsp_5xx": 2, "eresp": 1, "econ": None, "hrsp_other": 0}

    assert router_counters(row) == {"requests": 100.0, "errors": 3.0}
    assert router_counters(None) == {"requests": 0.0, "errors": 0.0}


def test_sample_survives_a_json_round_trip_with_its_infinite_bucket() -> None:
    import json

    original = sample(spread(50))
    again = Sample.from_dict(json.loads(json.dumps(original.to_dict(), allow_nan=False)))

    assert again == original


def test_delta_is_the_traffic_between_two_samples() -> None:
    before = sample(spread(100))
    after = sample(spread(100) + [0.97] * 50)

    window = delta(after, before)

    assert window.rows == 50
    assert bin_counts(window.probability_counts)[19] == 50


@pytest.mark.parametrize(
    "before",
    [sample(spread(100), server_id="another"), sample(spread(400))],
    ids=["slot pointed at another server", "counters went down (a restart)"],
)
def test_delta_starts_over_when_the_earlier_sample_does_not_apply(before: Sample) -> None:
    after = sample(spread(100))

    assert delta(after, before) == after


def test_histogram_quantile_interpolates_within_the_bucket() -> None:
    bounds = [0.01, 0.02, 0.05, math.inf]

    assert histogram_quantile(0.5, bounds, [50, 100, 100, 100]) == pytest.approx(0.01)
    assert histogram_quantile(0.75, bounds, [50, 100, 100, 100]) == pytest.approx(0.015)
    assert histogram_quantile(0.95, bounds, [0, 0, 0, 10]) == pytest.approx(0.05)  # beyond the last bound
    assert histogram_quantile(0.95, bounds, [0, 0, 0, 0]) is None


def test_psi_is_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    base = [10, 20, 30, 20, 10, 5, 5]

    assert psi(base, [2 * b for b in base]) == pytest.approx(0.0)
    small = psi(base, [11, 19, 30, 20, 10, 5, 5])
    large = psi(base, [0, 0, 0, 5, 10, 40, 60])
    assert 0 < small < 0.01 < 0.2 < large


def test_psi_matches_the_textbook_formula() -> None:
    expected, actual = [50, 30, 20], [30, 30, 40]

    by_hand = sum((a - e) * math.log(a / e) for e, a in [(0.5, 0.3), (0.3, 0.3), (0.2, 0.4)])

    assert psi(expected, actual) == pytest.approx(by_hand)


def test_psi_needs_the_same_bins_and_observations() -> None:
    with pytest.raises(ValueError, match="same bins"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="observations"):
        psi([0, 0], [1, 2])


def test_coarsen_merges_adjacent_bins() -> None:
    assert coarsen(list(range(20)), 10) == [1, 5, 9, 13, 17, 21, 25, 29, 33, 37]
    assert coarsen([1, 2, 3], 5) == [1, 2, 3]
    assert sum(coarsen([1.0] * 21, 10)) == 21


def test_a_canary_like_the_stable_passes() -> None:
    stable = sample(spread(4000), [0.004] * 400)
    canary = sample(spread(300, 0.03, 0.89), [0.0045] * 30)

    verdict = analyse(canary, stable, THRESHOLDS)

    assert verdict.passed, verdict.reason
    assert {check.name: check.status for check in verdict.checks} == {
        "errors": "passed",
        "latency": "passed",
        "prediction_shift": "passed",
    }


def test_a_canary_with_shifted_predictions_fails_on_psi() -> None:
    stable = sample(spread(4000))
    canary = sample([0.98] * 300)

    verdict = analyse(canary, stable, THRESHOLDS, label="canary v3 at 5%")

    assert not verdict.passed
    assert verdict.reason.startswith("canary v3 at 5%: prediction shift PSI")
    shift = next(check for check in verdict.checks if check.name == "prediction_shift")
    assert shift.status == "failed" and shift.value is not None and shift.value > 1.0


def test_a_canary_with_5xx_answers_fails() -> None:
    stable = sample(spread(4000), [0.004] * 400)
    canary = sample(spread(300), [0.004] * 30, errors=3)

    verdict = analyse(canary, stable, THRESHOLDS)

    assert not verdict.passed and "5xx rate 10.00%" in verdict.reason


def test_a_few_errors_fail_even_before_the_request_minimum() -> None:
    stable = sample(spread(4000), [0.004] * 400)
    canary = sample(spread(300), [0.004] * 5, errors=4)

    assert next(c for c in analyse(canary, stable, THRESHOLDS).checks if c.name == "errors").status == "failed"


def test_a_slow_canary_fails_on_p95_but_small_differences_pass() -> None:
    stable = sample(spread(4000), [0.004] * 400)
    slow = sample(spread(300), [0.3] * 30)
    a_bit_slower = sample(spread(300), [0.009] * 30)  # within the 50 ms slack

    assert "p95" in analyse(slow, stable, THRESHOLDS).reason
    assert not analyse(slow, stable, THRESHOLDS).passed
    assert analyse(a_bit_slower, stable, THRESHOLDS).passed


def test_too_little_traffic_is_insufficient_and_the_setting_decides() -> None:
    stable = sample(spread(4000), [0.004] * 400)
    canary = sample(spread(20), [0.004] * 2)

    assert not enough_traffic(canary, stable, THRESHOLDS)
    by_default = analyse(canary, stable, THRESHOLDS)  # no promotion without evidence
    assert not by_default.passed and "not enough traffic to judge" in by_default.reason
    held = analyse(canary, stable, Thresholds(min_requests=20, min_rows=200, insufficient_traffic="hold"))
    assert not held.passed and "not enough traffic to judge" in held.reason  # the hold ended without it
    proceed = analyse(canary, stable, Thresholds(min_requests=20, min_rows=200, insufficient_traffic="proceed"))
    assert proceed.passed and "skipped for lack of traffic" in proceed.reason


def test_the_shift_limit_is_max_psi_above_what_the_holdout_predicted() -> None:
    """A retrain that the holdout says shifts predictions by ~0.7 PSI passes with that shift, and fails
    with a much larger one; without the holdout's figure, max_psi alone decides."""
    stable_probabilities = spread(4000)
    retrained = spread(1200) + spread(2800, 0.55, 0.9)  # the holdout's view of the new version: more mass high
    expected = expected_shift(stable_probabilities, retrained, THRESHOLDS.psi_bins)
    assert 0.5 < expected < 1.0, expected

    stable, canary = sample(stable_probabilities), sample(retrained[::10])
    shifted = analyse(canary, stable, THRESHOLDS)
    assert not shifted.passed and "limit 0.2" in shifted.reason
    informed = replace(THRESHOLDS, expected_psi=expected)
    verdict = analyse(canary, stable, informed)
    shift = next(check for check in verdict.checks if check.name == "prediction_shift")
    assert verdict.passed and shift.limit == pytest.approx(0.2 + expected)
    assert f"the {expected:.3f} the holdout predicted between the versions" in shift.detail
    broken = analyse(sample([0.99] * 400), stable, informed)
    assert not broken.passed and "prediction shift PSI" in broken.reason


def test_expected_shift_bins_probabilities_as_the_servers_histograms_do() -> None:
    import sys
    from pathlib import Path

    serving = str(Path(__file__).resolve().parents[2] / "serving")
    if serving not in sys.path:
        sys.path.insert(0, serving)
    from mlops_serving.metrics import PROBABILITY_BUCKETS

    assert PROBABILITY_BOUNDS[:-1] == tuple(PROBABILITY_BUCKETS) and PROBABILITY_BOUNDS[-1] == math.inf
    # Prometheus buckets count values <= their bound: 0.05 falls in the first, 0.0500001 in the second.
    assert bin_counts(probability_counts([0.05, 0.0500001, 1.0]))[:2] == [1.0, 1.0]
    assert probability_counts([0.05, 0.0500001, 1.0])[-1] == 3.0
    assert expected_shift(spread(1000), spread(1000), 10) == pytest.approx(0.0)


def test_thresholds_come_from_the_deploy_settings() -> None:
    from mlops_pipeline.config import DeploySettings

    thresholds = Thresholds.from_settings(DeploySettings(max_psi=0.3, min_rows=10))

    assert thresholds.max_psi == 0.3 and thresholds.min_rows == 10 and thresholds.psi_bins == 10
