"""The MLflow model registry: one client factory, the ``@champion``/``@challenger`` aliases, the gate, lineage.

Light at import time (no MLflow import here), so DAG files may use the constants.
"""

from __future__ import annotations

from mlops_pipeline.registry.aliases import CHALLENGER, CHALLENGER_ASSET_NAME, CHAMPION, promote

__all__ = ["CHALLENGER", "CHALLENGER_ASSET_NAME", "CHAMPION", "promote"]
