"""The ``docker`` backend: model containers and an HAProxy container on the network ``<namespace>``.

- Model containers run the image of one model version (``images.build_model_image``), as uid
  10001 with a read-only root filesystem, a small ``/tmp`` tmpfs, all capabilities dropped and no
  privilege escalation. Port 8080 is published on 127.0.0.1 (an ephemeral port) so the deployer can
  read ``/ready`` and ``/metrics``; the router reaches them by their IP on the network. Prediction
  logs go to a host folder bind-mounted at ``/var/log/mlops/predictions``.
- The router container (``<namespace>-router``) runs the router image, its config directory
  (``<run dir>/deploy/<namespace>/router/``) mounted read-only. The public endpoint is published on
  ``MLOPS_ROUTER_BIND:MLOPS_ROUTER_PORT``; the runtime API and HAProxy's Prometheus exporter on
  127.0.0.1 ephemeral ports.

Every container and the network carry ``org.mlops.deployment=<namespace>`` and
``org.mlops.role``; model containers also the model's labels, so the state of a deployment can be
read back from the engine alone.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_pipeline.deploy.artifacts import VerifiedArtifact
from mlops_pipeline.deploy.backends import (
    DEPLOYMENT_LABEL,
    MODEL_LABEL_PREFIX,
    MODEL_REF_LABEL,
    ROLE_LABEL,
    ROUTER,
    SERVING_PORT,
    SERVING_ROLES,
    STARTED_LABEL,
    Backend,
    BackendError,
    RouterEndpoint,
    Server,
    client_host,
    model_labels,
    render_router_config,
    router_scheme,
    router_tls_certificate,
    safe_name,
    state_dir,
    write_text_atomic,
)
from mlops_pipeline.deploy.haproxy import CONFIG_PATH_IN_IMAGE, HAProxyRuntime, HAProxyRuntimeError

log = logging.getLogger(__name__)

SERVING_UID = 10001
TLS_DIR_IN_ROUTER = "/usr/local/etc/haproxy-tls"
PREDICTION_LOG_MOUNT = "/var/log/mlops/predictions"
ROUTER_PORTS = {"frontend": "8000/tcp", "runtime": "9999/tcp", "metrics": "8404/tcp"}
HARDENING: dict[str, Any] = {
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "restart_policy": {"Name": "unless-stopped"},
    "pids_limit": 512,
}


class DockerBackend(Backend):
    kind = "docker"

    def __init__(self, settings: Any, deploy: Any) -> None:
        super().__init__(settings, deploy)
        import docker

        try:
            self.client = docker.from_env(timeout=300)
        except docker.errors.DockerException as exc:
            where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
            raise BackendError(
                f"the Docker daemon at {where} is unreachable ({exc}); start it, point DOCKER_HOST at it, "
                "or deploy with MLOPS_DEPLOY_BACKEND=local"
            ) from exc
        self.base = state_dir(self.namespace)
        self._repo_root: Path | None = None

    @property
    def repo_root(self) -> Path:
        if self._repo_root is None:
            from mlops_pipeline.deploy.images import repo_root_default

            self._repo_root = repo_root_default()
        return self._repo_root

    def _labels(self, role: str) -> dict[str, str]:
        return {DEPLOYMENT_LABEL: self.namespace, ROLE_LABEL: role, **self.deploy.extra_labels}

    def network(self) -> Any:
        """The namespace's user-defined bridge network (created when missing)."""
        found = self.client.networks.list(names=[self.namespace])
        exact = [network for network in found if network.name == self.namespace]
        if exact:
            return exact[0]
        import docker

        try:
            return self.client.networks.create(
                self.namespace, driver="bridge", labels={DEPLOYMENT_LABEL: self.namespace, **self.deploy.extra_labels}
            )
        except docker.errors.APIError:  # created concurrently
            return self.client.networks.get(self.namespace)

    # -- models ----------------------------------------------------------------------------
    def prepare_model(self, artifact: VerifiedArtifact) -> str:
        from mlops_pipeline.deploy.images import build_model_image, build_serving_base

        serving_base = build_serving_base(self.repo_root)
        return build_model_image(artifact.model_dir, artifact.labels(), serving_base, repo_root=self.repo_root)

    def has_model(self, model_ref: str, sha256: str) -> bool:
        import docker

        try:
            image = self.client.images.get(model_ref)
        except docker.errors.ImageNotFound:
            return False
        return (image.labels or {}).get(f"{MODEL_LABEL_PREFIX}sha256") == sha256

    # -- serving servers -------------------------------------------------------------------
    def _containers(self, role: str | None = None) -> list[Any]:
        wanted = [f"{DEPLOYMENT_LABEL}={self.namespace}", f"{ROLE_LABEL}={role}" if role else ROLE_LABEL]
        return self.client.containers.list(all=True, filters={"label": wanted})

    def _server(self, container: Any) -> Server:
        labels = container.labels or {}
        ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        published = ports.get(f"{SERVING_PORT}/tcp") or []
        host_port = next((int(p["HostPort"]) for p in published if p.get("HostPort")), 0)
        networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        address = (networks.get(self.namespace) or {}).get("IPAddress") or ""
        return Server(
            id=container.id,
            name=container.name,
            role=labels.get(ROLE_LABEL, ""),
            model_name=labels.get(f"{MODEL_LABEL_PREFIX}name", ""),
            version=labels.get(f"{MODEL_LABEL_PREFIX}version", ""),
            run_id=labels.get(f"{MODEL_LABEL_PREFIX}run_id", ""),
            sha256=labels.get(f"{MODEL_LABEL_PREFIX}sha256", ""),
            model_ref=labels.get(MODEL_REF_LABEL, ""),
            url=self._reach(address, SERVING_PORT, host_port),
            address=address,
            port=SERVING_PORT,
            running=container.status == "running" and bool(address) and bool(self._reach(address, SERVING_PORT, host_port)),
            started_at=float(labels.get(STARTED_LABEL) or 0.0),
        )

    def _reach(self, address: str, port: int, host_port: int | None) -> str:
        """The URL the deployer uses for a container port: the published one on 127.0.0.1, or (docker_reach
        = network) the container's address on the namespace network. "" when there is none yet."""
        if self.deploy.docker_reach == "network":
            return f"http://{address}:{port}" if address else ""
        return f"http://127.0.0.1:{host_port}" if host_port else ""

    def servers(self) -> list[Server]:
        found = [self._server(container) for container in self._containers()]
        return sorted((s for s in found if s.role in SERVING_ROLES), key=lambda s: (s.started_at, s.name))

    def _log_dir(self) -> Path:
        log_dir = self.prediction_log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(log_dir, SERVING_UID, SERVING_UID)
        else:  # the server's uid must be able to write: a user without root opens the folder
            log_dir.chmod(0o777)
        return log_dir

    def start_server(self, role: str, model_ref: str, artifact_labels: Mapping[str, str]) -> Server:
        if role not in SERVING_ROLES:
            raise ValueError(f"role must be one of {SERVING_ROLES}, got {role!r}")
        version = str(artifact_labels["version"])
        name = f"{self.namespace}-{role}-v{safe_name(version)}-{uuid.uuid4().hex[:6]}"
        network = self.network()
        labels = {
            **self._labels(role),
            **model_labels(artifact_labels, model_ref),
            STARTED_LABEL: f"{time.time():.6f}",
        }
        environment = {}
        if os.environ.get("MLOPS_SERVING_API_KEY"):
            environment["MLOPS_SERVING_API_KEY"] = os.environ["MLOPS_SERVING_API_KEY"]
        container = self.client.containers.run(
            model_ref,
            name=name,
            detach=True,
            network=network.name,
            user=f"{SERVING_UID}:{SERVING_UID}",
            labels=labels,
            environment=environment,
            volumes={str(self._log_dir()): {"bind": PREDICTION_LOG_MOUNT, "mode": "rw"}},
            ports={f"{SERVING_PORT}/tcp": ("127.0.0.1", None)},
            tmpfs={"/tmp": "rw,size=64m"},
            **HARDENING,
        )
        deadline = time.monotonic() + 30
        while True:
            container.reload()
            server = self._server(container)
            if server.running or container.status not in ("created", "running") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        log.info("started container %s (%s) serving %s", name, container.short_id, model_ref)
        return server

    def stop_server(self, server: Server) -> None:
        import docker

        try:
            container = self.client.containers.get(server.id)
        except docker.errors.NotFound:
            return
        try:
            if container.status == "running":
                container.stop(timeout=int(self.deploy.stop_timeout_seconds))
        finally:
            container.remove(force=True, v=True)
        log.info("stopped and removed container %s", server.name)

    def server_logs(self, server: Server, lines: int = 40) -> str:
        import docker

        try:
            return self.client.containers.get(server.id).logs(tail=lines).decode(errors="replace")
        except docker.errors.NotFound:
            return f"(container {server.name} is gone)"

    def is_running(self, server: Server) -> bool:
        import docker

        try:
            container = self.client.containers.get(server.id)
        except docker.errors.NotFound:
            return False
        return container.status in ("created", "running")

    # -- router ----------------------------------------------------------------------------
    @property
    def router_name(self) -> str:
        return f"{self.namespace}-router"

    @property
    def _router_config_dir(self) -> Path:
        return self.base / "router"

    def _router_tls_mount(self) -> dict[str, dict[str, str]]:
        """The router's certificate, copied where the container's unprivileged HAProxy can read it and no
        other user of this machine can: the copy is world-readable, its grandparent is the caller's alone
        (a bind mount does not pass through the grandparent). Nothing when TLS is off."""
        certificate = router_tls_certificate(self.settings)
        if certificate is None:
            return {}
        private = self.base / "router-tls"
        private.mkdir(parents=True, exist_ok=True)
        private.chmod(0o700)
        shared = private / "pem"
        shared.mkdir(exist_ok=True)
        shared.chmod(0o755)
        write_text_atomic(shared / "router.pem", certificate.read_text(), mode=0o644)
        return {str(shared): {"bind": TLS_DIR_IN_ROUTER, "mode": "ro"}}

    def _router_container(self) -> Any | None:
        import docker

        try:
            return self.client.containers.get(self.router_name)
        except docker.errors.NotFound:
            return None

    def _endpoint(self, container: Any) -> RouterEndpoint | None:
        ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}

        def host_port(key: str) -> int | None:
            entries = ports.get(ROUTER_PORTS[key]) or []
            return next((int(p["HostPort"]) for p in entries if p.get("HostPort")), None)

        runtime, metrics, frontend = host_port("runtime"), host_port("metrics"), host_port("frontend")
        if self.deploy.docker_reach == "network":  # the router's own ports at its address on the namespace network
            networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
            address = (networks.get(self.namespace) or {}).get("IPAddress") or ""
            if not address:
                return None
            port = {key: int(value.split("/")[0]) for key, value in ROUTER_PORTS.items()}
            return RouterEndpoint(
                runtime_address=f"{address}:{port['runtime']}",
                url=f"{router_scheme(self.settings)}://{address}:{port['frontend']}",
                metrics_url=f"http://{address}:{port['metrics']}/metrics",
            )
        if not (runtime and metrics and frontend):
            return None
        return RouterEndpoint(
            runtime_address=f"127.0.0.1:{runtime}",
            url=f"{router_scheme(self.settings)}://{client_host(self.settings.router_bind)}:{frontend}",
            metrics_url=f"http://127.0.0.1:{metrics}/metrics",
        )

    def router(self) -> RouterEndpoint | None:
        container = self._router_container()
        if container is None or container.status != "running":
            return None
        return self._endpoint(container)

    def write_router_config(self, slots: Mapping[str, Mapping[str, object] | None]) -> None:
        text = render_router_config(
            slots,
            frontend_bind="0.0.0.0:8000",
            runtime_bind="0.0.0.0:9999",
            metrics_bind="0.0.0.0:8404",
            socket_path="/run/haproxy/admin.sock",
            check_interval_ms=self.deploy.check_interval_ms,
            rate_limit_per_second=self.deploy.router_rate_limit,
            tls_certificate=f"{TLS_DIR_IN_ROUTER}/router.pem" if self.settings.router_tls_cert is not None else None,
        )
        self._router_config_dir.mkdir(parents=True, exist_ok=True)
        self._router_config_dir.chmod(0o755)
        write_text_atomic(self._router_config_dir / Path(CONFIG_PATH_IN_IMAGE).name, text)

    def ensure_router(self, slots: Mapping[str, Mapping[str, object] | None]) -> RouterEndpoint:
        running = self.router()
        if running is not None:
            return running
        from mlops_pipeline.deploy.images import ensure_base_images

        stale = self._router_container()
        if stale is not None:
            stale.remove(force=True)
        router_image = ensure_base_images(self.repo_root, wheelhouse=False)["router"]
        self.write_router_config(slots)
        container = self.client.containers.run(
            router_image,
            name=self.router_name,
            detach=True,
            network=self.network().name,
            labels=self._labels(ROUTER),
            volumes={
                str(self._router_config_dir): {"bind": str(Path(CONFIG_PATH_IN_IMAGE).parent), "mode": "ro"},
                **self._router_tls_mount(),
            },
            ports={
                ROUTER_PORTS["frontend"]: (self.settings.router_bind, self.settings.router_port),
                ROUTER_PORTS["runtime"]: ("127.0.0.1", None),
                ROUTER_PORTS["metrics"]: ("127.0.0.1", None),
            },
            tmpfs={"/run/haproxy": "rw,size=1m"},
            **HARDENING,
        )
        deadline = time.monotonic() + 60
        while True:
            container.reload()
            endpoint = self._endpoint(container) if container.status == "running" else None
            if endpoint is not None:
                try:
                    # Docker's port proxy accepts (and closes) connections before HAProxy listens: an
                    # empty answer is not an answer.
                    if HAProxyRuntime(endpoint.runtime_address, timeout=2).info().get("Version"):
                        log.info("started the router container %s at %s", self.router_name, endpoint.url)
                        return endpoint
                except HAProxyRuntimeError:
                    pass
            if container.status not in ("created", "running") or time.monotonic() > deadline:
                logs = container.logs(tail=30).decode(errors="replace")
                raise BackendError(f"the router container {self.router_name} did not start ({container.status}):\n{logs}")
            time.sleep(0.3)

    # -- everything ------------------------------------------------------------------------
    def teardown(self) -> None:
        for server in self.servers():
            self.stop_server(server)
        router = self._router_container()
        if router is not None:
            router.remove(force=True, v=True)
        for network in self.client.networks.list(filters={"label": f"{DEPLOYMENT_LABEL}={self.namespace}"}):
            try:
                network.remove()
            except Exception as exc:  # still in use by a container of someone else's
                log.warning("kept network %s: %s", network.name, exc)
