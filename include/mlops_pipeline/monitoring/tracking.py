"""The monitoring experiment in MLflow: one run per window, headline numbers as metrics.

Each window's run (name ``monitor-<ds>``, tag ``window_ds``) carries the drift share, the number
of drifted features, each feature's drift value, the prediction drift and, when labels have
arrived, the quality metrics, all stamped with the window's end time, so the experiment's charts
show them over time. The report files are the run's artifacts. Running a window again reuses its
run (found by the tag), so a retry or re-run never leaves two runs for one window. Thresholds
and decisions are tags, which may change between runs of a window.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

WINDOW_TAG = "window_ds"
KIND_TAG = "mlops.kind"
KIND = "drift_monitor"


def window_run_id(client: MlflowClient, experiment: str, ds: str) -> str | None:
    runs = client.search_runs(
        [experiment], filter_string=f"tags.{WINDOW_TAG} = '{ds}' and tags.`{KIND_TAG}` = '{KIND}'", max_results=1
    )
    return runs[0].info.run_id if runs else None


def headline_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The numbers worth a chart: drift share, drifted count, per-feature drift, prediction drift, quality."""
    drift = summary.get("drift") or {}
    metrics: dict[str, float] = {"rows": float(drift.get("rows") or 0)}
    if drift.get("drift_share") is not None:
        metrics["drift_share"] = float(drift["drift_share"])
        metrics["drifted_features"] = float(len(drift.get("drifted_features") or []))
    for name, feature in (drift.get("features") or {}).items():
        if feature.get("value") is not None:
            metrics[f"drift.{name}"] = float(feature["value"])
    prediction = drift.get("prediction") or {}
    if prediction.get("value") is not None:
        metrics["prediction_drift"] = float(prediction["value"])
    quality = summary.get("quality") or {}
    metrics["labelled_rows"] = float(quality.get("rows") or 0)
    for key, value in (quality.get("metrics") or {}).items():
        if key != "rows" and value is not None:
            metrics[f"quality.{key}"] = float(value)
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def log_window(
    client: MlflowClient,
    experiment_name: str,
    summary: Mapping[str, Any],
    files: Mapping[str, bytes],
    *,
    timestamp_ms: int,
    tags: Mapping[str, str],
) -> str:
    """Create or reuse the window's run, log metrics, tags and ``files`` (name -> bytes); returns the run id."""
    import tempfile

    from mlflow.entities import Metric, RunTag

    from mlops_pipeline.registry.client import ensure_experiment

    experiment = ensure_experiment(client, experiment_name)
    ds = str(summary["window"]["ds"])
    run_id = window_run_id(client, experiment, ds)
    all_tags = {WINDOW_TAG: ds, KIND_TAG: KIND, **tags}
    if run_id is None:
        run_id = client.create_run(experiment, run_name=f"monitor-{ds}", tags=all_tags).info.run_id
    else:
        log.info("reusing monitoring run %s of window %s", run_id, ds)
    metrics = [Metric(k, v, timestamp_ms, 0) for k, v in headline_metrics(summary).items()]
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start : start + 500])
    client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in all_tags.items()])
    with tempfile.TemporaryDirectory(prefix="mlops-monitor-") as scratch:
        for name, data in files.items():
            path = Path(scratch) / name
            path.write_bytes(data)
            client.log_artifact(run_id, str(path), artifact_path="report")
    client.set_terminated(run_id)
    return run_id


def tag_decision(client: MlflowClient, run_id: str, decision: Mapping[str, Any]) -> None:
    from mlflow.entities import RunTag

    tags = {
        "decision_action": str(decision.get("action")),
        "decision_reason": str(decision.get("reason") or ""),
        "decision_trigger": str(bool(decision.get("trigger"))).lower(),
        "decision_blocked_by": str(decision.get("blocked_by") or ""),
        "decision_summary": str(decision.get("summary") or "")[:5000],
    }
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
