"""The candidate models: a scikit-learn baseline and XGBoost, trained the same way every time.

* ``baseline``: a Pipeline of a ColumnTransformer (median-impute + scale numerics, one-hot the
  categoricals with the categories of :class:`ModelSpec`, unseen or null -> all zeros) and a
  LogisticRegression. Built from scikit-learn classes only, so loading it needs no project code;
  ``predict_proba`` takes a DataFrame of the raw feature columns.
* ``xgboost``: a native Booster on the contract's encoded matrix (:mod:`mlops_pipeline.training.features`),
  ``tree_method=hist``, early stopping on the valid split; the returned booster holds exactly the
  trees up to the best iteration, so plain ``booster.predict`` is what was evaluated.

Each candidate has defaults and a search space (:data:`SEARCH_SPACES`, what the tuning step may
vary). The model's own score is :func:`raw_proba`; the probability every consumer sees is
:func:`predict_proba`, the raw score through the spec's calibration map
(:mod:`mlops_pipeline.contracts.calibration`), the code the model server runs too.

Same data, hyperparameters and seed give the same model: XGBoost and the linear algebra under
scikit-learn run with a fixed number of threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mlops_pipeline.training.features import ModelSpec, feature_frame, to_dmatrix

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import xgboost as xgb

BASELINE = "baseline"
XGBOOST = "xgboost"
FLAVORS = {BASELINE: "sklearn", XGBOOST: "xgboost"}

BASELINE_DEFAULTS: dict[str, Any] = {"C": 1.0, "max_iter": 1000, "class_weight": None}
XGBOOST_DEFAULTS: dict[str, Any] = {
    "n_estimators": 300,
    "early_stopping_rounds": 25,
    "learning_rate": 0.08,
    "max_depth": 4,
    "min_child_weight": 2.0,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "reg_lambda": 1.0,
    "max_cat_to_onehot": 4,
}
DEFAULTS = {BASELINE: BASELINE_DEFAULTS, XGBOOST: XGBOOST_DEFAULTS}


@dataclass(frozen=True)
class Range:
    """One searched hyperparameter: a float (or integer) range, sampled on a log scale when ``log``."""

    low: float
    high: float
    log: bool = False
    integer: bool = False


# What the tuning step varies. The number of boosting rounds is not searched: early stopping on the
# validation data picks it. Each default lies inside its range, so trial 0 (the defaults) is a
# valid point of the search.
SEARCH_SPACES: dict[str, dict[str, Range]] = {
    BASELINE: {"C": Range(1e-3, 1e2, log=True)},
    XGBOOST: {
        "learning_rate": Range(0.03, 0.3, log=True),
        "max_depth": Range(2, 8, integer=True),
        "min_child_weight": Range(0.5, 20.0, log=True),
        "subsample": Range(0.6, 1.0),
        "colsample_bytree": Range(0.5, 1.0),
        "reg_lambda": Range(1e-3, 10.0, log=True),
    },
}


class HyperparameterError(ValueError):
    pass


@dataclass(frozen=True)
class Candidate:
    name: str
    model: Any  # sklearn Pipeline or xgboost Booster
    spec: ModelSpec
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. best_iteration

    @property
    def flavor(self) -> str:
        return FLAVORS[self.name]

    def with_spec(self, spec: ModelSpec) -> Candidate:
        return replace(self, spec=spec)

    def raw_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return raw_proba(self.model, self.spec, frame)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return predict_proba(self.model, self.spec, frame)


def raw_proba(model: Any, spec: ModelSpec, frame: pd.DataFrame) -> np.ndarray:
    """The model's own churn score per row of ``frame`` (raw columns), before calibration."""
    import numpy as np
    import xgboost as xgb

    if isinstance(model, xgb.Booster):
        return np.asarray(model.predict(to_dmatrix(frame, spec)), dtype="float64")
    return np.asarray(model.predict_proba(feature_frame(frame, spec))[:, 1], dtype="float64")


def predict_proba(model: Any, spec: ModelSpec, frame: pd.DataFrame) -> np.ndarray:
    """Churn probability per row of ``frame``: the raw score through ``spec.calibration`` (what serving serves)."""
    return spec.probabilities(raw_proba(model, spec, frame))


def merged_params(name: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    defaults = DEFAULTS[name]
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise HyperparameterError(f"unknown {name} hyperparameter(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **overrides}


@contextlib.contextmanager
def fixed_threads(nthread: int) -> Iterator[None]:
    """BLAS/OpenMP pools capped at ``nthread`` while fitting: the float sums, hence the bytes, repeat."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=nthread):
        yield


def baseline_pipeline(spec: ModelSpec, params: dict[str, Any], seed: int) -> Any:
    """The unfitted scikit-learn Pipeline of the baseline."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [f.name for f in spec.features if f.kind == "numeric"]
    categorical = [f for f in spec.features if f.kind == "categorical"]
    preprocess = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            (
                "categorical",
                OneHotEncoder(categories=[list(f.categories) for f in categorical], handle_unknown="ignore"),
                [f.name for f in categorical],
            ),
        ],
        remainder="drop",
    )
    classifier = LogisticRegression(
        C=float(params["C"]), max_iter=int(params["max_iter"]), class_weight=params["class_weight"], random_state=seed
    )
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def train_baseline(train: pd.DataFrame, spec: ModelSpec, params: dict[str, Any], seed: int, nthread: int = 1) -> Candidate:
    pipeline = baseline_pipeline(spec, params, seed)
    with fixed_threads(nthread):
        pipeline.fit(feature_frame(train, spec), train[spec.target].to_numpy())
    return Candidate(BASELINE, pipeline, spec, params)


def booster_params(params: dict[str, Any], seed: int, nthread: int) -> dict[str, Any]:
    """XGBoost's native parameters for the candidate's hyperparameters."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "eta": float(params["learning_rate"]),
        "max_depth": int(params["max_depth"]),
        "min_child_weight": float(params["min_child_weight"]),
        "subsample": float(params["subsample"]),
        "colsample_bytree": float(params["colsample_bytree"]),
        "lambda": float(params["reg_lambda"]),
        "max_cat_to_onehot": int(params["max_cat_to_onehot"]),
        "seed": seed,
        "nthread": nthread,
    }


def fit_booster(
    dtrain: xgb.DMatrix, dvalid: xgb.DMatrix, params: dict[str, Any], seed: int, nthread: int
) -> tuple[xgb.Booster, int]:
    """A booster early-stopped on ``dvalid``, cut to its best iteration; and that iteration."""
    import xgboost as xgb

    booster = xgb.train(
        booster_params(params, seed, nthread),
        dtrain,
        num_boost_round=int(params["n_estimators"]),
        evals=[(dvalid, "valid")],
        early_stopping_rounds=int(params["early_stopping_rounds"]) or None,
        verbose_eval=False,
    )
    rounds = booster.num_boosted_rounds()
    best = int(getattr(booster, "best_iteration", rounds - 1))
    if best + 1 < rounds:
        booster = booster[: best + 1]  # keep exactly the evaluated trees; served predict uses all trees
    booster.set_param({"nthread": nthread})
    return booster, best


def train_xgboost(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    spec: ModelSpec,
    params: dict[str, Any],
    seed: int,
    nthread: int,
) -> Candidate:
    dtrain = to_dmatrix(train, spec, label=train[spec.target].to_numpy())
    dvalid = to_dmatrix(valid, spec, label=valid[spec.target].to_numpy())
    booster, best = fit_booster(dtrain, dvalid, params, seed, nthread)
    return Candidate(XGBOOST, booster, spec, params, info={"best_iteration": best, "trees": best + 1})


def train_candidate(
    name: str,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    spec: ModelSpec,
    overrides: dict[str, Any] | None,
    *,
    seed: int,
    nthread: int,
) -> Candidate:
    """Fit candidate ``name`` with its defaults updated by ``overrides`` (``valid`` early-stops XGBoost)."""
    if name not in FLAVORS:
        raise HyperparameterError(f"unknown candidate {name!r}; known: {sorted(FLAVORS)}")
    params = merged_params(name, overrides)
    if name == BASELINE:
        return train_baseline(train, spec, params, seed, nthread)
    return train_xgboost(train, valid, spec, params, seed, nthread)
