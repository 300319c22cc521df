"""The model's input contract: the feature list, its encoding, and the ``metadata.mlops`` block.

This module is the single definition of how raw feature columns become the XGBoost matrix; the
model server implements the same rules from the ``metadata.mlops`` block in ``MLmodel``::

    metadata:
      mlops:
        features:                      # in model input order
          - {name: tenure_months, kind: numeric}
          - {name: plan, kind: categorical, categories: [basic, premium, standard]}
        id_column: customer_id
        time_column: event_time
        target: churned
        threshold: 0.5                 # label = int(proba >= threshold), on the calibrated probability
        calibration: {method: platt, a: 1.1, b: -0.3}   # optional; see mlops_pipeline.contracts.calibration

Encoding: a float32 matrix, column i = feature i in that order; numeric -> float (null -> NaN);
categorical -> index of the value in ``categories`` (null or unseen -> NaN). Categories are the
sorted distinct values of the training split. XGBoost is trained with feature types ``q``/``c``
and ``enable_categorical=True``; the scikit-learn baseline takes the raw columns instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import xgboost as xgb
    from mlflow.models import ModelSignature

    from mlops_pipeline.datasets import DatasetSpec

FeatureKind = Literal["numeric", "categorical"]
NUMERIC: FeatureKind = "numeric"
CATEGORICAL: FeatureKind = "categorical"


class FeatureError(ValueError):
    """A frame does not fit the model's input contract (e.g. a feature column is missing)."""


@dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == CATEGORICAL:
            return {"name": self.name, "kind": self.kind, "categories": list(self.categories)}
        return {"name": self.name, "kind": self.kind}


@dataclass(frozen=True)
class ModelSpec:
    """What ``metadata.mlops`` says: features in input order, key columns, decision threshold and the
    calibration map from the model's raw score to the probability (None: the raw score is it)."""

    features: tuple[Feature, ...]
    id_column: str
    time_column: str
    target: str
    threshold: float = 0.5
    calibration: Mapping[str, Any] | None = field(default=None, hash=False)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def feature_types(self) -> list[str]:
        return ["c" if f.kind == CATEGORICAL else "q" for f in self.features]

    def with_threshold(self, threshold: float) -> ModelSpec:
        return replace(self, threshold=float(threshold))

    def with_calibration(self, block: Mapping[str, Any] | None) -> ModelSpec:
        from mlops_pipeline.contracts.calibration import check

        return replace(self, calibration=check(block))

    def to_metadata(self) -> dict[str, Any]:
        block: dict[str, Any] = {
            "features": [f.to_dict() for f in self.features],
            "id_column": self.id_column,
            "time_column": self.time_column,
            "target": self.target,
            "threshold": float(self.threshold),
        }
        if self.calibration is not None:
            block["calibration"] = dict(self.calibration)
        return block

    @classmethod
    def from_metadata(cls, block: dict[str, Any]) -> ModelSpec:
        from mlops_pipeline.contracts.calibration import CalibrationError, check

        try:
            features = tuple(
                Feature(name=f["name"], kind=f["kind"], categories=tuple(f.get("categories") or ()))
                for f in block["features"]
            )
            return cls(
                features=features,
                id_column=block["id_column"],
                time_column=block["time_column"],
                target=block["target"],
                threshold=float(block["threshold"]),
                calibration=check(block.get("calibration")),
            )
        except (KeyError, TypeError) as exc:
            raise FeatureError(f"metadata.mlops block is incomplete ({exc!r}): {block!r}") from exc
        except CalibrationError as exc:
            raise FeatureError(f"metadata.mlops.{exc}") from exc


def fit_model_spec(train: pd.DataFrame, dataset: DatasetSpec, threshold: float = 0.5) -> ModelSpec:
    """Features in the dataset's order (numerics, then categoricals) with categories seen in ``train``."""
    require_columns(train, dataset.feature_columns, where="the training split")
    features = [Feature(name, NUMERIC) for name in dataset.numeric_features]
    for name in dataset.categorical_features:
        values = train[name].dropna().astype(str).unique().tolist()
        features.append(Feature(name, CATEGORICAL, tuple(sorted(values))))
    return ModelSpec(
        features=tuple(features),
        id_column=dataset.id_column,
        time_column=dataset.time_column,
        target=dataset.target,
        threshold=threshold,
    )


def require_columns(frame: pd.DataFrame, columns: list[str], *, where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FeatureError(f"{where} lacks feature column(s) {missing}; it has {list(frame.columns)}")


def feature_frame(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The raw feature columns in model input order (what the scikit-learn pipeline and the signature see)."""
    require_columns(frame, spec.names, where="the input frame")
    return frame.loc[:, spec.names]


def encode(frame: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    """The XGBoost input matrix for ``frame`` (see the module docstring for the rules)."""
    import numpy as np
    import pandas as pd

    require_columns(frame, spec.names, where="the input frame")
    matrix = np.full((len(frame), len(spec.features)), np.nan, dtype=np.float32)
    for i, feature in enumerate(spec.features):
        column = frame[feature.name]
        if feature.kind == CATEGORICAL:
            codes = pd.Categorical(column.astype("string"), categories=list(feature.categories)).codes
            matrix[:, i] = np.where(codes >= 0, codes, np.nan)
        else:
            matrix[:, i] = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return matrix


def to_dmatrix(frame: pd.DataFrame, spec: ModelSpec, label: Any = None) -> xgb.DMatrix:
    import xgboost as xgb

    return xgb.DMatrix(
        encode(frame, spec),
        label=label,
        feature_names=spec.names,
        feature_types=spec.feature_types,
        enable_categorical=True,
    )


def model_signature(train: pd.DataFrame, spec: ModelSpec) -> ModelSignature:
    """Raw-column signature: numerics ``double``, categoricals ``string``; a column that had nulls
    in training is optional. Output: the churn probability."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    inputs: list[ColSpec | TensorSpec] = [
        ColSpec(
            "string" if f.kind == CATEGORICAL else "double",
            f.name,
            required=not bool(train[f.name].isna().any()),
        )
        for f in spec.features
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double")]))


def input_example(train: pd.DataFrame, spec: ModelSpec, rows: int = 5) -> pd.DataFrame:
    """A few raw training rows, categoricals as plain strings (JSON-friendly)."""
    example = feature_frame(train, spec).head(rows).copy()
    for f in spec.features:
        if f.kind == CATEGORICAL:
            example[f.name] = example[f.name].astype("object")
    return example.reset_index(drop=True)
