"""In-process app tests (FastAPI TestClient / ASGI transport)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from mlops_pipeline.monitoring.predictions import LogLayout, iter_log_rows, log_files
from mlops_serving.app import create_app
from mlops_serving.model import load_model
from mlops_serving.settings import Settings

from .model_fixture import FEATURE_ORDER, make_records


@contextmanager
def client_for(settings: Settings, wait: bool = True) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as client:
        if wait:
            deadline = time.monotonic() + 60
            while app.state_obj.model is None and app.state_obj.status != "failed":
                assert time.monotonic() < deadline, "model did not load"
                time.sleep(0.02)
        yield client


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + ("{" + labels + "}" if labels else "")) + r" ([0-9.e+-]+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def settings(xgb_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(model_dir=xgb_model_dir, prediction_log_dir=tmp_path_factory.mktemp("applog"))


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with client_for(settings) as c:
        yield c


@pytest.fixture(scope="module")
def reference(xgb_model_dir: Path):  # type: ignore[no-untyped-def]
    return load_model(xgb_model_dir, Settings())


def _expected(reference, records: list[dict[str, Any]]) -> np.ndarray:  # type: ignore[no-untyped-def]
    return reference.predict(reference.encode(records), records)


def test_predict_shape_and_values(client: TestClient, reference) -> None:  # type: ignore[no-untyped-def]
    records = make_records(25, seed=31, with_ids=True, nulls=True)
    resp = client.post("/predict", json={"records": records}, headers={"X-Request-ID": "abc-123"})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"model_name", "model_version", "request_id", "predictions"}
    assert body["request_id"] == "abc-123" == resp.headers["x-request-id"]
    assert (body["model_name"], body["model_version"]) == ("churn-model", "1")
    probs = np.array([p["probability"] for p in body["predictions"]], dtype=np.float32)
    np.testing.assert_array_equal(probs, _expected(reference, records))
    assert [p["label"] for p in body["predictions"]] == [int(p >= 0.5) for p in probs]


def test_invocations_formats_agree(client: TestClient, reference) -> None:  # type: ignore[no-untyped-def]
    records = make_records(6, seed=32)
    expected = _expected(reference, records)
    rows = [[r[c] for c in FEATURE_ORDER] for r in records]
    payloads = [
        {"dataframe_split": {"columns": FEATURE_ORDER, "data": rows}},
        {"dataframe_records": records},
        {"inputs": records},
        {"instances": records},
        {"inputs": {c: [r[c] for r in records] for c in FEATURE_ORDER}},
        {"instances": rows},
        {"dataframe_records": records, "params": {"ignored": True}},
    ]
    for payload in payloads:
        resp = client.post("/invocations", json=payload)
        assert resp.status_code == 200, (payload.keys(), resp.text)
        got = np.array(resp.json()["predictions"], dtype=np.float32)
        np.testing.assert_array_equal(got, expected)


def test_nan_token_allowed_in_nullable_field(client: TestClient, reference) -> None:  # type: ignore[no-untyped-def]
    records = make_records(2, seed=33)
    records[1]["avg_session_minutes"] = None
    body = json.dumps({"records": records}).replace("null", "NaN")
    resp = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    probs = np.array([p["probability"] for p in resp.json()["predictions"]], dtype=np.float32)
    np.testing.assert_array_equal(probs, _expected(reference, records))


def test_health_version_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.head("/health").status_code == 200
    version = client.get("/version").json()
    assert version["flavor"] == "xgboost" and version["model_version"] == "1"
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/invocations", "/health", "/ready", "/version", "/metrics"} <= set(schema["paths"])
    record = schema["components"]["schemas"]["PredictRecord"]
    assert set(record["properties"]) == {*FEATURE_ORDER, "customer_id", "event_time"}
    assert "tenure_months" in record["required"] and "avg_session_minutes" not in record["required"]
    assert client.get("/docs").status_code == 200


def test_metrics_track_predictions_and_unseen(client: TestClient) -> None:
    before = client.get("/metrics").text
    records = make_records(7, seed=34)
    records[0]["plan"] = "enterprise"
    records[1]["plan"] = "enterprise"
    records[2]["contract"] = "weekly"
    assert client.post("/predict", json={"records": records}).status_code == 200
    after = client.get("/metrics").text
    for name, labels, delta in [
        ("mlops_serving_unseen_category_total", 'feature="plan"', 2),
        ("mlops_serving_unseen_category_total", 'feature="contract"', 1),
        ("mlops_serving_prediction_probability_count", "", 7),
        ("mlops_serving_predictions_total", 'endpoint="predict"', 7),
        ("mlops_serving_requests_total", 'endpoint="predict",status="200"', 1),
    ]:
        assert _metric(after, name, labels) - _metric(before, name, labels) == delta, name
    assert _metric(after, "mlops_serving_model_info", "") == 0  # has labels
    assert re.search(r'mlops_serving_model_info\{.*model_version="1".*\} 1\.0', after)
    assert _metric(after, "mlops_serving_model_ready") == 1.0


def test_not_ready_until_loaded(tmp_path: Path) -> None:
    with client_for(Settings(model_dir=tmp_path / "missing", prediction_log_dir=tmp_path / "log")) as c:
        ready = c.get("/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert "no MLmodel" in ready.json()["error"]
        assert c.get("/health").status_code == 200
        resp = c.post("/predict", json={"records": make_records(1)})
        assert resp.status_code == 503 and "not ready" in resp.json()["error"]
        assert c.get("/version").status_code == 503


def test_ready_is_503_while_loading(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlops_serving.app as app_module

    real = app_module.load_model

    def slow_load(*args: Any) -> Any:
        time.sleep(1.0)
        return real(*args)

    monkeypatch.setattr(app_module, "load_model", slow_load)
    app = create_app(settings)
    with TestClient(app) as c:
        first = c.get("/ready")
        assert first.status_code == 503 and first.json()["status"] == "loading"
        deadline = time.monotonic() + 60
        while c.get("/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_api_key(settings: Settings) -> None:
    from dataclasses import replace

    with client_for(replace(settings, api_key="s3cret")) as c:
        body = {"records": make_records(1)}
        assert c.post("/predict", json=body).status_code == 401
        resp = c.post("/predict", json=body, headers={"X-API-Key": "wrong"})
        assert resp.status_code == 401 and "API key" in resp.json()["error"]
        assert resp.headers["www-authenticate"] == "Bearer"
        assert c.post("/predict", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.post("/predict", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/invocations", json={"inputs": body["records"]}).status_code == 401
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200


def test_sklearn_flavor_app(sklearn_model_dir: Path, tmp_path: Path) -> None:
    with client_for(Settings(model_dir=sklearn_model_dir, prediction_log_dir=tmp_path)) as c:
        records = make_records(5, seed=35, with_ids=True)
        resp = c.post("/predict", json={"records": records})
        assert resp.status_code == 200
        probs = [p["probability"] for p in resp.json()["predictions"]]
        assert all(0.0 <= p <= 1.0 for p in probs)
        inv = c.post("/invocations", json={"dataframe_records": records}).json()["predictions"]
        assert inv == [int(p >= 0.5) for p in probs]  # MLflow sklearn pyfunc answers predict(): labels
        assert c.get("/version").json()["flavor"] == "sklearn"
        bad = c.post("/predict", json={"records": [{**records[0], "plan": 1}]})
        assert bad.status_code == 422


def test_micro_batching_coalesces_and_matches(settings: Settings, reference) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    app = create_app(replace(settings, batching=True, batch_max_wait_ms=5.0))
    requests = [make_records(1 + i % 3, seed=300 + i) for i in range(40)]

    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            while app.state_obj.model is None:
                await asyncio.sleep(0.01)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
                return list(
                    await asyncio.gather(*(ac.post("/predict", json={"records": r}) for r in requests))
                )

    responses = asyncio.run(run())
    for records, resp in zip(requests, responses, strict=True):
        assert resp.status_code == 200
        got = np.array([p["probability"] for p in resp.json()["predictions"]], dtype=np.float32)
        np.testing.assert_array_equal(got, _expected(reference, records))
    batcher = app.state_obj.batcher
    assert batcher is not None and 1 <= batcher.batches < len(requests)


def test_prediction_log_in_process(settings: Settings, tmp_path: Path) -> None:
    from dataclasses import replace

    log_dir = tmp_path / "log"
    with client_for(replace(settings, prediction_log_dir=log_dir)) as c:
        for i in range(5):
            records = make_records(3, seed=400 + i, with_ids=True)
            c.post("/predict", json={"records": records}, headers={"X-Traffic-Source": "demo"})
        c.post("/predict", json={"records": make_records(1)}, headers={"X-Traffic-Source": "bad source!"})
    layout = LogLayout("customer_id", "event_time", (), ())
    lines = list(iter_log_rows(log_files(log_dir), layout))  # one row per record, as the monitor reads them
    assert len(lines) == 16
    assert sorted({r["traffic_source"] for r in lines}) == ["demo", "invalid"]
    assert all(r["customer_id"].startswith("c-") for r in lines if r["traffic_source"] == "demo")


def test_log_queue_overflow_drops_not_fails(settings: Settings, tmp_path: Path) -> None:
    from dataclasses import replace

    s = replace(
        settings,
        prediction_log_dir=tmp_path / "q",
        prediction_log_max_queue_rows=5,
        prediction_log_flush_seconds=60,
    )
    with client_for(s) as c:
        before = _metric(
            c.get("/metrics").text, "mlops_serving_prediction_log_dropped_rows_total", 'reason="queue_full"'
        )
        for i in range(4):
            assert c.post("/predict", json={"records": make_records(2, seed=i)}).status_code == 200
        after = _metric(
            c.get("/metrics").text, "mlops_serving_prediction_log_dropped_rows_total", 'reason="queue_full"'
        )
        assert after - before == 4  # 2 requests fit (4 rows), the next 2 (4 rows) are dropped


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice([None, True, 0, -1, 1.5, 1e308, "", "basic", "\uff11", "NaN", [], {}])
    if roll < 0.6:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = [*FEATURE_ORDER, "records", "inputs", "dataframe_split", "columns", "data", "x", "customer_id"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_fuzzed_bodies_never_5xx(client: TestClient) -> None:
    rng = random.Random(99)
    base = make_records(3, seed=36, with_ids=True)
    for i in range(300):
        kind = i % 3
        if kind == 0:
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        elif kind == 1:
            body = json.dumps(_random_json(rng)).encode()
        else:
            records = [dict(r) for r in base]
            rec = rng.choice(records)
            rec[rng.choice([*FEATURE_ORDER, "customer_id", "zzz"])] = _random_json(rng, 2)
            body = json.dumps({"records": records}).encode()
        path = rng.choice(["/predict", "/invocations"])
        resp = client.post(path, content=body, headers={"content-type": "application/json"})
        assert resp.status_code < 500, (path, body[:200], resp.text)
        if resp.status_code >= 400:
            assert resp.json()["error"]
