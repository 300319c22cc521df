"""The training steps on small frames: resolve, prepare (split), tune, fit, calibrate, evaluate, select.

No lake, no MLflow: a few synthetic days in memory, and a search of a few trials.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.config import TrainSettings
from mlops_pipeline.contracts.calibration import apply, check
from mlops_pipeline.data.synthetic import generate_day
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.training import steps
from mlops_pipeline.training.calibration import (
    CalibrationFitError,
    choose_calibration,
    expected_calibration_error,
)
from mlops_pipeline.training.candidates import XGBOOST_DEFAULTS, HyperparameterError
from mlops_pipeline.training.data import PartitionRef, TrainingDataError, TrainingWindow
from mlops_pipeline.training.evaluation import choose_threshold
from mlops_pipeline.training.tuning import Budget, TuningError, rolling_folds

DAYS = 4
SETTINGS = TrainSettings(tune_trials=3, tune_folds=2, calibration_folds=3, min_split_rows=50)
SMALL = Budget(trials=3, timeout_seconds=120, folds=2)


@pytest.fixture(scope="module")
def dataset():
    return load_dataset_spec("churn")


def synthetic_frame(dataset, days: int = DAYS, rows: int = 500) -> pd.DataFrame:
    """``days`` synthetic days as the lake would hand them over: event times in UTC, ordered."""
    frames = [generate_day(date(2026, 1, 1) + timedelta(days=i), seed=42, rows=rows) for i in range(days)]
    frame = pd.concat(frames, ignore_index=True)
    frame[dataset.time_column] = pd.to_datetime(frame[dataset.time_column], utc=True)
    return frame.sort_values([dataset.time_column, dataset.id_column], kind="mergesort").reset_index(drop=True)


def window_of(days: int = DAYS) -> TrainingWindow:
    parts = tuple(PartitionRef(f"2026-01-{i + 1:02d}", f"file:///lake/validated/ds=2026-01-{i + 1:02d}", ("0" * 64,), 500) for i in range(days))
    return TrainingWindow("file:///lake", f"2026-01-{days + 1:02d}", days, parts)


@pytest.fixture(scope="module")
def prepared(dataset):
    return steps.split(synthetic_frame(dataset), dataset, window_of(), SETTINGS)


@pytest.fixture(scope="module")
def baseline(prepared):
    return steps.fit("baseline", prepared.splits, prepared.spec, {}, seed=7, nthread=1)


# --- resolve and prepare ------------------------------------------------------------------------------


def test_resolve_applies_the_run_over_the_settings_and_refuses_unknown_keys():
    training = TrainSettings(hyperparameters={"xgboost": {"max_depth": 3, "subsample": 0.8}}, seed=1)
    config = steps.resolve(training, seed=5, candidates=["xgboost"], hyperparameters={"xgboost": {"max_depth": 5}})
    assert (config.seed, config.days, config.candidates) == (5, training.days, ("xgboost",))
    assert config.fixed == {"xgboost": {"max_depth": 5, "subsample": 0.8}}
    assert steps.resolve(TrainSettings()).fixed == {"baseline": {}, "xgboost": {}}
    with pytest.raises(HyperparameterError, match=r"unknown xgboost hyperparameter\(s\) \['depth'\]"):
        steps.resolve(training, hyperparameters={"xgboost": {"depth": 3}})
    with pytest.raises(HyperparameterError, match=r"unknown candidate\(s\) \['forest'\]"):
        steps.resolve(training, candidates=["forest"])
    with pytest.raises(TrainingDataError, match="at least 1"):
        steps.resolve(training, days=0)


def test_prepare_splits_by_event_time_with_categories_of_the_training_split(prepared, dataset):
    splits = prepared.splits
    assert len(splits.train) + len(splits.valid) + len(splits.holdout) == DAYS * 500
    assert splits.train[dataset.time_column].max() < splits.valid[dataset.time_column].min()
    assert splits.valid[dataset.time_column].max() < splits.holdout[dataset.time_column].min()
    plan = {f.name: f for f in prepared.spec.features}["plan"]
    assert plan.categories == tuple(sorted(splits.train["plan"].dropna().unique()))
    assert prepared.spec.calibration is None and prepared.spec.threshold == 0.5


# --- tune -----------------------------------------------------------------------------------------------


def test_rolling_folds_train_on_earlier_rows_and_validate_on_the_next_block(prepared):
    train, spec = prepared.splits.train, prepared.spec
    folds = rolling_folds(train, spec, 3)
    assert [f.fold.number for f in folds] == [1, 2, 3]
    for data in folds:
        assert data.train[spec.time_column].max() < data.valid[spec.time_column].min()  # only the past trains
        assert data.fold.valid_start == data.valid[spec.time_column].min().isoformat()
    assert [len(f.train) for f in folds] == sorted(len(f.train) for f in folds)  # the window expands
    assert folds[1].train.index[-1] + 1 == folds[1].fold.train_rows == len(folds[0].train) + len(folds[0].valid)
    assert folds[-1].fold.valid_end is None and folds[-1].valid.index[-1] == len(train) - 1


def test_a_fold_that_cannot_be_scored_is_refused(prepared):
    train = prepared.splits.train.copy()
    train.loc[: len(train) // 2, prepared.spec.target] = 0  # the early blocks hold one class only
    with pytest.raises(TuningError, match=r"fold 1 of 3 .* trains on \d+ row\(s\) with class\(es\) \[0\]"):
        rolling_folds(train, prepared.spec, 3)


def test_the_search_is_seeded_starts_at_the_defaults_and_leaves_fixed_values_alone(prepared):
    def run():
        return steps.tune(
            "xgboost", prepared.splits.train, prepared.spec, {"max_depth": 3}, metric="roc_auc", seed=11, nthread=1,
            budget=SMALL,
        )  # fmt: skip

    first, second = run(), run()
    assert "max_depth" not in first.searched and first.best_params["max_depth"] == 3
    assert first.trials[0].params == {key: XGBOOST_DEFAULTS[key] for key in first.searched}  # trial 0: the defaults
    assert len(first.trials) == 3 and first.finished == 3 and first.stopped_by == "trials"
    assert all(len(t.fold_scores) == 2 for t in first.trials)
    best = first.best
    assert best is not None and best.mean == max(t.mean for t in first.trials)
    assert best.std == pytest.approx(np.std(best.fold_scores, ddof=1))
    # same data and seed: the same trials, scores and best parameters
    assert [t.params for t in first.trials] == [t.params for t in second.trials]
    assert [t.fold_scores for t in first.trials] == [t.fold_scores for t in second.trials]
    assert first.best_params == second.best_params
    summary = first.summary()
    assert summary["trials_finished"] == 3 and summary["cv_mean"] == best.mean and summary["fixed"] == {"max_depth": 3}


def test_no_search_when_the_budget_is_zero_or_everything_is_fixed(prepared):
    train, spec = prepared.splits.train, prepared.spec
    off = steps.tune("baseline", train, spec, {}, metric="roc_auc", seed=1, nthread=1, budget=replace(SMALL, trials=0))
    assert (off.stopped_by, off.trials, off.best_params["C"]) == ("disabled", (), 1.0)
    fixed = steps.tune("baseline", train, spec, {"C": 0.3}, metric="roc_auc", seed=1, nthread=1, budget=SMALL)
    assert (fixed.stopped_by, fixed.trials, fixed.best_params["C"]) == ("nothing to search", (), 0.3)


def test_a_search_where_no_trial_finishes_fails_with_the_reason(prepared):
    with pytest.raises(TuningError, match=r"the xgboost search finished no trial: 3 of 3 .*min_child_weight"):
        steps.tune(
            "xgboost", prepared.splits.train, prepared.spec, {"min_child_weight": -1.0}, metric="roc_auc", seed=1,
            nthread=1, budget=SMALL,
        )  # fmt: skip


# --- calibrate ------------------------------------------------------------------------------------------


def test_calibration_goes_into_the_spec_and_predict_proba_applies_it(prepared, baseline):
    valid = prepared.splits.valid
    calibrated, fitted = steps.calibrate(baseline, valid, folds=3)
    assert calibrated.spec.calibration == check(fitted.block) and baseline.spec.calibration is None
    assert fitted.method == min(fitted.cv_brier, key=fitted.cv_brier.get) and set(fitted.cv_brier) == {"isotonic", "platt"}
    raw = calibrated.raw_proba(valid)
    assert np.array_equal(raw, baseline.predict_proba(valid))
    assert np.array_equal(calibrated.predict_proba(valid), apply(raw, fitted.block))
    assert set(fitted.valid_before) == set(fitted.valid_after) == {"brier", "ece"}


def test_calibration_keeps_the_method_with_the_lower_cross_validated_brier():
    rng = np.random.default_rng(3)
    raw = rng.uniform(size=3000)
    step = (rng.uniform(size=3000) < np.where(raw < 0.5, 0.1, 0.9)).astype(int)  # a jump no sigmoid can follow
    assert choose_calibration(raw, step, folds=3).method == "isotonic"
    logit = np.log(raw / (1 - raw))
    smooth = (rng.uniform(size=3000) < 1 / (1 + np.exp(-(0.5 * logit - 0.4)))).astype(int)  # Platt's own form
    assert choose_calibration(raw, smooth, folds=3).method == "platt"


def test_a_calibration_that_cannot_be_fitted_fails_with_the_reason():
    rng = np.random.default_rng(0)
    raw = rng.uniform(size=200)
    few_positives = np.zeros(200, dtype=int)
    few_positives[::25] = 1  # 8 positives: each cross-validation part has fewer than 10
    with pytest.raises(CalibrationFitError, match=r"too small to cross-validate calibration in 3 blocks"):
        choose_calibration(raw, few_positives, folds=3)
    with pytest.raises(CalibrationFitError, match=r"1 raw score\(s\) are not probabilities"):
        choose_calibration(np.append(raw[:-1], np.nan), (raw > 0.5).astype(int), folds=3)


def test_expected_calibration_error():
    assert expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
    assert expected_calibration_error([1, 1, 1, 1], [0.25, 0.25, 0.75, 0.75]) == pytest.approx(0.5)


# --- evaluate and select --------------------------------------------------------------------------------


def test_evaluate_chooses_the_threshold_on_calibrated_valid_probabilities(prepared, baseline):
    calibrated, _ = steps.calibrate(baseline, prepared.splits.valid, folds=3)
    evaluation = steps.evaluate(calibrated, prepared.splits)
    valid = prepared.splits.valid
    expected = choose_threshold(valid["churned"].to_numpy(), calibrated.predict_proba(valid))
    assert evaluation.candidate.spec.threshold == expected
    assert evaluation.candidate.spec.calibration == calibrated.spec.calibration
    for metrics in (evaluation.valid, evaluation.holdout):
        assert {"roc_auc", "pr_auc", "brier", "log_loss", "f1", "ece"} <= set(metrics) and 0 <= metrics["ece"] < 0.2
    assert evaluation.holdout["rows"] == len(prepared.splits.holdout)
    assert set(evaluation.holdout_raw) == {"brier", "ece"}


@pytest.mark.parametrize(
    ("holdout_of", "message"),
    [
        (lambda frame: frame.iloc[:0], r"the holdout split is empty"),
        (lambda frame: frame.assign(churned=0), r"the holdout split has \d+ row\(s\) with class\(es\) \[0\]"),
    ],
    ids=["empty", "single-class"],
)
def test_evaluate_refuses_a_holdout_it_cannot_score(prepared, baseline, holdout_of, message):
    splits = replace(prepared.splits, holdout=holdout_of(prepared.splits.holdout))
    with pytest.raises(TrainingDataError, match=message):
        steps.evaluate(baseline, splits)


def test_select_takes_the_best_valid_score_and_the_first_listed_on_a_tie():
    def outcome(auc: float):
        return SimpleNamespace(valid={"roc_auc": auc})

    assert steps.select({"baseline": outcome(0.71), "xgboost": outcome(0.74)}, "roc_auc") == "xgboost"
    assert steps.select({"baseline": outcome(0.74), "xgboost": outcome(0.74)}, "roc_auc") == "baseline"
    assert steps.select({"baseline": outcome(float("nan")), "xgboost": outcome(0.6)}, "roc_auc") == "xgboost"
    with pytest.raises(TrainingDataError, match="no candidate has a finite valid roc_auc"):
        steps.select({"baseline": outcome(float("nan"))}, "roc_auc")
