"""Hyperparameter search: Optuna's TPE on rolling-origin folds of the training split.

The training split (ordered by event time) is cut into ``folds + 1`` consecutive blocks. Fold k
trains on blocks 1..k and validates on block k + 1, so every score is a forecast of later rows
from earlier ones, the way the model is used; rows are never shuffled across time. A trial fits
the candidate on each fold and scores the fold's validation block with the selection metric; its
value is the mean over the folds (the standard deviation is recorded beside it).

Trial 0 is the candidate's defaults, so the search never reports less than the untuned model
did on the same folds. Values fixed by settings or the run's Params are not searched.

Reproducible: the sampler is ``TPESampler(seed=seed)``, trials run one at a time, and every fit
uses the same seed and thread count, so the same data and seed give the same trials and the
same best parameters. The trial budget is the reproducible limit; the timeout is a safety cap
(checked between trials), and a search it cut short says so (``stopped_by``).

Pure: frames in, a :class:`Tuning` record out. Nothing here talks to MLflow; the recorder logs
the record as nested runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_pipeline.training.candidates import (
    BASELINE,
    SEARCH_SPACES,
    XGBOOST,
    baseline_pipeline,
    fit_booster,
    fixed_threads,
    merged_params,
)
from mlops_pipeline.training.features import ModelSpec, feature_frame, to_dmatrix

if TYPE_CHECKING:
    import numpy as np
    import optuna
    import pandas as pd

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
FAILED = "FAIL"
# Stop a search whose first trials all failed: the cause is almost always a fixed value (the same
# failure every time), and the budget would only repeat it.
MAX_FAILURES_WITHOUT_SUCCESS = 5


class TuningError(ValueError):
    """The search cannot run or found nothing (bad folds, every trial failed); the message says why."""


@dataclass(frozen=True)
class Budget:
    trials: int
    timeout_seconds: float
    folds: int


@dataclass(frozen=True)
class Fold:
    """One rolling-origin fold: train on rows before ``valid_start``, validate on [valid_start, valid_end)."""

    number: int
    valid_start: str
    valid_end: str | None  # None: to the end of the training split
    train_rows: int
    valid_rows: int
    valid_positives: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "valid_start": self.valid_start,
            "valid_end": self.valid_end,
            "train_rows": self.train_rows,
            "valid_rows": self.valid_rows,
            "valid_positives": self.valid_positives,
        }


@dataclass(frozen=True)
class Trial:
    """One finished or failed trial: the searched values, the score of each fold, when it ran."""

    number: int
    params: dict[str, Any]
    state: str
    fold_scores: tuple[float, ...] = ()
    fold_info: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    started_ms: int = 0
    finished_ms: int = 0

    @property
    def mean(self) -> float:
        return float(sum(self.fold_scores) / len(self.fold_scores)) if self.fold_scores else math.nan

    @property
    def std(self) -> float:
        if len(self.fold_scores) < 2:
            return math.nan if not self.fold_scores else 0.0
        mean = self.mean
        return math.sqrt(sum((s - mean) ** 2 for s in self.fold_scores) / (len(self.fold_scores) - 1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "params": self.params,
            "state": self.state,
            "fold_scores": list(self.fold_scores),
            "mean": self.mean,
            "std": self.std,
            "error": self.error,
            "seconds": round((self.finished_ms - self.started_ms) / 1000, 3),
        }


@dataclass(frozen=True)
class Tuning:
    """The search of one candidate: what was searched and fixed, every trial, the best parameters."""

    candidate: str
    metric: str
    seed: int
    budget: Budget
    searched: tuple[str, ...]
    fixed: dict[str, Any]
    best_params: dict[str, Any]  # the full hyperparameters the final model is fitted with
    folds: tuple[Fold, ...] = ()
    trials: tuple[Trial, ...] = ()
    best_trial: int | None = None
    stopped_by: str = "trials"  # trials | timeout | disabled | nothing to search
    seconds: float = 0.0

    @property
    def best(self) -> Trial | None:
        return next((t for t in self.trials if t.number == self.best_trial), None)

    @property
    def finished(self) -> int:
        return sum(t.state == COMPLETE for t in self.trials)

    def summary(self) -> dict[str, Any]:
        """What the training result carries about the search (small: no trial list)."""
        best = self.best
        return {
            "metric": self.metric,
            "searched": list(self.searched),
            "fixed": dict(self.fixed),
            "best_params": dict(self.best_params),
            "best_trial": self.best_trial,
            "cv_mean": best.mean if best else None,
            "cv_std": best.std if best else None,
            "trials_finished": self.finished,
            "trials_failed": len(self.trials) - self.finished,
            "budget_trials": self.budget.trials,
            "budget_seconds": self.budget.timeout_seconds,
            "folds": len(self.folds),
            "stopped_by": self.stopped_by,
            "seconds": round(self.seconds, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "seed": self.seed,
            **self.summary(),
            "fold_windows": [f.to_dict() for f in self.folds],
            "trials": [t.to_dict() for t in self.trials],
        }


# --- folds ------------------------------------------------------------------------------------------


@dataclass
class _FoldData:
    fold: Fold
    train: pd.DataFrame
    valid: pd.DataFrame
    cache: dict[str, Any] = field(default_factory=dict)  # encoded matrices, reused by every trial


def rolling_folds(train: pd.DataFrame, spec: ModelSpec, folds: int) -> list[_FoldData]:
    """``folds`` expanding-window folds of ``train`` (ordered by event time); raises :class:`TuningError`
    when a fold cannot be scored (too few rows, one class)."""
    n = len(train)
    times = train[spec.time_column]
    labels = train[spec.target].to_numpy()
    if not times.is_monotonic_increasing:
        raise TuningError(f"the training split must be ordered by {spec.time_column} to be cut into folds")
    # Cut at the event time of each block's first row; rows sharing a timestamp stay together.
    cuts = [int(times.searchsorted(times.iloc[min(n - 1, n * k // (folds + 1))], side="left")) for k in range(1, folds + 1)]
    bounds = [*cuts, n]
    found = []
    for number, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False), start=1):
        fold_train, fold_valid = train.iloc[:start], train.iloc[start:end]
        where = f"fold {number} of {folds} (rows {start}..{end} of the {n}-row training split)"
        for part, rows in (("trains", labels[:start]), ("validates", labels[start:end])):
            classes = sorted({int(v) for v in rows})
            if len(rows) == 0 or len(classes) < 2:
                raise TuningError(
                    f"{where} {part} on {len(rows)} row(s) with class(es) {classes}; a score needs both classes: "
                    "use fewer tune_folds or more days"
                )
        valid_end = None if end >= n else times.iloc[end].isoformat()
        fold = Fold(number, times.iloc[start].isoformat(), valid_end, start, end - start, int(labels[start:end].sum()))
        found.append(_FoldData(fold, fold_train, fold_valid))
    return found


# --- fitting one trial ------------------------------------------------------------------------------


def _scorer(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    scorers = {"roc_auc": roc_auc_score, "pr_auc": average_precision_score}
    if metric not in scorers:
        raise TuningError(f"the search cannot score {metric!r}; known: {sorted(scorers)}")
    return lambda labels, scores: float(scorers[metric](labels, scores))


def _fit_and_score(
    name: str, data: _FoldData, spec: ModelSpec, params: dict[str, Any], seed: int, nthread: int, score: Callable
) -> tuple[float, dict[str, Any]]:
    import numpy as np

    y_valid = data.valid[spec.target].to_numpy()
    if name == XGBOOST:
        if "dtrain" not in data.cache:
            data.cache["dtrain"] = to_dmatrix(data.train, spec, label=data.train[spec.target].to_numpy())
            data.cache["dvalid"] = to_dmatrix(data.valid, spec, label=y_valid)
        booster, best = fit_booster(data.cache["dtrain"], data.cache["dvalid"], params, seed, nthread)
        return score(y_valid, np.asarray(booster.predict(data.cache["dvalid"]), dtype="float64")), {"best_iteration": best}
    pipeline = baseline_pipeline(spec, params, seed)
    with fixed_threads(nthread):
        pipeline.fit(feature_frame(data.train, spec), data.train[spec.target].to_numpy())
    proba = np.asarray(pipeline.predict_proba(feature_frame(data.valid, spec))[:, 1], dtype="float64")
    return score(y_valid, proba), {}


def _suggest(trial: optuna.Trial, name: str, searched: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in searched:
        space = SEARCH_SPACES[name][key]
        if space.integer:
            values[key] = trial.suggest_int(key, int(space.low), int(space.high), log=space.log)
        else:
            values[key] = trial.suggest_float(key, space.low, space.high, log=space.log)
    return values


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every trial at INFO; the search logs one summary instead (failures still warn)."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


# --- the search ---------------------------------------------------------------------------------------


def search(
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
    """Search candidate ``name``'s hyperparameters on rolling folds of ``train``; see the module docstring.

    Raises :class:`TuningError` when the folds cannot be scored or no trial finished."""
    import optuna

    if name not in (BASELINE, XGBOOST):
        raise TuningError(f"no search space for candidate {name!r}")
    fixed = dict(fixed or {})
    defaults = merged_params(name, fixed)  # validates the fixed keys
    searched = tuple(key for key in SEARCH_SPACES[name] if key not in fixed)
    record: dict[str, Any] = {"candidate": name, "metric": metric, "seed": seed, "budget": budget, "searched": searched, "fixed": fixed}
    if budget.trials == 0 or not searched:
        return Tuning(**record, best_params=defaults, stopped_by="disabled" if budget.trials == 0 else "nothing to search")

    score = _scorer(metric)
    folds = rolling_folds(train, spec, budget.folds)
    outcomes: dict[int, tuple[tuple[float, ...], tuple[dict[str, Any], ...], str | None]] = {}

    def objective(trial: optuna.Trial) -> float:
        params = {**defaults, **_suggest(trial, name, searched)}
        scores, infos = [], []
        try:
            for data in folds:
                value, info = _fit_and_score(name, data, spec, params, seed, nthread, score)
                if not math.isfinite(value):
                    raise TuningError(f"fold {data.fold.number} scored {value}")
                scores.append(value)
                infos.append(info)
        except ValueError as exc:  # a bad combination of values (XGBoostError is a ValueError too)
            outcomes[trial.number] = (tuple(scores), tuple(infos), f"{type(exc).__name__}: {exc}"[:1000])
            raise
        outcomes[trial.number] = (tuple(scores), tuple(infos), None)
        return float(sum(scores) / len(scores))

    def stop_when_nothing_works(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        states = [t.state for t in study.trials]
        if optuna.trial.TrialState.COMPLETE not in states and len(states) >= MAX_FAILURES_WITHOUT_SUCCESS:
            study.stop()

    started = time.monotonic()
    with _quiet_optuna():
        sampler = optuna.samplers.TPESampler(seed=seed)
        study = optuna.create_study(direction="maximize", sampler=sampler, study_name=f"{name}-tuning")
        study.enqueue_trial({key: defaults[key] for key in searched})  # trial 0: the defaults
        study.optimize(
            objective,
            n_trials=budget.trials,
            timeout=budget.timeout_seconds,
            n_jobs=1,
            catch=(ValueError,),
            callbacks=[stop_when_nothing_works],
            gc_after_trial=False,
            show_progress_bar=False,
        )
    seconds = time.monotonic() - started

    trials = tuple(_trial_record(frozen, outcomes) for frozen in study.trials)
    finished = [t for t in trials if t.state == COMPLETE]
    if not finished:
        errors = sorted({t.error or t.state for t in trials})
        raise TuningError(
            f"the {name} search finished no trial: {len(trials)} of {budget.trials} trial(s) ran in {seconds:.1f}s "
            f"and failed ({'; '.join(errors)[:1500]})"
        )
    best = study.best_trial
    stopped_by = "trials" if len(trials) >= budget.trials else "timeout"
    if stopped_by == "timeout":
        log.warning(
            "%s search stopped by its %.0fs timeout after %d of %d trial(s): the best parameters depend on this "
            "machine's speed; raise tune_timeout_seconds or lower tune_trials to make the search repeatable",
            name, budget.timeout_seconds, len(trials), budget.trials,
        )  # fmt: skip
    tuning = Tuning(
        **record,
        best_params={**defaults, **{key: best.params[key] for key in searched}},
        folds=tuple(data.fold for data in folds),
        trials=trials,
        best_trial=best.number,
        stopped_by=stopped_by,
        seconds=seconds,
    )
    best_record = trials[best.number]
    log.info(
        "%s search: %d/%d trial(s) finished in %.1fs (%s); best trial %d, %s %.4f +- %.4f over %d folds; params %s",
        name, tuning.finished, budget.trials, seconds, stopped_by, best.number, metric,
        best_record.mean, best_record.std, len(folds), tuning.best_params,
    )  # fmt: skip
    return tuning


def _trial_record(frozen: optuna.trial.FrozenTrial, outcomes: dict[int, Any]) -> Trial:
    scores, infos, error = outcomes.get(frozen.number, ((), (), None))
    state = COMPLETE if frozen.state.name == COMPLETE else FAILED
    if state == FAILED and error is None:
        error = f"trial ended {frozen.state.name}"
    return Trial(
        number=frozen.number,
        params=dict(frozen.params),
        state=state,
        fold_scores=tuple(scores),
        fold_info=tuple(infos),
        error=error,
        started_ms=_millis(frozen.datetime_start),
        finished_ms=_millis(frozen.datetime_complete or frozen.datetime_start),
    )


def _millis(moment: Any) -> int:
    return int(moment.timestamp() * 1000) if moment is not None else 0
