"""The model's input contract: the ``metadata.mlops`` block and the one encoding of its features.

Training writes the block into ``MLmodel``; the registry, the monitor and the model server read it::

    metadata:
      mlops:
        features:                      # in model input order
          - {name: tenure_months, kind: numeric}
          - {name: plan, kind: categorical, categories: [basic, premium, standard]}
        id_column: customer_id         # carried with a prediction, never a model input
        time_column: event_time
        target: churned
        threshold: 0.5                 # label = int(probability >= threshold), on the calibrated probability
        calibration: {method: platt, a: 1.1, b: -0.3}   # optional; see mlops_pipeline.contracts.calibration

Encoding (:class:`Encoder`): a float32 matrix, column ``i`` = feature ``i`` in that order;
numeric -> the value as a float (null -> NaN); categorical -> the index of the value in
``categories`` (null or unseen -> NaN). XGBoost is trained on these codes as categorical features
(type ``c``), so a code must mean the same category wherever a matrix is built: training builds it
from data frame columns (:meth:`Encoder.encode_columns`), the model server from JSON records
(its fast paths call :meth:`Encoder.numeric_rows`, :meth:`Encoder.categorical_codes`,
:meth:`Encoder.assemble` and :meth:`Encoder.from_rows` after validating each value).

Numpy only: the model server imports this module without pandas, MLflow or Airflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np

from mlops_pipeline.contracts.calibration import CalibrationError, apply, check

FeatureKind = Literal["numeric", "categorical"]
NUMERIC: FeatureKind = "numeric"
CATEGORICAL: FeatureKind = "categorical"
KINDS: tuple[FeatureKind, ...] = (NUMERIC, CATEGORICAL)
MISSING = math.nan  # the code of a null, an unseen category, an omitted optional value


class FeatureError(ValueError):
    """Input that does not fit the contract: a bad ``metadata.mlops`` block (the message names the
    key) or data that lacks or garbles a feature (the message names the feature)."""


@dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == CATEGORICAL:
            return {"name": self.name, "kind": self.kind, "categories": list(self.categories)}
        return {"name": self.name, "kind": self.kind}

    def codes(self) -> dict[str, float]:
        """Category -> its code (the index in ``categories``, as the float the matrix holds)."""
        return {category: float(index) for index, category in enumerate(self.categories)}


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
        """XGBoost's feature types: ``q`` (quantitative) or ``c`` (categorical codes)."""
        return ["c" if f.kind == CATEGORICAL else "q" for f in self.features]

    @cached_property
    def encoder(self) -> Encoder:
        return Encoder(self)

    def with_threshold(self, threshold: float) -> ModelSpec:
        return replace(self, threshold=float(threshold))

    def with_calibration(self, block: Mapping[str, Any] | None) -> ModelSpec:
        return replace(self, calibration=check(block))

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """The model's raw scores through the calibration map: the probabilities every consumer sees."""
        return apply(raw, self.calibration)

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
    def from_metadata(cls, block: Any) -> ModelSpec:
        """The spec in a ``metadata.mlops`` block, validated; :class:`FeatureError` names the bad key."""
        if not isinstance(block, Mapping):
            raise FeatureError(f"metadata.mlops must be a mapping, got {type(block).__name__}")
        columns = {}
        for key in ("id_column", "time_column", "target"):
            value = block.get(key)
            if not isinstance(value, str) or not value:
                raise FeatureError(f"metadata.mlops.{key} must be a non-empty string, got {value!r}")
            columns[key] = value
        features = _parse_features(block.get("features"), (columns["id_column"], columns["time_column"]))
        threshold = block.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
            raise FeatureError(f"metadata.mlops.threshold must be a number in [0, 1], got {threshold!r}")
        try:
            calibration = check(block.get("calibration"))
        except CalibrationError as exc:
            raise FeatureError(f"metadata.mlops.{exc}") from exc
        return cls(features=features, threshold=float(threshold), calibration=calibration, **columns)


def _parse_features(raw: Any, key_columns: tuple[str, str]) -> tuple[Feature, ...]:
    if not isinstance(raw, list) or not raw:
        raise FeatureError(f"metadata.mlops.features must be a non-empty list, got {raw!r}")
    features: list[Feature] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"metadata.mlops.features[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"]:
            raise FeatureError(f"{where} needs a non-empty string 'name', got {item!r}")
        name = item["name"]
        if name in seen:
            raise FeatureError(f"{where}: duplicate feature {name!r}")
        if name in key_columns:
            raise FeatureError(f"{where}: feature {name!r} is also the id or time column")
        seen.add(name)
        kind = item.get("kind")
        if kind not in KINDS:
            raise FeatureError(f"{where}: feature {name!r}: kind must be 'numeric' or 'categorical', got {kind!r}")
        if kind == NUMERIC:
            features.append(Feature(name, NUMERIC))
            continue
        categories = item.get("categories")
        if categories is None:
            raise FeatureError(f"{where}: categorical feature {name!r} has no 'categories' list")
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise FeatureError(f"{where}: feature {name!r}: 'categories' must be a list of strings")
        if len(set(categories)) != len(categories):
            raise FeatureError(f"{where}: feature {name!r}: duplicate categories")
        features.append(Feature(name, CATEGORICAL, tuple(categories)))
    return tuple(features)


class Encoder:
    """A spec compiled for encoding: where each feature goes, and each categorical's codes.

    The entry points share one set of rules. :meth:`encode_columns` and :meth:`encode_records`
    take any input; the building blocks under them take input a caller has already checked
    (numbers or None for numerics, strings or None for categoricals), so that a caller that
    validates values on its own (the model server) pays no second pass.
    """

    def __init__(self, spec: ModelSpec) -> None:
        features = spec.features
        self.spec = spec
        self.width = len(features)
        self.numeric_positions = tuple(i for i, f in enumerate(features) if f.kind == NUMERIC)
        self.categorical_positions = tuple(i for i, f in enumerate(features) if f.kind == CATEGORICAL)
        # Per input position: category -> code for a categorical, None for a numeric.
        self.codes: tuple[dict[str, float] | None, ...] = tuple(
            f.codes() if f.kind == CATEGORICAL else None for f in features
        )
        n_numeric = len(self.numeric_positions)
        self._numeric_first = self.numeric_positions == tuple(range(n_numeric))

    # --- whole inputs -------------------------------------------------------------------------------

    def encode_columns(self, columns: Mapping[str, Sequence[Any] | np.ndarray], rows: int) -> np.ndarray:
        """The matrix for ``rows`` rows given as one sequence per feature (numbers or None; strings
        or None). Extra columns are ignored; a missing or short column raises :class:`FeatureError`."""
        features = self.spec.features
        numeric = np.empty((rows, len(self.numeric_positions)), dtype=np.float64)
        for k, position in enumerate(self.numeric_positions):
            name = features[position].name
            numeric[:, k] = self._numeric_column(name, _column(columns, name, rows))
        categorical = [
            self.categorical_codes(position, _column(columns, features[position].name, rows))[0]
            for position in self.categorical_positions
        ]
        return self.assemble(numeric, categorical, rows)

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The matrix for rows given as mappings (a missing key is a null). The reference semantics;
        the model server validates and encodes requests with its own faster paths over the same rules."""
        return self.encode_columns(
            {f.name: [record.get(f.name) for record in records] for f in self.spec.features}, len(records)
        )

    # --- building blocks ----------------------------------------------------------------------------

    def numeric_rows(self, values: Sequence[Any], rows: int) -> np.ndarray:
        """The numeric features as float64 (rows x numerics; null -> NaN) from their values row by
        row, numerics in input order."""
        return np.array(values, dtype=np.float64).reshape(rows, len(self.numeric_positions))

    def categorical_codes(self, position: int, values: Sequence[Any] | np.ndarray) -> tuple[list[float], list[int]]:
        """The codes of the categorical feature at input ``position`` for ``values``, and the rows
        whose value has no code (null or unseen: their code is NaN)."""
        codes = self.codes[position]
        if codes is None:
            raise FeatureError(f"feature {self.spec.features[position].name!r} is not categorical")
        found: list[Any] = list(map(codes.get, values))
        if None not in found:
            return found, []
        misses = [i for i, code in enumerate(found) if code is None]
        for i in misses:
            found[i] = MISSING
        return found, misses

    def assemble(self, numeric: np.ndarray | None, categorical: Sequence[Sequence[float]], rows: int) -> np.ndarray:
        """The float32 matrix from the numeric block (:meth:`numeric_rows`) and one code list per
        categorical feature, in input order."""
        matrix = np.empty((rows, self.width), dtype=np.float32)
        if self.numeric_positions and numeric is not None:
            if self._numeric_first:
                matrix[:, : len(self.numeric_positions)] = numeric
            else:
                matrix[:, self.numeric_positions] = numeric
        for position, codes in zip(self.categorical_positions, categorical, strict=True):
            matrix[:, position] = codes
        return matrix

    def from_rows(self, values: Sequence[float], rows: int) -> np.ndarray:
        """The float32 matrix from every feature's encoded value (a number or NaN), row by row.

        numpy converts each Python number through a double, so this equals the float64 block of
        :meth:`numeric_rows` cast to float32, without the intermediate array."""
        return np.array(values, dtype=np.float32).reshape(rows, self.width)

    def _numeric_column(self, name: str, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        try:
            return np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise FeatureError(f"numeric feature {name!r} holds a value that is not a number ({exc})") from None


def _column(columns: Mapping[str, Sequence[Any] | np.ndarray], name: str, rows: int) -> Sequence[Any] | np.ndarray:
    try:
        values = columns[name]
    except KeyError:
        raise FeatureError(f"the input lacks feature {name!r}") from None
    if len(values) != rows:
        raise FeatureError(f"feature {name!r} has {len(values)} values for {rows} rows")
    return values
