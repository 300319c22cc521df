"""Prediction logs for tests, written by the serving app's own code (serving/mlops_serving/predlog.py).

:func:`log_lines` renders rows as the server logs the ``/predict`` requests that carried them (the
body a client sends, the outputs the server returns), with the writer's line functions;
:func:`legacy_log_lines` renders the same rows in the older one-line-per-row format, which the
reader still reads.
"""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from mlops_pipeline.datasets import DatasetSpec

SERVING_SRC = Path(__file__).resolve().parents[2] / "serving"
if str(SERVING_SRC) not in sys.path:
    sys.path.append(str(SERVING_SRC))

from mlops_serving.predlog import FILE_SUFFIX, input_json, output_json, request_line  # noqa: E402

DEFAULT_NAME = f"predictions-test-1-20260101T000000000Z{FILE_SUFFIX}"


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _records(frame: pd.DataFrame, spec: DatasetSpec) -> list[dict[str, Any]]:
    columns = [spec.id_column, spec.time_column, *spec.feature_columns]
    return [{name: _plain(record[name]) for name in columns} for record in frame.to_dict(orient="records")]


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
    """One line per request of ``request_rows`` rows of ``frame``: what the server writes for it."""
    stamp = predicted_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    records = _records(frame, spec)
    probabilities = np.asarray(probabilities)
    lines = []
    for number, start in enumerate(range(0, len(records), request_rows)):
        chunk = slice(start, start + request_rows)
        scores = probabilities[chunk]
        body = orjson.dumps({"records": records[chunk]})  # what a client sends
        lines.append(
            request_line(
                request_id=f"req-{number:06d}",
                ts=stamp,
                model_name=model_name,
                model_version=model_version,
                traffic_source="client",
                endpoint="predict",
                input_json=input_json(body, None),
                output_json=output_json(None, scores, (scores >= 0.5).astype(int).tolist()),
            )
        )
    return lines


def legacy_log_lines(
    frame: pd.DataFrame,
    probabilities: np.ndarray,
    spec: DatasetSpec,
    *,
    model_version: str,
    predicted_at: datetime,
    model_name: str = "churn",
    request_rows: int = 100,
) -> list[bytes]:
    """The same rows in the older format: one JSON line per row (write them to a plain ``.jsonl``)."""
    stamp = predicted_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    lines = []
    for position, (record, probability) in enumerate(zip(_records(frame, spec), probabilities, strict=True)):
        line = {
            "request_id": f"req-{position // request_rows:06d}",
            "ts": stamp,
            "model_name": model_name,
            "model_version": model_version,
            "traffic_source": "client",
            "endpoint": "predict",
            "row": position % request_rows,
            spec.id_column: record[spec.id_column],
            spec.time_column: record[spec.time_column],
            "features": {name: record[name] for name in spec.feature_columns},
            "probability": float(probability),
            "label": int(probability >= 0.5),
        }
        lines.append(orjson.dumps(line) + b"\n")
    return lines


def write_log(log_dir: Path, day: str, lines: list[bytes], name: str = DEFAULT_NAME) -> Path:
    """Append ``lines`` to ``<log_dir>/ds=<day>/<name>``."""
    folder = Path(log_dir) / f"ds={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with open(path, "ab") as handle:
        handle.write(b"".join(lines))
    return path
