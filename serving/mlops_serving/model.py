"""Loading one MLflow model directory and predicting with its native model object.

Supported flavors (no mlflow import, no pyfunc):

* ``xgboost``: a Booster (``binary:logistic``) predicted in place on the float32
  matrix built by :mod:`mlops_serving.validation`.
* ``sklearn``: a fitted Pipeline whose ``predict_proba`` takes a DataFrame of the
  raw feature columns (pickle/cloudpickle, or skops when installed).

Either model's own score goes through the ``metadata.mlops.calibration`` map
(:mod:`mlops_pipeline.contracts.calibration`, the code training's ``predict_proba``
runs) before it is answered, logged or counted: the threshold is on that scale.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import pickle
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mlops_pipeline.contracts.calibration import calibrator

from .settings import Settings
from .spec import ServingSpec, SpecError, parse_spec
from .validation import Encoded, RecordEncoder

log = logging.getLogger("mlops_serving.model")

UNKNOWN = "unknown"


class ModelLoadError(RuntimeError):
    """The model directory cannot be served."""


@dataclass(frozen=True)
class ModelInfo:
    model_name: str
    model_version: str
    run_id: str
    artifact_sha256: str
    flavor: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def read_model_info(model_dir: Path, settings: Settings, flavor: str) -> ModelInfo:
    """``<model_dir>/model_info.json``, then env fallbacks, then ``"unknown"``."""
    data: dict[str, Any] = {}
    path = model_dir / "model_info.json"
    if path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                data = loaded
            else:
                log.warning("%s is not a JSON object; ignoring it", path)
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s: %s", path, exc)

    def pick(key: str, fallback: str | None) -> str:
        value = data.get(key)
        if value is not None and str(value).strip():
            return str(value)
        return fallback or UNKNOWN

    return ModelInfo(
        model_name=pick("model_name", settings.model_name),
        model_version=pick("model_version", settings.model_version),
        run_id=pick("run_id", settings.model_run_id),
        artifact_sha256=pick("artifact_sha256", settings.model_sha256),
        flavor=flavor,
    )


# --------------------------------------------------------------------------- xgboost
class _InplacePredictor:
    """``Booster.inplace_predict`` for C-contiguous float32 matrices, minus per-call overhead.

    Calls the same C entry point as ``Booster.inplace_predict`` but reuses one
    proxy DMatrix per thread (the stock Python path allocates a fresh proxy,
    and with it a fresh runtime context, on every call) and a pre-encoded
    config. Results are checked against the stock paths at load time.
    """

    def __init__(self, booster: Any) -> None:
        from xgboost.core import _LIB, c_bst_ulong, make_jcargs

        self._lib = _LIB
        self._fn = _LIB.XGBoosterPredictFromDense
        self._booster = booster  # keep the handle alive
        self._handle = booster.handle
        self._config = make_jcargs(
            type=0,
            training=False,
            iteration_begin=0,
            iteration_end=0,
            missing=math.nan,
            strict_shape=False,
            cache_id=0,
        )
        self._ulong = c_bst_ulong
        self._local = threading.local()
        self._proxies: list[ctypes.c_void_p] = []
        self._lock = threading.Lock()
        self._closed = False

    def _state(self) -> Any:
        st = getattr(self._local, "st", None)
        if st is None:
            proxy = ctypes.c_void_p()
            if self._lib.XGProxyDMatrixCreate(ctypes.byref(proxy)) != 0:
                raise RuntimeError(self._lib.XGBGetLastError().decode())
            with self._lock:
                self._proxies.append(proxy)
            shape = ctypes.POINTER(self._ulong)()
            dims = self._ulong()
            out = ctypes.POINTER(ctypes.c_float)()
            st = (proxy, ctypes.byref(shape), ctypes.byref(dims), ctypes.byref(out), shape, dims, out)
            self._local.st = st
        return st

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        n, k = x.shape
        proxy, p_shape, p_dims, p_out, shape, dims, out = self._state()
        iface = (
            b'{"data": [%d, true], "shape": [%d, %d], "strides": null, "typestr": "<f4", "version": 3}'
            % (
                x.ctypes.data,
                n,
                k,
            )
        )
        if self._fn(self._handle, iface, self._config, proxy, p_shape, p_dims, p_out) != 0:
            raise RuntimeError(self._lib.XGBGetLastError().decode())
        total = 1
        for d in range(dims.value):
            total *= shape[d]
        if total != n:
            raise RuntimeError(f"unexpected prediction shape: {total} values for {n} rows")
        result = np.empty(n, dtype=np.float32)
        ctypes.memmove(result.ctypes.data, out, 4 * n)
        return result

    def close(self) -> None:
        with self._lock:
            proxies, self._proxies = self._proxies, []
        for proxy in proxies:
            self._lib.XGDMatrixFree(proxy)


class XGBoostModel:
    flavor = "xgboost"
    batchable = True

    def __init__(self, booster: Any, spec: ServingSpec, nthread: int) -> None:
        self.booster = booster
        self.spec = spec
        if nthread > 0:
            booster.set_param({"nthread": nthread})
        self._feature_types = spec.contract.feature_types
        self._fast: _InplacePredictor | None
        try:
            self._fast = _InplacePredictor(booster)
        except Exception as exc:  # pragma: no cover - depends on xgboost internals
            log.warning("fast in-place predictor unavailable (%s); using Booster.inplace_predict", exc)
            self._fast = None

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Positive-class probabilities (float32) for an encoded float32 matrix."""
        if self._fast is not None:
            return self._fast(x)
        return self.booster.inplace_predict(x, validate_features=False)

    def predict(self, encoded: Encoded, records: list[dict[str, Any]]) -> np.ndarray:
        return self.predict_matrix(encoded.matrix)

    def reference_predict(self, x: np.ndarray) -> np.ndarray:
        """The slow, canonical path: DMatrix with feature types, as in training."""
        import xgboost as xgb

        dm = xgb.DMatrix(
            x,
            feature_names=list(self.spec.feature_names),
            feature_types=self._feature_types,
            enable_categorical=True,
            missing=np.nan,
        )
        return self.booster.predict(dm, validate_features=self.booster.feature_names is not None)

    def verify(self, x: np.ndarray) -> None:
        """Check fast path == Booster.inplace_predict == DMatrix path on ``x``."""
        reference = self.reference_predict(x)
        stock = self.booster.inplace_predict(x, validate_features=False)
        if not np.allclose(stock, reference, rtol=1e-6, atol=1e-7):
            raise ModelLoadError(
                "inplace_predict disagrees with DMatrix predict; check feature types/encoding"
            )
        if self._fast is not None:
            fast = self._fast(x)
            if not np.array_equal(fast, stock):
                log.warning("fast in-place predictor disagrees with Booster.inplace_predict; disabling it")
                self._fast.close()
                self._fast = None

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()


def _import_xgboost() -> Any:
    """Import xgboost without its optional scikit-learn integration.

    ``xgboost`` imports scikit-learn (and with it scipy.stats, pandas, ...) only to
    offer its sklearn-style estimators, which serving a Booster never uses; that
    import is most of the server's start-up time and memory. When sklearn is not
    loaded yet, hide it while xgboost is imported (xgboost then uses its built-in
    stand-ins), and make it importable again right after.
    """
    if "xgboost" in sys.modules or "sklearn" in sys.modules:
        import xgboost

        return xgboost
    sys.modules["sklearn"] = None  # type: ignore[assignment]  # makes `import sklearn` raise ImportError
    try:
        import xgboost
    finally:
        if "sklearn" in sys.modules and sys.modules["sklearn"] is None:
            del sys.modules["sklearn"]
    return xgboost


def _load_xgboost(
    model_dir: Path, flavor_conf: dict[str, Any], spec: ServingSpec, settings: Settings
) -> XGBoostModel:
    xgb = _import_xgboost()

    data = flavor_conf.get("data") or "model.xgb"
    path = model_dir / data
    if not path.is_file():
        raise ModelLoadError(f"xgboost model file not found: {path}")
    booster = xgb.Booster()
    booster.load_model(str(path))
    try:
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    except (KeyError, ValueError):  # pragma: no cover - defensive
        objective = None
    if objective != "binary:logistic":
        raise ModelLoadError(f"expected a binary:logistic booster, got objective {objective!r}")
    n_features = booster.num_features()
    if n_features != len(spec.features):
        raise ModelLoadError(
            f"booster has {n_features} features, metadata.mlops.features lists {len(spec.features)}"
        )
    if booster.feature_names is not None and list(booster.feature_names) != list(spec.feature_names):
        raise ModelLoadError(
            f"booster feature names {booster.feature_names} do not match metadata.mlops.features "
            f"{list(spec.feature_names)} (order matters)"
        )
    if booster.feature_types is not None:
        for f, ft in zip(spec.features, booster.feature_types, strict=True):
            if (ft == "c") != f.is_categorical:
                raise ModelLoadError(
                    f"feature {f.name!r}: booster type {ft!r} does not match kind {f.kind!r}"
                )
    return XGBoostModel(booster, spec, settings.predict_threads)


# --------------------------------------------------------------------------- sklearn
class SklearnModel:
    flavor = "sklearn"
    batchable = False

    def __init__(self, model: Any, spec: ServingSpec, predict_fn: str) -> None:
        import pandas as pd

        self._pd = pd
        self.model = model
        self.spec = spec
        self.predict_fn = predict_fn
        classes = list(getattr(model, "classes_", [0, 1]))
        self.classes = classes
        self.positive_index = classes.index(1) if 1 in classes else len(classes) - 1
        self._columns = list(spec.feature_names)

    def frame(self, records: list[dict[str, Any]]) -> Any:
        """The raw feature columns, built the way pandas builds a frame from records
        (numeric nulls -> NaN, string nulls stay None; id/time columns dropped)."""
        return self._pd.DataFrame.from_records(records, columns=self._columns)

    def predict(self, encoded: Encoded, records: list[dict[str, Any]]) -> np.ndarray:
        proba = self.model.predict_proba(self.frame(records))
        return np.asarray(proba[:, self.positive_index], dtype=np.float64)

    def predict_proba_full(self, records: list[dict[str, Any]]) -> np.ndarray:
        return np.asarray(self.model.predict_proba(self.frame(records)))

    def close(self) -> None:
        pass


def _load_sklearn(
    model_dir: Path, flavor_conf: dict[str, Any], spec: ServingSpec, predict_fn: str
) -> SklearnModel:
    data = flavor_conf.get("pickled_model") or "model.pkl"
    path = model_dir / data
    if not path.is_file():
        raise ModelLoadError(f"sklearn model file not found: {path}")
    fmt = flavor_conf.get("serialization_format") or "cloudpickle"
    if fmt == "skops":
        try:
            import skops.io as sio
        except ImportError:
            raise ModelLoadError(
                "model is serialized with skops but the 'skops' package is not installed"
            ) from None
        model = sio.load(str(path), trusted=flavor_conf.get("skops_trusted_types") or [])
    elif fmt in ("pickle", "cloudpickle"):
        # Standard-library classes pickled by cloudpickle load with plain pickle.
        with path.open("rb") as fh:
            model = pickle.load(fh)  # noqa: S301 - the model artifact is trusted
    else:
        raise ModelLoadError(f"unsupported sklearn serialization_format {fmt!r}")
    if not hasattr(model, "predict_proba"):
        raise ModelLoadError("sklearn model has no predict_proba")
    return SklearnModel(model, spec, predict_fn)


# --------------------------------------------------------------------------- facade
class ServingModel:
    """A loaded, validated, warmed-up model plus its input contract."""

    def __init__(self, impl: XGBoostModel | SklearnModel, spec: ServingSpec, info: ModelInfo) -> None:
        self.impl = impl
        self.spec = spec
        self.info = info
        self.encoder = RecordEncoder(spec)
        self.threshold = spec.threshold
        self.flavor = impl.flavor
        self.batchable = impl.batchable
        self.calibrated = spec.calibration is not None
        self._calibrate = calibrator(spec.calibration)

    def encode(self, records: list[Any]) -> Encoded:
        return self.encoder.encode(records)

    def predict(self, encoded: Encoded, records: list[dict[str, Any]]) -> np.ndarray:
        """The model's own (raw) scores; :meth:`probabilities` turns them into what is served."""
        return self.impl.predict(encoded, records)

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        assert isinstance(self.impl, XGBoostModel)
        return self.impl.predict_matrix(x)

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores through the model's calibration map (float64), as training's ``predict_proba``;
        without a map the raw scores are the probabilities and are returned as they are."""
        if not self.calibrated:
            return raw
        return self._calibrate(raw)

    def labels(self, probs: np.ndarray) -> list[int]:
        return (probs >= self.threshold).astype(np.int8).tolist()

    def mlflow_predictions(self, raw: np.ndarray, probs: np.ndarray, records: list[dict[str, Any]]) -> Any:
        """What ``mlflow models serve`` would answer for this flavor, with calibrated probabilities.

        xgboost Booster: the probabilities. sklearn: ``predict`` (class labels, the pipeline's own
        argmax over its raw scores) or, when the pyfunc ``predict_fn`` is ``predict_proba``, the
        probability rows (for two classes ``[1 - p, p]`` with ``p`` calibrated).
        """
        impl = self.impl
        if isinstance(impl, SklearnModel):
            if impl.predict_fn == "predict_proba":
                rows = impl.predict_proba_full(records)
                if self.calibrated and rows.ndim == 2 and rows.shape[1] == 2:
                    second = probs if impl.positive_index == 1 else 1.0 - probs
                    rows = np.column_stack([1.0 - second, second])
                return rows
            classes = np.asarray(impl.classes)
            if len(classes) == 2:  # argmax over [1 - p, p], without a second model call
                return np.where(raw > 0.5, classes[1], classes[0])
            return classes[np.argmax(impl.predict_proba_full(records), axis=1)]
        return probs

    def warm_up(self) -> None:
        """Run real predictions through the whole path; verify fast == reference for xgboost."""
        records = [self.spec.example_record()]
        # One row with every nullable field null and unseen categories, one per category value.
        odd = dict(records[0])
        for f in self.spec.features:
            if f.nullable:
                odd[f.name] = None
            elif f.kind == "categorical":
                odd[f.name] = "__unseen__"
        records.append(odd)
        for f in self.spec.features:
            for value in (f.categories or ())[1:]:
                records.append({**records[0], f.name: value})
        encoded = self.encoder.encode(records)
        probs = self.probabilities(self.predict(encoded, records))
        if probs.shape != (len(records),) or not np.all(np.isfinite(probs)):
            raise ModelLoadError(f"warm-up prediction returned unexpected output {probs!r}")
        if isinstance(self.impl, XGBoostModel):
            self.impl.verify(encoded.matrix)
            rng = np.random.default_rng(0)
            x = encoded.matrix[rng.integers(0, len(records), 64)]
            self.impl.verify(np.ascontiguousarray(x))
        for _ in range(3):
            self.predict(self.encoder.encode(records[:1]), records[:1])

    def close(self) -> None:
        self.impl.close()


def load_model(model_dir: Path, settings: Settings) -> ServingModel:
    """Load, validate and warm up the model in ``model_dir``."""
    model_dir = Path(model_dir)
    mlmodel_path = model_dir / "MLmodel"
    if not mlmodel_path.is_file():
        raise ModelLoadError(f"no MLmodel file in {model_dir}")
    try:
        mlmodel = yaml.safe_load(mlmodel_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"cannot parse {mlmodel_path}: {exc}") from None
    if not isinstance(mlmodel, dict):
        raise ModelLoadError(f"{mlmodel_path} is not a YAML mapping")
    flavors = mlmodel.get("flavors") or {}
    try:
        if "xgboost" in flavors:
            spec = parse_spec(mlmodel)
            impl: XGBoostModel | SklearnModel = _load_xgboost(model_dir, flavors["xgboost"], spec, settings)
        elif "sklearn" in flavors:
            spec = parse_spec(mlmodel)
            predict_fn = (flavors.get("python_function") or {}).get("predict_fn") or "predict"
            impl = _load_sklearn(model_dir, flavors["sklearn"], spec, predict_fn)
        else:
            raise ModelLoadError(
                f"MLmodel has no supported flavor (xgboost, sklearn); found {sorted(flavors)}"
            )
    except SpecError as exc:
        raise ModelLoadError(str(exc)) from None
    info = read_model_info(model_dir, settings, impl.flavor)
    model = ServingModel(impl, spec, info)
    model.warm_up()
    log.info(
        "loaded model %s version %s (flavor %s, %d features, calibration %s) from %s [pid %d]",
        info.model_name,
        info.model_version,
        info.flavor,
        len(spec.features),
        (spec.calibration or {}).get("method", "none"),
        model_dir,
        os.getpid(),
    )
    return model
