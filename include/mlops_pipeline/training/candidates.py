"""The candidate models: a scikit-learn baseline and XGBoost, trained the same way every time.

* ``baseline``: a Pipeline of a ColumnTransformer (median-impute + scale numerics, one-hot the
  categoricals with the categories of :class:`ModelSpec`, unseen or null -> all zeros) and a
  LogisticRegression. Built from scikit-learn classes only, so loading it needs no project code;
  ``predict_proba`` takes a DataFrame of the raw feature columns.
* ``xgboost``: a native Booster on the encoded matrix of :mod:`mlops_pipeline.training.features`,
  ``tree_method=hist``, early stopping on the valid split; the returned booster holds exactly the
  trees up to the best iteration, so plain ``booster.predict`` is what was evaluated.

Same data, hyperparameters and seed give the same model (XGBoost with a fixed ``nthread``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_pipeline.training.features import ModelSpec, feature_frame, to_dmatrix

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

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


class HyperparameterError(ValueError):
    pass


@dataclass
class Candidate:
    name: str
    model: Any  # sklearn Pipeline or xgboost Booster
    spec: ModelSpec
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. best_iteration

    @property
    def flavor(self) -> str:
        return FLAVORS[self.name]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return predict_proba(self.model, self.spec, frame)


def predict_proba(model: Any, spec: ModelSpec, frame: pd.DataFrame) -> np.ndarray:
    """Churn probability per row of ``frame`` (raw columns) for a booster or a scikit-learn pipeline."""
    import numpy as np
    import xgboost as xgb

    if isinstance(model, xgb.Booster):
        return np.asarray(model.predict(to_dmatrix(frame, spec)), dtype="float64")
    return np.asarray(model.predict_proba(feature_frame(frame, spec))[:, 1], dtype="float64")


def merged_params(name: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    defaults = {BASELINE: BASELINE_DEFAULTS, XGBOOST: XGBOOST_DEFAULTS}[name]
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise HyperparameterError(f"unknown {name} hyperparameter(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **overrides}


def train_baseline(train: pd.DataFrame, spec: ModelSpec, params: dict[str, Any], seed: int) -> Candidate:
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
    pipeline = Pipeline([("preprocess", preprocess), ("classifier", classifier)])
    pipeline.fit(feature_frame(train, spec), train[spec.target].to_numpy())
    return Candidate(BASELINE, pipeline, spec, params)


def train_xgboost(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    spec: ModelSpec,
    params: dict[str, Any],
    seed: int,
    nthread: int,
) -> Candidate:
    import xgboost as xgb

    booster_params = {
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
    dtrain = to_dmatrix(train, spec, label=train[spec.target].to_numpy())
    dvalid = to_dmatrix(valid, spec, label=valid[spec.target].to_numpy())
    booster = xgb.train(
        booster_params,
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
    params = merged_params(name, overrides)
    if name == BASELINE:
        return train_baseline(train, spec, params, seed)
    if name == XGBOOST:
        return train_xgboost(train, valid, spec, params, seed, nthread)
    raise HyperparameterError(f"unknown candidate {name!r}; known: {sorted(FLAVORS)}")
