"""The model's input contract as the server reads it: ``metadata.mlops`` plus the MLflow signature.

The ``metadata.mlops`` block (features, categories, id/time columns, threshold, calibration) is
parsed and validated by the project's contract, :mod:`mlops_pipeline.contracts.features`, the
same code training wrote it with. The signature adds what a request is checked against: which
fields may be null (``required: false``) and which numeric fields must be integers or booleans.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlops_pipeline.contracts.features import CATEGORICAL, Feature, FeatureError, ModelSpec

NUMERIC_SIGNATURE_TYPES = frozenset({"double", "float", "long", "integer", "boolean"})
INTEGER_SIGNATURE_TYPES = frozenset({"long", "integer"})


class SpecError(ValueError):
    """The model directory does not satisfy the serving contract."""


@dataclass(frozen=True)
class FeatureSpec:
    """One contract feature with what the signature says about its values."""

    feature: Feature
    nullable: bool = False  # signature ``required: false``
    signature_type: str | None = None

    @property
    def name(self) -> str:
        return self.feature.name

    @property
    def kind(self) -> str:
        return self.feature.kind

    @property
    def categories(self) -> tuple[str, ...]:
        return self.feature.categories

    @property
    def is_categorical(self) -> bool:
        return self.feature.kind == CATEGORICAL

    @property
    def is_integer(self) -> bool:
        return self.signature_type in INTEGER_SIGNATURE_TYPES

    @property
    def is_boolean(self) -> bool:
        return self.signature_type == "boolean"

    def json_schema(self) -> dict[str, Any]:
        if self.is_categorical:
            schema: dict[str, Any] = {"type": "string"}
            if self.categories:
                schema["description"] = "one of: " + ", ".join(self.categories) + " (unseen values allowed)"
        elif self.is_boolean:
            schema = {"type": "boolean"}
        elif self.is_integer:
            schema = {"type": "integer"}
        else:
            schema = {"type": "number"}
        if self.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema


@dataclass(frozen=True)
class ServingSpec:
    """The contract (:class:`~mlops_pipeline.contracts.features.ModelSpec`) and, per feature, the
    signature's rules for request values."""

    contract: ModelSpec
    features: tuple[FeatureSpec, ...]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def id_column(self) -> str:
        return self.contract.id_column

    @property
    def time_column(self) -> str:
        return self.contract.time_column

    @property
    def threshold(self) -> float:
        return self.contract.threshold

    @property
    def calibration(self) -> Mapping[str, Any] | None:
        return self.contract.calibration

    @property
    def passthrough_columns(self) -> tuple[str, ...]:
        """Fields a record may carry besides the features: logged, never a model input."""
        return (self.contract.id_column, self.contract.time_column)

    def example_record(self) -> dict[str, Any]:
        """A valid record, used to warm the model up at startup."""
        record: dict[str, Any] = {}
        for f in self.features:
            if f.is_categorical:
                record[f.name] = f.categories[0] if f.categories else "unknown"
            elif f.is_boolean:
                record[f.name] = False
            elif f.is_integer:
                record[f.name] = 1
            else:
                record[f.name] = 1.0
        return record

    def record_json_schema(self) -> dict[str, Any]:
        props: dict[str, Any] = {f.name: f.json_schema() for f in self.features}
        for col in self.passthrough_columns:
            props[col] = {
                "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}],
                "description": "logged with the prediction, not used by the model",
            }
        return {
            "type": "object",
            "properties": props,
            "required": [f.name for f in self.features if not f.nullable],
            "additionalProperties": False,
        }


def _signature_columns(mlmodel: dict[str, Any]) -> list[dict[str, Any]] | None:
    signature = mlmodel.get("signature")
    if not signature or not signature.get("inputs"):
        return None
    inputs = signature["inputs"]
    if isinstance(inputs, str):
        try:
            inputs = json.loads(inputs)
        except ValueError as exc:
            raise SpecError(f"MLmodel signature.inputs is not valid JSON: {exc}") from None
    if not isinstance(inputs, list):
        raise SpecError("MLmodel signature.inputs must be a list of column specs")
    columns = []
    for col in inputs:
        if not isinstance(col, dict) or "name" not in col:
            raise SpecError("only column-based (named) MLflow signatures are supported")
        columns.append(col)
    return columns


def parse_spec(mlmodel: dict[str, Any]) -> ServingSpec:
    """The :class:`ServingSpec` of a parsed MLmodel document: its ``metadata.mlops`` block through the
    contract, each feature checked against the signature (when there is one)."""
    block = (mlmodel.get("metadata") or {}).get("mlops")
    if block is None:
        raise SpecError("MLmodel has no metadata.mlops block (the model's input contract)")
    try:
        contract = ModelSpec.from_metadata(block)
    except FeatureError as exc:
        raise SpecError(str(exc)) from None
    columns = _signature_columns(mlmodel)
    signature = {c["name"]: c for c in columns} if columns is not None else {}
    features: list[FeatureSpec] = []
    for feature in contract.features:
        name = feature.name
        column = signature.get(name)
        if columns is not None and column is None:
            raise SpecError(f"feature {name!r} is not in the MLmodel signature")
        sig_type = column.get("type") if column else None
        if feature.kind == CATEGORICAL:
            if sig_type not in (None, "string"):
                raise SpecError(f"categorical feature {name!r} must have signature type 'string', got {sig_type!r}")
        elif sig_type is not None and sig_type not in NUMERIC_SIGNATURE_TYPES:
            raise SpecError(f"numeric feature {name!r} has non-numeric signature type {sig_type!r}")
        nullable = bool(column is not None and column.get("required", True) is False)
        features.append(FeatureSpec(feature, nullable=nullable, signature_type=sig_type))
    if columns is not None:
        known = {*contract.names, contract.id_column, contract.time_column}
        extra = [c["name"] for c in columns if c["name"] not in known]
        if extra:
            raise SpecError(f"signature columns missing from metadata.mlops.features: {extra}")
    return ServingSpec(contract, tuple(features))
