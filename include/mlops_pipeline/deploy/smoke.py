"""A blue-green release's smoke test: recorded requests replayed straight to the green server.

Before green takes any traffic, it answers requests the clients really sent: the newest request
bodies the stable (blue) version logged (``<prediction log dir>/ds=YYYY-MM-DD/*.requests.jsonl``,
their ``input`` is the body as the client sent it). Each must come back 200 with one prediction per
record and probabilities in [0, 1]. Without a recorded request (a new installation) the server's
own example record is sent instead, and the result says so. The requests carry
``X-Traffic-Source: smoke``, which the monitor leaves out like the warm-up's.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.deploy.backends import Server

log = logging.getLogger(__name__)

SMOKE_SOURCE = "smoke"
TAIL_BYTES = 1 << 20  # the end of each newest log file that is read for recent requests


class SmokeTestFailed(RuntimeError):
    """The green server answered a recorded request wrongly (the message names the request)."""


def _newest_files(log_dir: Path, days: int = 2) -> list[Path]:
    today = datetime.now(UTC).date()
    files: list[Path] = []
    for offset in range(days):
        folder = log_dir / f"ds={(today - timedelta(days=offset)).isoformat()}"
        if folder.is_dir():
            files += sorted(folder.glob("*.requests.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    return files


def _tail_lines(path: Path) -> Iterator[str]:
    """Complete lines of the file's last ``TAIL_BYTES``, newest first."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(size - TAIL_BYTES, 0))
        data = handle.read()
    lines = data.split(b"\n")
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first may be cut
    for line in reversed(lines[:-1] if not data.endswith(b"\n") else lines):
        if line.strip():
            yield line.decode(errors="replace")


def recorded_requests(log_dir: Path, version: str | None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` request bodies (``{"records": [...]}``) clients sent to ``version``."""
    from mlops_pipeline.monitoring.predictions import NOT_TRAFFIC

    found: list[dict[str, Any]] = []
    for path in _newest_files(log_dir):
        for line in _tail_lines(path):
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if not isinstance(request, dict) or request.get("traffic_source") in NOT_TRAFFIC:
                continue
            if version is not None and str(request.get("model_version")) != str(version):
                continue
            body = request.get("input")
            if isinstance(body, dict) and isinstance(body.get("records"), list) and body["records"]:
                found.append({"records": body["records"]})
                if len(found) >= limit:
                    return found
    return found


def example_request(server: Server, timeout: float = 10.0) -> dict[str, Any]:
    from mlops_pipeline.deploy.backends import http_text

    schema = json.loads(http_text(f"{server.url}/openapi.json", timeout=timeout))
    example = ((schema.get("components") or {}).get("schemas") or {}).get("PredictRecord", {}).get("example")
    if not example:
        raise SmokeTestFailed(f"server {server.name} publishes no example record to smoke-test with")
    return {"records": [example]}


def smoke_test(server: Server, requests: list[dict[str, Any]], timeout: float = 10.0) -> dict[str, Any]:
    """POST each request to ``server``; raise :class:`SmokeTestFailed` at the first wrong answer."""
    headers = {"Content-Type": "application/json", "X-Traffic-Source": SMOKE_SOURCE}
    if os.environ.get("MLOPS_SERVING_API_KEY"):  # the key the servers were started with
        headers["X-API-Key"] = os.environ["MLOPS_SERVING_API_KEY"]
    started = time.monotonic()
    rows = 0
    for number, body in enumerate(requests, start=1):
        what = f"recorded request {number} of {len(requests)} ({len(body['records'])} record(s))"
        request = urllib.request.Request(f"{server.url}/predict", data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise SmokeTestFailed(f"{server.name} answered {what} with HTTP {exc.code}: {detail}") from exc
        except (OSError, ValueError) as exc:
            raise SmokeTestFailed(f"{server.name} did not answer {what}: {exc}") from exc
        predictions = answer.get("predictions") if isinstance(answer, dict) else None
        if not isinstance(predictions, list) or len(predictions) != len(body["records"]):
            raise SmokeTestFailed(f"{server.name} answered {what} with {0 if not isinstance(predictions, list) else len(predictions)} predictions")
        bad = [p for p in predictions if not (isinstance(p, dict) and isinstance(p.get("probability"), int | float) and 0.0 <= p["probability"] <= 1.0)]
        if bad:
            raise SmokeTestFailed(f"{server.name} answered {what} with a probability outside [0, 1]: {bad[0]}")
        rows += len(predictions)
    seconds = round(time.monotonic() - started, 2)
    log.info("smoke test of %s: %d request(s), %d row(s) answered in %.2fs", server.name, len(requests), rows, seconds)
    return {"requests": len(requests), "rows": rows, "seconds": seconds}
