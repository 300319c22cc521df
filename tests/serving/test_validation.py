"""Encoder/validation unit tests: encoding == training encoding, bulk path == precise path."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.training.features import encode as training_encode
from mlops_serving.spec import FeatureSpec, ServingSpec, SpecError, parse_spec
from mlops_serving.validation import RecordEncoder, RecordError

from .model_fixture import CATEGORICAL_FEATURES, FEATURE_ORDER, encode_matrix, make_records, mlops_spec

SIGNATURE = (
    '[{"type": "double", "name": "tenure_months", "required": true},'
    ' {"type": "string", "name": "plan", "required": true},'
    ' {"type": "double", "name": "monthly_charges", "required": true},'
    ' {"type": "double", "name": "total_charges", "required": true},'
    ' {"type": "string", "name": "contract", "required": true},'
    ' {"type": "long", "name": "num_support_tickets", "required": true},'
    ' {"type": "double", "name": "avg_session_minutes", "required": false},'
    ' {"type": "double", "name": "days_since_last_login", "required": false},'
    ' {"type": "string", "name": "payment_method", "required": false},'
    ' {"type": "long", "name": "num_devices", "required": true},'
    ' {"type": "double", "name": "discount_pct", "required": true},'
    ' {"type": "long", "name": "late_payments", "required": true}]'
)


def _mlmodel(**meta_overrides: Any) -> dict[str, Any]:
    meta = {**mlops_spec(), **meta_overrides}
    return {"signature": {"inputs": SIGNATURE}, "metadata": {"mlops": meta}}


@pytest.fixture(scope="module")
def spec() -> ServingSpec:
    return parse_spec(_mlmodel())


@pytest.fixture(scope="module")
def encoder(spec: ServingSpec) -> RecordEncoder:
    return RecordEncoder(spec)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def test_spec_parsed_from_mlmodel(spec: ServingSpec) -> None:
    assert spec.feature_names == tuple(FEATURE_ORDER)
    assert spec.id_column == "customer_id" and spec.time_column == "event_time"
    assert spec.threshold == 0.5
    by_name = {f.name: f for f in spec.features}
    assert by_name["plan"].categories == ("basic", "standard", "premium")
    assert by_name["avg_session_minutes"].nullable and not by_name["tenure_months"].nullable
    assert by_name["num_devices"].is_integer


@pytest.mark.parametrize("n", [1, 3, 4, 50, 257])
def test_encoding_matches_training_encoding(encoder: RecordEncoder, n: int) -> None:
    records = make_records(n, seed=n, with_ids=True, nulls=True)
    records[0]["plan"] = "enterprise"  # unseen
    # Training's path: the records as the data frame training reads, through training's encode.
    frame = pd.DataFrame.from_records(records, columns=[*FEATURE_ORDER, "customer_id", "event_time"])
    for name in CATEGORICAL_FEATURES:
        frame[name] = frame[name].astype("string")
    expected = training_encode(frame, encoder.spec.contract)
    assert _same(encode_matrix(records), expected)
    assert _same(encoder.encode(records).matrix, expected)
    assert _same(encoder.encode_precise(records).matrix, expected)


def test_unseen_categories_are_nan_and_counted(encoder: RecordEncoder) -> None:
    records = make_records(10, seed=1)
    records[2]["plan"] = "enterprise"
    records[5]["plan"] = "Basic"  # case matters
    records[7]["contract"] = "weekly"
    for enc in (encoder.encode, encoder.encode_precise):
        out = enc(records)
        assert out.unseen == {"plan": 2, "contract": 1}
        assert math.isnan(out.matrix[2, FEATURE_ORDER.index("plan")])
        assert out.matrix[3, FEATURE_ORDER.index("plan")] == CATEGORICAL_FEATURES["plan"].index(
            records[3]["plan"]
        )


def test_nullable_fields_may_be_null_or_omitted(encoder: RecordEncoder) -> None:
    records = make_records(6, seed=2)
    records[1]["avg_session_minutes"] = None
    del records[2]["days_since_last_login"]
    records[3]["payment_method"] = None
    records[4]["avg_session_minutes"] = float("nan")  # lenient-parser NaN == missing in a nullable field
    out = encoder.encode(records)
    assert math.isnan(out.matrix[1, FEATURE_ORDER.index("avg_session_minutes")])
    assert math.isnan(out.matrix[2, FEATURE_ORDER.index("days_since_last_login")])
    assert math.isnan(out.matrix[3, FEATURE_ORDER.index("payment_method")])
    assert math.isnan(out.matrix[4, FEATURE_ORDER.index("avg_session_minutes")])
    assert out.unseen is None


def _mutations() -> list[tuple[str, Any, str]]:
    """(field, bad value, expected message fragment)."""
    return [
        ("tenure_months", "12", "field 'tenure_months' must be a number, got string"),
        ("tenure_months", "\uff11\uff12", "field 'tenure_months' must be a number, got string"),
        ("tenure_months", True, "must be a number, got boolean"),
        ("tenure_months", None, "field 'tenure_months' must not be null"),
        ("tenure_months", [1], "must be a number, got array"),
        ("tenure_months", {"v": 1}, "must be a number, got object"),
        ("tenure_months", float("nan"), "must be a finite number, got NaN"),
        ("tenure_months", float("inf"), "must be a finite number, got Infinity"),
        ("tenure_months", float("-inf"), "must be a finite number, got -Infinity"),
        ("tenure_months", 1e39, "out of range"),
        ("tenure_months", 10**400, "out of range"),
        ("num_devices", 2.5, "field 'num_devices' must be an integer, got 2.5"),
        ("plan", 3, "field 'plan' must be a string, got number"),
        ("plan", False, "field 'plan' must be a string, got boolean"),
        ("plan", None, "field 'plan' must not be null"),
        ("plan", ["basic"], "field 'plan' must be a string, got array"),
        ("customer_id", {"a": 1}, "field 'customer_id' must be a string, number or null, got object"),
        ("customer_id", True, "field 'customer_id' must be a string, number or null, got boolean"),
    ]


@pytest.mark.parametrize(("field", "value", "message"), _mutations())
@pytest.mark.parametrize("n", [1, 30])
def test_invalid_values_name_record_and_field(
    encoder: RecordEncoder, field: str, value: Any, message: str, n: int
) -> None:
    records = make_records(n, seed=3, with_ids=True)
    idx = n - 1
    records[idx][field] = value
    for enc in (encoder.encode, encoder.encode_precise):
        with pytest.raises(RecordError) as err:
            enc(records)
        assert err.value.status == 422
        assert err.value.message.startswith(f"record {idx}: ")
        assert message in err.value.message


@pytest.mark.parametrize("n", [1, 30])
def test_missing_extra_and_non_object_records(encoder: RecordEncoder, n: int) -> None:
    records = make_records(n, seed=4)
    del records[-1]["tenure_months"]
    with pytest.raises(RecordError, match=rf"record {n - 1}: missing required field 'tenure_months'"):
        encoder.encode(records)
    records = make_records(n, seed=4)
    records[0]["churned"] = 1
    with pytest.raises(RecordError, match=r"record 0: unexpected field 'churned' \(not a model feature\)"):
        encoder.encode(records)
    records = make_records(n, seed=4)
    records[-1] = [1, 2, 3]
    with pytest.raises(RecordError, match=rf"record {n - 1}: must be a JSON object, got array"):
        encoder.encode(records)


def test_first_error_wins_in_record_order(encoder: RecordEncoder) -> None:
    records = make_records(20, seed=5)
    records[11]["plan"] = 1
    records[4]["tenure_months"] = "x"
    with pytest.raises(RecordError, match=r"^record 4: "):
        encoder.encode(records)


def _random_value(rng: random.Random, f: FeatureSpec) -> Any:
    roll = rng.random()
    if f.kind == "categorical":
        choices: list[Any] = [*(f.categories or ()), "zzz", None, 1, True, ""]
        return rng.choice(choices) if roll < 0.15 else rng.choice(f.categories or ("x",))
    if roll < 0.9:
        return rng.choice([rng.randint(-5, 100), round(rng.uniform(-50, 500), 3)])
    return rng.choice([None, "1", True, float("nan"), float("inf"), 1e40, 2.5, [], {}])


def test_bulk_and_precise_paths_agree_on_random_input(encoder: RecordEncoder) -> None:
    rng = random.Random(1234)
    spec = encoder.spec
    for trial in range(300):
        n = rng.choice([4, 5, 17])
        records: list[Any] = make_records(n, seed=trial, with_ids=rng.random() < 0.5)
        for _ in range(rng.choice([0, 0, 1, 2])):
            rec = records[rng.randrange(n)]
            f = rng.choice(spec.features)
            action = rng.random()
            if action < 0.1:
                rec.pop(f.name, None)
            elif action < 0.15:
                rec["extra_field"] = 1
            else:
                rec[f.name] = _random_value(rng, f)
        try:
            bulk = encoder.encode(records)
        except RecordError as exc:
            with pytest.raises(RecordError) as err:
                encoder.encode_precise(records)
            assert err.value.message == exc.message
            continue
        precise = encoder.encode_precise(records)
        assert _same(bulk.matrix, precise.matrix), trial
        assert bulk.unseen == precise.unseen, trial


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"features": []}, "non-empty list"),
        ({"features": [{"name": "tenure_months", "kind": "weird"}]}, "kind must be"),
        ({"features": [{"name": "plan", "kind": "categorical"}]}, "no 'categories'"),
        ({"features": [{"name": "plan", "kind": "categorical", "categories": ["a", "a"]}]}, "duplicate categories"),
        ({"features": [{"name": "customer_id", "kind": "numeric"}]}, "also the id or time column"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": None}, "threshold"),
        ({"calibration": {"method": "isotonic", "x": [0.5, 0.2], "y": [0.1, 0.3]}}, r"calibration\.x must be ascending"),
        ({"features": [{"name": "nope", "kind": "numeric"}]}, "not in the MLmodel signature"),
    ],
)
def test_bad_spec_is_rejected(meta: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(_mlmodel(**meta))


def test_a_model_without_the_contract_block_is_rejected() -> None:
    with pytest.raises(SpecError, match="no metadata.mlops block"):
        parse_spec({"signature": {"inputs": SIGNATURE}, "metadata": {}})
