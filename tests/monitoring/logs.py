"""Prediction logs for tests, in the serving app's format (see serving/mlops_serving/predlog.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from mlops_pipeline.datasets import DatasetSpec


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def log_lines(
    frame: pd.DataFrame,
    probabilities: np.ndarray,
    spec: DatasetSpec,
    *,
    model_version: str,
    predicted_at: datetime,
    model_name: str = "churn",
    request_rows: int = 100,
) -> list[bytes]:
    """One JSON line per row of ``frame``: the record the serving app writes for it."""
    stamp = predicted_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    lines = []
    for position, (record, probability) in enumerate(zip(frame.to_dict(orient="records"), probabilities, strict=True)):
        line = {
            "request_id": f"req-{position // request_rows:06d}",
            "ts": stamp,
            "model_name": model_name,
            "model_version": model_version,
            "traffic_source": "client",
            "endpoint": "predict",
            "row": position % request_rows,
            spec.id_column: _plain(record[spec.id_column]),
            spec.time_column: _plain(record[spec.time_column]),
            "features": {name: _plain(record[name]) for name in spec.feature_columns},
            "probability": float(probability),
            "label": int(probability >= 0.5),
        }
        lines.append(orjson.dumps(line) + b"\n")
    return lines


def write_log(log_dir: Path, day: str, lines: list[bytes], name: str = "predictions-test-1-20260101T000000000Z.jsonl") -> Path:
    """Append ``lines`` to ``<log_dir>/ds=<day>/<name>``."""
    folder = Path(log_dir) / f"ds={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with open(path, "ab") as handle:
        handle.write(b"".join(lines))
    return path
