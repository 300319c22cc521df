"""Load a registered model the way the server does: native flavor plus its ``metadata.mlops`` contract.

``predict_proba`` is the raw score through the contract's calibration map, the probability the
server serves and the threshold was chosen on (the gate and the monitor score with it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops_pipeline.training.candidates import predict_proba
from mlops_pipeline.training.features import FeatureError, ModelSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class ModelFormatError(ValueError):
    """A registered model does not follow the project's model format."""


@dataclass
class LoadedModel:
    uri: str
    flavor: str
    model: Any
    spec: ModelSpec

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return predict_proba(self.model, self.spec, frame)


def load_model(model_uri: str) -> LoadedModel:
    """Download ``model_uri`` (``models:/name/version``, ``models:/name@alias`` ...) and load it natively."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mlops-model-") as scratch:
        return _load_local(model_uri, scratch)


def _load_local(model_uri: str, scratch: str) -> LoadedModel:
    import mlflow.artifacts
    from mlflow.models import Model

    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch)
    mlmodel = Model.load(local)
    block = (mlmodel.metadata or {}).get("mlops")
    if not block:
        raise ModelFormatError(f"{model_uri} has no metadata.mlops block in its MLmodel file")
    try:
        spec = ModelSpec.from_metadata(block)
    except FeatureError as exc:
        raise ModelFormatError(f"{model_uri}: {exc}") from exc
    if "xgboost" in mlmodel.flavors:
        import mlflow.xgboost

        return LoadedModel(model_uri, "xgboost", mlflow.xgboost.load_model(local), spec)
    if "sklearn" in mlmodel.flavors:
        import mlflow.sklearn

        return LoadedModel(model_uri, "sklearn", mlflow.sklearn.load_model(local), spec)
    raise ModelFormatError(f"{model_uri} has flavors {sorted(mlmodel.flavors)}; expected xgboost or sklearn")
