"""Same data, settings and seed -> the same search, the same calibration, the same model bytes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mlops_pipeline.config import TrainSettings
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.storage import open_lake
from mlops_pipeline.training import steps
from mlops_pipeline.training.pipeline import train_candidates
from mlops_pipeline.training.reproducibility import UNKNOWN_COMMIT, git_commit, request_digest

TRAINING = TrainSettings(tune_trials=3, tune_folds=2, days=5)


@pytest.fixture(scope="module")
def source(validated_lake):
    from mlops_pipeline.config import Settings

    return load_dataset_spec("churn"), open_lake(Settings(lake_uri=validated_lake.uri)), validated_lake


def _train(source, seed: int, candidates: list[str] | None = None):
    dataset, lake, validated_lake = source
    # The data is read afresh each time: the window, the split, the search and the fit must all repeat.
    prepared = steps.prepare(lake, dataset, validated_lake.day_after, TRAINING.days, TRAINING)
    config = steps.resolve(TRAINING, seed=seed, candidates=candidates)
    return train_candidates(prepared, config, TRAINING, metric="roc_auc")


def test_same_inputs_give_the_same_search_calibration_metrics_and_bytes(source):
    first, second = _train(source, seed=7), _train(source, seed=7)
    for name in ("baseline", "xgboost"):
        one, two = first[name], second[name]
        assert one.tuning.best_params == two.tuning.best_params and one.tuning.best_trial == two.tuning.best_trial
        assert [(t.params, t.fold_scores) for t in one.tuning.trials] == [(t.params, t.fold_scores) for t in two.tuning.trials]
        assert one.calibration.block == two.calibration.block
        assert one.valid == two.valid and one.holdout == two.holdout
        assert one.candidate.spec == two.candidate.spec and one.candidate.spec.calibration is not None
        assert one.candidate.spec.to_metadata() == two.candidate.spec.to_metadata()  # metadata.mlops, byte for byte
    assert first["xgboost"].candidate.model.save_raw("ubj") == second["xgboost"].candidate.model.save_raw("ubj")
    first_lr, second_lr = (r["baseline"].candidate.model.named_steps["classifier"] for r in (first, second))
    assert np.array_equal(first_lr.coef_, second_lr.coef_)
    assert pickle.dumps(first["baseline"].candidate.model) == pickle.dumps(second["baseline"].candidate.model)

    # The seed matters (the sampler's draws, XGBoost's row and column subsamples): "same seed" is a real condition.
    other = _train(source, seed=8, candidates=["xgboost"])["xgboost"]
    assert [t.params for t in other.tuning.trials][1:] != [t.params for t in first["xgboost"].tuning.trials][1:]
    assert other.candidate.model.save_raw("ubj") != first["xgboost"].candidate.model.save_raw("ubj")


def test_git_commit_and_request_digest(tmp_path):
    from mlops_pipeline.config import project_home

    commit = git_commit(project_home())
    assert commit == UNKNOWN_COMMIT or len(commit) == 40
    assert git_commit(tmp_path) == UNKNOWN_COMMIT  # not a checkout
    assert request_digest({"a": 1, "b": [1, 2]}) == request_digest({"b": [1, 2], "a": 1})
    assert request_digest({"a": 1}) != request_digest({"a": 2})
