"""The S3 server goes away in the middle of an ingest, then comes back.

The lake is on a real S3-compatible server (moto in server mode, as in test_s3_lake.py), reached
through a TCP proxy that the test can cut: every open connection is closed and new ones are refused,
as when the server or its network goes down. The server keeps its objects meanwhile (moto keeps them
in memory, so the server process itself is not stopped). The cut comes half-way through the window's
S3 requests, counted on a first window, so the raw batch is written and the validated one is not.

What must hold: the task (mlops_ingest's one task, :func:`mlops_pipeline.orchestration.ingest.ingest`)
fails with an error that names the S3 endpoint; nothing half-written is visible as a partition; and
the retry, with the server back, commits the partition whole, with the same bytes as an undisturbed
run of the same window.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.data.test_s3_lake import s3_server  # noqa: F401  (the moto server fixture)

pytestmark = pytest.mark.integration

REQUEST_END = b" HTTP/1.1\r\n"


class CuttableProxy:
    """127.0.0.1:<port> -> the S3 server; counts the HTTP requests that pass; ``cut_after(n)`` closes
    every connection once ``n`` requests have passed and refuses new ones until ``restore()``."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = 0
        self.limit: int | None = None
        self.cut = False
        self.lock = threading.Lock()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after(self, requests: int) -> None:
        with self.lock:
            self.limit = self.requests + requests

    def restore(self) -> None:
        with self.lock:
            self.limit, self.cut = None, False

    def close(self) -> None:
        self.listener.close()
        self._close_all()

    def _close_all(self) -> None:
        with self.lock:
            connections, self.connections = self.connections, []
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            upstream = socket.create_connection(self.upstream)
            with self.lock:
                self.connections += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, requests: bool) -> None:
        try:
            while data := source.recv(65536):
                if requests:
                    with self.lock:
                        self.requests += data.count(REQUEST_END)
                        over = self.limit is not None and self.requests > self.limit
                        if over:
                            self.cut = True
                    if over:
                        self._close_all()
                        return
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.close()


@pytest.fixture
def outage(s3_server, monkeypatch):  # noqa: F811
    import boto3

    from mlops_pipeline.config import get_settings

    proxy = CuttableProxy(s3_server)
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "MLOPS_S3_ENDPOINT_URL": proxy.endpoint, "MLOPS_LAKE_URI": "s3://outage-bucket/churn",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLOPS_DATASET", raising=False)
    monkeypatch.delenv("MLOPS_BAD_BATCH_DAYS", raising=False)
    get_settings.cache_clear()
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket="outage-bucket")
    yield proxy
    proxy.close()
    get_settings.cache_clear()


def _ingest(day: date) -> dict:
    from mlops_pipeline.orchestration.ingest import ingest

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return ingest(start, start + timedelta(days=1), params=None, run_id=f"outage__{day.isoformat()}")


def test_an_s3_outage_mid_ingest_fails_naming_the_endpoint_and_the_retry_commits_whole(outage, reliability):
    import time

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.storage import open_lake

    # A first window, undisturbed: how many S3 requests a window takes.
    before = outage.requests
    _ingest(date(2026, 3, 2))
    per_window = outage.requests - before
    assert per_window > 4, per_window

    # The next window: the server goes away half-way through its requests.
    day = date(2026, 3, 3)
    outage.cut_after(per_window // 2)
    began = time.monotonic()
    with pytest.raises(Exception) as failed:
        _ingest(day)
    failed_in = time.monotonic() - began
    assert outage.cut, "the outage never came: the window finished in fewer requests than expected"
    message = f"{failed.value}"
    assert outage.endpoint.removeprefix("http://") in message, message
    print(f"the failed try: {type(failed.value).__name__}: {message[:500]}")

    outage.restore()
    lake = open_lake(get_settings())
    assert day.isoformat() in lake.list_partitions("raw")  # the cut came after the raw batch ...
    assert day.isoformat() not in lake.list_partitions("validated")  # ... and nothing half-written is a partition

    # The retry, with the server back: the partition whole, as an undisturbed run writes it.
    case = reliability.record(
        "faults", "S3 server cut off half-way through an ingest window's requests, then back",
        "the task fails naming the endpoint; no partial partition; the retry commits it whole",
    )
    began = time.monotonic()
    result = _ingest(day)
    retry_seconds = time.monotonic() - began
    assert lake.list_partitions("validated") == ["2026-03-02", day.isoformat()]
    verified = lake.verify_partition("validated", day.isoformat())
    manifest = lake.read_manifest("validated", day.isoformat())
    assert result["rows"] == manifest["row_count"] > 0 and verified
    first = [entry["sha256"] for entry in manifest["files"]]
    _ingest(day)  # the same window again: the same validated bytes, no new version
    assert [entry["sha256"] for entry in lake.read_manifest("validated", day.isoformat())["files"]] == first
    versions = lake.list_versions("validated", day.isoformat())
    assert len(versions) == 1, versions  # one committed version: nothing from the failed try, nothing twice
    case.figures.update({"requests_per_window": per_window, "cut_after": per_window // 2,
                         "failed_in_s": round(failed_in, 1), "error": type(failed.value).__name__,
                         "retry_s": round(retry_seconds, 1), "versions": len(versions)})
