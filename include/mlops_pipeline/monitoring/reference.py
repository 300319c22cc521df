"""The reference a window is compared with: the ``@champion``'s own training sample, found through lineage.

``@champion`` -> its model version -> the training run that produced it -> that run's
``data/reference_sample.parquet`` artifact (a sample of the rows it was trained on, features and
target). Nothing is read from a fixed path: when the champion changes, the reference changes
with it. The run also gives the champion's holdout ROC AUC (the bar for the performance check)
and its decision threshold; scoring the sample with the champion gives the reference
distribution of predictions, and the model's own ``metadata.mlops`` contract the threshold and the
calibration the server applies (what the estimated performance rests on).
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "data/reference_sample.parquet"
HOLDOUT_METRIC = "holdout_roc_auc"


class ReferenceSampleError(ValueError):
    """The champion's lineage does not lead to a usable reference sample."""


@dataclass
class ChampionReference:
    model_name: str
    version: str
    run_id: str
    frame: pd.DataFrame
    holdout_roc_auc: float | None
    threshold: float
    artifact_uri: str
    calibration: str | None = None  # method of the served calibration map; None: raw scores are served

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"

    def describe(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "run_id": self.run_id,
            "rows": len(self.frame),
            "artifact": self.artifact_uri,
            "holdout_roc_auc": self.holdout_roc_auc,
            "threshold": self.threshold,
            "calibration": self.calibration,
        }


def champion_version(client: MlflowClient, model_name: str) -> str | None:
    from mlops_pipeline.registry.aliases import CHAMPION, version_for_alias

    version = version_for_alias(client, model_name, CHAMPION)
    return None if version is None else str(version.version)


def load_reference(client: MlflowClient, model_name: str, version: str) -> ChampionReference:
    """The reference sample and scores of ``model_name`` version ``version`` (via its run's lineage)."""
    import pandas as pd

    from mlops_pipeline.registry.lineage import version_lineage

    lineage = version_lineage(client, model_name, version)
    run_id = lineage["run_id"]
    if REFERENCE_ARTIFACT not in lineage["artifacts"]:
        raise ReferenceSampleError(
            f"{model_name} version {version} (run {run_id}) has no {REFERENCE_ARTIFACT} artifact; training logs it "
            "when MLOPS_TRAIN_REFERENCE_SAMPLE_ROWS > 0. Retrain, or promote a version that has one."
        )
    with tempfile.TemporaryDirectory(prefix="mlops-reference-") as scratch:
        local = client.download_artifacts(run_id, REFERENCE_ARTIFACT, scratch)
        frame = pd.read_parquet(Path(local))
    if frame.empty:
        raise ReferenceSampleError(f"{REFERENCE_ARTIFACT} of {model_name} version {version} (run {run_id}) has no rows")
    run = client.get_run(run_id)
    holdout = run.data.metrics.get(HOLDOUT_METRIC)
    threshold = _float(run.data.params.get("threshold"), 0.5)
    return ChampionReference(
        model_name=model_name,
        version=str(version),
        run_id=run_id,
        frame=frame,
        holdout_roc_auc=holdout if holdout is not None and math.isfinite(holdout) else None,
        threshold=threshold,
        artifact_uri=f"runs:/{run_id}/{REFERENCE_ARTIFACT}",
    )


def score_reference(reference: ChampionReference) -> tuple[ChampionReference, np.ndarray]:
    """The reference with the threshold and calibration method of the model's ``metadata.mlops``
    contract (what the server applies), and the champion's probabilities on its own reference sample
    (the reference for prediction drift)."""
    from mlops_pipeline.registry.models import load_model

    model = load_model(reference.model_uri)
    calibration = model.spec.calibration
    served = replace(
        reference,
        threshold=float(model.spec.threshold),
        calibration=None if calibration is None else str(calibration.get("method")),
    )
    return served, model.predict_proba(reference.frame)


def _float(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default
