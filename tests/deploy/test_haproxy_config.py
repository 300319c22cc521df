"""The router's HAProxy config and runtime client, against a real HAProxy on 127.0.0.1.

Two tiny HTTP servers stand in for the stable and canary model containers; HAProxy is Debian's
(installed by serving/haproxy/ensure-haproxy.sh). No Docker needed.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlops_pipeline.deploy.backends import Server
from mlops_pipeline.deploy.haproxy import ENTITY_HEADER, HAProxyRuntime, HAProxyRuntimeError, render_config

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKEND = "models"


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    subprocess.run(
        [str(REPO_ROOT / "serving/haproxy/ensure-haproxy.sh")], check=True, capture_output=True, timeout=600
    )
    path = shutil.which("haproxy")
    assert path, "ensure-haproxy.sh did not put haproxy on PATH"
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# stand-in model servers
# ---------------------------------------------------------------------------------------------
class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # health checks close their connections with a reset: not worth a traceback


@dataclass
class FakeModelServer:
    """Answers /ready and /predict with its own name; ``status`` makes /predict fail on demand."""

    name: str
    status: int = 200
    hits: int = 0
    body_sizes: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def start(self) -> FakeModelServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: dict) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                self._reply(200, {"ready": True, "server": owner.name})

            def do_POST(self) -> None:  # noqa: N802
                size = len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with owner.lock:
                    owner.hits += 1
                    owner.body_sizes.add(size)
                self._reply(owner.status, {"server": owner.name, "predictions": [0.5]})

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@dataclass
class Router:
    frontend_port: int
    metrics_port: int
    runtime: HAProxyRuntime
    socket_path: Path
    backends: dict[str, FakeModelServer]

    def predict(self, entity: str | None = None, body: bytes = b'{"records": [{"x": 1}]}') -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.frontend_port, timeout=10)
        headers = {"Content-Type": "application/json", **({ENTITY_HEADER: entity} if entity else {})}
        try:
            conn.request("POST", "/predict", body=body, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())["server"]
        finally:
            conn.close()

    def split(self, requests: int) -> Counter:
        answers = [self.predict() for _ in range(requests)]
        assert all(status == 200 for status, _ in answers), answers
        return Counter(server for _, server in answers)


@pytest.fixture
def router(haproxy_bin: str, tmp_path: Path) -> Iterator[Router]:
    backends = {name: FakeModelServer(name).start() for name in ("stable", "canary")}
    frontend_port, metrics_port, runtime_port = free_port(), free_port(), free_port()
    socket_path = tmp_path / "admin.sock"
    config = render_config(
        f"127.0.0.1:{frontend_port}",
        [
            {"name": "stable", "address": "127.0.0.1", "port": backends["stable"].port, "weight": 100},
            {"name": "canary", "address": "127.0.0.1", "port": backends["canary"].port, "weight": 0},
        ],
        runtime_api_bind=f"127.0.0.1:{runtime_port}",
        metrics_bind=f"127.0.0.1:{metrics_port}",
        socket_path=str(socket_path),
        check_interval_ms=200,
    )
    config_path = tmp_path / "haproxy.cfg"
    config_path.write_text(config)
    log = (tmp_path / "haproxy.log").open("w")
    process = subprocess.Popen(
        [haproxy_bin, "-db", "-f", str(config_path)], stdout=log, stderr=subprocess.STDOUT
    )
    runtime = HAProxyRuntime(f"127.0.0.1:{runtime_port}")
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                runtime.wait_until(BACKEND, ["stable", "canary"], timeout=10)
                break
            except HAProxyRuntimeError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "haproxy.log").read_text()) from None
        yield Router(frontend_port, metrics_port, runtime, socket_path, backends)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        for backend in backends.values():
            backend.stop()


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------
def docker_shaped_config(**kwargs: object) -> str:
    return render_config(
        "0.0.0.0:8000",
        [
            {"name": "stable", "address": "mlops-serving-stable", "port": 8080, "weight": 100},
            {"name": "canary", "address": "172.30.0.9", "port": 8080, "weight": 0, "enabled": False},
        ],
        runtime_api_bind="0.0.0.0:9999",
        metrics_bind="0.0.0.0:8404",
        socket_path="/run/haproxy/admin.sock",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("dns_resolvers", [False, True])
def test_rendered_config_passes_haproxy_check(haproxy_bin: str, tmp_path: Path, dns_resolvers: bool) -> None:
    config_path = tmp_path / "haproxy.cfg"
    config_path.write_text(docker_shaped_config(dns_resolvers=dns_resolvers))

    check = subprocess.run(
        [haproxy_bin, "-c", "-f", str(config_path)], capture_output=True, text=True, timeout=30
    )

    assert check.returncode == 0, check.stdout + check.stderr
    # Names of containers that do not exist yet are tolerated; nothing else may warn.
    warnings = [
        line for line in check.stderr.splitlines() if "WARNING" in line and "could not resolve" not in line
    ]
    assert warnings == []


def test_rendered_config_holds_the_routing_contract() -> None:
    config = docker_shaped_config()

    for line in (
        "bind 0.0.0.0:8000",
        "balance hdr(X-Entity-Id)",
        "hash-type consistent",
        "option httpchk GET /ready",
        "http-check expect status 200",
        "option redispatch 1",
        "retries 3",
        "stats socket ipv4@0.0.0.0:9999 level admin",
        "stats socket /run/haproxy/admin.sock mode 600 level admin",
        "bind 0.0.0.0:8404",
        "http-request use-service prometheus-exporter if { path /metrics }",
        "server stable mlops-serving-stable:8080 weight 100",
        "server canary 172.30.0.9:8080 weight 0 disabled",
    ):
        assert line in config, line


@pytest.mark.parametrize(
    "servers, message",
    [
        ([], "at least one server"),
        ([{"name": "stable", "address": "a", "port": 8080, "weight": 257}], "within 0..256"),
        ([{"name": "bad name", "address": "a", "port": 8080, "weight": 1}], "invalid server name"),
        ([{"name": "stable", "address": "a", "port": 0, "weight": 1}], "within 1..65535"),
        ([{"name": "stable", "address": "a", "port": 8080}], "lacks ['weight']"),
        ([{"name": "s", "address": "a", "port": 1, "weight": 1}] * 2, "unique"),
        ([{"name": "s", "address": "a b", "port": 1, "weight": 1}], "invalid address"),
    ],
)
def test_render_config_rejects_bad_servers(servers: list[dict], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        render_config("127.0.0.1:8000", servers, None, "127.0.0.1:8404")


def test_router_threads_default_to_one_and_are_bounded(haproxy_bin: str, tmp_path: Path) -> None:
    servers = [{"name": "stable", "address": "127.0.0.1", "port": 8080, "weight": 100}]
    assert "    nbthread 1\n" in render_config("127.0.0.1:8000", servers, None, "127.0.0.1:8404")
    four = docker_shaped_config(threads=4)
    assert "    nbthread 4\n" in four
    config_path = tmp_path / "haproxy.cfg"
    config_path.write_text(four)
    check = subprocess.run([haproxy_bin, "-c", "-f", str(config_path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    for bad in (0, 65, "two"):
        with pytest.raises(ValueError, match="threads must be"):
            render_config("127.0.0.1:8000", servers, None, "127.0.0.1:8404", threads=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# runtime API against a live HAProxy
# ---------------------------------------------------------------------------------------------
# Consistent hashing spreads requests without an entity header along its ring of server points
# (each server's count in proportion to its weight): the shares follow the weights over a few hundred
# requests, not request by request as plain round robin would. 10 points either way is several times
# the deviation HAProxy 2.6 showed over 400 requests at 50/50, 75/25 and 95/5 (at most 2 points in five runs of each).
SHARE_TOLERANCE = 0.10


def assert_share(split: Counter, canary_percent: int) -> None:
    share = split["canary"] / sum(split.values())
    assert abs(share - canary_percent / 100) <= SHARE_TOLERANCE, (split, canary_percent)


def test_weights_change_the_traffic_split_at_runtime(router: Router) -> None:
    assert router.split(20) == {"stable": 20}

    router.runtime.set_weights(BACKEND, {"stable": 50, "canary": 50})
    assert router.runtime.get_weight(BACKEND, "canary") == 50
    assert_share(router.split(400), 50)

    router.runtime.set_weights(BACKEND, {"stable": 75, "canary": 25})
    assert_share(router.split(400), 25)

    router.runtime.set_weights(BACKEND, {"stable": 95, "canary": 5})
    assert_share(router.split(400), 5)

    router.runtime.set_weight(BACKEND, "stable", 0)
    router.runtime.set_weight(BACKEND, "canary", 100)
    assert router.split(10) == {"canary": 10}


def test_an_entity_always_reaches_the_same_server_and_a_weight_change_moves_few(router: Router) -> None:
    router.runtime.set_weights(BACKEND, {"stable": 50, "canary": 50})
    first = {entity: router.predict(f"customer-{entity}")[1] for entity in range(200)}
    again = {entity: router.predict(f"customer-{entity}")[1] for entity in range(200)}

    assert again == first  # sticky: one entity, one variant
    assert_share(Counter(first.values()), 50)
    router.runtime.set_weights(BACKEND, {"stable": 75, "canary": 25})
    after = {entity: router.predict(f"customer-{entity}")[1] for entity in range(200)}
    assert_share(Counter(after.values()), 25)
    moved = [entity for entity in first if after[entity] != first[entity]]
    assert all(first[entity] == "canary" for entity in moved)  # only entities leaving the shrunk server move


def test_unix_socket_and_tcp_runtime_api_agree(router: Router) -> None:
    over_unix = HAProxyRuntime(str(router.socket_path))

    over_unix.set_weight(BACKEND, "canary", 7)

    assert router.runtime.get_weight(BACKEND, "canary") == 7
    assert over_unix.server_state(BACKEND) == router.runtime.server_state(BACKEND)


def test_server_state_reports_address_weight_and_health(router: Router) -> None:
    state = router.runtime.server_state(BACKEND)

    assert set(state) == {"stable", "canary"}
    assert state["stable"]["address"] == "127.0.0.1"
    assert state["stable"]["port"] == router.backends["stable"].port
    assert state["stable"]["weight"] == 100
    assert state["canary"]["weight"] == 0
    assert state["stable"]["up"] and state["canary"]["up"]
    assert state["stable"]["admin"] == "ready"


def test_stats_count_requests_and_errors_per_server(router: Router) -> None:
    router.runtime.set_weights(BACKEND, {"stable": 50, "canary": 50})
    router.backends["canary"].status = 500
    before = router.runtime.stats(BACKEND)

    answers = Counter(router.predict()[0] for _ in range(20))

    after = router.runtime.stats(BACKEND)
    assert set(answers) == {200, 500} and sum(answers.values()) == 20
    assert after["stable"]["req_tot"] - before["stable"]["req_tot"] == answers[200]  # type: ignore[operator]
    assert after["canary"]["req_tot"] - before["canary"]["req_tot"] == answers[500]  # type: ignore[operator]
    assert after["canary"]["hrsp_5xx"] - before["canary"]["hrsp_5xx"] == answers[500]  # type: ignore[operator]
    assert after["stable"]["hrsp_5xx"] == before["stable"]["hrsp_5xx"]
    assert isinstance(after["canary"]["rtime"], int) and isinstance(after["canary"]["qtime"], int)
    assert "BACKEND" in after


def test_maintenance_takes_a_server_out_and_back(router: Router) -> None:
    router.runtime.set_weights(BACKEND, {"stable": 50, "canary": 50})

    router.runtime.disable_server(BACKEND, "canary")
    assert router.runtime.server_state(BACKEND)["canary"]["admin"] == "maint"
    assert router.split(10) == {"stable": 10}

    router.runtime.enable_server(BACKEND, "canary")
    router.runtime.wait_until(BACKEND, ["canary"], timeout=10)
    assert set(router.split(20)) == {"stable", "canary"}


def test_a_slot_is_repointed_to_another_server(router: Router) -> None:
    replacement = FakeModelServer("replacement").start()
    try:
        router.runtime.set_weights(BACKEND, {"stable": 0, "canary": 100})

        router.runtime.set_server_address(BACKEND, "canary", "127.0.0.1", replacement.port)

        assert router.runtime.server_state(BACKEND)["canary"]["port"] == replacement.port
        assert router.split(5) == {"replacement": 5}
        with pytest.raises(ValueError, match="IP address"):
            router.runtime.set_server_address(BACKEND, "canary", "not-an-ip", replacement.port)
    finally:
        replacement.stop()


def wait_marked_down(router: Router, server: str, timeout: float = 10.0) -> None:
    """Until HAProxy's health checks have marked ``server`` down."""
    deadline = time.monotonic() + timeout
    while router.runtime.server_state(BACKEND)[server]["up"]:
        assert time.monotonic() < deadline, f"the dead {server} was never marked down"
        time.sleep(0.1)


def test_a_dead_server_fails_no_client_request(router: Router) -> None:
    router.runtime.set_weights(BACKEND, {"stable": 50, "canary": 50})

    router.backends["canary"].stop()

    # Retries and redispatch move every request the dead canary would have had to stable,
    # before and after the health checks mark it down.
    assert router.split(20) == {"stable": 20}
    wait_marked_down(router, "canary")
    assert router.runtime.stats(BACKEND)["canary"]["status"] == "DOWN"
    assert router.split(10) == {"stable": 10}


def test_a_large_request_answered_503_is_retried_whole_on_another_server(router: Router) -> None:
    """A 100-row request is about 30 KB. An L7 retry (here of a 503) resends the buffered request,
    so the whole body must fit in HAProxy's buffer (``tune.bufsize``); with HAProxy's default of
    16 KB such a request would reach the client as the 503."""
    router.runtime.set_weights(BACKEND, {"stable": 50, "canary": 50})
    router.backends["canary"].status = 503
    body = json.dumps({"records": [{"x": i, "plan": "premium" * 4} for i in range(1200)]}).encode()
    assert 40_000 < len(body) < 64_000
    answers = [router.predict(body=body) for _ in range(12)]
    assert answers == [(200, "stable")] * 12
    assert router.backends["canary"].hits > 0  # it was tried, and its 503 retried
    assert router.backends["stable"].body_sizes == {len(body)}


def test_after_blue_green_s_switch_a_dead_green_fails_no_client_request(router: Router) -> None:
    """Blue keeps weight 1 against green's 256: HAProxy never picks a weight-0 server, not even when
    every other one is down, so a blue at 0 % would leave a request green failed nowhere to go. At 1,
    the retry (redispatch avoids the server that failed) finds blue, before and after the health
    checks mark green down."""
    from mlops_pipeline.deploy.backends import RouterEndpoint
    from mlops_pipeline.deploy.router import Router as DeployRouter

    endpoint = RouterEndpoint(router.runtime.address, f"http://127.0.0.1:{router.frontend_port}", "")
    deploy_router = DeployRouter(_ConfigWriter(), endpoint)  # type: ignore[arg-type]
    deploy_router.switch()
    assert deploy_router.weights() == {"stable": 1, "canary": 256}
    assert router.split(257)["canary"] >= 250  # all but a trace to green

    router.backends["canary"].stop()

    assert router.split(20) == {"stable": 20}
    wait_marked_down(router, "canary")
    assert router.split(10) == {"stable": 10}
    # The contrast: at weight 0 blue takes nothing, green or no green.
    router.runtime.set_weights(BACKEND, {"stable": 0, "canary": 256})
    conn = http.client.HTTPConnection("127.0.0.1", router.frontend_port, timeout=10)
    try:
        conn.request("POST", "/predict", body=b'{"records": [{"x": 1}]}', headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 503  # HAProxy's "no server available"
    finally:
        conn.close()


def test_a_server_leaving_maintenance_waits_for_its_checks(router: Router) -> None:
    nothing = free_port()  # no server listens here
    router.runtime.disable_server(BACKEND, "canary")
    router.runtime.set_server_address(BACKEND, "canary", "127.0.0.1", nothing)

    # HAProxy's own way (enable_server) puts a server out of maintenance as up before any check of
    # it: only until its first checks fail, so a loaded machine could not observe it reliably here.
    router.runtime.ready_after_checks(BACKEND, "canary")
    state = router.runtime.server_state(BACKEND)["canary"]
    assert state["admin"] == "ready" and not state["up"], state
    time.sleep(1.0)  # five check intervals: every check fails, so it stays down
    assert not router.runtime.server_state(BACKEND)["canary"]["up"]

    router.runtime.disable_server(BACKEND, "canary")
    router.runtime.set_server_address(BACKEND, "canary", "127.0.0.1", router.backends["canary"].port)
    router.runtime.ready_after_checks(BACKEND, "canary")
    final = router.runtime.wait_until(BACKEND, ["canary"], timeout=10, healthy=True)
    assert final["canary"]["status"] == "UP"


def _server(name: str, port: int, running: bool = True) -> Server:
    return Server(
        id=name, name=name, role=name, model_name="m", version="1", run_id="r", sha256="s", model_ref="ref",
        url=f"http://127.0.0.1:{port}", address="127.0.0.1", port=port, running=running, started_at=0.0,
    )


@dataclass
class _ConfigWriter:
    """The one Backend method the deploy Router calls here: persisting the slots."""

    written: list[dict[str, object]] = field(default_factory=list)

    def write_router_config(self, slots: dict[str, object]) -> None:
        self.written.append(dict(slots))


def test_deploy_router_drops_a_dead_stable_and_repoints_it_only_once_checked(router: Router) -> None:
    """The stable server dies mid-canary: its slot is taken out at once (no request waits for the
    health checks to notice), and its replacement takes traffic only after HAProxy checked it."""
    from mlops_pipeline.deploy.backends import RouterEndpoint
    from mlops_pipeline.deploy.router import Router as DeployRouter

    writer = _ConfigWriter()
    endpoint = RouterEndpoint(router.runtime.address, f"http://127.0.0.1:{router.frontend_port}", "")
    deploy_router = DeployRouter(writer, endpoint)  # type: ignore[arg-type]
    canary = _server("canary", router.backends["canary"].port)
    deploy_router.split(25)
    dead_port = router.backends["stable"].port
    router.backends["stable"].stop()

    assert deploy_router.drop_orphans([canary]) == ["stable"]
    assert deploy_router.slots()["stable"]["admin"] == "maint"
    assert writer.written[-1]["stable"] == {"address": "127.0.0.1", "port": dead_port, "weight": 0, "enabled": False}
    started = time.monotonic()
    assert router.split(20) == {"canary": 20}
    assert time.monotonic() - started < 3.0  # none waited out the 3 s connect timeout on the dead server

    replacement = FakeModelServer("replacement").start()
    try:
        deploy_router.point("stable", _server("replacement", replacement.port))
        assert deploy_router.slots()["stable"]["status"] == "UP"
        assert deploy_router.weights() == {"stable": 0, "canary": 25}  # re-pointed: no traffic until split
        deploy_router.split(0)
        assert router.split(10) == {"replacement": 10}
        assert deploy_router.drop_orphans([_server("replacement", replacement.port), canary]) == []
    finally:
        replacement.stop()


def test_dynamic_servers_are_added_and_deleted(router: Router) -> None:
    extra = FakeModelServer("extra").start()
    try:
        router.runtime.set_weights(BACKEND, {"stable": 0, "canary": 0})

        router.runtime.add_server(BACKEND, "extra", "127.0.0.1", extra.port, weight=10, check_interval_ms=200)
        router.runtime.wait_until(BACKEND, ["extra"], timeout=10)
        assert router.split(5) == {"extra": 5}

        router.runtime.set_weight(BACKEND, "stable", 10)
        router.runtime.del_server(BACKEND, "extra")
        assert "extra" not in router.runtime.server_state(BACKEND)
        assert router.split(5) == {"stable": 5}
    finally:
        extra.stop()


def test_runtime_errors_name_the_command(router: Router) -> None:
    with pytest.raises(HAProxyRuntimeError, match="set server models/nope weight 5"):
        router.runtime.set_weight(BACKEND, "nope", 5)
    with pytest.raises(ValueError, match="within 0..256"):
        router.runtime.set_weight(BACKEND, "canary", 300)
    with pytest.raises(HAProxyRuntimeError, match="failed"):
        HAProxyRuntime(f"127.0.0.1:{free_port()}", timeout=1).stats()


def test_prometheus_metrics_are_served_per_server(router: Router) -> None:
    router.split(3)
    conn = http.client.HTTPConnection("127.0.0.1", router.metrics_port, timeout=10)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()

    assert response.status == 200
    assert 'haproxy_server_http_responses_total{proxy="models",server="stable",code="2xx"}' in body
    assert 'haproxy_server_weight{proxy="models",server="canary"}' in body
