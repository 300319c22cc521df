"""Blue-green's own parts: the smoke test with recorded requests, the plan of the strategy, and the
windows green and blue are compared on. Against a small HTTP server, a temp prediction log and the
in-memory backend and registry of ``test_retries``; the release itself runs on the scheduler in
``tests/e2e/test_release_strategies.py``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlops_pipeline.deploy.backends import Server
from mlops_pipeline.deploy.canary import Sample
from mlops_pipeline.deploy.rollout import Deployer
from mlops_pipeline.deploy.smoke import SmokeTestFailed, recorded_requests, smoke_test
from tests.deploy.test_retries import deployer  # noqa: F401 (fixture)

RECORD = {"tenure_months": 3.0, "plan": "basic", "customer_id": "c-1"}


def log_line(version: str, source: str, records: list[dict], request_id: str) -> str:
    line = {"request_id": request_id, "ts": "2026-12-02T00:00:00+00:00", "model_name": "churn", "model_version": version,
            "traffic_source": source, "endpoint": "predict", "input": {"records": records},
            "output": {"predictions": [{"probability": 0.5, "label": 1}] * len(records)}}  # fmt: skip
    return json.dumps(line)


def test_recorded_requests_are_the_newest_client_bodies_sent_to_the_version(tmp_path: Path) -> None:
    folder = tmp_path / f"ds={datetime.now(UTC).date().isoformat()}"
    folder.mkdir()
    lines = [
        log_line("1", "client", [RECORD], "r1"),
        log_line("1", "warmup", [RECORD] * 10, "warm"),  # not traffic
        log_line("2", "client", [RECORD], "other-version"),
        log_line("1", "smoke", [RECORD], "smoke"),  # not traffic
        log_line("1", "demo", [RECORD, {**RECORD, "customer_id": "c-2"}], "r2"),
        '{"torn line',
    ]
    (folder / "predictions-host-1-0.requests.jsonl").write_text("\n".join(lines))

    found = recorded_requests(tmp_path, "1")

    assert found == [{"records": [RECORD, {**RECORD, "customer_id": "c-2"}]}, {"records": [RECORD]}]  # newest first
    assert recorded_requests(tmp_path, "1", limit=1) == found[:1]
    assert recorded_requests(tmp_path / "nothing", "1") == []


@pytest.fixture
def green() -> Iterator[tuple[Server, dict]]:
    behaviour: dict = {"status": 200, "probability": 0.3, "received": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            behaviour["received"].append((self.headers.get("X-Traffic-Source"), body))
            reply = json.dumps({"predictions": [{"probability": behaviour["probability"], "label": 0}] * len(body["records"])})
            self.send_response(behaviour["status"])
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply.encode())

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http.server_address[1]}"
    yield Server("id", "green-x", "canary", "churn", "2", "run", "sha", "ref", url, "127.0.0.1", 0, True, 0.0), behaviour
    http.shutdown()


def test_the_smoke_test_replays_each_request_marked_as_smoke(green) -> None:
    server, behaviour = green
    requests = [{"records": [RECORD]}, {"records": [RECORD] * 3}]

    assert smoke_test(server, requests)["rows"] == 4
    assert [(source, body) for source, body in behaviour["received"]] == [("smoke", r) for r in requests]


@pytest.mark.parametrize(
    ("status", "probability", "message"),
    [(500, 0.3, "HTTP 500"), (200, 1.7, "probability outside"), (200, None, "probability outside")],
)
def test_a_wrong_answer_fails_the_smoke_test_naming_the_request(green, status, probability, message) -> None:
    server, behaviour = green
    behaviour.update(status=status, probability=probability)

    with pytest.raises(SmokeTestFailed, match=message) as failed:
        smoke_test(server, [{"records": [RECORD]}])
    assert "recorded request 1 of 1" in str(failed.value)


def test_the_strategy_plans_a_blue_green_release_with_one_step(deployer: Deployer) -> None:  # noqa: F811
    deployer.client.set_registered_model_alias("churn", "champion", "1")
    deployer.client.set_registered_model_alias("churn", "challenger", "2")

    default = deployer.plan("deploy", deployment_key="k")
    canary = deployer.plan("deploy", deployment_key="k", strategy="canary")
    green = deployer.plan("deploy", deployment_key="k", strategy="blue_green")

    assert (default["mode"], default["strategy"], default["steps"]) == ("canary", "shadow", [5, 25, 50, 100])
    assert default["reason"].startswith("shadow, then canary, of v2")
    assert (canary["mode"], canary["strategy"], canary["steps"]) == ("canary", "canary", [5, 25, 50, 100])
    assert (green["mode"], green["strategy"], green["steps"]) == ("blue_green", "blue_green", [100])
    assert green["reason"].startswith("blue-green release of v2")
    ab = deployer.plan("deploy", deployment_key="k", strategy="ab")
    assert (ab["mode"], ab["strategy"], ab["steps"]) == ("ab", "ab", [50]) and ab["reason"].startswith("A/B test of v2")
    assert deployer.plan("promote", "2", deployment_key="k", strategy="blue_green")["mode"] == "direct"  # no rollout
    with pytest.raises(ValueError, match="unknown deployment strategy 'linear'"):
        deployer.plan("deploy", deployment_key="k", strategy="linear")


def test_green_is_compared_with_blue_s_window_before_the_switch(deployer: Deployer) -> None:  # noqa: F811
    """After the switch blue serves nothing: its window is the one between green's start and the switch."""

    def sample(server_id: str, requests: float) -> dict:
        return Sample(server_id=server_id, requests=requests, served_requests=requests).to_dict()

    baseline = {"baseline": {"stable": sample("blue", 100), "canary": sample("green", 0)}, "reference": "before_switch"}
    step = {"samples": {"stable": sample("blue", 400), "canary": sample("green", 0)}}
    # blue answered 20 more after the switch (requests in flight): not part of its window
    deployer.sample = lambda: {"stable": Sample.from_dict(sample("blue", 420)), "canary": Sample.from_dict(sample("green", 250))}  # type: ignore[method-assign]

    green_window, blue_window = deployer._windows(baseline, step)

    assert green_window.request_count == 250 and blue_window.request_count == 300
    canary_style = deployer._windows({**baseline, "reference": None}, step)[1]
    assert canary_style.request_count == 320  # a canary's stable is measured up to now, on the same traffic
