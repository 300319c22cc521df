"""Bad input beyond the catalogues: the request kinds the serving catalogue (tests/serving) does not
cover, and the size of both catalogues.

The catalogues themselves (every bad batch ends in quarantine with a message naming what is wrong;
every malformed request gets a 4xx with a JSON error naming the problem) run once, in their own
modules, and record their cases into this suite's report. Here every extra request must get its
4xx, never a 5xx, and the server must keep serving.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.ingest import test_bad_batch_catalogue as ingest_catalogue
from tests.serving import test_http_errors as serving_catalogue
from tests.serving.conftest import ServerProcess, start_server
from tests.serving.model_fixture import build_model_dir, make_records

pytestmark = pytest.mark.timeout(120)

JSON = serving_catalogue.JSON


def _record(**changes: object) -> bytes:
    record = make_records(1, seed=5)[0]
    record.update(changes)
    return orjson.dumps({"records": [record]})


# Kinds the serving catalogue does not have: (id, path, body, headers, status, fragments)
EXTRA_REQUESTS: list[tuple[str, str, bytes, dict[str, str], int, list[str]]] = [
    ("top_level_null", "/predict", b"null", JSON, 422, ["JSON object", "null"]),
    ("records_null", "/predict", b'{"records": null}', JSON, 422, ["'records' must be a list"]),
    ("record_is_array", "/predict", b'{"records": [[1, 2, 3]]}', JSON, 422, ["record 0"]),
    ("utf8_bom_prefix", "/predict", b"\xef\xbb\xbf" + _record(), JSON, 400, ["malformed JSON"]),
    ("utf16_body", "/predict", _record().decode().encode("utf-16"), JSON, 400, ["malformed JSON"]),
    ("unicode_minus_in_numeric", "/predict", _record(tenure_months="\u221212"), JSON, 422, ["'tenure_months' must be a number"]),
    ("arabic_indic_digits", "/predict", _record(num_devices="\u0664\u0665"), JSON, 422, ["'num_devices' must be a number"]),
    ("nan_string", "/predict", _record(total_charges="NaN"), JSON, 422, ["'total_charges' must be a number, got string"]),
    ("text_json_content_type", "/predict", _record(), {"content-type": "text/json"}, 415, ["application/json"]),
    ("multipart_body", "/predict", b"--x\r\n\r\n--x--", {"content-type": "multipart/form-data; boundary=x"}, 415, ["application/json"]),
    ("deep_json_in_field", "/predict", _record(plan="__X__").replace(b'"__X__"', b"[" * 3000 + b"]" * 3000), JSON, 400, ["nesting too deep"]),
    ("nan_in_mlflow_split", "/invocations", b'{"dataframe_split": {"columns": ["tenure_months"], "data": [[Infinity]]}}', JSON, 422, ["finite number"]),
]
SERVING_LIMITS = {"MLOPS_SERVING_MAX_BODY_BYTES": "200000", "MLOPS_SERVING_MAX_RECORDS": "500"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``python -m mlops_serving`` with the limits the serving catalogue expects."""
    tmp = tmp_path_factory.mktemp("bad-input-server")
    model_dir: Path = build_model_dir(tmp / "model", "xgboost")
    process = start_server(tmp, model_dir, tmp / "predictions", SERVING_LIMITS)
    yield process
    process.stop()


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in EXTRA_REQUESTS],
)
def test_malformed_request(server: ServerProcess, request: pytest.FixtureRequest, path, body, headers, status, fragments, reliability) -> None:
    case = request.node.callspec.id
    reliability.record("bad input: serving", case, f"HTTP {status}, error names " + "; ".join(fragments)[:60], body_bytes=len(body))
    serving_catalogue.check_bad_request(server, path, body, headers, status, fragments)


def test_catalogues_are_big_enough_and_the_server_survived(server: ServerProcess, reliability) -> None:
    serving_cases = serving_catalogue.CASES + EXTRA_REQUESTS
    kinds = {"ingestion": len(ingest_catalogue.CASES), "serving": len(serving_cases)}
    reliability.record("bad input", "catalogue sizes, server alive after all", ">= 12 batch kinds, >= 20 request kinds, no 5xx", **kinds)
    assert kinds["ingestion"] >= 12 and kinds["serving"] >= 20
    assert len({c[0] for c in serving_cases}) == len(serving_cases)
    serving_catalogue.test_server_still_healthy_and_no_5xx_counted(server)
    response = httpx.post(server.url + "/predict", json={"records": make_records(3, seed=1)}, timeout=10)
    assert response.status_code == 200
