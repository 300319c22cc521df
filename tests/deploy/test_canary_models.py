"""The models the canary tests deploy are what they claim: two different good models of the same
quality whose predictions a canary check accepts, and a bad one it must catch.

Scored the way the canary analysis sees them: predicted probabilities in the server's 20 buckets,
merged to the analysis's 10 bins, PSI against each other on the same requests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlops_pipeline.config import DeploySettings
from mlops_pipeline.deploy.canary import expected_shift
from tests.deploy.canary_scenario import model_dirs  # noqa: F401 (fixture)
from tests.serving import model_fixture

TRAFFIC_SEED = 99  # requests neither good model was fitted on


def predict(model_dir: Path, records: list[dict]) -> np.ndarray:
    import mlflow.xgboost
    import xgboost as xgb

    booster = mlflow.xgboost.load_model(str(model_dir))
    matrix = xgb.DMatrix(
        model_fixture.encode_matrix(records),
        feature_names=list(model_fixture.FEATURE_ORDER),
        feature_types=model_fixture.feature_types(),
        enable_categorical=True,
    )
    return np.asarray(booster.predict(matrix))


def served_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The shift as the canary check measures it from the servers' histograms."""
    return expected_shift(expected, actual, DeploySettings().psi_bins)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


@pytest.fixture(scope="module")
def traffic() -> tuple[list[dict], np.ndarray]:
    records = model_fixture.make_records(4000, seed=TRAFFIC_SEED, nulls=True)
    return records, model_fixture._labels(records, seed=TRAFFIC_SEED)


def test_the_two_good_models_differ_but_are_equally_good(model_dirs, traffic) -> None:  # noqa: F811
    records, labels = traffic
    good, resampled = predict(model_dirs["good"], records), predict(model_dirs["good_resampled"], records)

    assert (model_dirs["good"] / "model.ubj").read_bytes() != (model_dirs["good_resampled"] / "model.ubj").read_bytes()
    assert np.mean(np.abs(good - resampled)) > 0.02, "the resampled model predicts (almost) like the base one"
    good_auc, resampled_auc = roc_auc(labels, good), roc_auc(labels, resampled)
    assert min(good_auc, resampled_auc) > 0.75 and abs(good_auc - resampled_auc) < 0.03, (good_auc, resampled_auc)
    # What the canary check sees: well within the production limit, on fewer rows than a step brings.
    shift = served_psi(good[:2000], resampled[:2000])
    assert shift < DeploySettings().max_psi / 2, shift


def test_the_bad_model_is_caught_by_the_prediction_shift_check(model_dirs, traffic) -> None:  # noqa: F811
    records, _ = traffic
    good, bad = predict(model_dirs["good"], records[:400]), predict(model_dirs["bad"], records[:400])

    assert served_psi(good, bad) > 5 * DeploySettings().max_psi
