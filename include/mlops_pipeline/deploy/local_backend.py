"""The ``local`` backend: serving processes and Debian's HAProxy on this machine, no Docker.

Under ``<run dir>/deploy/<namespace>/``::

    servers/<name>.json     one record per serving process: pid, start time, role, labels, port
    router.json             the HAProxy process: pid, start time, its ports
    router/haproxy.cfg      the router config (rewritten whenever a slot changes)
    models/<name>/<version>-<sha>/   verified model directories the servers load
    logs/                   each process's output

Processes are started in their own session, so they outlive the task that started them. A record
whose pid is gone, a zombie, or another program (pid reuse: the start time differs) is a server
that is not running.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_pipeline.deploy.artifacts import VerifiedArtifact, directory_digest
from mlops_pipeline.deploy.backends import (
    DEPLOYMENT_LABEL,
    MODEL_LABEL_PREFIX,
    MODEL_REF_LABEL,
    ROLE_LABEL,
    SERVING_ROLES,
    Backend,
    BackendError,
    RouterEndpoint,
    Server,
    client_host,
    model_labels,
    read_json,
    render_router_config,
    router_scheme,
    router_tls_certificate,
    safe_name,
    state_dir,
    write_text_atomic,
)
from mlops_pipeline.deploy.haproxy import HAProxyRuntime, HAProxyRuntimeError

log = logging.getLogger(__name__)

_CHILDREN: list[subprocess.Popen] = []  # reaped when stopped by this process


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return fields[19]


def process_alive(record: Mapping[str, Any]) -> bool:
    pid = record.get("pid")
    return isinstance(pid, int) and pid > 0 and process_start_time(pid) == record.get("proc_start")


def terminate(record: Mapping[str, Any], timeout: float, sig: int = signal.SIGTERM) -> None:
    """Signal the process group of ``record``; SIGKILL once ``timeout`` has passed."""
    if not process_alive(record):
        return
    pid = int(record["pid"])
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not process_alive(record):
            return
        time.sleep(0.1)
    log.warning("pid %s did not stop within %.0fs: killing it", pid, timeout)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        _reap(pid)
        if not process_alive(record):
            return
        time.sleep(0.1)


def _spawn(argv: list[str], log_file: Path, *, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """A detached child (own session: a Ctrl-C of the caller does not reach it) logging to ``log_file``."""
    with open(log_file, "ab") as output:
        process = subprocess.Popen(
            argv,
            env=dict(env) if env is not None else None,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN.append(process)
    return process


def _reap(pid: int) -> None:
    for child in list(_CHILDREN):
        if child.pid == pid and child.poll() is not None:
            _CHILDREN.remove(child)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class LocalBackend(Backend):
    kind = "local"

    def __init__(self, settings: Any, deploy: Any) -> None:
        super().__init__(settings, deploy)
        self.base = state_dir(self.namespace)

    # -- models ----------------------------------------------------------------------------
    def prepare_model(self, artifact: VerifiedArtifact) -> str:
        target = self.base / "models" / safe_name(artifact.model_name) / f"{safe_name(artifact.version)}-{artifact.sha256[:12]}"
        if self.has_model(str(target), artifact.sha256):
            return str(target)
        staging = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        shutil.copytree(artifact.model_dir, staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        return str(target)

    def has_model(self, model_ref: str, sha256: str) -> bool:
        path = Path(model_ref)
        try:
            return (path / "MLmodel").is_file() and directory_digest(path) == sha256
        except Exception:
            return False

    # -- serving servers -------------------------------------------------------------------
    def _records(self) -> list[tuple[Path, dict[str, Any]]]:
        folder = self.base / "servers"
        found = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            record = read_json(path)
            if record is not None:
                found.append((path, record))
        return found

    def _server(self, record: Mapping[str, Any]) -> Server:
        labels = record.get("labels", {})
        return Server(
            id=str(record["name"]),
            name=str(record["name"]),
            role=str(labels.get(ROLE_LABEL, "")),
            model_name=str(labels.get(f"{MODEL_LABEL_PREFIX}name", "")),
            version=str(labels.get(f"{MODEL_LABEL_PREFIX}version", "")),
            run_id=str(labels.get(f"{MODEL_LABEL_PREFIX}run_id", "")),
            sha256=str(labels.get(f"{MODEL_LABEL_PREFIX}sha256", "")),
            model_ref=str(labels.get(MODEL_REF_LABEL, "")),
            url=f"http://127.0.0.1:{record['port']}",
            address="127.0.0.1",
            port=int(record["port"]),
            running=process_alive(record),
            started_at=float(record.get("started_at", 0.0)),
        )

    def servers(self) -> list[Server]:
        found = [self._server(record) for _, record in self._records()]
        return sorted((s for s in found if s.role in SERVING_ROLES), key=lambda s: (s.started_at, s.name))

    def start_server(self, role: str, model_ref: str, artifact_labels: Mapping[str, str]) -> Server:
        from mlops_pipeline.deploy.images import repo_root_default

        if role not in SERVING_ROLES:
            raise ValueError(f"role must be one of {SERVING_ROLES}, got {role!r}")
        version = str(artifact_labels["version"])
        name = f"{self.namespace}-{role}-v{safe_name(version)}-{uuid.uuid4().hex[:6]}"
        port = free_port()
        log_dir = self.prediction_log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        logs = self.base / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        serving_src = str(repo_root_default() / "serving")
        env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(p for p in (serving_src, env.get("PYTHONPATH", "")) if p),
                "PYTHONDONTWRITEBYTECODE": "1",
                "MLOPS_MODEL_DIR": model_ref,
                "MLOPS_SERVING_HOST": "127.0.0.1",
                "MLOPS_SERVING_PORT": str(port),
                "MLOPS_SERVING_WORKERS": "1",
                "MLOPS_PREDICTION_LOG_DIR": str(log_dir),
            }
        )
        log_file = logs / f"{name}.log"
        process = _spawn([sys.executable, "-m", "mlops_serving"], log_file, cwd=self.base, env=env)
        labels = {
            DEPLOYMENT_LABEL: self.namespace,
            ROLE_LABEL: role,
            **self.deploy.extra_labels,
            **model_labels(artifact_labels, model_ref),
        }
        record = {
            "name": name,
            "pid": process.pid,
            "proc_start": process_start_time(process.pid),
            "port": port,
            "labels": labels,
            "log_file": str(log_file),
            "started_at": time.time(),
        }
        write_text_atomic(self.base / "servers" / f"{name}.json", _dumps(record))
        log.info("started %s (pid %s, port %s) serving %s", name, process.pid, port, model_ref)
        return self._server(record)

    def stop_server(self, server: Server) -> None:
        path = self.base / "servers" / f"{server.name}.json"
        record = read_json(path)
        if record is not None:
            terminate(record, self.deploy.stop_timeout_seconds)
        path.unlink(missing_ok=True)
        log.info("stopped %s", server.name)

    def server_logs(self, server: Server, lines: int = 40) -> str:
        return _tail(self.base / "logs" / f"{server.name}.log", lines)

    def is_running(self, server: Server) -> bool:
        record = read_json(self.base / "servers" / f"{server.name}.json")
        return record is not None and process_alive(record)

    # -- router ----------------------------------------------------------------------------
    @property
    def _router_record_path(self) -> Path:
        return self.base / "router.json"

    @property
    def _router_config_path(self) -> Path:
        return self.base / "router" / "haproxy.cfg"

    def _endpoint(self, record: Mapping[str, Any]) -> RouterEndpoint:
        return RouterEndpoint(
            runtime_address=f"127.0.0.1:{record['runtime_port']}",
            url=f"{router_scheme(self.settings)}://{client_host(self.settings.router_bind)}:{record['frontend_port']}",
            metrics_url=f"http://127.0.0.1:{record['metrics_port']}/metrics",
        )

    def router(self) -> RouterEndpoint | None:
        record = read_json(self._router_record_path)
        if record is None or not process_alive(record):
            return None
        return self._endpoint(record)

    def _router_ports(self) -> dict[str, int]:
        record = read_json(self._router_record_path) or {}
        if record.get("frontend_port") != self.settings.router_port:
            record = {}
        return {
            "frontend_port": int(self.settings.router_port),
            "runtime_port": int(record.get("runtime_port") or free_port()),
            "metrics_port": int(record.get("metrics_port") or free_port()),
        }

    def _config_text(self, slots: Mapping[str, Mapping[str, object] | None], ports: Mapping[str, int]) -> str:
        certificate = router_tls_certificate(self.settings)
        return render_router_config(
            slots,
            frontend_bind=f"{self.settings.router_bind}:{ports['frontend_port']}",
            runtime_bind=f"127.0.0.1:{ports['runtime_port']}",
            metrics_bind=f"127.0.0.1:{ports['metrics_port']}",
            socket_path=None,
            check_interval_ms=self.deploy.check_interval_ms,
            rate_limit_per_second=self.deploy.router_rate_limit,
            tls_certificate=None if certificate is None else str(certificate.resolve()),
        )

    def write_router_config(self, slots: Mapping[str, Mapping[str, object] | None]) -> None:
        write_text_atomic(self._router_config_path, self._config_text(slots, self._router_ports()))

    def ensure_router(self, slots: Mapping[str, Mapping[str, object] | None]) -> RouterEndpoint:
        running = self.router()
        if running is not None:
            return running
        haproxy = _haproxy_binary()
        ports = self._router_ports()
        write_text_atomic(self._router_config_path, self._config_text(slots, ports))
        check = subprocess.run(
            [haproxy, "-c", "-q", "-f", str(self._router_config_path)], capture_output=True, text=True, timeout=60
        )
        if check.returncode != 0:
            raise BackendError(f"HAProxy rejects {self._router_config_path}:\n{check.stdout}{check.stderr}")
        logs = self.base / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_file = logs / "router.log"
        process = _spawn([haproxy, "-W", "-db", "-f", str(self._router_config_path)], log_file, cwd=self.base)
        record = {"pid": process.pid, "proc_start": process_start_time(process.pid), **ports, "started_at": time.time()}
        write_text_atomic(self._router_record_path, _dumps(record))
        endpoint = self._endpoint(record)
        deadline = time.monotonic() + 30
        while True:
            try:
                HAProxyRuntime(endpoint.runtime_address, timeout=2).info()
                break
            except HAProxyRuntimeError:
                if not process_alive(record) or time.monotonic() > deadline:
                    terminate(record, 5)
                    raise BackendError(
                        f"the router (haproxy pid {process.pid}) did not start on {endpoint.url}:\n{_tail(log_file, 30)}"
                    ) from None
                time.sleep(0.2)
        log.info("started the router (haproxy pid %s) at %s", process.pid, endpoint.url)
        return endpoint

    # -- everything ------------------------------------------------------------------------
    def teardown(self) -> None:
        for server in self.servers():
            self.stop_server(server)
        record = read_json(self._router_record_path)
        if record is not None:
            terminate(record, self.deploy.stop_timeout_seconds, sig=signal.SIGUSR1)
            self._router_record_path.unlink(missing_ok=True)


def _haproxy_binary() -> str:
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if found:
        return found
    from mlops_pipeline.deploy.images import repo_root_default

    script = repo_root_default() / "serving/haproxy/ensure-haproxy.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    found = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)
    if done.returncode != 0 or not found:
        raise BackendError(f"HAProxy is not installed and {script} could not install it:\n{done.stderr[-2000:]}")
    return found


def _dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, indent=2, sort_keys=True) + "\n"
