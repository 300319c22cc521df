"""The model input contract: feature order, encoding rules and the metadata.mlops block."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.training.features import (
    CATEGORICAL,
    NUMERIC,
    FeatureError,
    ModelSpec,
    encode,
    fit_model_spec,
    input_example,
    model_signature,
    to_dmatrix,
)


@pytest.fixture
def dataset():
    return load_dataset_spec("churn")


def _train_frame(dataset, rows: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: rng.uniform(0, 10, rows) for name in dataset.numeric_features})
    frame["plan"] = pd.array(["premium", "basic", "standard", "basic", None, "premium"][:rows], dtype="string")
    frame["contract"] = pd.array(["one-year", "month-to-month"] * (rows // 2), dtype="string")
    frame["payment_method"] = pd.array(["card"] * rows, dtype="string")
    frame["region"] = pd.array(["west", "east", "north", "south", "west", "east"][:rows], dtype="string")
    return frame


def test_spec_keeps_dataset_order_and_sorted_training_categories(dataset):
    spec = fit_model_spec(_train_frame(dataset), dataset)
    assert spec.names == dataset.numeric_features + dataset.categorical_features
    assert [f.kind for f in spec.features] == [NUMERIC] * 10 + [CATEGORICAL] * 4
    by_name = {f.name: f for f in spec.features}
    assert by_name["plan"].categories == ("basic", "premium", "standard")  # sorted, null not a category
    assert by_name["payment_method"].categories == ("card",)
    assert spec.feature_types == ["q"] * 10 + ["c"] * 4


def test_metadata_block_has_the_agreed_shape_and_round_trips(dataset):
    spec = fit_model_spec(_train_frame(dataset), dataset).with_threshold(0.3125)
    block = spec.to_metadata()
    assert set(block) == {"features", "id_column", "time_column", "target", "threshold"}
    assert block["features"][0] == {"name": "tenure_months", "kind": "numeric"}
    assert block["features"][10] == {"name": "plan", "kind": "categorical", "categories": ["basic", "premium", "standard"]}
    assert (block["id_column"], block["time_column"], block["target"], block["threshold"]) == (
        "customer_id", "event_time", "churned", 0.3125
    )
    assert ModelSpec.from_metadata(block) == spec


def test_the_calibration_map_travels_in_the_metadata_block(dataset):
    spec = fit_model_spec(_train_frame(dataset), dataset).with_calibration({"method": "platt", "a": 1.5, "b": -0.25})
    block = spec.to_metadata()
    assert block["calibration"] == {"method": "platt", "a": 1.5, "b": -0.25}
    assert ModelSpec.from_metadata(block) == spec
    with pytest.raises(FeatureError, match=r"metadata\.mlops\.calibration\.x must be ascending"):
        ModelSpec.from_metadata({**block, "calibration": {"method": "isotonic", "x": [0.5, 0.2], "y": [0.1, 0.3]}})


def test_encoding_rules(dataset):
    spec = fit_model_spec(_train_frame(dataset), dataset)
    rows = pd.DataFrame(
        {
            **{name: [1.5, None] for name in dataset.numeric_features},
            "plan": ["standard", "platinum"],  # unseen -> NaN
            "contract": [None, "one-year"],  # null -> NaN
            "payment_method": ["card", "card"],
            "region": ["east", "west"],
        }
    )[list(reversed(spec.names))]  # column order of the input does not matter, the spec's does
    matrix = encode(rows, spec)
    assert matrix.dtype == np.float32 and matrix.shape == (2, 14)
    assert matrix[0, 0] == np.float32(1.5) and math.isnan(matrix[1, 0])
    plan, contract, region = spec.names.index("plan"), spec.names.index("contract"), spec.names.index("region")
    assert matrix[0, plan] == 2.0 and math.isnan(matrix[1, plan])
    assert math.isnan(matrix[0, contract]) and matrix[1, contract] == 1.0  # [month-to-month, one-year]
    assert matrix[0, region] == 0.0 and matrix[1, region] == 3.0  # [east, north, south, west]


def test_missing_feature_column_is_named(dataset):
    spec = fit_model_spec(_train_frame(dataset), dataset)
    with pytest.raises(FeatureError, match=r"lacks feature column\(s\) \['age'\]"):
        encode(_train_frame(dataset).drop(columns=["age"]), spec)


def test_dmatrix_carries_names_and_types(dataset):
    spec = fit_model_spec(_train_frame(dataset), dataset)
    dmatrix = to_dmatrix(_train_frame(dataset), spec)
    assert dmatrix.feature_names == spec.names
    assert dmatrix.feature_types == spec.feature_types


def test_signature_and_example_use_raw_columns(dataset):
    train = _train_frame(dataset)
    spec = fit_model_spec(train, dataset)
    inputs = model_signature(train, spec).inputs.to_dict()
    assert [c["name"] for c in inputs] == spec.names
    assert {c["name"]: c["type"] for c in inputs}["plan"] == "string"
    assert {c["name"]: c["type"] for c in inputs}["age"] == "double"
    assert {c["name"]: c["required"] for c in inputs}["plan"] is False  # had a null in training
    example = input_example(train, spec)
    assert list(example.columns) == spec.names and example["plan"].dtype == object


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": []}, r"metadata\.mlops\.features must be a non-empty list"),
        ({"features": [{"kind": "numeric"}]}, r"features\[0\] needs a non-empty string 'name'"),
        ({"features": [{"name": "a", "kind": "numeric"}, {"name": "a", "kind": "numeric"}]}, r"features\[1\]: duplicate feature 'a'"),
        ({"features": [{"name": "a", "kind": "text"}]}, r"features\[0\]: feature 'a': kind must be"),
        ({"features": [{"name": "a", "kind": "categorical"}]}, r"categorical feature 'a' has no 'categories' list"),
        ({"features": [{"name": "a", "kind": "categorical", "categories": ["x", 1]}]}, r"'categories' must be a list of strings"),
        ({"features": [{"name": "event_time", "kind": "numeric"}]}, r"'event_time' is also the id or time column"),
        ({"id_column": ""}, r"metadata\.mlops\.id_column must be a non-empty string"),
        ({"threshold": True}, r"metadata\.mlops\.threshold must be a number in \[0, 1\]"),
        ({"threshold": 1.01}, r"metadata\.mlops\.threshold must be a number in \[0, 1\]"),
    ],
)
def test_a_bad_metadata_block_is_refused_naming_the_key(dataset, change, message):
    block = {**fit_model_spec(_train_frame(dataset), dataset).to_metadata(), **change}
    with pytest.raises(FeatureError, match=message):
        ModelSpec.from_metadata(block)


def test_frames_and_records_encode_alike(dataset):
    """Training's frame path and the record path (what the server builds on) are one encoder."""
    train = _train_frame(dataset)
    spec = fit_model_spec(train, dataset)
    rows = train.copy()
    rows.loc[0, "plan"] = "platinum"  # unseen
    rows.loc[1, "age"] = np.nan
    records = [
        {k: (None if (v is pd.NA or v is None or (isinstance(v, float) and math.isnan(v))) else v) for k, v in r.items()}
        for r in rows.astype(object).to_dict("records")
    ]
    del records[2]["region"]  # an omitted value is a null
    rows.loc[2, "region"] = None
    expected = encode(rows, spec)
    assert np.array_equal(spec.encoder.encode_records(records), expected, equal_nan=True)
    codes, misses = spec.encoder.categorical_codes(spec.names.index("plan"), list(rows["plan"].astype(object)))
    assert misses == [0, 4] and math.isnan(codes[0]) and codes[1] == 0.0  # unseen and null


def test_probabilities_are_the_raw_scores_through_the_calibration_map(dataset):
    spec = fit_model_spec(_train_frame(dataset), dataset)
    raw = np.array([0.1, 0.5, 0.9])
    assert np.array_equal(spec.probabilities(raw), raw)
    calibrated = spec.with_calibration({"method": "isotonic", "x": [0.0, 1.0], "y": [0.2, 0.6]})
    np.testing.assert_allclose(calibrated.probabilities(raw), [0.24, 0.4, 0.56])
