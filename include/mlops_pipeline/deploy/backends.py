"""Where serving runs: one interface, two backends.

- ``docker``: one container per serving slot on the user-defined network ``<namespace>``
  (``mlops``), a router container (HAProxy) in front; everything labelled
  ``org.mlops.deployment=<namespace>`` and ``org.mlops.role=stable|canary|router``, model
  containers also with the model's name, version, run id and artifact sha256 (the image's labels).
- ``local``: the same serving app (``python -m mlops_serving``) and Debian's HAProxy as processes,
  their records (pid, role, labels, ports) as JSON files under ``<run dir>/deploy/<namespace>/``.

``auto`` picks ``docker`` when a Docker daemon answers, else ``local``. The deploy's state is
what the backend reports (:meth:`Backend.servers`) plus the registry's aliases: nothing else is
kept, so a deployment killed half-way is seen as it is by the next run.

A backend knows how to run things; what runs where (weights, hand-overs) is ``router.py`` and
``rollout.py``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_pipeline.deploy.haproxy import render_config

if TYPE_CHECKING:
    from mlops_pipeline.config import DeploySettings, Settings
    from mlops_pipeline.deploy.artifacts import VerifiedArtifact

log = logging.getLogger(__name__)

STABLE = "stable"
CANARY = "canary"
ROUTER = "router"
SERVING_ROLES = (STABLE, CANARY)
ROUTER_BACKEND = "models"

DEPLOYMENT_LABEL = "org.mlops.deployment"
ROLE_LABEL = "org.mlops.role"
MODEL_LABEL_PREFIX = "org.mlops.model."
MODEL_REF_LABEL = "org.mlops.model.ref"
STARTED_LABEL = "org.mlops.started_at"
SERVING_PORT = 8080

# A slot with nothing behind it: an address no request goes to, and the slot in maintenance.
PLACEHOLDER_ADDRESS = "127.0.0.1"
PLACEHOLDER_PORT = 9


class BackendError(RuntimeError):
    """A server or the router could not be started, reached or stopped; the message says which."""


@dataclass(frozen=True)
class Server:
    """A serving container or process, as its labels describe it."""

    id: str
    name: str
    role: str
    model_name: str
    version: str
    run_id: str
    sha256: str
    model_ref: str  # the image tag (docker) or model directory (local) it serves
    url: str  # base URL the deployer reaches it at (127.0.0.1)
    address: str  # IP the router reaches it at
    port: int
    running: bool
    started_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RouterEndpoint:
    runtime_address: str  # host:port of HAProxy's runtime API (admin: reachable from this host only)
    url: str  # the public endpoint
    metrics_url: str  # HAProxy's Prometheus exporter


def model_labels(artifact_labels: Mapping[str, str], model_ref: str) -> dict[str, str]:
    """``org.mlops.model.{name,version,run_id,sha256,ref}`` from ``VerifiedArtifact.labels()``."""
    labels = {f"{MODEL_LABEL_PREFIX}{key}": str(artifact_labels[key]) for key in ("name", "version", "run_id", "sha256")}
    labels[MODEL_REF_LABEL] = model_ref
    return labels


def slot_servers(slots: Mapping[str, Mapping[str, object] | None]) -> list[dict[str, object]]:
    """``render_config`` servers for the ``stable`` and ``canary`` slots (None: an empty slot)."""
    servers = []
    for name in SERVING_ROLES:
        slot = slots.get(name)
        if slot is None or not slot.get("address"):
            servers.append(
                {"name": name, "address": PLACEHOLDER_ADDRESS, "port": PLACEHOLDER_PORT, "weight": 0, "enabled": False}
            )
        else:
            servers.append(
                {
                    "name": name,
                    "address": slot["address"],
                    "port": slot["port"],
                    "weight": slot.get("weight", 0),
                    "enabled": slot.get("enabled", True),
                }
            )
    return servers


def render_router_config(
    slots: Mapping[str, Mapping[str, object] | None],
    *,
    frontend_bind: str,
    runtime_bind: str,
    metrics_bind: str,
    socket_path: str | None,
    check_interval_ms: int,
    rate_limit_per_second: int = 0,
    tls_certificate: str | None = None,
) -> str:
    return render_config(
        frontend_bind,
        slot_servers(slots),
        runtime_api_bind=runtime_bind,
        metrics_bind=metrics_bind,
        socket_path=socket_path,
        backend=ROUTER_BACKEND,
        check_interval_ms=check_interval_ms,
        rate_limit_per_second=rate_limit_per_second,
        tls_certificate=tls_certificate,
    )


def router_tls_certificate(settings: Any) -> Path | None:
    """The router's PEM (certificate chain + private key) from ``MLOPS_ROUTER_TLS_CERT``, checked before
    HAProxy is given it: HAProxy's own error names neither the setting nor what is wrong with the file."""
    path = settings.router_tls_cert
    if path is None:
        return None
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BackendError(f"MLOPS_ROUTER_TLS_CERT={path}: cannot read the router's certificate: {exc}") from exc
    found = {
        "CERTIFICATE": "-----BEGIN CERTIFICATE-----" in text,
        "PRIVATE KEY": re.search(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----", text) is not None,
    }
    missing = [block for block, present in found.items() if not present]
    if missing:
        raise BackendError(
            f"MLOPS_ROUTER_TLS_CERT={path}: HAProxy needs the certificate and its private key in one PEM file; "
            f"no {' and no '.join(missing)} block found"
        )
    return Path(path)


def router_scheme(settings: Any) -> str:
    return "https" if settings.router_tls_cert is not None else "http"


def client_host(bind: str) -> str:
    """Where a client on this machine reaches a listener bound to ``bind``."""
    return "127.0.0.1" if bind in ("", "0.0.0.0", "::", "*") else bind


def safe_name(text: str) -> str:
    """``text`` as a piece of a container, process or folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def http_ok(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def http_text(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode(errors="replace")


class Backend(ABC):
    """Runs serving servers and the router of one namespace."""

    kind: str = ""

    def __init__(self, settings: Settings, deploy: DeploySettings) -> None:
        self.settings = settings
        self.deploy = deploy
        self.namespace = deploy.namespace

    # -- models ----------------------------------------------------------------------------
    @abstractmethod
    def prepare_model(self, artifact: VerifiedArtifact) -> str:
        """Make a verified model servable (an image, a model directory); its reference."""

    @abstractmethod
    def has_model(self, model_ref: str, sha256: str) -> bool:
        """Is ``model_ref`` still there, holding the artifact with this digest?"""

    # -- serving servers -------------------------------------------------------------------
    @abstractmethod
    def servers(self) -> list[Server]:
        """Every serving server of the namespace, running or not, oldest first."""

    @abstractmethod
    def start_server(self, role: str, model_ref: str, artifact_labels: Mapping[str, str]) -> Server:
        """Start a server of ``model_ref`` labelled ``role``; returns at once (see :meth:`wait_ready`)."""

    @abstractmethod
    def stop_server(self, server: Server) -> None:
        """Stop gracefully (in-flight requests finish), then remove it."""

    @abstractmethod
    def server_logs(self, server: Server, lines: int = 40) -> str: ...

    @abstractmethod
    def is_running(self, server: Server) -> bool: ...

    def wait_ready(self, server: Server, timeout: float | None = None) -> Server:
        """Block until ``server`` answers ``/ready``; stop it and raise if it never does."""
        timeout = timeout if timeout is not None else self.deploy.ready_timeout_seconds
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http_ok(f"{server.url}/ready"):
                return server
            if not self.is_running(server):
                logs = self.server_logs(server)
                self.stop_server(server)
                raise BackendError(f"{server.name} ({server.model_name} v{server.version}) exited before ready:\n{logs}")
            time.sleep(0.3)
        logs = self.server_logs(server)
        self.stop_server(server)
        raise BackendError(f"{server.name} ({server.model_name} v{server.version}) not ready after {timeout:.0f}s:\n{logs}")

    # -- router ----------------------------------------------------------------------------
    @abstractmethod
    def router(self) -> RouterEndpoint | None:
        """The running router, or None."""

    @abstractmethod
    def ensure_router(self, slots: Mapping[str, Mapping[str, object] | None]) -> RouterEndpoint:
        """The router, started with ``slots`` if it is not running."""

    @abstractmethod
    def write_router_config(self, slots: Mapping[str, Mapping[str, object] | None]) -> None:
        """Persist the slots, so a restarted router comes back as it is now."""

    # -- everything ------------------------------------------------------------------------
    @abstractmethod
    def teardown(self) -> None:
        """Stop and remove every server, the router, and (docker) the network of the namespace."""

    def prediction_log_dir(self) -> Path:
        """Host folder the servers write prediction logs to (``ds=YYYY-MM-DD/`` below it): the
        project's ``MLOPS_PREDICTION_LOG_DIR``, where the monitor reads."""
        return self.settings.prediction_log_dir


def state_dir(namespace: str) -> Path:
    """``<run dir>/deploy/<namespace>``: router config, local process records, model copies."""
    from mlops_pipeline.config import get_settings

    return get_settings().run_dir / "deploy" / namespace


def docker_answers(timeout: float = 5.0) -> bool:
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no SDK, no socket, no daemon: all mean "no"
        return False


def get_backend(settings: Settings | None = None, deploy: DeploySettings | None = None) -> Backend:
    """The configured backend (``MLOPS_DEPLOY_BACKEND``: auto, docker or local)."""
    from mlops_pipeline.config import get_settings

    settings = settings or get_settings()
    deploy = deploy or get_settings().deploy
    kind = settings.deploy_backend
    if kind == "auto":
        kind = "docker" if docker_answers() else "local"
        log.info("deploy backend: %s (auto)", kind)
    if kind == "docker":
        from mlops_pipeline.deploy.docker_backend import DockerBackend

        return DockerBackend(settings, deploy)
    from mlops_pipeline.deploy.local_backend import LocalBackend

    return LocalBackend(settings, deploy)
