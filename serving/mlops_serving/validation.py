"""Request validation on top of the contract's feature encoding.

The matrix is the one :mod:`mlops_pipeline.contracts.features` defines and training builds
(column ``i`` = feature ``i``; numeric -> float, null -> NaN; categorical -> index in
``categories``, null/unseen -> NaN), built by that module's :class:`Encoder`. What this module
adds is the request check: any record that does not match the signature is rejected with a
message naming the record index and the field.

Two paths produce identical results: an optimistic bulk path (C-level ``itemgetter``/``map`` +
numpy checks, then the encoder's column blocks) for well-formed input, and a precise per-field
path that is taken as soon as anything looks unusual and that either raises the exact error or
encodes the odd-but-valid input (nulls, omitted optional fields, NaN in nullable fields, id/time
columns of odd types) with the encoder's category codes, value by value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

from .spec import FeatureSpec, ServingSpec

NAN = float("nan")
F32_MAX = float(np.finfo(np.float32).max)
# Below this many records the per-field path is faster than the numpy set-up.
BULK_MIN_RECORDS = 4
_PLAIN, _INT, _BOOL, _CAT = 0, 1, 2, 3
_NUM_TYPES = frozenset({float, int})
_PASSTHROUGH_TYPES = (str, int, float, type(None))
_PASSTHROUGH_TYPESET = frozenset(_PASSTHROUGH_TYPES)


class RequestError(Exception):
    """A client error: rendered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, kind: str = "validation") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


class RecordError(RequestError):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(422, f"record {index}: {message}", "validation")
        self.index = index


def json_type(value: Any) -> str:
    """JSON type name of a parsed value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return "NaN"
        if isinstance(value, float) and math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class _Slow(Exception):
    """Internal: leave the bulk path, re-check record by record."""


@dataclass
class Encoded:
    matrix: np.ndarray  # float32, shape (n_records, n_features)
    unseen: dict[str, int] | None  # feature -> count of unseen categorical values


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if not names:
        return lambda rec: ()
    if len(names) == 1:
        name = names[0]
        return lambda rec: (rec[name],)
    return itemgetter(*names)


class RecordEncoder:
    """Validates records against a :class:`ServingSpec` and builds the contract's model matrix."""

    def __init__(self, spec: ServingSpec) -> None:
        self.spec = spec
        self.contract = spec.contract.encoder
        feats = spec.features
        self.n_features = len(feats)
        self._feature_set = frozenset(f.name for f in feats)
        self._allowed = self._feature_set | frozenset(spec.passthrough_columns)
        self._passthrough = spec.passthrough_columns
        self._num_pos = list(self.contract.numeric_positions)
        self._cat_pos = list(self.contract.categorical_positions)
        self._num_get = _getter([feats[j].name for j in self._num_pos])
        self._cat_get = _getter([feats[j].name for j in self._cat_pos])
        num_feats = [feats[j] for j in self._num_pos]
        # Bulk path handles plain numbers only; boolean-typed numerics go the precise way.
        self._num_bool = any(f.is_boolean for f in num_feats)
        self._num_int_cols = [i for i, f in enumerate(num_feats) if f.is_integer]
        self._cat_names = [feats[j].name for j in self._cat_pos]
        codes = self.contract.codes
        self._plan = [
            (
                f.name,
                _CAT if f.is_categorical else _BOOL if f.is_boolean else _INT if f.is_integer else _PLAIN,
                codes[j] or {},  # numerics have no codes
                f,
            )
            for j, f in enumerate(feats)
        ]

    # ------------------------------------------------------------------ public
    def encode(self, records: list[Any]) -> Encoded:
        """Validate ``records`` (a non-empty list) and return the encoded matrix.

        Raises :class:`RecordError` naming the first offending record/field.
        """
        if len(records) < BULK_MIN_RECORDS:
            return self.encode_precise(records)
        try:
            return self._encode_bulk(records)
        except _Slow:
            return self.encode_precise(records)

    # --------------------------------------------------------------- bulk path
    def _encode_bulk(self, records: list[Any]) -> Encoded:
        n = len(records)
        nf = self.n_features
        passthrough = self._passthrough
        num_get = self._num_get
        cat_get = self._cat_get
        flat_num: list[Any] = []
        flat_cat: list[Any] = []
        ext_num = flat_num.extend
        ext_cat = flat_cat.extend
        try:
            for rec in records:
                if type(rec) is not dict:
                    raise _Slow
                extra = len(rec) - nf
                if extra:
                    # All features are present (the getters raise otherwise), so the
                    # record is valid iff the extra keys are exactly id/time columns.
                    for col in passthrough:
                        if col in rec:
                            extra -= 1
                            if type(rec[col]) not in _PASSTHROUGH_TYPESET:
                                raise _Slow
                    if extra:
                        raise _Slow
                ext_num(num_get(rec))
                ext_cat(cat_get(rec))
        except (KeyError, TypeError):
            raise _Slow from None

        contract = self.contract
        numeric: np.ndarray | None = None
        if self._num_pos:
            if self._num_bool or not set(map(type, flat_num)) <= _NUM_TYPES:
                raise _Slow
            try:
                numeric = contract.numeric_rows(flat_num, n)
            except (OverflowError, ValueError, TypeError):
                raise _Slow from None
            # NaN/inf/out-of-float32-range all fail this (same rule as the precise path).
            if not (np.abs(numeric) <= F32_MAX).all():
                raise _Slow
            if self._num_int_cols:
                ints = numeric[:, self._num_int_cols]
                if not np.array_equal(ints, np.floor(ints)):
                    raise _Slow

        unseen: dict[str, int] | None = None
        n_cat = len(self._cat_pos)
        categorical: list[list[float]] = []
        for c, pos in enumerate(self._cat_pos):
            values = flat_cat[c::n_cat] if n_cat > 1 else flat_cat
            try:
                codes, misses = contract.categorical_codes(pos, values)
            except TypeError:  # unhashable value
                raise _Slow from None
            if misses:
                # Only strings may miss (unseen categories); null or another type needs the precise path.
                for i in misses:
                    if type(values[i]) is not str:
                        raise _Slow
                if unseen is None:
                    unseen = {}
                unseen[self._cat_names[c]] = len(misses)
            categorical.append(codes)
        return Encoded(contract.assemble(numeric, categorical, n), unseen)

    # ------------------------------------------------------------ precise path
    def encode_precise(self, records: list[Any]) -> Encoded:
        """Record-by-record validation; the reference semantics of :meth:`encode`."""
        allowed = self._allowed
        plan = self._plan
        lo, hi = -F32_MAX, F32_MAX
        flat: list[float] = []
        append = flat.append
        unseen: dict[str, int] = {}
        for i, rec in enumerate(records):
            if type(rec) is not dict:
                raise RecordError(i, f"must be a JSON object, got {json_type(rec)}")
            if len(rec) != self.n_features or not rec.keys() <= allowed:
                for key in rec:
                    if key not in allowed:
                        raise RecordError(i, f"unexpected field {key!r} (not a model feature)")
            for col in self._passthrough:
                value = rec.get(col)
                if type(value) not in _PASSTHROUGH_TYPESET:
                    raise RecordError(
                        i, f"field {col!r} must be a string, number or null, got {json_type(value)}"
                    )
            for name, mode, cmap, f in plan:
                try:
                    value = rec[name]
                except KeyError:
                    if f.nullable:
                        append(NAN)
                        continue
                    raise RecordError(i, f"missing required field {name!r}") from None
                t = type(value)
                if mode == _PLAIN:  # float column: any finite number in float32 range
                    if (t is float or t is int) and lo <= value <= hi:
                        append(value)
                        continue
                elif mode == _INT:
                    if t is int and lo <= value <= hi:
                        append(value)
                        continue
                elif mode == _CAT:
                    if t is str:
                        code = cmap.get(value)
                        if code is None:
                            unseen[name] = unseen.get(name, 0) + 1
                            code = NAN
                        append(code)
                        continue
                    append(_check_categorical(f, value, i))
                    continue
                append(_check_numeric(f, value, i))
        return Encoded(self.contract.from_rows(flat, len(records)), unseen or None)


def _check_numeric(f: FeatureSpec, value: Any, i: int) -> float:
    t = type(value)
    if t is float or t is int:
        if t is float and value != value:  # NaN (only from the lenient JSON parser)
            if f.nullable:
                return NAN
            raise RecordError(i, f"field {f.name!r} must be a finite number, got NaN")
        if t is float and value in (math.inf, -math.inf):
            raise RecordError(i, f"field {f.name!r} must be a finite number, got {json_type(value)}")
        if f.is_boolean:
            raise RecordError(i, f"field {f.name!r} must be a boolean, got number")
        try:
            as_float = float(value)
        except OverflowError:
            as_float = math.inf
        if abs(as_float) > F32_MAX:
            raise RecordError(i, f"field {f.name!r} is out of range (|value| > {F32_MAX:.4g})")
        if f.is_integer and not as_float.is_integer():
            raise RecordError(i, f"field {f.name!r} must be an integer, got {value!r}")
        return as_float
    if value is None:
        if f.nullable:
            return NAN
        raise RecordError(i, f"field {f.name!r} must not be null")
    if t is bool and f.is_boolean:
        return 1.0 if value else 0.0
    expected = "a boolean" if f.is_boolean else "a number"
    raise RecordError(i, f"field {f.name!r} must be {expected}, got {json_type(value)}")


def _check_categorical(f: FeatureSpec, value: Any, i: int) -> float:
    """The code of a non-string value: NaN for an allowed null, else the record's error."""
    if value is None:
        if f.nullable:
            return NAN
        raise RecordError(i, f"field {f.name!r} must not be null")
    raise RecordError(i, f"field {f.name!r} must be a string, got {json_type(value)}")
