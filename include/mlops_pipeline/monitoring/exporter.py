"""The monitor's verdicts as Prometheus metrics, read from MLflow: drift share over time in Grafana.

The monitor DAG logs every window to MLflow (:mod:`.tracking`: one run per window, tagged
``mlops.kind=drift_monitor``). This exporter reads the latest window of each monitored model from
there on each scrape (cached for ``--cache-seconds``), so Prometheus records the drift share as a
series and its alert rules can fire on drift, without the DAG pushing anything anywhere::

    python -m mlops_pipeline.monitoring.exporter --port 9108     # MLFLOW_TRACKING_URI from the env

Series, labelled ``model_name`` and ``champion_version`` (the version that served the window):
``mlops_monitor_drift_share``, ``mlops_monitor_drift_share_threshold``,
``mlops_monitor_drifted_features``, ``mlops_monitor_prediction_drift``, ``mlops_monitor_rows``,
``mlops_monitor_estimated_roc_auc`` and ``mlops_monitor_estimated_accuracy`` (estimated from the
served probabilities, before labels),
``mlops_monitor_retrain_triggered`` (1 when the window's decision triggered a retrain) and
``mlops_monitor_window_start_timestamp_seconds``; plus ``mlops_monitor_mlflow_up`` (0 when the
last read failed: the other series then keep their last values).
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client.registry import Collector

from mlops_pipeline.monitoring.tracking import KIND, KIND_TAG, WINDOW_TAG

log = logging.getLogger(__name__)

# name -> (help, MLflow metric of the window's run)
WINDOW_GAUGES: dict[str, tuple[str, str]] = {
    "mlops_monitor_drift_share": ("Share of drifted features in the latest monitored window.", "drift_share"),
    "mlops_monitor_drifted_features": ("Drifted features in the latest monitored window.", "drifted_features"),
    "mlops_monitor_prediction_drift": ("Prediction drift (distance) in the latest monitored window.", "prediction_drift"),
    "mlops_monitor_rows": ("Prediction rows in the latest monitored window.", "rows"),
    "mlops_monitor_estimated_roc_auc": (
        "ROC AUC estimated from the served probabilities of the latest monitored window (no labels needed).",
        "estimated_roc_auc",
    ),
    "mlops_monitor_estimated_accuracy": (
        "Accuracy at the model's threshold estimated from the served probabilities of the latest monitored window.",
        "estimated_accuracy",
    ),
}
METRIC_NAMES = (
    *WINDOW_GAUGES,
    "mlops_monitor_drift_share_threshold",
    "mlops_monitor_retrain_triggered",
    "mlops_monitor_window_start_timestamp_seconds",
    "mlops_monitor_mlflow_up",
)
LABELS = ("model_name", "champion_version")
RUNS_SCANNED = 500


@dataclass(frozen=True)
class WindowVerdict:
    model_name: str
    champion_version: str
    window_ds: str
    metrics: dict[str, float]
    drift_share_threshold: float | None
    retrain_triggered: bool

    @property
    def window_start(self) -> float:
        return datetime.strptime(self.window_ds, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


def latest_windows(runs: Iterable[Any]) -> list[WindowVerdict]:
    """The newest window (by ``window_ds``) of each model among MLflow runs of the monitor."""
    latest: dict[str, WindowVerdict] = {}
    for run in runs:
        tags = run.data.tags
        ds = tags.get(WINDOW_TAG)
        if tags.get(KIND_TAG) != KIND or not ds:
            continue
        model = tags.get("model_name") or run.info.experiment_id
        if model in latest and latest[model].window_ds >= ds:
            continue
        threshold = tags.get("drift_share_threshold")
        latest[model] = WindowVerdict(
            model_name=model,
            champion_version=tags.get("champion_version", ""),
            window_ds=ds,
            metrics=dict(run.data.metrics),
            drift_share_threshold=float(threshold) if threshold not in (None, "") else None,
            retrain_triggered=tags.get("decision_trigger") == "true",
        )
    return sorted(latest.values(), key=lambda verdict: verdict.model_name)


def read_verdicts(tracking_uri: str | None = None) -> list[WindowVerdict]:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    if not experiments:
        return []
    runs = client.search_runs(
        experiments,
        filter_string=f"tags.`{KIND_TAG}` = '{KIND}'",
        max_results=RUNS_SCANNED,
        order_by=["attributes.start_time DESC"],
    )
    return latest_windows(runs)


class MonitorCollector(Collector):
    """A prometheus_client collector; reads through ``read`` at most every ``cache_seconds``."""

    def __init__(self, read: Callable[[], list[WindowVerdict]], cache_seconds: float = 60.0) -> None:
        self._read = read
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._verdicts: list[WindowVerdict] = []
        self._read_at = float("-inf")
        self._up = 0.0

    def verdicts(self) -> tuple[list[WindowVerdict], float]:
        with self._lock:
            if time.monotonic() - self._read_at >= self._cache_seconds:
                try:
                    self._verdicts, self._up = self._read(), 1.0
                except Exception as exc:  # MLflow down or refusing: say so, keep the last values
                    log.warning("could not read the monitoring runs from MLflow: %s", exc)
                    self._up = 0.0
                self._read_at = time.monotonic()
            return list(self._verdicts), self._up

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        verdicts, up = self.verdicts()
        families = {name: GaugeMetricFamily(name, help_text, labels=LABELS) for name, (help_text, _) in WINDOW_GAUGES.items()}
        threshold = GaugeMetricFamily(
            "mlops_monitor_drift_share_threshold", "Drift share at which the monitor calls dataset drift.", labels=LABELS
        )
        triggered = GaugeMetricFamily(
            "mlops_monitor_retrain_triggered", "1 when the latest window's decision triggered a retrain.", labels=LABELS
        )
        window_start = GaugeMetricFamily(
            "mlops_monitor_window_start_timestamp_seconds", "Start of the latest monitored window (Unix time).", labels=LABELS
        )
        for verdict in verdicts:
            labels = [verdict.model_name, verdict.champion_version]
            for name, (_, mlflow_metric) in WINDOW_GAUGES.items():
                if mlflow_metric in verdict.metrics:
                    families[name].add_metric(labels, verdict.metrics[mlflow_metric])
            if verdict.drift_share_threshold is not None:
                threshold.add_metric(labels, verdict.drift_share_threshold)
            triggered.add_metric(labels, 1.0 if verdict.retrain_triggered else 0.0)
            window_start.add_metric(labels, verdict.window_start)
        yield from families.values()
        yield threshold
        yield triggered
        yield window_start
        yield GaugeMetricFamily("mlops_monitor_mlflow_up", "1 when the last read of MLflow succeeded.", value=up)


def main(argv: list[str] | None = None) -> int:
    from prometheus_client import CollectorRegistry, start_http_server

    parser = argparse.ArgumentParser(prog="python -m mlops_pipeline.monitoring.exporter")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=9108)
    parser.add_argument("--cache-seconds", type=float, default=60.0)
    parser.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    registry = CollectorRegistry()
    registry.register(MonitorCollector(lambda: read_verdicts(args.tracking_uri), args.cache_seconds))
    server, thread = start_http_server(args.port, addr=args.host, registry=registry)
    log.info("serving the monitor's metrics on http://%s:%d/metrics", args.host, args.port)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
