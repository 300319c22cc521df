"""The production shape: docker-compose.yaml, Prometheus' config and alert rules, Grafana's dashboard.

No image can be pulled where these tests run, so the stack is checked with the tools that read
these files, not brought up:

- the compose file is rendered by ``docker-compose config`` (Debian's docker-compose, installed
  when missing), then its shape is checked: every service a ``depends_on`` condition waits on has
  a health check (or runs to completion), every mounted project path and build context exists;
- Prometheus' config and rules by ``promtool check config`` / ``check rules`` and the rules' unit
  tests by ``promtool test rules`` (Debian's prometheus package, installed when missing);
- the Grafana dashboard (Grafana is not packaged in Debian) by a structure check: unique panel
  ids, the provisioned datasource on every panel and target, an expression on every target;
- every metric name in the dashboard and the rules must be one the sources really expose: the
  model server's registry (serving/mlops_serving/metrics.py), a live HAProxy started with the
  router config the deploy DAG renders, the drift exporter, or a recording rule.

What is not built here: the Airflow image (which the MLflow server runs too) extends
``apache/airflow``, which cannot be pulled without a registry. The offline
equivalents (include/compose/offline/) are built and the stack brought up by the smoke test
tests/compose/smoke_compose_stack.py (``make compose-smoke``, not part of ``make test``); here only
their override is rendered and checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
OBSERVABILITY = REPO / "include" / "observability"
PROMETHEUS = OBSERVABILITY / "prometheus"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "mlops.json"
APT_INSTALL = REPO / "serving" / "docker" / "apt-install.sh"

SECRETS = {
    "POSTGRES_PASSWORD": "pg-test-secret",
    "MINIO_ROOT_PASSWORD": "minio-test-secret",
    "AIRFLOW_FERNET_KEY": "fernet-test-key",
    "AIRFLOW_JWT_SECRET": "jwt-test-secret",
    "AIRFLOW_ADMIN_PASSWORD": "admin-test-secret",
    "GRAFANA_ADMIN_PASSWORD": "grafana-test-secret",
    "MLFLOW_ADMIN_PASSWORD": "mlflow-admin-test-secret",
    "MLFLOW_SECRET_KEY": "mlflow-key-test-secret",
    **{f"MLOPS_MLFLOW_{identity}_PASSWORD": f"mlflow-{identity.lower()}-test-secret"
       for identity in ("TRAIN", "DEPLOY", "MONITOR", "SCORE", "READER")},
}
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"}


def ensure_tool(command: str, package: str) -> str:
    if not shutil.which(command):
        done = subprocess.run(["bash", str(APT_INSTALL), "--check", command, package], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"installing {package} failed:\n{done.stderr[-3000:]}"
    path = shutil.which(command)
    assert path, f"{command} is not on PATH after installing {package}"
    return path


def compose_config(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    docker_compose = ensure_tool("docker-compose", "docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith(("MLOPS_", "DOCKER_"))}
    env.update(env_extra)
    # An empty --env-file: a .env in the checkout must not leak into the test.
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        return subprocess.run(
            [docker_compose, "--project-directory", str(REPO), "--env-file", empty.name, "-f", str(COMPOSE), "config"],
            capture_output=True, text=True, env=env, timeout=120, cwd=REPO,
        )


@pytest.fixture(scope="module")
def rendered() -> dict:
    done = compose_config({**SECRETS, "DOCKER_GID": "999"})
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    return yaml.safe_load(done.stdout)


def test_compose_renders_the_whole_stack(rendered):
    services = rendered["services"]
    expected = AIRFLOW_SERVICES | {
        "postgres", "redis", "minio", "minio-buckets", "mlflow", "airflow-init",
        "drift-exporter", "statsd-exporter", "prometheus", "alertmanager", "grafana",
    }
    assert expected <= set(services), f"missing services: {sorted(expected - set(services))}"
    for name in AIRFLOW_SERVICES | {"airflow-init"}:
        environment = services[name]["environment"]
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:pg-test-secret@postgres/")
        assert environment["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
        assert environment["MLOPS_LAKE_URI"].startswith("s3://") and environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    mlflow_command = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=postgresql+psycopg2://" in mlflow_command and "--artifacts-destination=s3://" in mlflow_command
    # MLflow with authentication (mlops-auth), its users' database beside its store; airflow-init
    # creates each DAG's user once MLflow is healthy, with the passwords of their Airflow connections.
    assert services["mlflow"]["entrypoint"] == ["python", "-m", "mlops_pipeline.registry.auth_setup", "serve"]
    mlflow_env = services["mlflow"]["environment"]
    assert mlflow_env["MLOPS_MLFLOW_AUTH_DATABASE_URI"].endswith("@postgres/mlflow_auth")
    assert mlflow_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "mlflow-admin-test-secret"
    init = services["airflow-init"]
    assert init["command"][-1].count("mlops_pipeline.registry.auth_setup users") == 1
    assert init["depends_on"]["mlflow"]["condition"] == "service_healthy"
    for identity in ("TRAIN", "DEPLOY", "MONITOR", "SCORE", "READER"):
        assert init["environment"][f"MLOPS_MLFLOW_{identity}_PASSWORD"] == SECRETS[f"MLOPS_MLFLOW_{identity}_PASSWORD"]
    assert services["airflow-init"]["command"][-1].count("mlops_pipeline.orchestration.airflow_settings apply") == 1
    # The deployer drives the host's engine; Prometheus finds the serving containers through it.
    for name in ("airflow-worker", "prometheus"):
        volumes = [str(v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}") for v in services[name]["volumes"]]
        assert any("/var/run/docker.sock:/var/run/docker.sock" in v for v in volumes), name
        assert "serving" in services[name]["networks"], name
    assert rendered["networks"]["serving"]["name"] == "mlops"  # the deploy DAG's default namespace


def test_depends_on_conditions_bring_the_stack_up_in_order(rendered):
    services = rendered["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency} to be healthy, but it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart", "no") == "no", f"{dependency} must run once, not restart"
            else:
                pytest.fail(f"{name} -> {dependency}: use a health or completion condition, not {condition}")
    for name in AIRFLOW_SERVICES:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name
    long_running = {name for name, s in services.items() if s.get("restart", "no") != "no"}
    assert not {name for name in long_running if "healthcheck" not in services[name]}, "every long-running service has a healthcheck"


def test_mounted_paths_and_build_contexts_exist(rendered):
    for name, service in rendered["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith(str(REPO)):
                assert Path(source).exists(), f"{name} mounts {source}, which does not exist"
        build = service.get("build")
        if build:
            context = Path(build["context"])
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: no Dockerfile in {context}"


def test_secrets_come_from_the_environment_and_are_required():
    """Every secret-named setting and every password in a URL is a ${NAME} reference without a default."""
    reference = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(:\?[^}]*|:-)?\}$")  # required, or optional and empty
    url_password = re.compile(r"://[^:/@\s]+:([^@\s]+)@")
    secret_name = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN")
    found: list[str] = []

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                secret = secret_name.search(str(key)) and not str(key).endswith("_FILE")
                if isinstance(value, str) and secret and not reference.match(value):
                    found.append(f"{where}.{key} = {value!r}")
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")
        elif isinstance(node, str):
            found.extend(f"{where}: password {m!r} in a URL" for m in url_password.findall(node) if not reference.match(m))

    walk(yaml.safe_load(COMPOSE.read_text()), "compose")
    assert not found, f"literal secrets: {found}"
    for name in SECRETS:
        assert re.search(rf"\$\{{{name}\b", COMPOSE.read_text()), f"{name} is not referenced"
    missing = dict(SECRETS)
    missing.pop("POSTGRES_PASSWORD")
    done = compose_config({**missing, "DOCKER_GID": "999"})
    assert done.returncode != 0 and "POSTGRES_PASSWORD" in done.stderr, done.stderr


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------
def promtool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ensure_tool("promtool", "prometheus"), *argv], capture_output=True, text=True, cwd=PROMETHEUS, timeout=120)


def test_prometheus_config_and_rules_are_valid(rendered):
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The static targets (scraped, and the Alertmanagers alerts go to) are compose services on the
    # ports they listen on.
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    services = rendered["services"]
    alertmanagers = [{"job_name": "alerting", **am} for am in config["alerting"]["alertmanagers"]]
    assert alertmanagers, "Prometheus sends its alerts nowhere"
    for job in config["scrape_configs"] + alertmanagers:
        for group in job.get("static_configs", []):
            for target in group["targets"]:
                host, port = target.rsplit(":", 1)
                if host == "localhost":
                    continue
                assert host in services, f"job {job['job_name']} scrapes {host}, not a compose service"
                assert port in " ".join(map(str, services[host].get("command") or [])), f"{host} does not listen on {port}"
    # The compose file mounts the folder where the config expects its rule file.
    volumes = services["prometheus"]["volumes"]
    assert any(str(PROMETHEUS) in str(v) and "/etc/prometheus" in str(v) for v in volumes)


def test_alert_rules_fire_as_intended():
    """promtool evaluates the rules on synthetic series: canary errors and latency, drift, MLflow down."""
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = {rule["alert"] for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for rule in group["rules"] if "alert" in rule}
    assert {"CanaryErrorRateHigh", "CanaryLatencyHigh", "DatasetDrift"} <= alerts


# ---------------------------------------------------------------------------------------------
# Grafana
# ---------------------------------------------------------------------------------------------
def test_grafana_dashboard_structure():
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load((OBSERVABILITY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((OBSERVABILITY / "grafana/provisioning/dashboards/mlops.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)

    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
            assert target["expr"].strip(), f"panel {panel['title']!r} has an empty query"
    titles = " ".join(panel["title"].lower() for panel in panels)
    for subject in ("requests", "errors", "latency", "canary weight", "drift share"):
        assert subject in titles, f"no panel about {subject}"
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == datasource["uid"]


# ---------------------------------------------------------------------------------------------
# metric names
# ---------------------------------------------------------------------------------------------
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (labels, functions, keywords and numbers removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)\s*(\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def test_metric_name_extraction():
    expr = 'sum by (model_version, le) (rate(mlops_a_bucket{endpoint=~"predict|x"}[$__rate_interval])) / ignoring(server) group_left() b:rec > 0.5 and on (x) up'
    assert metric_names(expr) == {"mlops_a_bucket", "b:rec", "up"}


def serving_metric_names() -> set[str]:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import mlops_serving.metrics as m; "
        "m.set_model({'model_name': 'm', 'model_version': '1', 'run_id': 'r', 'flavor': 'xgboost', 'artifact_sha256': 's'}); "
        "r = m.RequestMetrics(); r.request('predict', 200, 0.01); r.error('predict', 'validation'); "
        "import numpy as np; r.predictions('predict', np.array([0.2, 0.7])); r.unseen({'f': 1}); r.log_dropped(1, 'full'); "
        "r.log_written(1); r.batch(2); sys.stdout.write(m.render()[0].decode())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")}
    done = subprocess.run([sys.executable, "-c", code, str(REPO / "serving")], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return exposition_names(done.stdout)


def exposition_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def haproxy_metric_names(tmp_path: Path) -> set[str]:
    """A real HAProxy with the deploy DAG's router config; its exporter lists every series it has."""
    from mlops_pipeline.deploy.haproxy import render_config
    from tests.conftest import free_port

    done = subprocess.run(["bash", str(REPO / "serving/haproxy/ensure-haproxy.sh")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    metrics_port, frontend_port = free_port(), free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(
        f"127.0.0.1:{frontend_port}",
        [{"name": "stable", "address": "127.0.0.1", "port": free_port(), "weight": 95},
         {"name": "canary", "address": "127.0.0.1", "port": free_port(), "weight": 5}],
        None, f"127.0.0.1:{metrics_port}",
    ))
    process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
                    text = response.read().decode()
                break
            except (urllib.error.URLError, OSError):
                assert process.poll() is None and time.monotonic() < deadline, "haproxy did not start"
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
    # Counters with no sample yet still announce themselves in # TYPE lines.
    return exposition_names(text) | {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def recording_rules() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_dashboard_and_rules_use_metrics_that_exist(tmp_path):
    from mlops_pipeline.monitoring.exporter import METRIC_NAMES

    serving = serving_metric_names()
    assert {"mlops_serving_requests_total", "mlops_serving_request_latency_seconds_bucket"} <= serving
    haproxy = haproxy_metric_names(tmp_path)
    assert {"haproxy_server_http_responses_total", "haproxy_server_uweight"} <= haproxy
    known = serving | haproxy | set(METRIC_NAMES) | recording_rules() | {"up"}

    expressions = []
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        expressions += [(f"panel {panel['title']!r}", target["expr"]) for target in panel.get("targets", [])]
    expressions += [
        (f"variable {v['name']}", re.sub(r"label_values\(\s*(.+?)\s*,\s*\w+\s*\)", r"\1", v["query"]["query"]))
        for v in dashboard["templating"]["list"]
    ]
    for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]:
        expressions += [(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]) for rule in group["rules"]]

    unknown = {where: sorted(metric_names(expr) - known) for where, expr in expressions if metric_names(expr) - known}
    assert not unknown, f"queries name metrics no source exposes: {unknown}"
    used = set().union(*(metric_names(expr) for _, expr in expressions))
    assert {"mlops_monitor_drift_share", "haproxy_server_uweight", "mlops_serving_requests_total"} <= used


def test_the_offline_override_renders_the_stack_without_what_cannot_be_had_offline(tmp_path, monkeypatch):
    """`make compose-up`'s file: docker-compose.yaml + include/compose/offline/offline.yaml, as
    mlops_dev.compose renders it, is a valid compose file on offline images only, without Grafana
    and the StatsD exporter and without a depends_on on them; it holds no secret."""
    from mlops_dev import compose

    monkeypatch.setattr(compose, "RUN", tmp_path)
    path = compose.render("mlops-render-test", ephemeral_ports=True)
    text = path.read_text()
    assert "${POSTGRES_PASSWORD" in text and not any(value in text for value in SECRETS.values())
    docker_compose = ensure_tool("docker-compose", "docker-compose")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith(("MLOPS_", "DOCKER_"))}
    env.update({**SECRETS, "DOCKER_GID": "999"})
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        done = subprocess.run(
            [docker_compose, "--project-directory", str(REPO), "--env-file", empty.name, "-f", str(path), "config"],
            capture_output=True, text=True, env=env, timeout=120, cwd=REPO,
        )
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}"
    services = yaml.safe_load(done.stdout)["services"]
    assert not {"grafana", "statsd-exporter"} & set(services)
    assert AIRFLOW_SERVICES | {"postgres", "redis", "minio", "minio-buckets", "mlflow", "prometheus", "alertmanager"} <= set(services)
    # The override's own Redis command keeps what docker-compose.yaml's asks for: the append-only file.
    command = services["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes" and command[command.index("--dir") + 1] == "/data", command
    for name, service in services.items():
        assert service["image"].startswith("mlops-offline/"), f"{name} runs {service['image']}"
        assert not {"grafana", "statsd-exporter"} & set(service.get("depends_on") or {}), name
        for port in service.get("ports") or []:
            published = port.get("published") if isinstance(port, dict) else str(port).split(":")[1]
            assert not published, f"{name} publishes a fixed host port with --ephemeral-ports: {port}"
