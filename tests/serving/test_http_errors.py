"""The 4xx catalogue against a real `python -m mlops_serving` (uvicorn + httptools) process.

Every malformed request must get a 4xx with a JSON ``{"error": ...}`` body that
names the problem (and the record index/field where there is one); never a 5xx.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlparse

import httpx
import orjson
import pytest

from .conftest import ServerProcess
from .model_fixture import make_records

JSON = {"content-type": "application/json"}


def _good(n: int = 2) -> list[dict[str, Any]]:
    return make_records(n, seed=21, with_ids=True)


def _with(index: int, **changes: Any) -> bytes:
    records = _good(5)
    records[index].update(changes)
    return orjson.dumps({"records": records})


def _without(index: int, field: str) -> bytes:
    records = _good(5)
    del records[index][field]
    return orjson.dumps({"records": records})


def _raw_records(text: str) -> bytes:
    return ('{"records": ' + text + "}").encode()


# (id, path, body, headers, expected status, fragments the error message must contain)
CASES: list[tuple[str, str, bytes, dict[str, str], int, list[str]]] = [
    ("malformed_json", "/predict", b'{"records": [', JSON, 400, ["malformed JSON"]),
    ("trailing_garbage", "/predict", b'{"records": []} xx', JSON, 400, ["malformed JSON"]),
    ("empty_body", "/predict", b"", JSON, 400, ["empty request body"]),
    ("invalid_utf8", "/predict", b'{"records": ["\xff\xfe"]}', JSON, 400, ["malformed JSON"]),
    (
        "deep_json",
        "/predict",
        b'{"records": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
        JSON,
        400,
        ["nesting too deep"],
    ),
    ("not_an_object", "/predict", b"[1, 2]", JSON, 422, ["JSON object", "'records'"]),
    ("missing_records", "/predict", b'{"rows": []}', JSON, 422, ["unexpected top-level field 'rows'"]),
    (
        "records_not_list",
        "/predict",
        b'{"records": {"a": 1}}',
        JSON,
        422,
        ["'records' must be a list", "object"],
    ),
    ("records_empty", "/predict", b'{"records": []}', JSON, 422, ["empty"]),
    ("record_not_object", "/predict", _raw_records('[{"tenure_months": 1}, 5]'), JSON, 422, ["record 0"]),
    (
        "record_is_string",
        "/predict",
        _raw_records('["abc"]'),
        JSON,
        422,
        ["record 0: must be a JSON object, got string"],
    ),
    (
        "missing_field",
        "/predict",
        _without(3, "tenure_months"),
        JSON,
        422,
        ["record 3", "missing required field 'tenure_months'"],
    ),
    ("extra_field", "/predict", _with(2, churned=1), JSON, 422, ["record 2", "unexpected field 'churned'"]),
    (
        "string_in_numeric",
        "/predict",
        _with(4, tenure_months="12"),
        JSON,
        422,
        ["record 4: field 'tenure_months' must be a number, got string"],
    ),
    (
        "unicode_digits",
        "/predict",
        _with(1, monthly_charges="\uff11\uff12"),
        JSON,
        422,
        ["record 1: field 'monthly_charges' must be a number, got string"],
    ),
    (
        "bool_in_numeric",
        "/predict",
        _with(0, discount_pct=True),
        JSON,
        422,
        ["record 0: field 'discount_pct' must be a number, got boolean"],
    ),
    (
        "number_in_categorical",
        "/predict",
        _with(3, plan=2),
        JSON,
        422,
        ["record 3: field 'plan' must be a string, got number"],
    ),
    (
        "object_in_numeric",
        "/predict",
        _with(2, total_charges={"x": 1}),
        JSON,
        422,
        ["record 2: field 'total_charges' must be a number, got object"],
    ),
    (
        "null_in_required",
        "/predict",
        _with(1, tenure_months=None),
        JSON,
        422,
        ["record 1: field 'tenure_months' must not be null"],
    ),
    (
        "null_in_required_categorical",
        "/predict",
        _with(1, contract=None),
        JSON,
        422,
        ["record 1: field 'contract' must not be null"],
    ),
    (
        "nan_token",
        "/predict",
        _raw_records('[{"tenure_months": NaN}]'),
        JSON,
        422,
        ["record 0: field 'tenure_months' must be a finite number, got NaN"],
    ),
    (
        "infinity_token",
        "/predict",
        _with(0, avg_session_minutes="__X__").replace(b'"__X__"', b"-Infinity"),
        JSON,
        422,
        ["record 0", "'avg_session_minutes' must be a finite number, got -Infinity"],
    ),
    (
        "out_of_float32_range",
        "/predict",
        _with(0, total_charges=1e300),
        JSON,
        422,
        ["record 0: field 'total_charges' is out of range"],
    ),
    (
        "huge_integer",
        "/predict",
        _raw_records('[{"tenure_months": 1' + "0" * 400 + "}]"),
        JSON,
        400,
        ["malformed JSON", "infinity"],
    ),
    (
        "fractional_integer",
        "/predict",
        _with(2, num_devices=1.5),
        JSON,
        422,
        ["record 2: field 'num_devices' must be an integer, got 1.5"],
    ),
    (
        "bad_id_column",
        "/predict",
        _with(3, customer_id=[1]),
        JSON,
        422,
        ["record 3: field 'customer_id' must be a string, number or null, got array"],
    ),
    (
        "wrong_content_type",
        "/predict",
        orjson.dumps({"records": _good()}),
        {"content-type": "text/plain"},
        415,
        ["Content-Type must be application/json"],
    ),
    (
        "form_content_type",
        "/predict",
        b"a=1",
        {"content-type": "application/x-www-form-urlencoded"},
        415,
        ["application/json"],
    ),
    ("no_content_type", "/predict", orjson.dumps({"records": _good()}), {}, 415, ["Content-Type"]),
    ("body_too_large", "/predict", b'{"records": [' + b" " * 250_000 + b"]}", JSON, 413, ["too large"]),
    (
        "too_many_records",
        "/predict",
        orjson.dumps({"records": make_records(501, seed=2)}),
        JSON,
        413,
        ["too many records: 501 (max 500)"],
    ),
    ("mlflow_no_format", "/invocations", b'{"foo": []}', JSON, 422, ["dataframe_split", "dataframe_records"]),
    ("mlflow_two_formats", "/invocations", b'{"inputs": [], "instances": []}', JSON, 422, ["only one of"]),
    (
        "mlflow_split_ragged",
        "/invocations",
        b'{"dataframe_split": {"columns": ["tenure_months", "plan"], "data": [[1, "basic"], [2]]}}',
        JSON,
        422,
        ["record 1: row has 1 values, expected 2"],
    ),
    (
        "mlflow_split_no_columns",
        "/invocations",
        b'{"dataframe_split": {"data": [[1]]}}',
        JSON,
        422,
        ["columns"],
    ),
    (
        "mlflow_records_bad_field",
        "/invocations",
        orjson.dumps({"dataframe_records": [*_good(2), {**_good(1)[0], "plan": 7}]}),
        JSON,
        422,
        ["record 2: field 'plan' must be a string, got number"],
    ),
    (
        "mlflow_columnar_ragged",
        "/invocations",
        b'{"inputs": {"tenure_months": [1, 2], "plan": ["basic"]}}',
        JSON,
        422,
        ["different lengths"],
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_request_is_4xx_and_named(
    live_server: ServerProcess,
    request: pytest.FixtureRequest,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    fragments: list[str],
    reliability: Any,
) -> None:
    reliability.record(
        "bad input: serving", request.node.callspec.id, f"HTTP {status}, error names " + "; ".join(fragments)[:60], body_bytes=len(body)
    )
    check_bad_request(live_server, path, body, headers, status, fragments)


def check_bad_request(
    live_server: ServerProcess, path: str, body: bytes, headers: dict[str, str], status: int, fragments: list[str]
) -> None:
    """The request gets ``status`` and a JSON error that names every fragment."""
    resp = httpx.post(live_server.url + path, content=body, headers=headers, timeout=30)
    assert resp.status_code == status, resp.text
    payload = resp.json()
    assert set(payload) == {"error", "request_id"}
    for fragment in fragments:
        assert fragment in payload["error"], payload["error"]


def test_catalogue_is_big_enough() -> None:
    assert len({c[0] for c in CASES}) >= 20


def test_wrong_method_and_unknown_path(live_server: ServerProcess) -> None:
    resp = httpx.get(live_server.url + "/predict", timeout=10)
    assert resp.status_code == 405 and "error" in resp.json()
    resp = httpx.post(live_server.url + "/nope", json={}, timeout=10)
    assert resp.status_code == 404 and "error" in resp.json()


def test_declared_oversized_body_rejected_before_reading(live_server: ServerProcess) -> None:
    """Content-Length over the limit: 413 straight away, even if the body never arrives."""
    url = urlparse(live_server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 999999999\r\n\r\n{"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 413"), data[:200]


def test_chunked_body_over_limit(live_server: ServerProcess) -> None:
    def gen():  # type: ignore[no-untyped-def]
        yield b'{"records": ['
        for _ in range(30):
            yield b" " * 10_000
        yield b"]}"

    resp = httpx.post(live_server.url + "/predict", content=gen(), headers=JSON, timeout=30)
    assert resp.status_code == 413 and "too large" in resp.json()["error"]


def test_server_still_healthy_and_no_5xx_counted(live_server: ServerProcess) -> None:
    resp = httpx.post(live_server.url + "/predict", json={"records": _good(3)}, timeout=10)
    assert resp.status_code == 200
    metrics = httpx.get(live_server.url + "/metrics", timeout=10).text
    assert 'endpoint="predict",status="5' not in metrics
    assert 'endpoint="invocations",status="5' not in metrics
    assert 'mlops_serving_request_errors_total{endpoint="predict",kind="validation"}' in metrics
    json.loads(httpx.get(live_server.url + "/version", timeout=10).text)
