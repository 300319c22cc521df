"""One monitoring window, end to end, without Airflow: :func:`run_monitor`.

1. ``@champion`` -> its reference sample (through lineage), its scores on it, and its served
   contract (threshold, calibration);
2. the prediction log, streamed once: rows of the window feed the drift accumulators, the
   performance estimate and the report sample; rows of the labelled days (whose labels have arrived
   by the window's end) are kept for the quality check (a few columns only);
3. verdicts on all rows (:mod:`~mlops_pipeline.monitoring.drift`), the window's estimated
   performance from the served probabilities (:mod:`~mlops_pipeline.monitoring.estimate`), quality
   on all labelled rows with the estimate on the same rows beside it (how well it tracked);
4. Evidently reports on bounded samples; the "data watch" section: what ingestion's watch suite
   noted on the window's batches (new categories, values out of profile, null shares up), read
   from their manifests and shown beside the drift findings, never part of the decision;
5. ``reports/drift/ds=YYYY-MM-DD/`` in the lake: ``report.html`` (drift), ``quality.html`` (when
   labels exist) and ``report.json`` (every number, the Evidently metrics, what was read), each
   written atomically, ``report.json`` last; then the same files and the headline metrics to
   the monitoring experiment in MLflow, and each labelled day's realised performance to the run of
   the window that estimated it.

The decision (``decision.json`` beside the report) is the next step's job
(:mod:`~mlops_pipeline.monitoring.decision`), so thresholds can change without recomputing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from mlflow import MlflowClient

    from mlops_pipeline.config import MonitorSettings, Settings
    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.datasets import DatasetSpec
    from mlops_pipeline.ingest import Window
    from mlops_pipeline.monitoring.predictions import LogLayout
    from mlops_pipeline.monitoring.reference import ChampionReference

log = logging.getLogger(__name__)

REPORT_HTML = "report.html"
QUALITY_HTML = "quality.html"
REPORT_JSON = "report.json"
# The prediction log is read in blocks of whole lines, one parsed ahead of the statistics: smaller
# blocks than the reader's default keep the extra block's memory, and the two threads in step.
READ_AHEAD_BLOCKS = 1
READ_BLOCK_BYTES = 8 << 20


def report_folder(lake: Lake, monitor: MonitorSettings, ds: str) -> str:
    return lake.path(monitor.reports_prefix, f"ds={ds}")


def report_uri(lake: Lake, monitor: MonitorSettings, ds: str, name: str = REPORT_HTML) -> str:
    return lake.uri_of(monitor.reports_prefix, f"ds={ds}", name)


def log_days_to_read(window: Window, first_event_day: Any, monitor: MonitorSettings) -> list[Any] | None:
    """The ``ds=`` partitions that can hold rows of the window or the labelled days (None = all)."""
    from mlops_pipeline.monitoring.predictions import days_between

    if monitor.log_scan == "all":
        return None
    last_window_day = (window.end - timedelta(milliseconds=1)).astimezone(UTC).date()
    # A day early: an event just before midnight may be predicted a little before its stamped time.
    return days_between(first_event_day - timedelta(days=1), last_window_day + timedelta(days=monitor.log_scan_days_after))


@dataclass
class WindowData:
    """What one pass over the prediction log gives (see :func:`collect_window`)."""

    drift: dict[str, Any]  # WindowDrift.result(): verdicts and numbers on every row
    estimate: dict[str, Any]  # PerformanceEstimator.result() on the window's (champion) probabilities
    methods: dict[str, str]  # the test each feature was judged with
    sample: pa.Table  # a uniform sample of the window's rows, for the Evidently report
    labelled: pd.DataFrame  # predictions of the labelled days: id, time, ts, version, probability
    read: dict[str, Any]  # files, rows, skipped lines


def run_monitor(
    window: Window,
    *,
    settings: Settings | None = None,
    monitor: MonitorSettings | None = None,
    client: MlflowClient | None = None,
    dag_run_id: str | None = None,
) -> dict[str, Any]:
    """Compute, write and log the window's reports; returns the findings (``report.json`` minus Evidently's part)."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.monitoring import data_watch
    from mlops_pipeline.monitoring.evidently_report import import_in_background
    from mlops_pipeline.monitoring.predictions import LogLayout
    from mlops_pipeline.monitoring.reference import champion_version
    from mlops_pipeline.registry.client import mlflow_client
    from mlops_pipeline.storage import open_lake

    started = time.monotonic()
    settings = settings or get_settings()
    monitor = monitor or get_settings().monitor
    spec = load_dataset_spec(settings.dataset)
    lake = open_lake(settings)
    client = client or mlflow_client(settings)
    model_name = settings.registered_model_name
    summary: dict[str, Any] = {
        "window": {**window.as_dict(), "ds": window.ds},
        "dataset": spec.name,
        "model_name": model_name,
        "report_dir": lake.uri_of(monitor.reports_prefix, f"ds={window.ds}"),
        "report": report_uri(lake, monitor, window.ds, REPORT_JSON),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dag_run_id": dag_run_id,
        "settings": monitor.model_dump(mode="json", exclude={"alert_email_to"}),
        "data_watch": data_watch.read_window(lake, window_days(window)),
    }
    version = champion_version(client, model_name)
    if version is None:
        summary.update(status="no_champion", message=f"{model_name} has no @champion version to monitor yet")
        log.warning("window %s: %s; nothing compared", window.ds, summary["message"])
        lake.write_json_atomic(f"{report_folder(lake, monitor, window.ds)}/{REPORT_JSON}", summary)
        return summary

    reference, reference_predictions = _reference(client, model_name, version)
    summary["reference"] = reference.describe()
    evidently_import = import_in_background()  # seconds of imports, overlapped with the stream
    try:
        collected = read_window(window, spec, monitor, reference, reference_predictions, log_dir=settings.prediction_log_dir)
    finally:
        evidently_import.join()
    summary.update(status="ok", drift=collected.drift, read=collected.read)
    summary["estimate"] = _estimate_block(collected.estimate, window, monitor, reference)
    summary["quality"], quality_rows = _quality(lake, spec, window, monitor, reference, collected.labelled)

    files: dict[str, bytes] = {}
    evidently: dict[str, Any] = {}
    if collected.sample.num_rows:
        html, payload = drift_report(
            collected,
            LogLayout.for_dataset(spec),
            reference.frame,
            reference_predictions,
            prediction_version=reference.version if monitor.match_champion_version else None,
            monitor=monitor,
        )
        files[REPORT_HTML] = html.encode()
        evidently["drift"] = payload
    if quality_rows is not None:
        html, payload = _quality_report(quality_rows, spec, reference, reference_predictions, monitor)
        files[QUALITY_HTML] = html.encode()
        evidently["quality"] = payload
    summary["files"] = {name: report_uri(lake, monitor, window.ds, name) for name in [*files, REPORT_JSON]}
    if REPORT_HTML in files:  # the page a person opens; report.json when the window had no rows
        summary["report"] = summary["files"][REPORT_HTML]
    summary["seconds"] = round(time.monotonic() - started, 2)

    folder = report_folder(lake, monitor, window.ds)
    for name, data in files.items():
        lake.write_bytes_atomic(f"{folder}/{name}", data)
    for stale in {REPORT_HTML, QUALITY_HTML} - set(files):  # left by an earlier run of this window
        if lake.exists(f"{folder}/{stale}"):
            lake.fs.rm(f"{folder}/{stale}")
    report_json = json.dumps({**summary, "evidently": evidently}, indent=2, sort_keys=True, default=str).encode()
    lake.write_bytes_atomic(f"{folder}/{REPORT_JSON}", report_json + b"\n")
    if monitor.log_to_mlflow:
        summary["mlflow_run_id"] = _log_to_mlflow(client, monitor, model_name, window, summary, {**files, REPORT_JSON: report_json})
    log.info("window %s: %s; %s", window.ds, headline(summary), data_watch.headline(summary["data_watch"]))
    return summary


def headline(summary: Mapping[str, Any]) -> str:
    """One line with the numbers that matter, for task logs and alerts."""
    if summary.get("status") != "ok":
        return str(summary.get("message") or summary.get("status"))
    drift = summary.get("drift") or {}
    if not drift.get("rows"):
        return "no prediction rows in the window (no traffic, or the prediction log stopped)"
    share = drift.get("drift_share")
    parts = [
        f"{drift.get('rows', 0)} rows",
        f"drift share {share:.2f}" if share is not None else "drift share n/a",
        f"drifted {drift.get('drifted_features') or []}",
    ]
    prediction = drift.get("prediction") or {}
    if prediction.get("value") is not None:
        parts.append(f"prediction drift {prediction['value']:.3f}")
    estimate = summary.get("estimate") or {}
    if estimate.get("roc_auc") is not None:
        parts.append(f"estimated ROC AUC {estimate['roc_auc']:.4f} (accuracy {estimate['accuracy']:.4f}) on {estimate['rows']} rows")
    quality = summary.get("quality") or {}
    metrics = quality.get("metrics") or {}
    if metrics.get("roc_auc") is not None:
        days = ", ".join(quality.get("days") or [])
        parts.append(f"ROC AUC {metrics['roc_auc']:.4f} on {quality.get('rows')} labelled rows of {days}")
        tracked = quality.get("estimate") or {}
        if tracked.get("estimated_roc_auc") is not None:
            parts.append(f"estimated there {tracked['estimated_roc_auc']:.4f}")
    else:
        parts.append(f"{quality.get('rows', 0)} labelled rows")
    return ", ".join(parts)


# --- steps ----------------------------------------------------------------------------------------


def _reference(client: MlflowClient, model_name: str, version: str):
    from mlops_pipeline.monitoring.reference import load_reference, score_reference

    reference, predictions = score_reference(load_reference(client, model_name, version))
    log.info(
        "reference: %s v%s, run %s, %d rows (holdout ROC AUC %s, threshold %s, calibration %s)",
        model_name, version, reference.run_id, len(reference.frame), reference.holdout_roc_auc,
        reference.threshold, reference.calibration,
    )
    return reference, predictions


def window_days(window: Window) -> list[str]:
    """The UTC event days a window's rows fall on."""
    from mlops_pipeline.monitoring.predictions import days_between

    first = window.start.astimezone(UTC).date()
    last = (window.end - timedelta(milliseconds=1)).astimezone(UTC).date()
    return [day.isoformat() for day in days_between(first, last)]


def _estimate_block(estimate: Mapping[str, Any], window: Window, monitor: MonitorSettings, reference: ChampionReference) -> dict[str, Any]:
    """The window's estimated performance, with what it covers and what it rests on."""
    block = {
        "days": window_days(window),
        "champion_version": reference.version,
        "versions": "champion" if monitor.match_champion_version else "all",
        "calibration": reference.calibration,
        "champion_holdout_roc_auc": reference.holdout_roc_auc,
        **estimate,
    }
    if reference.calibration is None:
        block["note"] = (
            f"version {reference.version} serves uncalibrated scores (no metadata.mlops.calibration): the estimate "
            "takes them as probabilities and may be off; no retrain is asked for on it"
        )
    return block


def read_window(
    window: Window, spec: DatasetSpec, monitor: MonitorSettings, reference: ChampionReference, reference_predictions: Any, *, log_dir: Path
) -> WindowData:
    """:func:`collect_window` over the log partitions that can hold the window's rows and its labelled days."""
    from mlops_pipeline.monitoring.labels import labelled_days
    from mlops_pipeline.monitoring.predictions import LogLayout, log_files

    label_days = labelled_days(window.end, spec.label_delay_days, monitor.performance_window_days)
    label_start = datetime.combine(label_days[0], datetime.min.time(), tzinfo=UTC)
    label_end = min(datetime.combine(label_days[-1] + timedelta(days=1), datetime.min.time(), tzinfo=UTC), window.end)
    first_day = min(label_days[0], window.start.astimezone(UTC).date())
    files = log_files(log_dir, log_days_to_read(window, first_day, monitor))

    def collect(files: list[Path]) -> WindowData:
        log.info(
            "reading %d prediction log file(s) under %s for window %s and labelled day(s) %s",
            len(files), log_dir, window.ds, [d.isoformat() for d in label_days],
        )
        return collect_window(
            files,
            LogLayout.for_dataset(spec),
            window,
            reference_frame=reference.frame,
            reference_predictions=reference_predictions,
            prediction_version=reference.version if monitor.match_champion_version else None,
            labelled_range=(label_start, label_end),
            monitor=monitor,
            threshold=reference.threshold,
        )

    data = collect(files)
    scanned = "all" if monitor.log_scan == "all" else "window"
    if monitor.log_scan == "auto" and data.drift["rows"] == 0:
        every = log_files(log_dir)
        if len(every) > len(files):
            log.info("no row of window %s in its own log partitions: reading all %d file(s)", window.ds, len(every))
            data, scanned = collect(every), "all"
    data.read.update(
        log_dir=str(log_dir), labelled_days=[d.isoformat() for d in label_days], partitions_scanned=scanned
    )
    return data


def collect_window(
    files: Sequence[Path],
    layout: LogLayout,
    window: Window,
    *,
    reference_frame: pd.DataFrame,
    reference_predictions: np.ndarray | None,
    prediction_version: str | None,
    labelled_range: tuple[datetime, datetime] | None,
    monitor: MonitorSettings,
    threshold: float = 0.5,
) -> WindowData:
    """One pass over ``files``: drift statistics, the performance estimate (at ``threshold``, on the
    rows of ``prediction_version`` when given) and a bounded sample of the window's rows, plus the
    predictions of ``labelled_range`` (id, times, version, probability only). Memory is bounded by
    the block size, the sample and the labelled rows, never by the window."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from mlops_pipeline.monitoring.drift import WindowDrift
    from mlops_pipeline.monitoring.estimate import PerformanceEstimator
    from mlops_pipeline.monitoring.predictions import (
        EVENT_TIME,
        PROBABILITY,
        ROW_ID,
        TS,
        VERSION,
        ReadReport,
        in_range,
        iter_log_tables,
    )

    accumulator = WindowDrift.start(
        reference_frame,
        layout.numeric_features,
        layout.categorical_features,
        reference_predictions=reference_predictions,
        prediction_version=prediction_version,
        sample_rows=monitor.report_sample_rows,
        seed=monitor.sample_seed,
    )
    estimator = PerformanceEstimator(threshold, monitor.estimate_bins)
    read = ReadReport()
    labelled_parts = []
    # The next block is parsed while this one's statistics run: two cores, each busy.
    for table in iter_log_tables(files, layout, read, read_ahead=READ_AHEAD_BLOCKS, block_bytes=READ_BLOCK_BYTES):
        current = in_range(table, window.start, window.end)
        if current.num_rows:
            accumulator.update(current)
            served = current.column(PROBABILITY)
            if prediction_version is not None:
                served = served.filter(pc.fill_null(pc.equal(current.column(VERSION), prediction_version), False))
            estimator.update(served.to_numpy())
        if labelled_range is not None:
            labelled = in_range(table, *labelled_range)
            if labelled.num_rows:
                labelled_parts.append(labelled.select([ROW_ID, EVENT_TIME, TS, VERSION, PROBABILITY]))
    if read.bad_lines:
        log.warning("skipped %d unreadable prediction log line(s), e.g. %s", read.bad_lines, read.bad_examples[:3])
    names = {ROW_ID: "id", EVENT_TIME: "time", TS: "ts", VERSION: "version", PROBABILITY: "probability"}
    if labelled_parts:
        labelled_frame = pa.concat_tables(labelled_parts).rename_columns([names[n] for n in labelled_parts[0].column_names]).to_pandas()
    else:
        labelled_frame = pd.DataFrame(columns=list(names.values()))
    return WindowData(
        drift=accumulator.result(monitor.feature_drift_threshold),
        estimate=estimator.result(),
        methods=accumulator.methods(),
        sample=accumulator.sample.table(layout.table_schema()),
        labelled=labelled_frame,
        read=read.to_dict(),
    )


def _quality(
    lake: Lake, spec: DatasetSpec, window: Window, monitor: MonitorSettings, reference: ChampionReference, predictions: pd.DataFrame
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Quality of the champion on the predictions whose labels have arrived (all such rows), and those rows."""
    from mlops_pipeline.monitoring.estimate import estimate_against_labels
    from mlops_pipeline.monitoring.labels import TARGET, join_labels, labelled_days, read_labels
    from mlops_pipeline.training.evaluation import classification_metrics

    days = labelled_days(window.end, spec.label_delay_days, monitor.performance_window_days)
    quality: dict[str, Any] = {
        "label_delay_days": spec.label_delay_days,
        "days": [d.isoformat() for d in days],
        "predictions": len(predictions),
        "champion_version": reference.version,
        "champion_holdout_roc_auc": reference.holdout_roc_auc,
        "threshold": reference.threshold,
        "rows": 0,
        "metrics": None,
    }
    if predictions.empty:
        quality["note"] = "no predictions for the labelled day(s) in the log"
        return quality, None
    labels, missing = read_labels(lake, spec, days)
    quality["days_without_labels"] = missing
    joined = join_labels(predictions, labels)
    quality["joined"] = len(joined)
    if monitor.match_champion_version:
        joined = joined[joined["version"] == reference.version]
    quality["rows"] = len(joined)
    if joined.empty:
        quality["note"] = "no labelled predictions of the champion version"
        return quality, None
    target = joined[TARGET].astype("int64").to_numpy()
    if len(set(target.tolist())) < 2:
        quality["note"] = "labels of one class only: ROC AUC is undefined"
        return quality, None
    probabilities = joined["probability"].to_numpy(dtype="float64")
    tracked = estimate_against_labels(target, probabilities, reference.threshold, monitor.estimate_bins)
    quality["metrics"] = {
        **classification_metrics(target, probabilities, reference.threshold),
        "accuracy": tracked["realised_accuracy"],
    }
    # The estimate on exactly these rows, beside the realised numbers: how well it tracked.
    quality["estimate"] = {"days": quality["days"], "calibration": reference.calibration, **tracked}
    event_days = joined["time"].dt.date
    quality["by_day"] = {
        day.isoformat(): estimate_against_labels(
            target[(event_days == day).to_numpy()], probabilities[(event_days == day).to_numpy()],
            reference.threshold, monitor.estimate_bins,
        )
        for day in sorted(set(event_days))
    }
    return quality, joined.rename(columns={"probability": "prediction"})[[TARGET, "prediction"]]


def drift_report(
    data: WindowData,
    layout: LogLayout,
    reference_frame: pd.DataFrame,
    reference_predictions: np.ndarray | None,
    *,
    prediction_version: str | None,
    monitor: MonitorSettings,
) -> tuple[str, dict[str, Any]]:
    """Evidently's drift report (HTML, metrics) of the window's sample against the reference."""
    from mlops_pipeline.monitoring.evidently_report import PREDICTION, drift_snapshot, render
    from mlops_pipeline.monitoring.predictions import PROBABILITY, VERSION

    sample = data.sample.to_pandas()
    with_prediction = reference_predictions is not None
    if with_prediction:
        sample = sample.rename(columns={PROBABILITY: PREDICTION})
        if prediction_version is not None:
            # Other versions' outputs are not the champion's predictions; their features still count.
            sample.loc[sample[VERSION] != prediction_version, PREDICTION] = float("nan")
        with_prediction = bool(sample[PREDICTION].notna().any())
    reference_frame = reference_frame.copy()
    if with_prediction:
        reference_frame[PREDICTION] = reference_predictions
    started = time.monotonic()
    snapshot = drift_snapshot(
        reference_frame,
        sample,
        numeric_features=layout.numeric_features,
        categorical_features=layout.categorical_features,
        methods=data.methods,
        threshold=monitor.feature_drift_threshold,
        drift_share=monitor.drift_share_threshold,
        with_prediction=with_prediction,
    )
    rendered = render(snapshot)
    log.info("Evidently drift report on %d sampled rows: %.1fs", len(sample), time.monotonic() - started)
    return rendered


def _quality_report(
    rows: pd.DataFrame, spec: DatasetSpec, reference: ChampionReference, reference_predictions: Any, monitor: MonitorSettings
):
    """Evidently's quality of the labelled rows (a sample when many), beside the champion on its reference sample."""
    import pandas as pd

    from mlops_pipeline.monitoring.evidently_report import PREDICTION, TARGET, quality_snapshot, render

    if len(rows) > monitor.report_sample_rows:
        rows = rows.sample(n=monitor.report_sample_rows, random_state=monitor.sample_seed)
    baseline = None
    if spec.target in reference.frame.columns:
        baseline = pd.DataFrame({TARGET: reference.frame[spec.target].to_numpy(), PREDICTION: reference_predictions})
    return render(quality_snapshot(baseline, rows, threshold=reference.threshold))


def _log_to_mlflow(
    client: MlflowClient, monitor: MonitorSettings, model_name: str, window: Window, summary: Mapping[str, Any], files: Mapping[str, bytes]
) -> str:
    from mlops_pipeline.monitoring.tracking import log_window

    reference = summary.get("reference") or {}
    tags = {
        "model_name": model_name,
        "champion_version": str(reference.get("version", "")),
        "reference_run_id": str(reference.get("run_id", "")),
        "report": str(summary.get("report", "")),
        "dag_run_id": str(summary.get("dag_run_id") or ""),
        "feature_drift_threshold": str(monitor.feature_drift_threshold),
        "drift_share_threshold": str(monitor.drift_share_threshold),
    }
    experiment = monitor.experiment_for(model_name)
    run_id = log_window(client, experiment, summary, files, timestamp_ms=int(window.end.timestamp() * 1000), tags=tags)
    _log_realised(client, experiment, window, summary)
    return run_id


def _log_realised(client: MlflowClient, experiment: str, window: Window, summary: Mapping[str, Any]) -> None:
    """Each labelled day's realised performance to the run of the window that estimated it (a day's run)."""
    from mlops_pipeline.monitoring.tracking import log_realised

    quality = summary.get("quality") or {}
    for ds, tracked in (quality.get("by_day") or {}).items():
        day_end = datetime.fromisoformat(ds).replace(tzinfo=UTC) + timedelta(days=1)
        logged = log_realised(
            client, experiment, ds, tracked, timestamp_ms=int(day_end.timestamp() * 1000), measured_by=window.ds,
            champion_version=quality.get("champion_version"),
        )  # fmt: skip
        if logged:
            log.info(
                "window %s: realised ROC AUC %s beside its estimate (error %s), measured by window %s",
                ds, tracked.get("realised_roc_auc"), tracked.get("roc_auc_error"), window.ds,
            )
