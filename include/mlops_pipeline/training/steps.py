"""The steps of a training, as plain functions on plain values (no MLflow, no Airflow)::

    resolve    request + settings                 -> TrainConfig (days, seed, candidates, fixed values)
    prepare    lake window (N days before as-of)  -> Prepared (window, train/valid/holdout by event time, spec)
    tune       training split                     -> Tuning (Optuna on rolling folds; tuning.search)
    fit        train (+ valid to early-stop)      -> Candidate with the best parameters
    calibrate  valid                              -> the candidate with its calibration map (calibration)
    evaluate   valid and holdout                  -> threshold on calibrated valid; metrics on both
    select     the evaluations                    -> the winner's name (best valid selection metric)

``training.pipeline.train_and_register`` wires them in this order and hands the result to
``training.recorder``, the one module that writes to MLflow. Every step raises a ``ValueError``
(subclass) on bad input, naming what is wrong; the wiring adds the run and the step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from mlops_pipeline.training.data import TrainingDataError

if TYPE_CHECKING:
    import pandas as pd

    from mlops_pipeline.config import TrainSettings
    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.datasets import DatasetSpec
    from mlops_pipeline.training.calibration import CalibrationFit
    from mlops_pipeline.training.candidates import Candidate
    from mlops_pipeline.training.data import Splits, TrainingWindow
    from mlops_pipeline.training.features import ModelSpec
    from mlops_pipeline.training.tuning import Budget, Tuning


# --- resolve ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """One training's choices: the settings with the run's Params applied, validated."""

    days: int
    seed: int
    candidates: tuple[str, ...]
    fixed: dict[str, dict[str, Any]]  # per candidate: values the search leaves alone (settings, then Params)

    def to_dict(self) -> dict[str, Any]:
        return {"days": self.days, "seed": self.seed, "candidates": list(self.candidates), "fixed": self.fixed}


def resolve(
    training: TrainSettings,
    *,
    days: int | None = None,
    seed: int | None = None,
    candidates: list[str] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """The settings with a run's overrides (None = the setting); unknown candidates or keys raise
    :class:`~mlops_pipeline.training.candidates.HyperparameterError`."""
    from mlops_pipeline.training.candidates import FLAVORS, HyperparameterError, merged_params

    names = list(dict.fromkeys(candidates or training.candidates))
    unknown = [n for n in names if n not in FLAVORS]
    if unknown or not names:
        raise HyperparameterError(f"unknown candidate(s) {unknown or names}; known: {sorted(FLAVORS)}")
    fixed: dict[str, dict[str, Any]] = {k: dict(v) for k, v in training.hyperparameters.items()}
    for name, values in (hyperparameters or {}).items():
        if not isinstance(values, dict):
            raise HyperparameterError(f"hyperparameters for {name!r} must be a mapping, got {values!r}")
        fixed.setdefault(name, {}).update(values)
    stray = sorted(set(fixed) - set(FLAVORS))
    if stray:
        raise HyperparameterError(f"hyperparameters given for unknown candidate(s) {stray}; known: {sorted(FLAVORS)}")
    for name in names:
        merged_params(name, fixed.get(name))  # raises on unknown keys before any work
    days = days if days is not None else training.days
    if days < 1:
        raise TrainingDataError(f"training days must be at least 1, got {days}")
    return TrainConfig(
        days=days,
        seed=seed if seed is not None else training.seed,
        candidates=tuple(names),
        fixed={name: dict(fixed.get(name) or {}) for name in names},
    )


# --- prepare ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    window: TrainingWindow
    splits: Splits
    spec: ModelSpec  # the features with the training split's categories; no threshold or calibration yet


def prepare(lake: Lake, dataset: DatasetSpec, as_of: datetime | date, days: int, training: TrainSettings) -> Prepared:
    """The last ``days`` validated partitions before ``as_of``, read (checksums verified) and split."""
    from mlops_pipeline.training.data import load_window, select_window

    window = select_window(lake, as_of, days)
    return split(load_window(lake, dataset, window), dataset, window, training)


def split(frame: pd.DataFrame, dataset: DatasetSpec, window: TrainingWindow, training: TrainSettings) -> Prepared:
    """Train / valid / holdout by event time, checked to be trainable (raises TrainingDataError otherwise)."""
    from mlops_pipeline.training.data import check_trainable, split_by_time
    from mlops_pipeline.training.features import fit_model_spec

    splits = split_by_time(
        frame, dataset, valid_fraction=training.valid_fraction, holdout_fraction=training.holdout_fraction
    )
    check_trainable(splits, dataset, window, training.min_split_rows)
    return Prepared(window, splits, fit_model_spec(splits.train, dataset))


def describe_splits(prepared: Prepared, dataset: DatasetSpec) -> dict[str, dict[str, Any]]:
    """Per split: rows, positives, the digest of its exact rows and the partitions it came from (with
    the lake version of each: number and digest)."""
    from mlops_pipeline.training.data import split_digest, split_partitions

    window, splits = prepared.window, prepared.splits
    return {
        name: {
            "rows": len(part),
            "positives": int(part[dataset.target].sum()),
            "digest": split_digest(window, name, splits.boundaries),
            "uris": [p.uri for p in split_partitions(window, part, dataset)],
            "versions": [
                {"ds": p.ds, "uri": p.uri, "version": p.version, "version_digest": p.digest}
                for p in split_partitions(window, part, dataset)
            ],
        }
        for name, part in splits.items()
    }


# --- tune, fit, calibrate -------------------------------------------------------------------------------


def budget_of(training: TrainSettings) -> Budget:
    from mlops_pipeline.training.tuning import Budget

    return Budget(trials=training.tune_trials, timeout_seconds=training.tune_timeout_seconds, folds=training.tune_folds)


def tune(
    name: str,
    train: pd.DataFrame,
    spec: ModelSpec,
    fixed: dict[str, Any] | None,
    *,
    metric: str,
    seed: int,
    nthread: int,
    budget: Budget,
) -> Tuning:
    """The best hyperparameters of candidate ``name`` on rolling folds of ``train`` (see :mod:`.tuning`)."""
    from mlops_pipeline.training.tuning import search

    return search(name, train, spec, fixed, metric=metric, seed=seed, nthread=nthread, budget=budget)


def fit(name: str, splits: Splits, spec: ModelSpec, params: dict[str, Any], *, seed: int, nthread: int) -> Candidate:
    """Candidate ``name`` fitted on the training split with ``params`` (XGBoost early-stops on valid)."""
    from mlops_pipeline.training.candidates import train_candidate

    return train_candidate(name, splits.train, splits.valid, spec, params, seed=seed, nthread=nthread)


def calibrate(candidate: Candidate, valid: pd.DataFrame, folds: int) -> tuple[Candidate, CalibrationFit]:
    """The candidate with the calibration map chosen on ``valid`` in its spec (what ``predict_proba`` applies)."""
    from mlops_pipeline.training.calibration import choose_calibration

    fitted = choose_calibration(candidate.raw_proba(valid), valid[candidate.spec.target].to_numpy(), folds)
    return candidate.with_spec(candidate.spec.with_calibration(fitted.block)), fitted


# --- evaluate, select -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    candidate: Candidate  # calibrated, with the threshold chosen on valid
    valid: dict[str, float]
    holdout: dict[str, float]
    holdout_raw: dict[str, float]  # brier and ece of the uncalibrated score on the holdout


def _labelled(frame: pd.DataFrame, target: str, what: str) -> Any:
    """The 0/1 labels of ``frame``; raises TrainingDataError when it cannot be scored (no rows, one class)."""
    if frame.empty:
        raise TrainingDataError(f"the {what} split is empty: there is nothing to score the candidate on")
    labels = frame[target]
    classes = sorted(labels.dropna().unique().tolist())
    if labels.isna().any() or len(classes) < 2:
        raise TrainingDataError(
            f"the {what} split has {len(frame)} row(s) with class(es) {classes}"
            + (" and null labels" if labels.isna().any() else "")
            + "; ROC AUC, PR AUC and the threshold need both classes"
        )
    return labels.to_numpy().astype(int)


def evaluate(candidate: Candidate, splits: Splits) -> Evaluation:
    """Threshold maximising F1 on calibrated valid probabilities; valid and holdout metrics of what serving
    will serve (calibrated), with the expected calibration error (``ece``) beside the usual ones."""
    from mlops_pipeline.training.calibration import calibration_error, expected_calibration_error
    from mlops_pipeline.training.evaluation import choose_threshold, classification_metrics

    target = candidate.spec.target
    y_valid = _labelled(splits.valid, target, "valid")
    y_holdout = _labelled(splits.holdout, target, "holdout")
    valid_proba = candidate.predict_proba(splits.valid)
    threshold = choose_threshold(y_valid, valid_proba)
    candidate = candidate.with_spec(candidate.spec.with_threshold(threshold))
    holdout_proba = candidate.predict_proba(splits.holdout)
    return Evaluation(
        candidate=candidate,
        valid={**classification_metrics(y_valid, valid_proba, threshold), "ece": expected_calibration_error(y_valid, valid_proba)},
        holdout={
            **classification_metrics(y_holdout, holdout_proba, threshold),
            "ece": expected_calibration_error(y_holdout, holdout_proba),
        },
        holdout_raw=calibration_error(y_holdout, candidate.raw_proba(splits.holdout)),
    )


@dataclass(frozen=True)
class CandidateOutcome:
    """Everything the steps found about one candidate: its search, calibration and evaluation."""

    tuning: Tuning
    calibration: CalibrationFit
    evaluation: Evaluation

    @property
    def candidate(self) -> Candidate:
        return self.evaluation.candidate

    @property
    def valid(self) -> dict[str, float]:
        return self.evaluation.valid

    @property
    def holdout(self) -> dict[str, float]:
        return self.evaluation.holdout


def select(outcomes: Mapping[str, CandidateOutcome], metric: str) -> str:
    """The best candidate on the valid split's ``metric`` (ties: the first listed, i.e. the simpler baseline)."""
    if not outcomes:
        raise TrainingDataError("no candidate to select from")
    scores = {name: outcome.valid.get(metric, math.nan) for name, outcome in outcomes.items()}
    scored = {name: score for name, score in scores.items() if math.isfinite(score)}
    if not scored:
        raise TrainingDataError(f"no candidate has a finite valid {metric}: {scores}")
    return max(scored, key=lambda name: scored[name])


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): the sampling standard error of a ROC AUC."""
    if positives == 0 or negatives == 0 or not math.isfinite(auc):
        return float("nan")
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))
