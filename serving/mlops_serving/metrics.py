"""Prometheus metrics.

With several uvicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` (``python -m
mlops_serving`` does it from ``MLOPS_SERVING_METRICS_DIR``) *before* this module
is imported so every worker writes its samples there and ``/metrics`` aggregates
them. Without it, each process reports its own metrics.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import prometheus_client
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

if hasattr(prometheus_client, "disable_created_metrics"):
    prometheus_client.disable_created_metrics()  # no *_created series: less noise per scrape

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
ROWS_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

REQUESTS = Counter(
    "mlops_serving_requests",
    "HTTP requests by endpoint and status code.",
    ["endpoint", "status"],
)
ERRORS = Counter(
    "mlops_serving_request_errors",
    "Failed requests by endpoint and error kind.",
    ["endpoint", "kind"],
)
LATENCY = Histogram(
    "mlops_serving_request_latency_seconds",
    "Request latency (body read to response sent) by endpoint.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
PREDICTIONS = Counter("mlops_serving_predictions", "Predicted rows.", ["endpoint"])
PROBABILITY = Histogram(
    "mlops_serving_prediction_probability",
    "Predicted positive-class probability, one observation per row.",
    buckets=PROBABILITY_BUCKETS,
)
BATCH_ROWS = Histogram(
    "mlops_serving_batch_rows", "Rows per model call when micro-batching is on.", buckets=ROWS_BUCKETS
)
UNSEEN = Counter(
    "mlops_serving_unseen_category",
    "Categorical values not seen in training (encoded as missing), by feature.",
    ["feature"],
)
LOG_DROPPED = Counter(
    "mlops_serving_prediction_log_dropped_rows",
    "Prediction log rows dropped (queue full, write error), by reason.",
    ["reason"],
)
LOG_WRITTEN = Counter("mlops_serving_prediction_log_written_rows", "Prediction log rows written.")
MODEL_INFO = Gauge(
    "mlops_serving_model_info",
    "The served model (value 1).",
    ["model_name", "model_version", "run_id", "flavor", "artifact_sha256"],
    multiprocess_mode="max",
)
MODEL_READY = Gauge(
    "mlops_serving_model_ready",
    "1 once the model is loaded and warmed up.",
    multiprocess_mode="livemin",
)


class RequestMetrics:
    """Cached label children: the request path only does ``inc``/``observe``."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], Any] = {}
        self._errors: dict[tuple[str, str], Any] = {}
        self._latency: dict[str, Any] = {}
        self._predictions: dict[str, Any] = {}
        self._unseen: dict[str, Any] = {}
        self._dropped: dict[str, Any] = {}
        self._prob_bounds = np.array(PROBABILITY_BUCKETS[:-1])
        self._bulk_ok = hasattr(PROBABILITY, "_buckets") and hasattr(PROBABILITY, "_sum")

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = REQUESTS.labels(endpoint, str(status))
        child.inc()
        lat = self._latency.get(endpoint)
        if lat is None:
            lat = self._latency[endpoint] = LATENCY.labels(endpoint)
        lat.observe(seconds)

    def error(self, endpoint: str, kind: str) -> None:
        key = (endpoint, kind)
        child = self._errors.get(key)
        if child is None:
            child = self._errors[key] = ERRORS.labels(endpoint, kind)
        child.inc()

    def predictions(self, endpoint: str, probs: np.ndarray) -> None:
        n = len(probs)
        child = self._predictions.get(endpoint)
        if child is None:
            child = self._predictions[endpoint] = PREDICTIONS.labels(endpoint)
        child.inc(n)
        if n == 1 or not self._bulk_ok:
            for p in probs.tolist():
                PROBABILITY.observe(p)
            return
        # One bucket increment per non-empty bucket instead of one observe per row.
        idx = np.searchsorted(self._prob_bounds, probs, side="left")
        counts = np.bincount(idx, minlength=len(PROBABILITY_BUCKETS))
        buckets = PROBABILITY._buckets  # noqa: SLF001
        for i in np.flatnonzero(counts).tolist():
            buckets[i].inc(int(counts[i]))
        PROBABILITY._sum.inc(float(probs.sum()))  # noqa: SLF001

    def unseen(self, counts: dict[str, int]) -> None:
        for feature, n in counts.items():
            child = self._unseen.get(feature)
            if child is None:
                child = self._unseen[feature] = UNSEEN.labels(feature)
            child.inc(n)

    def log_dropped(self, rows: int, reason: str) -> None:
        child = self._dropped.get(reason)
        if child is None:
            child = self._dropped[reason] = LOG_DROPPED.labels(reason)
        child.inc(rows)

    @staticmethod
    def log_written(rows: int) -> None:
        LOG_WRITTEN.inc(rows)

    @staticmethod
    def batch(rows: int) -> None:
        BATCH_ROWS.observe(rows)


def set_model(info: dict[str, str]) -> None:
    MODEL_INFO.labels(
        info["model_name"], info["model_version"], info["run_id"], info["flavor"], info["artifact_sha256"]
    ).set(1)
    MODEL_READY.set(1)


def render() -> tuple[bytes, str]:
    """The exposition text for ``/metrics``."""
    if MULTIPROCESS_DIR:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead() -> None:
    if MULTIPROCESS_DIR:
        from prometheus_client import multiprocess

        try:
            multiprocess.mark_process_dead(os.getpid())
        except OSError:  # pragma: no cover
            pass
