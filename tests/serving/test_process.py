"""Real `python -m mlops_serving` processes: endpoints, SIGTERM flush, SIGKILL mid-write, unwritable log dir."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

from mlops_pipeline.monitoring.predictions import LogLayout, ReadReport, iter_log_rows, log_files

from .conftest import ServerPool, start_server, wait_for
from .model_fixture import (
    CATEGORICAL_FEATURES,
    FEATURE_ORDER,
    ID_COLUMN,
    NUMERIC_FEATURES,
    TIME_COLUMN,
    make_records,
)


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + ("{" + labels + "}" if labels else "")) + r" ([0-9.e+-]+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


LAYOUT = LogLayout(ID_COLUMN, TIME_COLUMN, tuple(NUMERIC_FEATURES), tuple(CATEGORICAL_FEATURES))


def _log_lines(directory: Path) -> list[dict]:
    """Every logged row, through the monitor's reader; every line must be whole."""
    report = ReadReport()
    rows = list(iter_log_rows(log_files(directory), LAYOUT, report))
    assert report.bad_lines == 0 and report.incomplete_tails == [], report
    return rows


def test_endpoints_of_a_real_server(server_pool: ServerPool) -> None:
    url = server_pool.live.url
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready").json()
        assert ready["status"] == "ready" and ready["model_version"] == "1"
        version = client.get("/version").json()
        assert version["model_name"] == "churn-model" and version["flavor"] == "xgboost"
        assert len(version["artifact_sha256"]) == 64 and version["run_id"] != "unknown"
        resp = client.post("/predict", json={"records": make_records(3, seed=1, with_ids=True)})
        assert resp.status_code == 200
        body = resp.json()
        assert body["request_id"] == resp.headers["x-request-id"]
        assert [set(p) for p in body["predictions"]] == [{"probability", "label"}] * 3
        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert _metric(text, "mlops_serving_requests_total", 'endpoint="predict",status="200"') >= 1
        assert "mlops_serving_request_latency_seconds_bucket" in text
        assert "mlops_serving_prediction_probability_bucket" in text
        assert 'mlops_serving_model_info{artifact_sha256="' in text and 'model_version="1"' in text
        assert client.get("/openapi.json").json()["components"]["schemas"]["PredictRecord"]["properties"]
        assert client.get("/docs").status_code == 200
    # The live server flushes its prediction log every second.
    assert wait_for(lambda: len(_log_lines(server_pool.live_log_dir)) >= 3, timeout=10)


def test_sigterm_flushes_every_prediction(server_pool: ServerPool) -> None:
    server = server_pool.sigterm
    expected_rows = 0
    ids: set[str] = set()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for i in range(40):
            records = make_records(1 + i % 4, seed=100 + i, with_ids=True)
            headers = {"X-Traffic-Source": "demo"} if i % 2 else {}
            resp = client.post("/predict", json={"records": records}, headers=headers)
            assert resp.status_code == 200, resp.text
            expected_rows += len(records)
            ids.add(resp.json()["request_id"])
        resp = client.post(
            "/invocations",
            json={
                "dataframe_split": {
                    "columns": FEATURE_ORDER,
                    "data": [[r[c] for c in FEATURE_ORDER] for r in make_records(5, seed=7)],
                }
            },
        )
        assert resp.status_code == 200 and len(resp.json()["predictions"]) == 5
        expected_rows += 5
    # Flush interval is 30 s in this server: nothing (or little) is on disk yet; SIGTERM must write the rest.
    server.proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal after a graceful shutdown: exit status is -SIGTERM (143 in a shell).
    assert server.proc.wait(30) in (0, -signal.SIGTERM), server.output()
    rows = _log_lines(server_pool.sigterm_log_dir)
    assert len(rows) == expected_rows, server.output()
    assert ids <= {r["request_id"] for r in rows}
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    files = list(server_pool.sigterm_log_dir.glob("ds=*/predictions-*"))
    host = re.escape(socket.gethostname()[:10])
    assert all(
        re.fullmatch(rf"predictions-{host}.*-\d+-\d{{8}}T\d{{9}}Z\.requests\.jsonl", f.name) for f in files
    ), files
    assert {f.parent.name for f in files} <= {f"ds={day}"} | {f"ds={d}" for d in [r["ts"][:10] for r in rows]}
    first = next(r for r in rows if r["endpoint"] == "predict")
    assert set(first) >= {
        "request_id",
        "ts",
        "model_name",
        "model_version",
        "traffic_source",
        "customer_id",
        "event_time",
        "features",
        "probability",
        "label",
    }
    assert first["ts"].endswith("Z") and first["model_version"] == "1"
    assert set(first["features"]) == set(FEATURE_ORDER)
    assert {r["traffic_source"] for r in rows} == {"client", "demo"}
    assert all(r["label"] == int(r["probability"] >= 0.5) for r in rows)


def test_unwritable_log_dir_never_fails_requests(server_pool: ServerPool) -> None:
    server = server_pool.unwritable
    assert not server_pool.unwritable_log_dir.exists()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for i in range(10):
            resp = client.post(
                "/predict",
                content=orjson.dumps({"records": make_records(2, seed=i)}),
                headers={"content-type": "application/json"},
            )
            assert resp.status_code == 200, resp.text

        def dropped() -> float:
            text = client.get("/metrics").text
            return _metric(text, "mlops_serving_prediction_log_dropped_rows_total", 'reason="write_error"')

        assert wait_for(lambda: dropped() >= 20, timeout=10)
        assert client.get("/ready").status_code == 200
    assert "cannot write prediction log" in server.output() or "not usable" in server.output()


def test_a_killed_server_leaves_a_log_readable_to_its_last_whole_request(
    tmp_path: Path, xgb_model_dir: Path
) -> None:
    """SIGKILL while the writer is busy (a flush every 20 ms under load): whatever was on disk reads
    back as whole requests, at most the line being written is left aside."""
    log_dir = tmp_path / "log"
    server = start_server(tmp_path, xgb_model_dir, log_dir, {"MLOPS_PREDICTION_LOG_FLUSH_SECONDS": "0.02"})
    body = orjson.dumps({"records": make_records(50, seed=3, with_ids=True)})
    stop = threading.Event()
    served: list[int] = []

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                try:
                    response = http.post(
                        "/predict", content=body, headers={"content-type": "application/json"}
                    )
                except httpx.HTTPError:
                    return
                served.append(response.status_code)

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        assert wait_for(lambda: len(served) >= 200, timeout=60), "the server did not serve 200 requests"
        server.proc.kill()
        server.proc.wait(10)
    finally:
        stop.set()
        for thread in clients:
            thread.join(15)
    time.sleep(0.1)
    report = ReadReport()
    rows = list(iter_log_rows(log_files(log_dir), LAYOUT, report))
    assert report.bad_lines == 0 and len(report.incomplete_tails) <= 1, report
    assert rows and len(rows) % 50 == 0 and len(rows) <= 50 * (len(served) + len(clients))
    assert set(served) == {200}
