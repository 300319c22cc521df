"""Drift statistics: planted drift vs none, agreement with the exact (in-memory) statistics, bounded sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial import distance

from mlops_pipeline.monitoring.drift import (
    JENSEN_SHANNON,
    WASSERSTEIN,
    CategoricalDrift,
    GridBins,
    NumericDrift,
    StreamSample,
    WindowDrift,
)
from mlops_pipeline.monitoring.predictions import PROBABILITY, VERSION


def _streamed(reference: np.ndarray, current: np.ndarray, blocks: int = 7) -> NumericDrift:
    accumulator = NumericDrift("x", reference)
    for block in np.array_split(current, blocks):
        accumulator.update(block)
    return accumulator


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: (rng.normal(0, 1, 4000), rng.normal(0, 1, 50_000)),
        lambda rng: (rng.normal(0, 1, 4000), rng.normal(0.4, 1.3, 50_000)),
        lambda rng: (rng.gamma(2, 12, 4000).round(), rng.gamma(2, 20, 50_000).round()),  # integers, wider range
        lambda rng: (rng.uniform(10, 20, 4000), rng.uniform(0, 30, 50_000)),  # current beyond both ends
    ],
    ids=["same", "shifted", "integers", "tails"],
)
def test_streamed_wasserstein_matches_the_exact_value_within_its_bound(make):
    rng = np.random.default_rng(7)
    reference, current = make(rng)
    result = _streamed(reference, current).result(0.1)
    exact = stats.wasserstein_distance(reference, current) / np.std(reference)
    assert result.method == WASSERSTEIN
    assert abs(result.value - exact) <= result.error_bound + 1e-9
    assert result.error_bound < 1e-3


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: (rng.normal(1000, 300, 5000).round(1), rng.normal(1000, 300, 100_000).round(1)),
        lambda rng: (rng.lognormal(1, 3, 5000), rng.lognormal(1.5, 3, 100_000)),  # edges crowded in a few cells
        lambda rng: (rng.uniform(0, 1, 500), np.concatenate([rng.uniform(-5, 6, 50_000), [-1e308, 1e308]])),
        lambda rng: (np.array([-1e300, 0.0, 1e300]), rng.normal(0, 1e300, 10_000)),
        lambda rng: (np.array([0.1, 0.2, 0.3]), np.array([0.1 + 0.2, 0.30000000000000004, 0.29999999999999993])),
    ],
    ids=["dense", "heavy-tail", "beyond-both-ends", "huge-range", "rounding"],
)
def test_grid_bins_are_exactly_searchsorted(make):
    reference, current = make(np.random.default_rng(3))
    edges = NumericDrift("x", reference).edges
    # The edges themselves and their neighbours are where index arithmetic could round wrongly.
    probes = np.concatenate([current, edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    np.testing.assert_array_equal(GridBins(edges).of(probes), np.searchsorted(edges, probes, side="right"))


def test_planted_numeric_drift_is_found_and_sampling_noise_is_not():
    rng = np.random.default_rng(1)
    reference = rng.normal(50, 10, 5000)
    same = _streamed(reference, rng.normal(50, 10, 20_000)).result(0.1)
    shifted = _streamed(reference, rng.normal(55, 10, 20_000)).result(0.1)
    assert not same.drifted and same.value < 0.05
    assert shifted.drifted and shifted.value == pytest.approx(0.5, abs=0.05)
    assert shifted.psi is not None and shifted.psi > same.psi


def test_few_distinct_values_are_compared_as_categories_like_evidently():
    rng = np.random.default_rng(2)
    reference = rng.poisson(0.3, 5000).clip(0, 3).astype(float)
    current = rng.poisson(0.6, 30_000).clip(0, 3).astype(float)
    result = _streamed(reference, current).result(0.1)
    keys = sorted(set(reference) | set(current))
    exact = distance.jensenshannon([np.sum(reference == k) for k in keys], [np.sum(current == k) for k in keys])
    assert result.method == JENSEN_SHANNON and result.value == pytest.approx(exact, abs=1e-12)
    assert result.drifted


def test_a_sixth_distinct_value_in_current_switches_to_wasserstein():
    reference = np.repeat([0.0, 1.0, 2.0], 100)
    accumulator = NumericDrift("x", reference)
    accumulator.update(np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))
    assert accumulator.result(0.1).method == WASSERSTEIN


def test_missing_and_infinite_values_are_left_out():
    reference = np.array([1.0, 2.0, 3.0, np.nan] * 100)
    accumulator = NumericDrift("x", reference)
    accumulator.update(np.array([1.0, 2.0, 3.0, np.nan, np.inf] * 50))
    result = accumulator.result(0.1)
    assert result.missing == 100 and result.rows == 250 and result.reference_rows == 300
    assert result.value == pytest.approx(0.0, abs=1e-12)


def test_categorical_drift_matches_scipy_and_counts_unseen_categories():
    rng = np.random.default_rng(3)
    reference = rng.choice(["a", "b", "c", "d"], 5000, p=[0.3, 0.3, 0.2, 0.2])
    current = rng.choice(["a", "b", "c", "d", "new"], 40_000, p=[0.1, 0.2, 0.3, 0.3, 0.1])
    accumulator = CategoricalDrift("plan", reference)
    accumulator.update_arrow(pa.chunked_array([current[:10_000], current[10_000:]]))
    result = accumulator.result(0.1)
    keys = ["a", "b", "c", "d", "new"]
    exact = distance.jensenshannon([np.sum(reference == k) for k in keys], [np.sum(current == k) for k in keys])
    assert result.value == pytest.approx(exact, abs=1e-12) and result.drifted
    steady = CategoricalDrift("plan", reference)
    steady.update(rng.choice(["a", "b", "c", "d"], 40_000, p=[0.3, 0.3, 0.2, 0.2]))
    assert not steady.result(0.1).drifted


def test_stream_sample_is_uniform_bounded_and_independent_of_block_boundaries():
    table = pa.table({"i": np.arange(100_000)})
    whole, blocks = StreamSample(1000, seed=5), StreamSample(1000, seed=5)
    whole.update(table)
    for start in range(0, 100_000, 7_919):
        blocks.update(table.slice(start, 7_919))
    picked = whole.table(table.schema).column("i").to_numpy()
    assert len(picked) == 1000 and len(set(picked)) == 1000
    assert sorted(picked) == sorted(blocks.table(table.schema).column("i").to_numpy())
    assert 40_000 < picked.mean() < 60_000  # spread over the whole stream, not its head


def test_window_drift_share_and_prediction_drift_of_the_champion_version_only():
    rng = np.random.default_rng(4)
    reference = pd.DataFrame(
        {"a": rng.normal(0, 1, 3000), "b": rng.normal(0, 1, 3000), "c": rng.choice(["x", "y"], 3000)}
    )
    accumulator = WindowDrift.start(
        reference, ["a", "b"], ["c"], reference_predictions=rng.uniform(0, 0.5, 3000), prediction_version="2", sample_rows=500
    )
    n = 10_000
    current = pa.table(
        {
            "a": rng.normal(1.0, 1, n),  # drifted
            "b": rng.normal(0, 1, n),
            "c": rng.choice(["x", "y"], n),
            PROBABILITY: np.where(np.arange(n) % 2 == 0, rng.uniform(0, 0.5, n), 0.99),
            VERSION: np.where(np.arange(n) % 2 == 0, "2", "1"),  # version 1's outputs must not count
        }
    )
    accumulator.update(current.slice(0, 4000))
    accumulator.update(current.slice(4000))
    result = accumulator.result(0.1)
    assert result["rows"] == n and result["drifted_features"] == ["a"]
    assert result["drift_share"] == pytest.approx(1 / 3)
    assert result["model_versions"] == {"1": 5000, "2": 5000}
    assert result["prediction"]["rows"] == 5000 and not result["prediction"]["drifted"]
    assert accumulator.sample.table(current.schema).num_rows == 500
    assert accumulator.methods() == {"a": WASSERSTEIN, "b": WASSERSTEIN, "c": JENSEN_SHANNON}


def test_reference_without_a_feature_is_a_clear_error():
    with pytest.raises(ValueError, match=r"lacks feature column\(s\) \['b'\]"):
        WindowDrift.start(pd.DataFrame({"a": [1.0]}), ["a", "b"], [])
