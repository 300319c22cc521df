"""The monitoring experiment in MLflow: one run per window, headline numbers as metrics.

Each window's run (name ``monitor-<ds>``, tag ``window_ds``) carries the drift share, the number
of drifted features, each feature's drift value, the prediction drift, the performance estimated
from the served probabilities (``estimated_roc_auc``, ``estimated_accuracy``) and, when labels of
earlier days have arrived, the quality metrics on those days (``quality.*``, with the estimate on
the same rows beside them), all stamped with the window's end time, so the experiment's charts
show them over time. When the labels of a window's own rows arrive (``label_delay_days`` later),
the run of the window that measures them adds ``realised_roc_auc``, ``realised_accuracy`` and the
estimate's error (``estimate_error_roc_auc`` = estimated - realised on the same rows) to the
window's run: each run then shows its estimate next to what the labels said. The report files are
the run's artifacts. Running a window again reuses its run (found by the tag), so a retry or re-run
never leaves two runs for one window. Thresholds and decisions are tags, which may change between
runs of a window.
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
# The window's estimate, logged as estimated_<key>.
ESTIMATED_METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1", "roc_auc_error_bound", "expected_positive_rate")
# The estimate on the labelled rows, logged as quality.<name> beside the realised quality.<metric>.
TRACKED_METRICS = {
    "estimated_roc_auc": "estimated_roc_auc",
    "estimated_accuracy": "estimated_accuracy",
    "roc_auc_error": "estimate_error_roc_auc",
    "accuracy_error": "estimate_error_accuracy",
}


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
    estimate = summary.get("estimate") or {}
    if estimate:
        metrics["estimated_rows"] = float(estimate.get("rows") or 0)
    for key in ESTIMATED_METRICS:
        if estimate.get(key) is not None:
            metrics[f"estimated_{key}"] = float(estimate[key])
    quality = summary.get("quality") or {}
    metrics["labelled_rows"] = float(quality.get("rows") or 0)
    for key, value in (quality.get("metrics") or {}).items():
        if key != "rows" and value is not None:
            metrics[f"quality.{key}"] = float(value)
    tracked = quality.get("estimate") or {}
    for key, name in TRACKED_METRICS.items():
        if tracked.get(key) is not None:
            metrics[f"quality.{name}"] = float(tracked[key])
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def realised_metrics(tracked: Mapping[str, Any]) -> dict[str, float]:
    """What the labels of a window's own rows say, and the estimate's error on those rows (see
    :func:`~mlops_pipeline.monitoring.estimate.estimate_against_labels`)."""
    names = {
        "rows": "realised_rows",
        "realised_roc_auc": "realised_roc_auc",
        "realised_accuracy": "realised_accuracy",
        "roc_auc_error": "estimate_error_roc_auc",
        "accuracy_error": "estimate_error_accuracy",
    }
    found = {name: float(tracked[key]) for key, name in names.items() if tracked.get(key) is not None}
    return {k: v for k, v in found.items() if math.isfinite(v)}


def log_realised(
    client: MlflowClient,
    experiment_name: str,
    ds: str,
    tracked: Mapping[str, Any],
    *,
    timestamp_ms: int,
    measured_by: str,
    champion_version: str | None,
) -> str | None:
    """Add the realised performance of window ``ds``'s rows (those ``champion_version`` served) to that
    window's run. None, and nothing logged, when there is no such run (the monitor did not run that
    day) or it monitored another champion version."""
    from mlflow.entities import Metric, RunTag

    experiment = client.get_experiment_by_name(experiment_name)
    run_id = window_run_id(client, experiment.experiment_id, ds) if experiment is not None else None
    if run_id is None:
        log.info("no monitoring run of window %s: its realised performance stays in the run of %s", ds, measured_by)
        return None
    monitored = client.get_run(run_id).data.tags.get("champion_version")
    if champion_version is not None and monitored not in (None, "", champion_version):
        log.info("window %s was monitored for version %s, not %s: its run is left as it is", ds, monitored, champion_version)
        return None
    metrics = [Metric(k, v, timestamp_ms, 0) for k, v in realised_metrics(tracked).items()]
    client.log_batch(run_id, metrics=metrics, tags=[RunTag("realised_by_window", measured_by)])
    return run_id


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
