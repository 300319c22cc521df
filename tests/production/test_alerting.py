"""An alert reaches a person: a failing model server -> Prometheus -> Alertmanager -> a webhook.

Everything on the path is the real thing, configured by the project's own files:
- a real model server (``python -m mlops_serving``, the local backend's process) whose model raises
  for some inputs, so it answers them with 500 and counts them in its own /metrics;
- Debian's Prometheus with the project's alerts.yml and a test copy of prometheus.yml (the server as
  a static target labelled the way the Docker discovery labels it, short intervals);
- Debian's Alertmanager with the project's alertmanager.yml, rendered by its render.sh with the
  webhook URL pointed at an HTTP receiver in this process.

The receiver must get ``ModelServerErrors`` from Alertmanager, grouped and routed as configured,
with a ``runbook_url`` naming a runbook file that exists. Meanwhile a rollback's
``CanaryTrafficWithdrawn`` is posted to the same Alertmanager with a canary error alert: the
inhibition rule must hold the canary alert back while the notice goes out.
"""

from __future__ import annotations

import http.server
import json
import pickle
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "include" / "observability"
PROMETHEUS_DIR = OBSERVABILITY / "prometheus"
ALERTMANAGER_DIR = OBSERVABILITY / "alertmanager"
RUNBOOKS = OBSERVABILITY / "runbooks"
APT_INSTALL = REPO / "serving" / "docker" / "apt-install.sh"
if str(REPO / "serving") not in sys.path:
    sys.path.insert(0, str(REPO / "serving"))

from tests.serving.conftest import start_server, wait_until_ready  # noqa: E402
from tests.serving.model_fixture import build_model_dir, make_records  # noqa: E402

pytestmark = pytest.mark.integration

# Prometheus scrapes and evaluates every second: the rule's rate() needs two samples with the 5xx
# in between, so the condition holds about 2 s after traffic starts instead of 30 s at the
# stack's 15 s. Not less: a scrape's timeout cannot exceed its interval, and 1 s leaves a server
# that shares a small machine with its own traffic time to answer /metrics.
INTERVAL = "1s"
# ModelServerErrors waits `for: 5m` in production, so a burst of errors shorter than that pages
# nobody. Here the server fails one request in four for the whole test, so the condition holds
# without a gap from its first evaluation: waiting 5 s (five evaluations) still makes the alert go
# through "pending" before "firing", the behaviour `for:` adds, without 5 minutes of wall time.
# Only that one field is rewritten; the expression and its 5 % threshold stay as shipped.
SHORT_FOR = "5s"
FAILING_SHARE = 4  # one request in four raises in the model: a 25 % 5xx share, above 5 %
# Alertmanager's group_wait (30 s, kept as shipped) dominates the wait: a notification leaves
# 30 s after the first alert of its group, plus start-up, scrapes and `for:`.
DELIVERY_TIMEOUT_S = 90.0


# ---------------------------------------------------------------------------------------------
# tools and processes
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def binaries() -> dict[str, str]:
    done = subprocess.run(
        ["bash", str(APT_INSTALL), "--check", "prometheus", "--check", "prometheus-alertmanager", "prometheus", "prometheus-alertmanager"],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, f"installing prometheus / prometheus-alertmanager failed:\n{done.stderr[-3000:]}"
    # Debian names Alertmanager's binary after its package.
    found = {"prometheus": shutil.which("prometheus"), "alertmanager": shutil.which("prometheus-alertmanager")}
    assert all(found.values()), f"not on PATH after installing: {found}"
    return found


class Processes:
    """Processes the test starts, each with its output in a file; all stopped at the end, failing or not."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp_path)
        self.started.append((name, process, log))
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {name} (exit {p.poll()}):\n{log.read_text(errors='replace')[-3000:]}" for name, p, log in self.started)

    def stop_all(self) -> None:
        for _, process, _ in self.started:
            if process.poll() is None:
                process.terminate()
        for _, process, _ in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """The person's end: an HTTP endpoint that keeps every notification Alertmanager posts."""
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the handler API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "body": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


def wait_http(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert process.poll() is None, f"{what} exited ({process.returncode})"
        assert time.monotonic() < deadline, f"{what} not ready after {timeout}s"
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# what the test starts
# ---------------------------------------------------------------------------------------------
NUMERIC_THAT_FAILS = "tenure_months"


def failing_model_dir(path: Path) -> Path:
    """The serving fixture's sklearn pipeline with a square root ahead of the scaler of its numeric
    features. The server's validation accepts any finite number, so a negative tenure reaches the
    model, whose square root is NaN, which LogisticRegression refuses: an exception inside
    predict_proba, a 500 from the server. Valid rows still score (and warm-up passes)."""
    import hashlib

    import numpy as np
    from sklearn.preprocessing import FunctionTransformer

    model_dir = build_model_dir(path, "sklearn")
    artifact = model_dir / "model.pkl"
    pipeline = pickle.loads(artifact.read_bytes())  # noqa: S301 - written just above
    numeric = pipeline.named_steps["pre"].named_transformers_["num"]
    numeric.steps.insert(1, ("sqrt", FunctionTransformer(np.sqrt).fit(np.ones((1, 1)))))
    artifact.write_bytes(pickle.dumps(pipeline))
    info = json.loads((model_dir / "model_info.json").read_text())
    info["artifact_sha256"] = hashlib.sha256(artifact.read_bytes()).hexdigest()
    (model_dir / "model_info.json").write_text(json.dumps(info))
    return model_dir


def alert_rules_with_short_for(target: Path) -> Path:
    """alerts.yml as shipped, except ModelServerErrors' `for:` (see SHORT_FOR)."""
    text = (PROMETHEUS_DIR / "alerts.yml").read_text()
    block = re.search(r"- alert: ModelServerErrors\n.*?(?=\n\s*- alert: |\Z)", text, re.S)
    assert block, "alerts.yml has no ModelServerErrors rule"
    rewritten, count = re.subn(r"(\n\s+for: )5m\n", rf"\g<1>{SHORT_FOR}\n", block.group(0))
    assert count == 1, "ModelServerErrors' `for:` is no longer 5m: revisit SHORT_FOR"
    target.write_text(text[: block.start()] + rewritten + text[block.end() :])
    return target


def prometheus_config(target: Path, rules: Path, server_port: int, alertmanager_port: int) -> Path:
    """prometheus.yml with the project's globals and alert rules, the serving job as a static target,
    and the test's Alertmanager. The target carries the labels the stack's Docker discovery gives
    a stable model container, which the rules group by."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=INTERVAL, evaluation_interval=INTERVAL, scrape_timeout=INTERVAL)
    # The base the runbook links are built on: this checkout's folder, as a fork sets its URL.
    config["global"]["external_labels"]["runbook_base"] = str(RUNBOOKS)
    config["rule_files"] = [str(rules)]
    config["scrape_configs"] = [
        {
            "job_name": "serving",
            "static_configs": [
                {
                    "targets": [f"127.0.0.1:{server_port}"],
                    "labels": {"role": "stable", "model_name": "churn-model", "model_version": "1", "container": "mlops-churn-model-v1-stable"},
                }
            ],
        }
    ]
    assert config["alerting"]["alertmanagers"], "prometheus.yml sends alerts nowhere"
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]}
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def send_traffic(url: str, stop: threading.Event, statuses: list[int]) -> None:
    good = make_records(FAILING_SHARE, seed=5)
    with httpx.Client(base_url=url, timeout=10) as client:
        i = 0
        while not stop.is_set():
            record = dict(good[i % FAILING_SHARE])
            if i % FAILING_SHARE == 0:
                record[NUMERIC_THAT_FAILS] = -4.0
            try:
                statuses.append(client.post("/predict", json={"records": [record]}).status_code)
            except httpx.HTTPError:
                statuses.append(-1)
            i += 1
            stop.wait(0.05)


def post_alerts(alertmanager: str, alerts: list[dict]) -> None:
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts", data=json.dumps(alerts).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def notified(received: list[dict], alertname: str) -> list[dict]:
    return [
        (message["body"], alert)
        for message in list(received)
        for alert in message["body"]["alerts"]
        if alert["labels"].get("alertname") == alertname and alert["status"] == "firing"
    ]


# ---------------------------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------------------------
def test_a_failing_server_pages_the_webhook_with_its_runbook(tmp_path, binaries, processes, receiver):
    webhook_url, received = receiver
    started = time.monotonic()
    am_port, prometheus_port = free_port(), free_port()
    alertmanager = f"http://127.0.0.1:{am_port}"

    # Alertmanager: the project's config, rendered the way the compose service renders it.
    rendered = tmp_path / "alertmanager.yml"
    done = subprocess.run(
        ["sh", str(ALERTMANAGER_DIR / "render.sh"), str(ALERTMANAGER_DIR / "alertmanager.yml"), str(rendered)],
        env={"PATH": "/usr/bin:/bin", "MLOPS_ALERT_WEBHOOK_URL": webhook_url}, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    am = processes.start("alertmanager", [
        binaries["alertmanager"], f"--config.file={rendered}", f"--storage.path={tmp_path / 'alertmanager-data'}",
        f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
    ])

    server_logs = tmp_path / "server"
    server_logs.mkdir()
    stop_traffic = threading.Event()
    server = None
    try:
        server = start_server(server_logs, failing_model_dir(tmp_path / "model"), tmp_path / "predictions", wait_ready=False)
        server_port = int(server.url.rsplit(":", 1)[1])
        rules = alert_rules_with_short_for(tmp_path / "alerts.yml")
        config = prometheus_config(tmp_path / "prometheus.yml", rules, server_port, am_port)
        prometheus = processes.start("prometheus", [
            binaries["prometheus"], f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ])
        wait_http(f"{alertmanager}/-/ready", am, "alertmanager")
        wait_http(f"http://127.0.0.1:{prometheus_port}/-/ready", prometheus, "prometheus")

        # A rollback running, and the canary alert its DAG already acted on: the notice is sent, the
        # canary alert is inhibited (alertmanager.yml's first inhibit rule). Posted now so that
        # their group_wait runs alongside the server's.
        now = datetime.now(UTC)
        window = {"startsAt": now.isoformat(), "endsAt": (now + timedelta(minutes=5)).isoformat()}
        post_alerts(alertmanager, [
            {"labels": {"alertname": "CanaryTrafficWithdrawn", "severity": "info", "stack": "mlops", "proxy": "models", "server": "canary"}, **window},
            {"labels": {"alertname": "CanaryErrorRateHigh", "severity": "critical", "stack": "mlops", "proxy": "models"}, **window},
        ])

        wait_until_ready(server)
        statuses: list[int] = []
        traffic = threading.Thread(target=send_traffic, args=(server.url, stop_traffic, statuses), daemon=True)
        traffic.start()

        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while not (notified(received, "ModelServerErrors") and notified(received, "CanaryTrafficWithdrawn")):
            if time.monotonic() > deadline:
                prom_alerts = get_json(f"http://127.0.0.1:{prometheus_port}/api/v1/alerts")
                am_alerts = get_json(f"{alertmanager}/api/v2/alerts")
                pytest.fail(
                    f"no notification after {DELIVERY_TIMEOUT_S}s; received {received}\n"
                    f"prometheus alerts: {prom_alerts}\nalertmanager alerts: {am_alerts}\n"
                    f"statuses: {sorted(set(statuses))}\n{processes.logs()}\n--- server:\n{server.output()[-3000:]}"
                )
            assert server.proc.poll() is None, f"the model server exited:\n{server.output()[-3000:]}"
            time.sleep(0.5)
        elapsed = time.monotonic() - started

        # The 5xx are the server's own: a model exception, answered 500 and counted in /metrics.
        assert 500 in statuses and 200 in statuses, sorted(set(statuses))
        assert "unhandled error in /predict" in server.output()
        metrics = httpx.get(server.url + "/metrics", timeout=10).text
        assert re.search(r'mlops_serving_requests_total\{endpoint="predict",status="500"\} [1-9]', metrics)

        # The page: routed to the team's webhook, grouped per alert and model, with its runbook.
        ((message, alert),) = notified(received, "ModelServerErrors")[:1]
        assert message["receiver"] == "team" and message["status"] == "firing"
        assert message["groupLabels"] == {"alertname": "ModelServerErrors", "model_name": "churn-model"}
        assert {k: alert["labels"][k] for k in ("severity", "model_version", "role", "stack")} == {
            "severity": "critical", "model_version": "1", "role": "stable", "stack": "mlops",
        }
        runbook = alert["annotations"]["runbook_url"]
        assert runbook == f"{RUNBOOKS}/server-errors.md" and Path(runbook).is_file(), runbook
        assert "`ModelServerErrors`" in Path(runbook).read_text()
        assert re.match(r"\d+(\.\d+)?% of predictions of version 1 \(stable\) fail with 5xx", alert["annotations"]["summary"])

        # Inhibition: the rollback notice went out, the canary alert is held back, not lost.
        assert not notified(received, "CanaryErrorRateHigh"), "an inhibited canary alert was sent"
        (canary,) = get_json(f'{alertmanager}/api/v2/alerts?filter=alertname%3D%22CanaryErrorRateHigh%22')
        assert canary["status"]["state"] == "suppressed" and canary["status"]["inhibitedBy"], canary["status"]
        print(f"alert delivered {elapsed:.1f}s after the test started")
    finally:
        stop_traffic.set()
        if server is not None:
            server.stop()
