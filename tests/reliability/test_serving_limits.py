"""Security limits and a full disk, against real ``python -m mlops_serving`` processes and a real
HAProxy: the API key on the scoring endpoints, the request size limit, the router's per-client rate
limit, and a prediction log on a full filesystem (requests still served, a metric, a warning, no torn
line left in the log).
"""

from __future__ import annotations

import inspect
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlops_pipeline.monitoring.predictions import LogLayout, ReadReport, iter_log_rows, log_files
from tests.serving.conftest import ServerProcess, free_port, start_server, wait_for
from tests.serving.model_fixture import ID_COLUMN, TIME_COLUMN, build_model_dir, make_records

pytestmark = pytest.mark.timeout(120)

API_KEY = "s3rv1ng-key-for-tests-only"  # secret-scan: allow (the key of a throwaway test server)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("limits-model") / "model", "xgboost")


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("keyed")
    server = start_server(tmp, model_dir, tmp / "predictions", {"MLOPS_SERVING_API_KEY": API_KEY, "MLOPS_SERVING_MAX_BODY_BYTES": "100000"})
    yield server
    server.stop()


def test_api_key_required_on_scoring_endpoints(keyed_server: ServerProcess, reliability) -> None:

    body = {"records": make_records(2, seed=3)}
    statuses = {}
    with httpx.Client(base_url=keyed_server.url, timeout=10) as http:
        for name, headers in {
            "none": {},
            "wrong": {"X-API-Key": "nope"},
            "wrong_same_length": {"X-API-Key": "x" * len(API_KEY)},
            "prefix": {"X-API-Key": API_KEY[:-1]},
            "header": {"X-API-Key": API_KEY},
            "bearer": {"Authorization": f"Bearer {API_KEY}"},
        }.items():
            response = http.post("/predict", json=body, headers=headers)
            statuses[name] = response.status_code
            if response.status_code == 401:
                assert "API key" in response.json()["error"] and response.headers["www-authenticate"] == "Bearer"
        statuses["invocations_none"] = http.post("/invocations", json={"dataframe_records": body["records"]}).status_code
        statuses["health_none"] = http.get("/health").status_code  # probes stay open
    reliability.record("security", "API key on predict", "401 without or with a wrong key, 200 with it; health open", **statuses)
    assert statuses == {
        "none": 401, "wrong": 401, "wrong_same_length": 401, "prefix": 401, "header": 200, "bearer": 200,
        "invocations_none": 401, "health_none": 200,
    }


def test_api_key_compare_is_constant_time(reliability) -> None:
    """The key check uses ``hmac.compare_digest`` and no ``==`` on the key."""
    from mlops_serving.app import ServingApp

    source = inspect.getsource(ServingApp._scoring)
    reliability.record("security", "constant-time key compare", "hmac.compare_digest, no == on the key")
    assert "hmac.compare_digest(given, st.api_key)" in source
    assert "== st.api_key" not in source and "st.api_key ==" not in source


def test_request_size_limit(keyed_server: ServerProcess, reliability) -> None:
    headers = {"X-API-Key": API_KEY, "content-type": "application/json"}
    huge = b'{"records": [' + b" " * 2_000_000 + b"]}"
    response = httpx.post(keyed_server.url + "/predict", content=huge, headers=headers, timeout=30)
    reliability.record("security", "request size limit (2 MB body, limit 100 kB)", "413 naming the limit", status=response.status_code)
    assert response.status_code == 413 and "too large" in response.json()["error"]


# --------------------------------------------------------------------------------------------
# the router's rate limit
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("open")
    server = start_server(tmp, model_dir, None, {"MLOPS_PREDICTION_LOG_ENABLED": "0"})
    yield server
    server.stop()


def start_router(tmp: Path, server: ServerProcess, rate_limit: int) -> tuple[subprocess.Popen[bytes], str]:
    from mlops_pipeline.deploy.haproxy import render_config
    from mlops_pipeline.deploy.local_backend import _haproxy_binary

    port = free_port()
    config = tmp / f"haproxy-{port}.cfg"
    config.write_text(
        render_config(
            f"127.0.0.1:{port}",
            [{"name": "stable", "address": "127.0.0.1", "port": int(server.url.rsplit(":", 1)[1]), "weight": 100}],
            None,
            f"127.0.0.1:{free_port()}",
            check_interval_ms=500,
            rate_limit_per_second=rate_limit,
        )
    )
    process = subprocess.Popen([_haproxy_binary(), "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    assert wait_for(up, timeout=20), "the router did not come up"
    return process, url


@pytest.mark.parametrize("rate_limit", [0, 20])
def test_router_rate_limit(tmp_path: Path, open_server: ServerProcess, rate_limit: int, reliability) -> None:
    """A burst of 150 requests from one client: with a limit of 20/s most get a JSON 429, and the
    client is served again a second later; without a limit (the default) every one is served."""
    process, url = start_router(tmp_path, open_server, rate_limit)
    try:
        statuses: Counter[int] = Counter()
        with httpx.Client(base_url=url, timeout=10) as http:
            for _ in range(150):
                response = http.get("/health")
                statuses[response.status_code] += 1
                if response.status_code == 429:
                    assert "rate limit exceeded" in response.json()["error"]
                    assert response.headers["retry-after"] == "1"
            # HAProxy's rate is a sliding estimate over the last second: a client that calms down
            # (here 2 requests a second) is served again within a couple of seconds.
            started = time.monotonic()
            served_again = wait_for(lambda: http.get("/health").status_code == 200, timeout=5, interval=0.5)
            after = round(time.monotonic() - started, 1)
    finally:
        process.terminate()
        process.wait(timeout=10)
    reliability.record(
        "security",
        f"router rate limit {rate_limit or 'off'} per s, burst of 150",
        "429 (JSON) above the limit, served again once the client slows down" if rate_limit else "all served",
        ok=statuses[200],
        rejected=statuses[429],
        served_again_after_s=after,
    )
    assert served_again
    if rate_limit:
        assert 0 < statuses[200] <= 3 * rate_limit and statuses[429] >= 150 - 3 * rate_limit, statuses
        assert set(statuses) == {200, 429}, statuses
    else:
        assert statuses == {200: 150}, statuses


# --------------------------------------------------------------------------------------------
# a full disk under the prediction log
# --------------------------------------------------------------------------------------------
@pytest.fixture
def full_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, filled up (root only: CI runs as root)."""
    mount = tmp_path / "small-fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True)
    assert done.returncode == 0, f"cannot mount a tmpfs (this case needs root): {done.stderr}"
    try:
        (mount / "predictions").mkdir()
        with open(mount / "filler", "wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def dropped_rows(metrics_text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith('mlops_serving_prediction_log_dropped_rows_total{reason="write_error"}')
    )


def written_rows(metrics_text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith("mlops_serving_prediction_log_written_rows_total ")
    )


def test_full_disk_for_the_prediction_log(tmp_path: Path, model_dir: Path, full_filesystem: Path, reliability) -> None:
    server = start_server(tmp_path, model_dir, full_filesystem / "predictions", {"MLOPS_PREDICTION_LOG_FLUSH_SECONDS": "0.1"})
    try:
        statuses: Counter[int] = Counter()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for seed in range(40):
                statuses[http.post("/predict", json={"records": make_records(20, seed=seed)}).status_code] += 1
            assert wait_for(lambda: dropped_rows(http.get("/metrics").text) > 0, timeout=10)
            dropped = dropped_rows(http.get("/metrics").text)
            written = written_rows(http.get("/metrics").text)
            # Space comes back: the log resumes without a restart.
            (full_filesystem / "filler").unlink()
            for seed in range(5):
                statuses[http.post("/predict", json={"records": make_records(20, seed=seed)}).status_code] += 1
            assert wait_for(lambda: written_rows(http.get("/metrics").text) >= written + 100, timeout=10)
            dropped = dropped_rows(http.get("/metrics").text)  # final: nothing is dropped once space is back
    finally:
        server.stop()
    output = server.output()
    # What the failed writes left behind: nothing the reader trips over, and no row both logged and dropped.
    report = ReadReport()
    logged = list(iter_log_rows(log_files(full_filesystem / "predictions"), LogLayout(ID_COLUMN, TIME_COLUMN, (), ()), report))
    reliability.record(
        "faults",
        "disk full under the prediction log",
        "every request served; dropped-rows metric and a warning; logging resumes when space returns; "
        "the log holds whole requests only",
        served=statuses[200],
        dropped_rows=dropped,
        logged_rows=len(logged),
        unreadable_lines=report.bad_lines + len(report.incomplete_tails),
    )
    assert statuses == {200: 45}, statuses
    assert dropped >= 20
    assert "cannot write prediction log" in output and "No space left on device" in output, output[-2000:]
    assert report.bad_lines == 0 and report.incomplete_tails == [], report
    assert len(logged) + dropped == 45 * 20  # every row is either in the log, whole, or counted as dropped
