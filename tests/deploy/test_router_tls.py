"""The router's TLS: with ``MLOPS_ROUTER_TLS_CERT`` set, the real HAProxy the local backend starts serves
HTTPS with that certificate and nothing else on its client port.

The certificate is a self-signed one made here with ``openssl``; a client that trusts it gets its answer
from a serving slot, a plain-HTTP client and a client that does not trust it get nothing. A PEM without
its private key is refused before HAProxy starts, naming the setting.
"""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_pipeline.config import DeploySettings, Settings, get_settings
from mlops_pipeline.deploy.backends import ROUTER_BACKEND, BackendError
from mlops_pipeline.deploy.haproxy import HAProxyRuntime, render_config
from mlops_pipeline.deploy.local_backend import LocalBackend
from tests.deploy.test_haproxy_config import FakeModelServer, free_port

pytestmark = pytest.mark.timeout(120)


def self_signed_pem(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """``(router.pem, ca.pem)``: certificate and key in one file for HAProxy, the certificate alone for
    the client to trust."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is not on PATH"
    key, cert = folder / "router.key", folder / "router.crt"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={host}",
            "-addext", f"subjectAltName=IP:{host}",
        ],
        check=True, capture_output=True, timeout=60,
    )
    pem = folder / "router.pem"
    pem.write_text(cert.read_text() + key.read_text())
    pem.chmod(0o600)
    return pem, cert


@pytest.fixture
def tls_router(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalBackend, str, Path, FakeModelServer]]:
    pem, ca = self_signed_pem(tmp_path)
    stable = FakeModelServer("stable").start()
    monkeypatch.setenv("MLOPS_RUN_DIR", str(tmp_path / "run"))
    get_settings.cache_clear()
    backend = LocalBackend(
        Settings(lake_uri=str(tmp_path / "lake"), router_port=free_port(), router_tls_cert=pem, deploy_backend="local"),
        DeploySettings(namespace="tls-test", check_interval_ms=200),
    )
    slots = {"stable": {"address": "127.0.0.1", "port": stable.port, "weight": 100, "enabled": True}, "canary": None}
    try:
        endpoint = backend.ensure_router(slots)
        HAProxyRuntime(endpoint.runtime_address).wait_until(ROUTER_BACKEND, ["stable"], timeout=30)
        yield backend, endpoint.url, ca, stable
    finally:
        backend.teardown()
        stable.stop()
        get_settings.cache_clear()


def _post(connection: http.client.HTTPConnection) -> tuple[int, dict]:
    try:
        connection.request("POST", "/predict", body=b'{"records": [{"x": 1}]}', headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_router_serves_https_with_the_configured_certificate_and_refuses_plain_http(tls_router) -> None:
    _backend, url, ca, _stable = tls_router
    assert url.startswith("https://127.0.0.1:"), url
    port = int(url.rsplit(":", 1)[1])

    trusting = ssl.create_default_context(cafile=str(ca))
    status, body = _post(http.client.HTTPSConnection("127.0.0.1", port, context=trusting, timeout=10))
    assert (status, body.get("server")) == (200, "stable")

    # The same port without TLS: HAProxy expects a handshake, so there is no HTTP answer at all.
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        _post(http.client.HTTPConnection("127.0.0.1", port, timeout=10))

    # A client that does not trust the certificate refuses it.
    with pytest.raises(ssl.SSLCertVerificationError):
        _post(http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(), timeout=10))


def test_a_pem_without_its_private_key_is_refused_naming_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pem, cert_only = self_signed_pem(tmp_path)
    monkeypatch.setenv("MLOPS_RUN_DIR", str(tmp_path / "run"))
    get_settings.cache_clear()
    backend = LocalBackend(
        Settings(lake_uri=str(tmp_path / "lake"), router_port=free_port(), router_tls_cert=cert_only, deploy_backend="local"),
        DeploySettings(namespace="tls-bad"),
    )
    try:
        with pytest.raises(BackendError, match=r"MLOPS_ROUTER_TLS_CERT=.*router\.crt.*no PRIVATE KEY"):
            backend.ensure_router({"stable": None, "canary": None})
        assert backend.router() is None
    finally:
        backend.teardown()
        get_settings.cache_clear()


def test_the_tls_bind_is_rendered_only_when_a_certificate_is_given() -> None:
    servers = [{"name": "stable", "address": "127.0.0.1", "port": 9001, "weight": 100}]
    plain = render_config("127.0.0.1:8000", servers, None, "127.0.0.1:8404")
    secured = render_config("127.0.0.1:8000", servers, None, "127.0.0.1:8404", tls_certificate="/etc/router/router.pem")
    assert "ssl crt" not in plain
    assert "    bind 127.0.0.1:8000 ssl crt /etc/router/router.pem ssl-min-ver TLSv1.2 alpn http/1.1" in secured.splitlines()
    # The metrics frontend stays plain for Prometheus on the private address.
    assert "    bind 127.0.0.1:8404" in secured.splitlines()
    with pytest.raises(ValueError, match="tls_certificate"):
        render_config("127.0.0.1:8000", servers, None, "127.0.0.1:8404", tls_certificate="/a path/router.pem")
