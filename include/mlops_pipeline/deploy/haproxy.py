"""HAProxy as the model router: its configuration, and a client for its runtime API.

The router is stock HAProxy (Debian bookworm's 2.6, or the official image). One frontend sends the
prediction traffic to the backend ``models``, which holds fixed server slots (``stable`` and
``canary``); a canary rollout changes their weights over the runtime API, without a reload, and
compares the per-server counters of ``show stat`` (or the Prometheus exporter) on the same traffic.

What HAProxy 2.6 does at runtime, and this client uses:

- ``set server <b>/<s> weight <0..256>`` (``get weight`` reads it back);
- ``set server <b>/<s> state ready|drain|maint``;
- ``set server <b>/<s> addr <ip> port <port>`` to point a slot at another container;
- ``add server`` / ``del server`` (dynamic servers; no experimental mode needed in 2.6, a new server
  starts in maintenance and does not inherit ``default-server``, so its options are given in full).

Stdlib only: this module is imported by Airflow tasks.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
import socket
import time
from collections.abc import Iterable, Mapping
from typing import NamedTuple

DEFAULT_BACKEND = "models"
MAX_WEIGHT = 256
CONFIG_PATH_IN_IMAGE = "/usr/local/etc/haproxy/haproxy.cfg"

ENTITY_HEADER = "X-Entity-Id"  # the header the router hashes to give an entity always the same server
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")
_ADDRESS = re.compile(r"^[A-Za-z0-9_.:\[\]-]+$")

# srv_admin_state bits of `show servers state` (HAProxy's SRV_ADMF_* flags). Maintenance is
# SRV_ADMF_MAINT = FMAINT | IMAINT | RMAINT; CMAINT (0x04, "disabled" in the config) and HMAINT
# (0x40) stay set after `set server ... state ready` and do not keep a server out of rotation.
_ADMIN_MAINT_BITS = 0x01 | 0x02 | 0x20
_ADMIN_DRAIN_BITS = 0x08 | 0x10
_OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}


class HAProxyRuntimeError(RuntimeError):
    """The runtime API refused a command, or could not be reached."""


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
# HAProxy's buffer per direction of a request in flight (idle connections hold none). A retry
# (``retry-on``) resends the buffered request, so a request must fit whole: 64 KB holds a request of
# about 200 rows, where HAProxy's default of 16 KB held about 50, and a 100-row request (30 KB) answered
# 503 reached the client as the 503. Moving such a body in one piece also halves the router's CPU per
# 100-row request (tests/benchmarks/bench_serving.py: about 110 us against 250 us on 2 cores).
BUFFER_BYTES = 65536


def render_config(
    frontend_bind: str,
    servers: Iterable[Mapping[str, object]],
    runtime_api_bind: str | None,
    metrics_bind: str,
    socket_path: str | None = None,
    *,
    backend: str = DEFAULT_BACKEND,
    check_interval_ms: int = 2000,
    dns_resolvers: bool = False,
    rate_limit_per_second: int = 0,
    tls_certificate: str | None = None,
    threads: int = 1,
) -> str:
    """The text of an ``haproxy.cfg`` for the model router.

    ``frontend_bind``/``metrics_bind``: ``host:port`` (``0.0.0.0:8000`` in a container,
    ``127.0.0.1:8000`` for local processes). ``servers``: dicts with ``name``, ``address`` (IP or
    host name), ``port``, ``weight`` (0..256), and optionally ``enabled`` (default True: False starts
    the slot in maintenance, to be pointed somewhere with ``set_server_address`` later).
    ``runtime_api_bind``: ``host:port`` of the TCP runtime API (admin level: bind it where only the
    deployer reaches it), or None. ``socket_path``: a unix runtime socket in a writable directory.
    ``dns_resolvers``: re-resolve server host names at run time with the resolvers of
    /etc/resolv.conf (Docker's embedded DNS on a user-defined network).

    ``rate_limit_per_second``: requests per second one client address may send through the
    frontend (0: no limit); above it HAProxy answers 429 with a JSON error, before any server.

    ``tls_certificate``: the path, as HAProxy sees it, of a PEM file holding the router's certificate
    (chain) and private key. The client frontend then speaks HTTPS only (TLS 1.2 or newer); a plain
    HTTP request is refused at the handshake. The runtime API and the metrics frontend stay on the
    addresses only the deployer and Prometheus reach.

    ``threads``: HAProxy's ``nbthread``. One by default, not HAProxy's own default of one per CPU:
    the router shares its machine with the model servers it fronts, which need the CPU far more.
    Measured on 2 cores with the router in front of a 2-worker model server
    (``tests/benchmarks/bench_serving.py``), one thread cost HAProxy about 72 µs of CPU per 1-row
    request against 89 µs with two, and one thread still forwards well over ten times what such a
    server answers. Raise it for a router in front of many servers on a machine of its own.

    Buffers are :data:`BUFFER_BYTES` (HAProxy's default is 16 KB): see there.

    A server whose name does not resolve at start is not fatal (``init-addr last,libc,none``): it
    starts in maintenance, so the config is valid before the containers it names exist.
    """
    slots = [_checked_server(server) for server in servers]
    if not slots:
        raise ValueError("the router needs at least one server")
    names = [slot.name for slot in slots]
    if len(set(names)) != len(names):
        raise ValueError(f"server names must be unique, got {names}")
    if not _NAME.match(backend):
        raise ValueError(f"invalid backend name {backend!r}")
    if check_interval_ms <= 0:
        raise ValueError(f"check_interval_ms must be positive, got {check_interval_ms}")
    rate_limit = _int_in(rate_limit_per_second, 0, 1_000_000, "rate_limit_per_second")
    threads = _int_in(threads, 1, 64, "threads")
    if tls_certificate is not None and (not tls_certificate or any(c.isspace() for c in tls_certificate)):
        raise ValueError(f"tls_certificate must be a path without spaces, got {tls_certificate!r}")
    tls = f" ssl crt {tls_certificate} ssl-min-ver TLSv1.2 alpn http/1.1" if tls_certificate else ""

    lines = [
        "# Model router. Rendered by mlops_pipeline.deploy.haproxy.render_config: edit that, not this.",
        "global",
        "    log stdout format raw local0 info",
        "    maxconn 4096",
        f"    nbthread {threads}",
        f"    tune.bufsize {BUFFER_BYTES}",
    ]
    if socket_path:
        lines.append(f"    stats socket {socket_path} mode 600 level admin expose-fd listeners")
    if runtime_api_bind:
        lines.append(f"    stats socket {_socket_address(runtime_api_bind)} level admin")
    lines += [
        "    stats timeout 30s",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    # A request that cannot reach a server (refused, reset, dead canary) is retried on another",
        "    # server instead of failing the client.",
        "    retries 3",
        "    retry-on conn-failure empty-response junk-response 503",
        "    option redispatch 1",
        "    timeout connect 3s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 10s",
        "    timeout queue 10s",
        "    timeout check 3s",
        "",
    ]
    if dns_resolvers:
        lines += [
            "resolvers sysdns",
            "    parse-resolv-conf",
            "    resolve_retries 3",
            "    timeout resolve 1s",
            "    timeout retry 1s",
            "    hold valid 10s",
            "    hold obsolete 30s",
            "",
        ]
    lines += [
        "frontend router",
        f"    bind {_bind_address(frontend_bind)}{tls}",
        "    option httplog",
        "    option dontlognull",
        "    option forwardfor",
    ]
    if rate_limit:
        # Per client address, over a sliding second; a rejected request never reaches a server.
        lines += [
            "    stick-table type ipv6 size 100k expire 30s store http_req_rate(1s)",
            "    http-request track-sc0 src",
            "    http-request return status 429 content-type application/json string"
            f" '{{\"error\":\"rate limit exceeded ({rate_limit} requests per second per client)\"}}'"
            f" hdr retry-after 1 if {{ sc_http_req_rate(0) gt {rate_limit} }}",
        ]
    lines += [
        f"    default_backend {backend}",
        "",
        f"backend {backend}",
        # Sticky by entity: a request naming its entity (customer, account...) in ENTITY_HEADER goes to
        # the server its hash falls on, so one entity always sees one variant (A/B tests; a canary's
        # share is then a share of the entities). Without the header, requests are spread by the
        # weights one by one. Consistent hashing keeps runtime weight changes working and moves only
        # the entities a weight change must move.
        f"    balance hdr({ENTITY_HEADER})",
        "    hash-type consistent",
        "    # The request is buffered so that a retry can resend its body to another server.",
        "    option http-buffer-request",
        "    option httpchk GET /ready",
        "    http-check expect status 200",
        (
            f"    default-server check inter {check_interval_ms}ms fastinter {max(check_interval_ms // 4, 100)}ms"
            f" downinter {check_interval_ms}ms rise 2 fall 2 init-addr last,libc,none"
            + (" resolvers sysdns resolve-prefer ipv4" if dns_resolvers else "")
        ),
    ]
    for slot in slots:
        disabled = "" if slot.enabled else " disabled"
        lines.append(
            f"    server {slot.name} {_host_port(slot.address, slot.port)} weight {slot.weight}{disabled}"
        )
    lines += [
        "",
        "frontend metrics",
        f"    bind {_bind_address(metrics_bind)}",
        "    no log",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 10s",
        "",
    ]
    return "\n".join(lines)


class _Server(NamedTuple):
    name: str
    address: str
    port: int
    weight: int
    enabled: bool


def _checked_server(server: Mapping[str, object]) -> _Server:
    missing = {"name", "address", "port", "weight"} - set(server)
    if missing:
        raise ValueError(f"server {dict(server)!r} lacks {sorted(missing)}")
    name, address = str(server["name"]), str(server["address"])
    if not _NAME.match(name):
        raise ValueError(f"invalid server name {name!r}")
    if not _ADDRESS.match(address):
        raise ValueError(f"invalid address {address!r} for server {name!r}")
    port = _int_in(server["port"], 1, 65535, f"port of server {name!r}")
    weight = _int_in(server["weight"], 0, MAX_WEIGHT, f"weight of server {name!r}")
    return _Server(name, address, port, weight, bool(server.get("enabled", True)))


def _int_in(value: object, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"{what} must be within {low}..{high}, got {number}")
    return number


def _host_port(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]')}]:{port}"
    except ValueError:
        pass  # a host name
    return f"{host}:{port}"


def _split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


def _bind_address(address: str) -> str:
    host, port = _split_host_port(address)
    return _host_port(host, port) if host else f":{port}"


def _socket_address(address: str) -> str:
    """``host:port`` as a ``stats socket`` address (``ipv4@``/``ipv6@`` prefixed)."""
    if "@" in address:
        return address
    host, port = _split_host_port(address)
    family = "ipv4"
    try:
        if ipaddress.ip_address(host or "0.0.0.0").version == 6:
            family = "ipv6"
    except ValueError:
        pass  # a host name: resolved by HAProxy
    return f"{family}@{_host_port(host or '0.0.0.0', port)}"


# ---------------------------------------------------------------------------------------------
# runtime API
# ---------------------------------------------------------------------------------------------
class HAProxyRuntime:
    """A client of HAProxy's runtime API (``stats socket ... level admin``).

    ``address`` is ``host:port`` for a TCP socket, or a path (``/run/haproxy/admin.sock``, also
    ``unix:/path``) for a unix socket. Each command opens its own connection.
    """

    def __init__(self, address: str, timeout: float = 5.0) -> None:
        self.address = address
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"HAProxyRuntime({self.address!r})"

    # -- transport -------------------------------------------------------------------------
    def command(self, command: str) -> str:
        """Send one command line (several may be joined with ``;``) and return the raw answer."""
        if "\n" in command:
            raise ValueError("one command line at a time")
        try:
            with self._connect() as conn:
                conn.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise HAProxyRuntimeError(
                f"HAProxy runtime API at {self.address} failed on {command!r}: {exc}"
            ) from exc
        return b"".join(chunks).decode(errors="replace")

    def _connect(self) -> socket.socket:
        path = self.address.removeprefix("unix:")
        if path.startswith("/") or path.startswith("."):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(self.timeout)
            try:
                conn.connect(path)
            except OSError:
                conn.close()
                raise
            return conn
        host, port = _split_host_port(self.address.split("@", 1)[-1])
        return socket.create_connection((host, port), timeout=self.timeout)

    def _expect_silent(self, command: str) -> None:
        answer = self.command(command).strip()
        if answer:
            raise HAProxyRuntimeError(f"HAProxy refused {command!r}: {answer}")

    # -- weights and states ----------------------------------------------------------------
    def set_weight(self, backend: str, server: str, weight: int) -> None:
        weight = _int_in(weight, 0, MAX_WEIGHT, f"weight of {backend}/{server}")
        self._expect_silent(f"set server {_slot(backend, server)} weight {weight}")

    def set_weights(self, backend: str, weights: Mapping[str, int]) -> None:
        """Several weights in one round trip, so a traffic step is applied all at once."""
        commands = [
            f"set server {_slot(backend, server)} weight {_int_in(weight, 0, MAX_WEIGHT, f'weight of {backend}/{server}')}"
            for server, weight in weights.items()
        ]
        if commands:
            self._expect_silent("; ".join(commands))

    def get_weight(self, backend: str, server: str) -> int:
        answer = self.command(f"get weight {_slot(backend, server)}").strip()
        match = re.match(r"^(\d+)\b", answer)
        if not match:
            raise HAProxyRuntimeError(f"HAProxy has no weight for {backend}/{server}: {answer}")
        return int(match.group(1))

    def set_state(self, backend: str, server: str, state: str) -> None:
        """``ready`` (take traffic), ``drain`` (finish sessions, take no new ones) or ``maint``."""
        if state not in {"ready", "drain", "maint"}:
            raise ValueError(f"state must be ready, drain or maint, got {state!r}")
        self._expect_silent(f"set server {_slot(backend, server)} state {state}")

    def ready_after_checks(self, backend: str, server: str) -> None:
        """Take ``server`` out of maintenance as DOWN, so only its health checks bring it up.

        Leaving maintenance, HAProxy counts a server as up before checking it (its health starts at
        ``rise``): a slot just re-pointed at another address would take traffic on the strength of
        the previous server's checks. Both commands go in one round trip.
        """
        slot = _slot(backend, server)
        self._expect_silent(f"set server {slot} state ready; set server {slot} health down")

    def disable_server(self, backend: str, server: str) -> None:
        self.set_state(backend, server, "maint")

    def enable_server(self, backend: str, server: str) -> None:
        self.set_state(backend, server, "ready")

    def set_server_address(self, backend: str, server: str, ip: str, port: int) -> None:
        """Point a slot at another server (an IP address: HAProxy does not resolve names here)."""
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise ValueError(f"set_server_address needs an IP address, got {ip!r}") from None
        port = _int_in(port, 1, 65535, f"port of {backend}/{server}")
        command = f"set server {_slot(backend, server)} addr {ip} port {port}"
        answer = self.command(command).strip()
        if "changed" not in answer and "no need to change" not in answer:
            raise HAProxyRuntimeError(f"HAProxy refused {command!r}: {answer}")

    # -- dynamic servers -------------------------------------------------------------------
    def add_server(
        self,
        backend: str,
        server: str,
        address: str,
        port: int,
        weight: int,
        *,
        check: bool = True,
        check_interval_ms: int = 2000,
    ) -> None:
        """Add a server at run time, health-checked and ready.

        A dynamic server does not inherit the backend's ``default-server`` line, so its check
        settings are repeated here; the backend's ``option httpchk`` still applies.
        """
        weight = _int_in(weight, 0, MAX_WEIGHT, f"weight of {backend}/{server}")
        port = _int_in(port, 1, 65535, f"port of {backend}/{server}")
        if not _ADDRESS.match(address):
            raise ValueError(f"invalid address {address!r}")
        options = f"weight {weight}"
        if check:
            options += f" check inter {check_interval_ms}ms rise 2 fall 2"
        command = f"add server {_slot(backend, server)} {_host_port(address, port)} {options}"
        answer = self.command(command).strip()
        if "New server registered" not in answer:
            raise HAProxyRuntimeError(f"HAProxy refused {command!r}: {answer}")
        if check:
            self._expect_silent(f"enable health {_slot(backend, server)}")
        self.set_state(backend, server, "ready")

    def del_server(self, backend: str, server: str, timeout: float = 10.0) -> None:
        """Remove a dynamic server: maintenance first, then delete once its connections are gone."""
        self.set_state(backend, server, "maint")
        deadline = time.monotonic() + timeout
        while True:
            answer = self.command(f"del server {_slot(backend, server)}").strip()
            if "Server deleted" in answer:
                return
            if time.monotonic() > deadline:
                raise HAProxyRuntimeError(f"HAProxy did not delete {backend}/{server}: {answer}")
            time.sleep(0.2)

    # -- reading state and counters --------------------------------------------------------
    def server_state(self, backend: str = DEFAULT_BACKEND) -> dict[str, dict[str, object]]:
        """Per server of ``backend``: address, port, weight, admin state, health status.

        ``admin`` is ``ready``/``drain``/``maint``; ``status`` is HAProxy's check view (``UP``,
        ``DOWN``, ``MAINT``, ``UP 1/2``, ...); ``up`` is True when the server takes traffic.
        """
        answer = self.command(f"show servers state {backend}")
        lines = [line for line in answer.splitlines() if line.strip()]
        header = next((line for line in lines if line.startswith("#")), None)
        if header is None:
            raise HAProxyRuntimeError(f"unexpected 'show servers state {backend}' answer: {answer.strip()}")
        columns = header.lstrip("# ").split()
        statuses = {name: row.get("status") for name, row in self.stats(backend).items()}
        states: dict[str, dict[str, object]] = {}
        for line in lines:
            if line.startswith("#") or line.strip() == "1":
                continue
            row = dict(zip(columns, line.split(), strict=False))
            if row.get("be_name") != backend:
                continue
            admin_flags = int(row["srv_admin_state"])
            admin = (
                "maint"
                if admin_flags & _ADMIN_MAINT_BITS
                else "drain"
                if admin_flags & _ADMIN_DRAIN_BITS
                else "ready"
            )
            status = statuses.get(row["srv_name"])
            states[row["srv_name"]] = {
                "address": row["srv_addr"],
                "port": int(row["srv_port"]),
                "weight": int(row["srv_uweight"]),
                "initial_weight": int(row["srv_iweight"]),
                "operational": _OP_STATES.get(int(row["srv_op_state"]), row["srv_op_state"]),
                "admin": admin,
                "status": status,
                "up": admin == "ready" and isinstance(status, str) and status.startswith(("UP", "no check")),
            }
        return states

    def stats(self, backend: str | None = DEFAULT_BACKEND) -> dict[str, dict[str, object]]:
        """``show stat`` rows of ``backend`` keyed by server name (``BACKEND`` is the aggregate).

        Counters are ints (``req_tot``, ``hrsp_2xx``, ``hrsp_5xx``, ``econ``, ``eresp``, ``wretr``,
        ``wredis``, ``stot``...); ``qtime``/``ctime``/``rtime``/``ttime`` are averages in ms over the
        last 1024 requests, ``*_max`` their maxima. Empty fields are None. With ``backend=None``
        the rows of every proxy are returned, keyed ``"<proxy>/<server>"``.
        """
        answer = self.command("show stat")
        if not answer.startswith("# "):
            raise HAProxyRuntimeError(f"unexpected 'show stat' answer: {answer.strip()[:200]}")
        reader = csv.DictReader(io.StringIO(answer[2:]))
        rows: dict[str, dict[str, object]] = {}
        for raw in reader:
            proxy, server = raw.get("pxname"), raw.get("svname")
            if not proxy or not server or (backend is not None and proxy != backend):
                continue
            row = {key: _stat_value(value) for key, value in raw.items() if key and key != "-"}
            rows[server if backend is not None else f"{proxy}/{server}"] = row
        return rows

    def info(self) -> dict[str, str]:
        """``show info`` as a dict (``Version``, ``Uptime_sec``, ``CurrConns``...)."""
        answer = self.command("show info")
        return {
            key.strip(): value.strip()
            for key, sep, value in (line.partition(":") for line in answer.splitlines())
            if sep
        }

    def wait_until(
        self, backend: str, servers_up: Iterable[str], timeout: float = 30.0, *, healthy: bool = False
    ) -> dict[str, dict[str, object]]:
        """Wait until every server in ``servers_up`` takes traffic; the final state.

        With ``healthy``, a server counts only once its checks all pass (``UP``, not ``UP 1/2``: a
        server whose last check failed is still up, but on its way down).
        """
        wanted = set(servers_up)
        deadline = time.monotonic() + timeout

        def ready(row: dict[str, object]) -> bool:
            return bool(row.get("up")) and (not healthy or row.get("status") in {"UP", "no check"})

        while True:
            try:
                state = self.server_state(backend)
            except HAProxyRuntimeError:
                state = {}
            if wanted and all(ready(state.get(name, {})) for name in wanted):
                return state
            if time.monotonic() > deadline:
                raise HAProxyRuntimeError(
                    f"servers {sorted(wanted)} of {backend} not up after {timeout}s: {state}"
                )
            time.sleep(0.2)


def _slot(backend: str, server: str) -> str:
    for name in (backend, server):
        if not _NAME.match(name):
            raise ValueError(f"invalid backend or server name {name!r}")
    return f"{backend}/{server}"


def _stat_value(value: str | None) -> object:
    if value is None or value == "":
        return None
    if value.isdigit() or (value.startswith("-") and value[1:].isdigit()):
        return int(value)
    return value
