"""Training's side of the model input contract: data frames in, the contract's matrix out.

The contract itself — the ``metadata.mlops`` block (:class:`ModelSpec`, :class:`Feature`) and the
encoding rules — lives in :mod:`mlops_pipeline.contracts.features`, shared with the model server.
This module adds what needs pandas, XGBoost or MLflow: the spec fitted on the training split
(categories = the sorted distinct values seen there), frame columns handed to the contract's
encoder, the DMatrix, and the raw-column signature and input example logged with the model.
XGBoost is trained with feature types ``q``/``c`` and ``enable_categorical=True``; the
scikit-learn baseline takes the raw columns instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_pipeline.contracts.features import (
    CATEGORICAL,
    NUMERIC,
    Feature,
    FeatureError,
    FeatureKind,
    ModelSpec,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import xgboost as xgb
    from mlflow.models import ModelSignature

    from mlops_pipeline.datasets import DatasetSpec

__all__ = [
    "CATEGORICAL",
    "NUMERIC",
    "Feature",
    "FeatureError",
    "FeatureKind",
    "ModelSpec",
    "encode",
    "feature_frame",
    "fit_model_spec",
    "input_example",
    "model_signature",
    "require_columns",
    "to_dmatrix",
]


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
    """The XGBoost input matrix for ``frame``: its feature columns through the contract's encoder.

    pandas' missing values (NaN, None, ``pd.NA``) become nulls; a numeric column's non-numbers are
    coerced to null, a categorical column's values are compared as strings."""
    import numpy as np
    import pandas as pd

    require_columns(frame, spec.names, where="the input frame")
    columns: dict[str, Any] = {}
    for feature in spec.features:
        column = frame[feature.name]
        if feature.kind == CATEGORICAL:
            columns[feature.name] = column.astype("string").to_numpy(dtype=object, na_value=None)
        else:
            columns[feature.name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return spec.encoder.encode_columns(columns, len(frame))


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
