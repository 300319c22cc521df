"""Demo traffic: recent validated rows of the lake sent to the router at a steady rate.

Real systems have real traffic; the demo needs some, and the canary analysis needs requests to
compare. Every request carries ``X-Traffic-Source: demo``, so the prediction log tells demo rows
from real ones (the monitor can leave them out)::

    python -m mlops_dev.traffic --rate 50 --seconds 30 [--url http://127.0.0.1:8000]
        [--days 3] [--rows 1] [--concurrency 4] [--until-deployment ID]

Rows are the dataset's features plus its id and time columns (never the label), from the last
``--days`` validated partitions, sent in order and round again.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

TRAFFIC_SOURCE_HEADER = "X-Traffic-Source"
DEMO_SOURCE = "demo"


class NoTrafficData(RuntimeError):
    """The lake has no validated rows to replay."""


@dataclass
class ReplayStats:
    sent: int = 0
    ok: int = 0
    rows: int = 0
    failed: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "rows": self.rows,
            "seconds": round(self.seconds, 2),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "errors": dict(self.errors),
        }


def recent_records(days: int = 3, limit: int = 20_000) -> list[dict[str, Any]]:
    """Up to ``limit`` rows of the last ``days`` validated partitions, as JSON-ready records."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.storage import open_lake

    settings = get_settings()
    spec = load_dataset_spec(settings.dataset)
    lake = open_lake(settings)
    partitions = lake.list_partitions("validated")[-max(days, 1) :]
    if not partitions:
        raise NoTrafficData(f"no validated partitions in {lake.uri}: run mlops_ingest first")
    columns = [*spec.feature_columns, spec.id_column, spec.time_column]
    records: list[dict[str, Any]] = []
    for ds in reversed(partitions):
        frame = lake.read_frame("validated", ds)
        present = [column for column in columns if column in frame.columns]
        for row in frame[present].to_dict(orient="records"):
            records.append({key: _json_value(value) for key, value in row.items()})
            if len(records) >= limit:
                return records
    return records


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def batches(records: Sequence[dict[str, Any]], rows: int) -> Iterator[list[dict[str, Any]]]:
    """``rows`` records at a time, cycling through ``records`` for ever."""
    if not records:
        raise NoTrafficData("no records to replay")
    index = 0
    while True:
        batch = [records[(index + offset) % len(records)] for offset in range(rows)]
        index = (index + rows) % len(records)
        yield batch


def replay(
    url: str,
    records: Sequence[dict[str, Any]],
    *,
    rate: float,
    seconds: float,
    rows: int = 1,
    concurrency: int = 4,
    until: Callable[[], bool] | None = None,
    source: str = DEMO_SOURCE,
    api_key: str | None = None,
    timeout: float = 10.0,
) -> ReplayStats:
    """POST ``rows``-record batches to ``<url>/predict`` at ``rate`` requests/s for ``seconds``
    (or until ``until()`` is true, checked each second); never raises for a failed request."""
    import httpx

    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    stats = ReplayStats()
    lock = threading.Lock()
    headers = {TRAFFIC_SOURCE_HEADER: source, "Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    endpoint = url.rstrip("/") + "/predict"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    with httpx.Client(timeout=timeout, limits=limits, headers=headers) as client:

        def send(batch: list[dict[str, Any]]) -> None:
            try:
                response = client.post(endpoint, content=json.dumps({"records": batch}))
                with lock:
                    stats.statuses[response.status_code] += 1
                    if response.status_code == 200:
                        stats.ok += 1
                        stats.rows += len(batch)
                    else:
                        stats.failed += 1
            except httpx.HTTPError as exc:
                with lock:
                    stats.failed += 1
                    stats.errors[type(exc).__name__] += 1

        started = time.monotonic()
        next_check = started + 1.0
        source_batches = batches(records, rows)
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="replay") as pool:
            index = 0
            while True:
                now = time.monotonic()
                if now - started >= seconds:
                    break
                if until is not None and now >= next_check:
                    next_check = now + 1.0
                    if until():
                        break
                due = started + index / rate
                if due > now:
                    time.sleep(min(due - now, 0.25))
                    continue
                pool.submit(send, next(source_batches))
                stats.sent += 1
                index += 1
        stats.seconds = time.monotonic() - started
    return stats


TERMINAL_EVENTS = frozenset({"promoted", "rolled_back", "rollback_deferred", "deployed", "rolled_back_to"})


def deployment_finished(deployment_id: str, since: str) -> Callable[[], bool]:
    """A check for :func:`replay`'s ``until``: has the audit log seen the deployment end?"""
    from mlops_pipeline.deploy.audit import AuditLog
    from mlops_pipeline.storage import open_lake

    audit = AuditLog(open_lake())

    def finished() -> bool:
        return any(e.event in TERMINAL_EVENTS for e in audit.iter_events(deployment_id=deployment_id, since=since))

    return finished


def router_url() -> str:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.backends import client_host

    settings = get_settings()
    return f"http://{client_host(settings.router_bind)}:{settings.router_port}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_dev.traffic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="router URL (default http://MLOPS_ROUTER_BIND:MLOPS_ROUTER_PORT)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument("--rows", type=int, default=1, help="rows per request (default 1)")
    parser.add_argument("--days", type=int, default=3, help="replay the last N validated days (default 3)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at most (default 4)")
    parser.add_argument("--until-deployment", default=None, help="stop when this deployment id ends (audit log)")
    parser.add_argument("--since", default=None, help="with --until-deployment: read audit events from this ISO time")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    records = recent_records(args.days)
    url = args.url or router_url()
    log.info("replaying %d rows to %s at %.1f req/s for %.0fs", len(records), url, args.rate, args.seconds)
    until = None
    if args.until_deployment:
        from datetime import UTC, datetime

        until = deployment_finished(args.until_deployment, args.since or datetime.now(UTC).isoformat())
    stats = replay(
        url,
        records,
        rate=args.rate,
        seconds=args.seconds,
        rows=args.rows,
        concurrency=args.concurrency,
        until=until,
        api_key=os.environ.get("MLOPS_SERVING_API_KEY"),
    )
    print(json.dumps(stats.to_dict(), indent=2))
    return 0 if stats.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
