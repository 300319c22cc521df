"""Feature importances from XGBoost's own SHAP contributions (``pred_contribs=True``).

No extra SHAP package: XGBoost computes exact TreeSHAP values itself. The importance of a feature
is the mean absolute contribution (in log-odds) over the rows given, usually the holdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlops_pipeline.training.features import ModelSpec, to_dmatrix

if TYPE_CHECKING:
    import pandas as pd
    import xgboost as xgb


def shap_importances(booster: xgb.Booster, frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """One row per feature: mean |SHAP|, mean SHAP and rank (1 = most important), sorted by rank."""
    import numpy as np
    import pandas as pd

    contributions = booster.predict(to_dmatrix(frame, spec), pred_contribs=True)
    per_feature = np.asarray(contributions)[:, : len(spec.features)]  # the last column is the bias
    table = pd.DataFrame(
        {
            "feature": spec.names,
            "kind": [f.kind for f in spec.features],
            "mean_abs_shap": np.abs(per_feature).mean(axis=0).astype("float64"),
            "mean_shap": per_feature.mean(axis=0).astype("float64"),
        }
    )
    table = table.sort_values(["mean_abs_shap", "feature"], ascending=[False, True], kind="mergesort")
    table["rank"] = np.arange(1, len(table) + 1)
    return table.reset_index(drop=True)


def plot_importances(table: pd.DataFrame, path: Path, title: str) -> Path:
    """A horizontal bar chart of mean |SHAP| (PNG, matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    ordered = table.sort_values("mean_abs_shap", ascending=True)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ordered) + 1.2), dpi=110)
    try:
        ax.barh(ordered["feature"], ordered["mean_abs_shap"], color="#3b75af")
        ax.set_xlabel("mean |SHAP value| (log-odds)")
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return path
