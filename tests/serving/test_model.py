"""Model loading and prediction parity: fast path == Booster.inplace_predict == DMatrix path; sklearn path."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
import yaml

from mlops_pipeline.contracts.calibration import apply, check
from mlops_serving.model import ModelLoadError, XGBoostModel, load_model
from mlops_serving.settings import Settings

from .model_fixture import FEATURE_ORDER, encode_matrix, feature_types, make_records


@pytest.fixture(scope="module")
def xgb_model(xgb_model_dir: Path):  # type: ignore[no-untyped-def]
    model = load_model(xgb_model_dir, Settings())
    yield model
    model.close()


def test_fast_path_matches_inplace_and_dmatrix(xgb_model, xgb_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    records = make_records(500, seed=11, nulls=True)
    records[3]["plan"] = "unseen-plan"
    x = xgb_model.encode(records).matrix
    booster = xgb.Booster(model_file=str(xgb_model_dir / "model.ubj"))
    dmatrix = booster.predict(
        xgb.DMatrix(
            encode_matrix(records),
            feature_names=FEATURE_ORDER,
            feature_types=feature_types(),
            enable_categorical=True,
        )
    )
    inplace = booster.inplace_predict(x)
    assert isinstance(xgb_model.impl, XGBoostModel)
    assert xgb_model.impl._fast is not None, "fast predictor should be active"
    fast = xgb_model.predict_matrix(x)
    assert fast.dtype == np.float32
    np.testing.assert_array_equal(fast, inplace)
    np.testing.assert_allclose(fast, dmatrix, rtol=1e-6, atol=1e-7)
    # Single rows and odd sizes too (thread-local proxy reuse must not leak shapes).
    for n in (1, 2, 7, 1, 300):
        np.testing.assert_array_equal(xgb_model.predict_matrix(x[:n].copy()), inplace[:n])
    # Non-contiguous input is handled.
    np.testing.assert_array_equal(xgb_model.predict_matrix(np.asfortranarray(x[:9])), inplace[:9])


def test_fast_path_from_other_threads(xgb_model) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    x = xgb_model.encode(make_records(64, seed=12)).matrix
    expected = xgb_model.impl.booster.inplace_predict(x)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: xgb_model.predict_matrix(x[i : i + 8].copy()), range(0, 64, 8)))
    np.testing.assert_array_equal(np.concatenate(results), expected)


def test_model_info_from_file(xgb_model, xgb_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    info = json.loads((xgb_model_dir / "model_info.json").read_text())
    assert xgb_model.info.model_name == info["model_name"] == "churn-model"
    assert xgb_model.info.model_version == "1"
    assert xgb_model.info.artifact_sha256 == info["artifact_sha256"]
    assert xgb_model.info.flavor == "xgboost"


def test_model_info_env_fallback(tmp_path: Path, xgb_model_dir: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(xgb_model_dir, d)
    (d / "model_info.json").unlink()
    model = load_model(d, Settings(model_name="from-env", model_version="7"))
    assert model.info.model_name == "from-env" and model.info.model_version == "7"
    assert model.info.run_id == "unknown" and model.info.artifact_sha256 == "unknown"


def test_sklearn_path_matches_pipeline(sklearn_model_dir: Path) -> None:
    model = load_model(sklearn_model_dir, Settings())
    assert model.flavor == "sklearn"
    records = make_records(200, seed=13, with_ids=True, nulls=True)
    records[5]["plan"] = "unseen-plan"
    with (sklearn_model_dir / "model.pkl").open("rb") as fh:
        pipe = pickle.load(fh)
    frame = pd.DataFrame.from_records(records, columns=FEATURE_ORDER)
    expected = pipe.predict_proba(frame)[:, 1]
    got = model.predict(model.encode(records), records)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert model.encode(records).unseen == {"plan": 1}


def test_shifted_model_is_far_from_normal(xgb_model, bad_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    bad = load_model(bad_model_dir, Settings())
    records = make_records(300, seed=14)
    good_p = xgb_model.predict(xgb_model.encode(records), records)
    bad_p = bad.predict(bad.encode(records), records)
    assert bad.info.model_version == "2"
    assert float(np.mean(bad_p)) > float(np.mean(good_p)) + 0.3
    assert float(np.median(bad_p)) > 0.95


def _edit_mlmodel(src: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    shutil.copytree(src, dst)
    doc = yaml.safe_load((dst / "MLmodel").read_text())
    edit(doc)
    (dst / "MLmodel").write_text(yaml.safe_dump(doc))
    return dst


def test_feature_order_mismatch_is_rejected(tmp_path: Path, xgb_model_dir: Path) -> None:
    def swap(doc):  # type: ignore[no-untyped-def]
        feats = doc["metadata"]["mlops"]["features"]
        feats[0], feats[2] = feats[2], feats[0]

    d = _edit_mlmodel(xgb_model_dir, tmp_path / "m", swap)
    with pytest.raises(ModelLoadError, match="order matters"):
        load_model(d, Settings())


def test_missing_model_dir_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no MLmodel"):
        load_model(tmp_path / "nothing", Settings())


PLATT_BLOCK = {"method": "platt", "a": 1.7, "b": -0.4}


def _with_calibration(doc, block=PLATT_BLOCK):  # type: ignore[no-untyped-def]
    doc["metadata"]["mlops"]["calibration"] = block


@pytest.mark.parametrize("flavor", ["xgboost", "sklearn"])
def test_the_calibration_map_is_applied(tmp_path: Path, xgb_model_dir: Path, sklearn_model_dir: Path, flavor: str) -> None:
    source = xgb_model_dir if flavor == "xgboost" else sklearn_model_dir
    model = load_model(_edit_mlmodel(source, tmp_path / "m", _with_calibration), Settings())
    records = make_records(60, seed=15, nulls=True)
    raw = model.predict(model.encode(records), records)
    probs = model.probabilities(raw)
    np.testing.assert_array_equal(probs, apply(raw, check(PLATT_BLOCK)))
    assert np.max(np.abs(probs - raw)) > 0.01
    assert model.labels(probs) == [int(p >= model.threshold) for p in probs]
    if flavor == "xgboost":
        np.testing.assert_array_equal(model.mlflow_predictions(raw, probs, records), probs)
    else:  # MLflow's sklearn answer is the pipeline's own predict, untouched by the map
        assert model.mlflow_predictions(raw, probs, records).tolist() == [int(p > 0.5) for p in raw]


def test_probability_rows_of_a_predict_proba_pipeline_are_calibrated(tmp_path: Path, sklearn_model_dir: Path) -> None:
    def edit(doc):  # type: ignore[no-untyped-def]
        _with_calibration(doc)
        doc["flavors"]["python_function"]["predict_fn"] = "predict_proba"

    model = load_model(_edit_mlmodel(sklearn_model_dir, tmp_path / "m", edit), Settings())
    records = make_records(20, seed=16)
    raw = model.predict(model.encode(records), records)
    rows = model.mlflow_predictions(raw, model.probabilities(raw), records)
    np.testing.assert_allclose(rows[:, 1], apply(raw, check(PLATT_BLOCK)), rtol=0, atol=1e-15)
    np.testing.assert_allclose(rows.sum(axis=1), 1.0)


def test_a_bad_calibration_block_is_a_load_error_naming_the_key(tmp_path: Path, xgb_model_dir: Path) -> None:
    d = _edit_mlmodel(xgb_model_dir, tmp_path / "m", lambda doc: _with_calibration(doc, {"method": "platt", "a": "x"}))
    with pytest.raises(ModelLoadError, match=r"metadata\.mlops\.calibration\.a and calibration\.b must be numbers"):
        load_model(d, Settings())
