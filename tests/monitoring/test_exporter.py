"""The drift exporter: the monitor's windows logged to a real MLflow server, scraped as Prometheus text."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime

import pytest

from mlops_pipeline.monitoring.exporter import METRIC_NAMES
from tests.mlflow_fixtures import free_port, quiet_mlflow_environment


def summary(ds: str, drift_share: float, drifted: int) -> dict:
    features = {f"f{i}": {"value": 0.5 if i < drifted else 0.01} for i in range(4)}
    return {
        "window": {"ds": ds},
        "drift": {
            "rows": 1200,
            "drift_share": drift_share,
            "drifted_features": [f"f{i}" for i in range(drifted)],
            "features": features,
            "prediction": {"value": 0.07},
        },
        "estimate": {"rows": 1200, "roc_auc": 0.74 + drift_share / 10, "accuracy": 0.8},
        "quality": {},
    }


def scrape(url: str, timeout: float = 60.0) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            break
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def start_exporter(tracking_uri: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **quiet_mlflow_environment(), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlops_pipeline.monitoring.exporter", "--host", "127.0.0.1", "--port", str(port),
         "--cache-seconds", "0", "--tracking-uri", tracking_uri],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    return process, f"http://127.0.0.1:{port}/metrics"


@pytest.mark.integration
def test_latest_window_of_each_model_is_exported(mlflow_server):
    from mlflow import MlflowClient

    from mlops_pipeline.monitoring.tracking import log_window, tag_decision

    client = MlflowClient(mlflow_server.uri)
    model = f"exporter-{uuid.uuid4().hex[:8]}"
    experiment = f"{model}-monitoring"
    tags = {"model_name": model, "champion_version": "3", "drift_share_threshold": "0.3"}
    stamp = int(datetime(2026, 1, 9, tzinfo=UTC).timestamp() * 1000)
    older = log_window(client, experiment, summary("2026-01-08", 0.0, 0), {}, timestamp_ms=stamp, tags=tags)
    newer = log_window(client, experiment, summary("2026-01-09", 0.5, 2), {}, timestamp_ms=stamp, tags=tags)
    tag_decision(client, older, {"action": "none", "trigger": False})
    tag_decision(client, newer, {"action": "retrain", "reason": "drift", "trigger": True})
    # A backfill of an older window logged last must not replace the newest window.
    log_window(client, experiment, summary("2026-01-02", 0.25, 1), {}, timestamp_ms=stamp, tags=tags)

    process, url = start_exporter(mlflow_server.uri)
    try:
        samples = scrape(url)
    finally:
        process.terminate()
        process.wait(timeout=30)
    labels = (("champion_version", "3"), ("model_name", model))
    assert samples[("mlops_monitor_drift_share", labels)] == 0.5
    assert samples[("mlops_monitor_drift_share_threshold", labels)] == 0.3
    assert samples[("mlops_monitor_drifted_features", labels)] == 2
    assert samples[("mlops_monitor_prediction_drift", labels)] == pytest.approx(0.07)
    assert samples[("mlops_monitor_rows", labels)] == 1200
    assert samples[("mlops_monitor_estimated_roc_auc", labels)] == pytest.approx(0.79)
    assert samples[("mlops_monitor_estimated_accuracy", labels)] == pytest.approx(0.8)
    assert samples[("mlops_monitor_retrain_triggered", labels)] == 1
    assert samples[("mlops_monitor_window_start_timestamp_seconds", labels)] == datetime(2026, 1, 9, tzinfo=UTC).timestamp()
    assert samples[("mlops_monitor_mlflow_up", ())] == 1
    assert {name for name, _ in samples} == set(METRIC_NAMES)


@pytest.mark.integration
def test_mlflow_down_is_a_metric_not_a_crash():
    process, url = start_exporter(f"http://127.0.0.1:{free_port()}")
    try:
        samples = scrape(url)
        assert samples[("mlops_monitor_mlflow_up", ())] == 0
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=30)
