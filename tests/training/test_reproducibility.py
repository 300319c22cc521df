"""Same data, settings and seed -> same metrics and the same model bytes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mlops_pipeline.config import TrainSettings
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.storage import open_lake
from mlops_pipeline.training.pipeline import TrainRequest, _effective, fit_candidates, prepare_data
from mlops_pipeline.training.reproducibility import UNKNOWN_COMMIT, git_commit, request_digest


@pytest.fixture(scope="module")
def prepared(validated_lake):
    from mlops_pipeline.config import Settings

    training = TrainSettings()
    dataset = load_dataset_spec("churn")
    lake = open_lake(Settings(lake_uri=validated_lake.uri))
    return dataset, training, lake, validated_lake


def _fit(prepared, seed: int):
    dataset, training, lake, validated_lake = prepared
    # The data is read afresh each time: the window, the split and the fit must all repeat.
    _, splits = prepare_data(lake, dataset, validated_lake.day_after, 6, training)
    config = _effective(TrainRequest(as_of=validated_lake.day_after, seed=seed), training)
    return fit_candidates(splits, dataset, config, training.nthread)


def test_same_inputs_give_same_metrics_and_bytes(prepared):
    first, second = _fit(prepared, seed=7), _fit(prepared, seed=7)
    for name in ("baseline", "xgboost"):
        assert first[name].valid == second[name].valid
        assert first[name].holdout == second[name].holdout
        assert first[name].candidate.spec == second[name].candidate.spec
    assert first["xgboost"].candidate.model.save_raw("ubj") == second["xgboost"].candidate.model.save_raw("ubj")
    first_lr, second_lr = (r["baseline"].candidate.model.named_steps["classifier"] for r in (first, second))
    assert np.array_equal(first_lr.coef_, second_lr.coef_)
    assert pickle.dumps(first["baseline"].candidate.model) == pickle.dumps(second["baseline"].candidate.model)

    # The seed matters (XGBoost subsamples rows and columns), so "same seed" is a real condition.
    other = _fit(prepared, seed=8)
    assert other["xgboost"].candidate.model.save_raw("ubj") != first["xgboost"].candidate.model.save_raw("ubj")


def test_git_commit_and_request_digest(tmp_path):
    from mlops_pipeline.config import project_home

    commit = git_commit(project_home())
    assert commit == UNKNOWN_COMMIT or len(commit) == 40
    assert git_commit(tmp_path) == UNKNOWN_COMMIT  # not a checkout
    assert request_digest({"a": 1, "b": [1, 2]}) == request_digest({"b": [1, 2], "a": 1})
    assert request_digest({"a": 1}) != request_digest({"a": 2})
