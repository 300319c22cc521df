"""The model's input contract: MLflow signature + our ``metadata.mlops`` preprocessing spec."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

NUMERIC_SIGNATURE_TYPES = frozenset({"double", "float", "long", "integer", "boolean"})
INTEGER_SIGNATURE_TYPES = frozenset({"long", "integer"})
KINDS = frozenset({"numeric", "categorical"})


class SpecError(ValueError):
    """The model directory does not satisfy the serving contract."""


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: str  # "numeric" | "categorical"
    categories: tuple[Any, ...] | None = None
    nullable: bool = False  # signature ``required: false``
    signature_type: str | None = None

    @property
    def is_integer(self) -> bool:
        return self.signature_type in INTEGER_SIGNATURE_TYPES

    @property
    def is_boolean(self) -> bool:
        return self.signature_type == "boolean"

    def json_schema(self) -> dict[str, Any]:
        if self.kind == "categorical":
            schema: dict[str, Any] = {"type": "string"}
            if self.categories is not None:
                schema["description"] = (
                    "one of: " + ", ".join(map(str, self.categories)) + " (unseen values allowed)"
                )
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
class ModelSpec:
    features: tuple[FeatureSpec, ...]
    id_column: str | None = None
    time_column: str | None = None
    target: str | None = None
    threshold: float = 0.5

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def passthrough_columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.id_column, self.time_column) if c)

    def example_record(self) -> dict[str, Any]:
        """A valid record, used to warm the model up at startup."""
        record: dict[str, Any] = {}
        for f in self.features:
            if f.kind == "categorical":
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


def parse_spec(mlmodel: dict[str, Any], require_categories: bool) -> ModelSpec:
    """Build the :class:`ModelSpec` from a parsed MLmodel document."""
    columns = _signature_columns(mlmodel)
    sig = {c["name"]: c for c in columns} if columns is not None else {}
    meta = (mlmodel.get("metadata") or {}).get("mlops") or {}
    if not isinstance(meta, dict):
        raise SpecError("MLmodel metadata.mlops must be a mapping")
    id_column = meta.get("id_column") or None
    time_column = meta.get("time_column") or None
    raw_features = meta.get("features")

    if raw_features is None:
        if columns is None:
            raise SpecError("MLmodel has neither metadata.mlops.features nor a signature")
        raw_features = []
        for col in columns:
            if col["name"] in (id_column, time_column):
                continue
            kind = "numeric" if col.get("type") in NUMERIC_SIGNATURE_TYPES else "categorical"
            raw_features.append({"name": col["name"], "kind": kind})
    if not isinstance(raw_features, list) or not raw_features:
        raise SpecError("metadata.mlops.features must be a non-empty list")

    features: list[FeatureSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_features):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise SpecError(f"metadata.mlops.features[{i}] needs a non-empty string 'name'")
        name = raw["name"]
        if name in seen:
            raise SpecError(f"duplicate feature {name!r} in metadata.mlops.features")
        if name in (id_column, time_column):
            raise SpecError(f"feature {name!r} is also the id/time column")
        seen.add(name)
        kind = raw.get("kind", "numeric")
        if kind not in KINDS:
            raise SpecError(f"feature {name!r}: kind must be 'numeric' or 'categorical', got {kind!r}")
        categories = raw.get("categories")
        if kind == "categorical":
            if categories is None:
                if require_categories:
                    raise SpecError(f"categorical feature {name!r} has no 'categories' list")
            elif not isinstance(categories, list) or not categories:
                raise SpecError(f"feature {name!r}: 'categories' must be a non-empty list")
            elif len(set(categories)) != len(categories):
                raise SpecError(f"feature {name!r}: duplicate categories")
            elif not all(isinstance(c, str) for c in categories):
                raise SpecError(f"feature {name!r}: categories must be strings")
        sig_col = sig.get(name)
        if columns is not None and sig_col is None:
            raise SpecError(f"feature {name!r} is not in the MLmodel signature")
        sig_type = sig_col.get("type") if sig_col else None
        if kind == "numeric" and sig_type is not None and sig_type not in NUMERIC_SIGNATURE_TYPES:
            raise SpecError(f"numeric feature {name!r} has non-numeric signature type {sig_type!r}")
        if kind == "categorical" and sig_type not in (None, "string"):
            raise SpecError(
                f"categorical feature {name!r} must have signature type 'string', got {sig_type!r}"
            )
        nullable = bool(sig_col is not None and sig_col.get("required", True) is False)
        features.append(
            FeatureSpec(
                name=name,
                kind=kind,
                categories=tuple(categories) if categories is not None else None,
                nullable=nullable,
                signature_type=sig_type,
            )
        )
    if columns is not None:
        extra = [
            c["name"] for c in columns if c["name"] not in seen and c["name"] not in (id_column, time_column)
        ]
        if extra:
            raise SpecError(f"signature columns missing from metadata.mlops.features: {extra}")

    threshold = meta.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise SpecError(f"metadata.mlops.threshold must be a number in [0, 1], got {threshold!r}")
    return ModelSpec(
        features=tuple(features),
        id_column=id_column,
        time_column=time_column,
        target=meta.get("target"),
        threshold=float(threshold),
    )
