"""A new server is warmed up with its own example record, marked as warm-up, before it takes traffic."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlops_pipeline.deploy.backends import Server
from mlops_pipeline.deploy.rollout import DeploymentError, warm_up

EXAMPLE = {"tenure_months": 1.0, "plan": "basic"}


@pytest.fixture
def server() -> Iterator[tuple[Server, list[tuple[str, dict]]]]:
    received: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            example = {} if self.server.no_example else {"example": EXAMPLE}  # type: ignore[attr-defined]
            self._reply(json.dumps({"components": {"schemas": {"PredictRecord": example}}}).encode())

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.headers.get("X-Traffic-Source", ""), body))
            self._reply(b'{"predictions": []}')

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    http.no_example = False  # type: ignore[attr-defined]
    threading.Thread(target=http.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http.server_address[1]}"
    yield Server("id", "canary-x", "canary", "m", "2", "run", "sha", "ref", url, "127.0.0.1", 0, True, 0.0), received
    http.shutdown()


def test_warm_up_sends_the_example_marked_as_warm_up(server) -> None:
    target, received = server
    result = warm_up(target, requests=7, rows=3)
    assert result["requests"] == 7 and len(received) == 7
    assert {source for source, _ in received} == {"warmup"}
    assert all(body == {"records": [EXAMPLE] * 3} for _, body in received)


def test_no_warm_up_when_switched_off(server) -> None:
    target, received = server
    assert warm_up(target, requests=0, rows=3) == {"requests": 0} and received == []


def test_a_server_without_an_example_is_an_error(server, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_pipeline.deploy import rollout

    target, _ = server
    monkeypatch.setattr(rollout, "http_text", lambda url, timeout=10.0: json.dumps({"components": {"schemas": {}}}))
    with pytest.raises(DeploymentError, match="no example record"):
        warm_up(target, requests=2, rows=1)
