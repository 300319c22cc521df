"""Clients standing in for a model's users: validated rows of the lake sent to the router.

A production model has users; the demo and the end-to-end tests need some, both for the monitor
(it judges the prediction log by event time) and for the canary (its checks compare canary and
stable on live traffic). Nothing here is a task of any DAG: the client is a process of its own that
the demo starts, the way real users would be there anyway::

    python -m mlops_dev.traffic client --days 2026-11-28,2026-11-29 --status .run/client.json
        [--rate 40] [--rows 10] [--url http://127.0.0.1:8000] [--seconds N] [--own-times-when FILE]

``client`` waits for the router to serve, then keeps a steady stream (``--rate`` requests/s of
``--rows`` rows: the days' customers stamped "now"; the customers of ``--before-days`` until the
days' rows are released) until stopped; it also sends every validated row
of ``--days`` once with its own event time (the days' traffic, which the nightly monitor judges),
at once or when the file ``--replay-when`` appears (the demo releases it once the first model
serves). Once
the file ``--own-times-when`` appears, the steady stream keeps the rows' own event times instead:
their labels are in the lake, as if they had arrived, so a shadow window or a canary step finds the
labelled rows its quality test needs (the demo switches once the monitor has judged the days). Its
status file (JSON, rewritten atomically every second) says what was sent, what failed and which
model versions answered. Every request carries ``X-Traffic-Source: demo``, so the prediction log
tells this traffic from a real client's.

``python -m mlops_dev.traffic replay --rate 50 --seconds 30`` sends the last validated days at a
steady rate for a while (a quick load through the router).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TRAFFIC_SOURCE_HEADER = "X-Traffic-Source"
DEMO_SOURCE = "demo"
REPLAY_ROWS_PER_REQUEST = 50


class NoTrafficData(RuntimeError):
    """The lake has no validated rows to send."""


@dataclass
class ReplayStats:
    sent: int = 0
    ok: int = 0
    rows: int = 0
    failed: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)  # the first few, with their time
    seconds: float = 0.0

    def record(self, status: int | None, rows: int, version: str | None = None, error: str | None = None) -> None:
        if status is not None:
            self.statuses[status] += 1
        if status == 200:
            self.ok += 1
            self.rows += rows
            if version is not None:
                self.versions[version] += rows
            return
        self.failed += 1
        if error:
            self.errors[error.split(":", 1)[0]] += 1
        if len(self.failures) < 20:
            self.failures.append({"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "status": status, "error": error})

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "rows": self.rows,
            "seconds": round(self.seconds, 2),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "errors": dict(self.errors),
            "versions": dict(self.versions),
            "failures": list(self.failures),
        }


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


def day_records(days: Sequence[date | str]) -> list[dict[str, Any]]:
    """The validated rows of ``days`` as request records: features, id and event time, never the label."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.storage import open_lake

    settings = get_settings()
    spec = load_dataset_spec(settings.dataset)
    lake = open_lake(settings)
    columns = [*spec.feature_columns, spec.id_column, spec.time_column]
    records: list[dict[str, Any]] = []
    for day in days:
        ds = day if isinstance(day, str) else day.isoformat()
        frame = lake.read_frame("validated", ds)
        present = [column for column in columns if column in frame.columns]
        for row in frame[present].to_dict(orient="records"):
            records.append({key: _json_value(value) for key, value in row.items()})
    if not records:
        raise NoTrafficData(f"no validated rows for {list(days)} in {lake.uri}: run mlops_ingest for them first")
    return records


def recent_records(days: int = 3, limit: int = 20_000) -> list[dict[str, Any]]:
    """Up to ``limit`` rows of the last ``days`` validated partitions, as JSON-ready records."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.storage import open_lake

    lake = open_lake(get_settings())
    partitions = lake.list_partitions("validated")[-max(days, 1) :]
    if not partitions:
        raise NoTrafficData(f"no validated partitions in {lake.uri}: run mlops_ingest first")
    return day_records(list(reversed(partitions)))[:limit]


def batches(records: Sequence[dict[str, Any]], rows: int) -> Iterator[list[dict[str, Any]]]:
    """``rows`` records at a time, cycling through ``records`` for ever."""
    if not records:
        raise NoTrafficData("no records to replay")
    index = 0
    while True:
        batch = [records[(index + offset) % len(records)] for offset in range(rows)]
        index = (index + rows) % len(records)
        yield batch


def request_headers(source: str, api_key: str | None) -> dict[str, str]:
    headers = {TRAFFIC_SOURCE_HEADER: source, "Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    return headers


def _post(client: Any, endpoint: str, batch: list[dict[str, Any]], stats: ReplayStats, lock: threading.Lock) -> None:
    import httpx

    try:
        response = client.post(endpoint, content=json.dumps({"records": batch}))
    except httpx.HTTPError as exc:
        with lock:
            stats.record(None, len(batch), error=f"{type(exc).__name__}: {exc}"[:300])
        return
    version = None
    if response.status_code == 200:
        try:
            version = str(response.json().get("model_version"))
        except ValueError:
            version = None
    with lock:
        stats.record(response.status_code, len(batch), version, None if response.status_code == 200 else f"HTTP {response.status_code}: {response.text[:200]}")


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
    stats: ReplayStats | None = None,
    restamp: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
) -> ReplayStats:
    """POST ``rows``-record batches to ``<url>/predict`` at ``rate`` requests/s for ``seconds``
    (or until ``until()`` is true, checked at least each second); never raises for a failed request."""
    import httpx

    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    stats = stats if stats is not None else ReplayStats()
    lock = threading.Lock()
    endpoint = url.rstrip("/") + "/predict"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=timeout, limits=limits, headers=request_headers(source, api_key)) as client:
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
                batch = next(source_batches)
                pool.submit(_post, client, endpoint, restamp(batch) if restamp else batch, stats, lock)
                stats.sent += 1
                index += 1
        stats.seconds = time.monotonic() - started
    return stats


def send_once(url: str, records: Sequence[dict[str, Any]], *, rows: int = REPLAY_ROWS_PER_REQUEST, source: str = DEMO_SOURCE,
              api_key: str | None = None, stats: ReplayStats | None = None, concurrency: int = 2) -> ReplayStats:
    """Every record once, in order, ``rows`` at a time (a day's traffic, with its own event times)."""
    import httpx

    stats = stats if stats is not None else ReplayStats()
    lock = threading.Lock()
    endpoint = url.rstrip("/") + "/predict"
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=60, limits=limits, headers=request_headers(source, api_key)) as client:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="send") as pool:
            for index in range(0, len(records), rows):
                pool.submit(_post, client, endpoint, list(records[index : index + rows]), stats, lock)
                stats.sent += 1
    stats.seconds = time.monotonic() - started
    return stats


def restamped_now(time_column: str, until: Path | None = None) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Records as if they happened now: the same customers, today's event time; once the file
    ``until`` exists, the records as they are (their own event times)."""

    def restamp(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if until is not None and until.exists():
            return batch
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        return [{**record, time_column: now} for record in batch]

    return restamp


def wait_until_serving(url: str, timeout: float = 600.0) -> None:
    """Return once the router answers ``/ready``; the first model may still be deploying."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url.rstrip("/") + "/ready", timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing served at {url} after {timeout:.0f}s")
        time.sleep(2)


def router_url() -> str:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.backends import client_host

    settings = get_settings()
    return f"http://{client_host(settings.router_bind)}:{settings.router_port}"


def _write_status(path: Path | None, status: dict[str, Any]) -> None:
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status, indent=2, default=str))
    os.replace(tmp, path)


def run_client(
    url: str,
    days: Sequence[str],
    *,
    rate: float,
    rows: int,
    seconds: float,
    status_file: Path | None,
    stop: threading.Event,
    replay_when: Path | None = None,
    before_days: Sequence[str] = (),
    api_key: str | None = None,
    own_times_when: Path | None = None,
) -> dict[str, Any]:
    """Steady traffic from the moment the router serves, until ``stop`` is set or ``seconds`` pass;
    the days' rows once (with their own event times) when ``replay_when`` exists (at once without it).
    The steady stream is stamped now, until ``own_times_when`` exists.

    The steady stream is drawn from ``before_days`` until the days' rows are released, then from
    ``days``: the users' traffic changes when the data does, so a model deployed before the change
    is judged on the traffic of its time."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec

    status: dict[str, Any] = {
        "pid": os.getpid(), "url": url, "days": list(days), "phase": "waiting", "replay": "waiting",
        "started_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    _write_status(status_file, status)
    records = day_records(days)
    earlier = day_records(before_days) if before_days and replay_when is not None else []
    once, steady = ReplayStats(), ReplayStats()

    def publish() -> None:
        _write_status(status_file, {**status, "replayed": once.to_dict(), "steady": steady.to_dict(),
                                    "updated_at": datetime.now(UTC).isoformat(timespec="seconds")})

    def replay_the_days() -> None:
        while replay_when is not None and not replay_when.exists():
            if stop.wait(0.5):
                return
        status["replay"] = "running"
        send_once(url, records, stats=once, api_key=api_key)
        status.update(replay="done", replayed_rows=len(records), replay_done_at=datetime.now(UTC).isoformat())
        publish()

    stopper = threading.Event()

    def keep_publishing() -> None:
        while not stopper.wait(1.0):
            publish()

    publisher = threading.Thread(target=keep_publishing, daemon=True)
    publisher.start()
    replayer = threading.Thread(target=replay_the_days, daemon=True)
    try:
        wait_until_serving(url)
        status["phase"] = "serving"
        replayer.start()
        time_column = load_dataset_spec(get_settings().dataset).time_column
        deadline = time.monotonic() + seconds
        if earlier and replay_when is not None:
            status["steady_from"] = "before_days"
            replay(url, earlier, rate=rate, seconds=seconds, rows=rows, stats=steady, api_key=api_key,
                   until=lambda: stop.is_set() or replay_when.exists(), restamp=restamped_now(time_column))
        status["steady_from"] = "days"
        replay(url, records, rate=rate, seconds=max(0.0, deadline - time.monotonic()), rows=rows, until=stop.is_set,
               stats=steady, restamp=restamped_now(time_column, own_times_when), api_key=api_key)
        replayer.join(timeout=600)
        status["phase"] = "stopped"
    finally:
        stopper.set()
        publish()
    return {**status, "replayed": once.to_dict(), "steady": steady.to_dict()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_dev.traffic", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    client = commands.add_parser("client", help="steady traffic until stopped; the days' rows once")
    client.add_argument("--days", required=True, help="comma-separated days (YYYY-MM-DD) whose rows are sent once")
    client.add_argument("--replay-when", type=Path, default=None, help="send the days' rows once this file exists (default: at once)")
    client.add_argument("--before-days", default="", help="comma-separated days the steady stream is drawn from until --replay-when")
    client.add_argument("--own-times-when", type=Path, default=None,
                        help="the steady stream keeps the days' own event times (their labels are in the lake) once this file exists")
    client.add_argument("--status", type=Path, default=None, help="status file (JSON), rewritten every second")
    client.add_argument("--rate", type=float, default=40.0, help="steady requests per second (default 40)")
    client.add_argument("--rows", type=int, default=10, help="rows per steady request (default 10)")
    client.add_argument("--seconds", type=float, default=6 * 3600, help="stop after this long at most (default 6 h)")
    quick = commands.add_parser("replay", help="the last validated days at a steady rate for a while")
    quick.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    quick.add_argument("--seconds", type=float, default=30.0, help="how long (default 30)")
    quick.add_argument("--rows", type=int, default=1, help="rows per request (default 1)")
    quick.add_argument("--days", type=int, default=3, help="the last N validated days (default 3)")
    quick.add_argument("--concurrency", type=int, default=4, help="requests in flight at most (default 4)")
    for sub in (client, quick):
        sub.add_argument("--url", default=None, help="router URL (default http://MLOPS_ROUTER_BIND:MLOPS_ROUTER_PORT)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    url = args.url or router_url()
    api_key = os.environ.get("MLOPS_SERVING_API_KEY")
    if args.command == "replay":
        stats = replay(url, recent_records(args.days), rate=args.rate, seconds=args.seconds, rows=args.rows,
                       concurrency=args.concurrency, api_key=api_key)
        print(json.dumps(stats.to_dict(), indent=2))
        return 0 if stats.ok else 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    days = [day.strip() for day in args.days.split(",") if day.strip()]
    before = [day.strip() for day in args.before_days.split(",") if day.strip()]
    log.info("client at %s: %.0f req/s of %d rows; the rows of %s once", url, args.rate, args.rows, days)
    result = run_client(url, days, rate=args.rate, rows=args.rows, seconds=args.seconds, status_file=args.status,
                        stop=stop, replay_when=args.replay_when, before_days=before, api_key=api_key,
                        own_times_when=args.own_times_when)
    log.info("client stopped: %s", json.dumps({k: result[k] for k in ("replayed", "steady")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
