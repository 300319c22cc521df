"""The model-operations view in a real Airflow UI, opened in headless Chromium.

A project-local api-server (its own home, SQLite DB and port) runs with the repo's plugins folder,
a real MLflow server holds a ``@champion`` and a ``@challenger``, a real HAProxy router splits the
traffic 75/25 between two slots, and the lake has an audit log of two canary rollouts (one rolled
back, one in progress), an Evidently drift report and eight monitored windows recorded by the
monitor's decision functions. The browser logs in through Airflow's login page, opens "Model ops" in
the UI, checks what it shows (the charts too: drawn, visible, one point per window or step), follows
the drift report link and saves screenshots to ``tests/artifacts/ui/``.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, AirflowStack, free_port
from tests.mlflow_fixtures import MlflowServer, quiet_mlflow_environment
from tests.ui.browser import ensure_chromium, start_driver
from tests.ui.monitored import WindowNumbers, write_windows

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "tests" / "artifacts" / "ui"
SCREENSHOT = ARTIFACTS / "mlops_view.png"
REPORT_SCREENSHOT = ARTIFACTS / "drift_report.png"
CHARTS_SCREENSHOT = ARTIFACTS / "mlops_view_charts.png"
CANARY_CHART_SCREENSHOT = ARTIFACTS / "mlops_view_canary_chart.png"
REPORT_DS = "2026-01-09"
WAIT = 60  # seconds for a page to show what is waited for (a busy CI host)
DRIFT_SHARE_THRESHOLD = "0.35"  # the api-server's setting: the line the drift share chart draws
# The windows before REPORT_DS: drift builds up, the estimate falls, labels arrive for the older days.
WINDOWS = [
    WindowNumbers("2026-01-02", drifted=0, estimated_roc_auc=0.812, realised_roc_auc=0.818),
    WindowNumbers("2026-01-03", drifted=1, estimated_roc_auc=0.809, realised_roc_auc=0.805),
    WindowNumbers("2026-01-04", drifted=1, estimated_roc_auc=0.804, realised_roc_auc=0.801),
    WindowNumbers("2026-01-05", drifted=2, estimated_roc_auc=0.795, realised_roc_auc=0.789),
    WindowNumbers("2026-01-06", drifted=4, estimated_roc_auc=0.781),
    WindowNumbers("2026-01-07", drifted=5, estimated_roc_auc=0.772),
    WindowNumbers("2026-01-08", drifted=7, estimated_roc_auc=0.760),
]

CANARY_CHECKS = [
    {"name": "errors", "status": "passed", "detail": "canary 5xx rate 0.0000 vs stable 0.0000", "value": 0.0, "limit": 0.01},
    {"name": "latency", "status": "passed", "detail": "canary p95 14 ms vs stable 12 ms", "value": 14.0, "limit": 62.0},
    {"name": "prediction_shift", "status": "passed", "detail": "PSI 0.012", "value": 0.012, "limit": 0.2},
]


class ReadyServer(ThreadingHTTPServer):
    """Answers ``/ready`` like a serving container, so the router's health checks pass."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy's health checks close the connection without reading the answer

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@dataclass
class ViewSetup:
    """Where this module's data lives; the api-server reads the same through its environment."""

    model_name: str
    lake_uri: str
    run_dir: Path
    namespace: str
    router_port: int
    champion_run_id: str = ""


def seed_registry(tracking_uri: str, model_name: str) -> str:
    """v1 @champion and v2 @challenger, each with its run's metrics; the champion's run id."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(f"{model_name}-training")
    client.create_registered_model(model_name)
    run_ids = []
    for holdout_auc in (0.8123, 0.8234):
        run = client.create_run(experiment_id)
        for key, value in {"holdout_roc_auc": holdout_auc, "holdout_pr_auc": 0.61, "valid_roc_auc": holdout_auc - 0.004}.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)
        client.create_model_version(model_name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        run_ids.append(run.info.run_id)
    client.set_registered_model_alias(model_name, "champion", "1")
    client.set_registered_model_alias(model_name, "challenger", "2")
    client.set_model_version_tag(model_name, "2", "deploy_status", "canary")
    return run_ids[0]


def seed_lake(lake_uri: str, model_name: str) -> None:
    """A canary rollout of v2 at 25 % in the audit log, and the drift report of ``REPORT_DS``."""
    import numpy as np
    import pandas as pd

    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.deploy.audit import AuditLog
    from mlops_pipeline.monitoring.evidently_report import drift_snapshot, render

    lake = Lake(lake_uri)
    audit = AuditLog(lake)
    common = {"actor": "airflow:mlops_deploy/manual__ui", "model_name": model_name, "version": "2", "deployment_id": f"{model_name}-v2-ui"}
    audit.append("deployed", actor="cli:ops", reason="first deployment: v1 becomes the stable champion", model_name=model_name, version="1")
    first = {**common, "deployment_id": f"{model_name}-v2-first"}
    slow = [{**CANARY_CHECKS[1], "status": "failed", "detail": "canary p95 95 ms vs stable 12 ms", "value": 95.0}]
    audit.append("deployment_planned", reason="canary of v2 against the champion v1", **first)
    audit.append("traffic_shifted", reason="5% of the traffic to the canary v2", details={"percent": 5}, **first)
    audit.append("analysis_failed", reason="canary v2 at 5%: latency", details={"percent": 5, "checks": [CANARY_CHECKS[0], *slow]}, **first)
    audit.append("rolled_back", reason="canary v2 failed its checks at 5%", **first)
    audit.append("deployment_planned", reason="canary of v2 against the champion v1", **common)
    audit.append("canary_started", reason="canary server of v2 is ready, at 0% of the traffic", **common)
    for percent in (5, 25):
        audit.append("traffic_shifted", reason=f"{percent}% of the traffic to the canary v2", details={"percent": percent}, **common)
        audit.append("analysis_passed", reason=f"canary v2 at {percent}%: every check passed", details={"percent": percent, "checks": CANARY_CHECKS}, **common)

    rng = np.random.default_rng(7)
    reference = pd.DataFrame({"tenure_months": rng.normal(24, 6, 400), "plan": rng.choice(["basic", "pro"], 400)})
    current = pd.DataFrame({"tenure_months": rng.normal(30, 6, 400), "plan": rng.choice(["basic", "pro", "team"], 400)})
    html, _ = render(
        drift_snapshot(
            reference, current, numeric_features=["tenure_months"], categorical_features=["plan"],
            methods={"tenure_months": "wasserstein", "plan": "jensenshannon"}, threshold=0.1, drift_share=0.3, with_prediction=False,
        )
    )
    write_windows(lake, "reports/drift", WINDOWS, drift_share_threshold=float(DRIFT_SHARE_THRESHOLD))
    folder = lake.path("reports/drift", f"ds={REPORT_DS}")
    lake.write_bytes_atomic(f"{folder}/report.html", html.encode())
    lake.write_json_atomic(f"{folder}/report.json", {"status": "ok", "drift": {"rows": 400, "drift_share": 1.0, "drifted_features": ["plan", "tenure_months"]}})
    lake.write_json_atomic(
        f"{folder}/decision.json",
        {"action": "retrain", "triggered": False, "summary": "retrain (drift): 2 of 2 features drifted", "numbers": {"drift_share": 1.0}},
    )


@pytest.fixture(scope="module")
def view_setup(tmp_path_factory: pytest.TempPathFactory) -> ViewSetup:
    base = tmp_path_factory.mktemp("ui-view")
    return ViewSetup(
        model_name=f"churn-ui-{uuid.uuid4().hex[:8]}",
        lake_uri=(base / "lake").as_uri(),
        run_dir=base / "run",
        namespace=f"ui{os.getpid()}",
        router_port=free_port(),
    )


@pytest.fixture(scope="module")
def airflow_starting(
    tmp_path_factory: pytest.TempPathFactory, view_setup: ViewSetup, mlflow_server: MlflowServer, airflow_databases
) -> Iterator[tuple[AirflowStack, subprocess.Popen[bytes]]]:
    """Airflow's api-server alone (no scheduler needed), with this module's settings and the repo's
    plugins: its DB migration and start run in the background while the data is seeded."""
    base = tmp_path_factory.mktemp("ui-airflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "MLOPS_", "MLFLOW_TRACKING"))}
    env.update(quiet_mlflow_environment())
    env.update(
        {
            "MLOPS_HOME": str(REPO),
            "AIRFLOW_HOME": str(base / "home"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_databases.create(),
            "MLOPS_RUN_DIR": str(view_setup.run_dir),
            "MLOPS_LAKE_URI": view_setup.lake_uri,
            "MLOPS_AIRFLOW_PORT": str(free_port()),
            "MLFLOW_TRACKING_URI": mlflow_server.uri,
            "MLOPS_MODEL_NAME": view_setup.model_name,
            "MLOPS_DEPLOY_BACKEND": "local",
            "MLOPS_DEPLOY_NAMESPACE": view_setup.namespace,
            "MLOPS_ROUTER_PORT": str(view_setup.router_port),
            "MLOPS_MONITOR_DRIFT_SHARE_THRESHOLD": DRIFT_SHARE_THRESHOLD,
        }
    )
    stack = AirflowStack(env=env, base=base)
    services = f"{shlex.quote(sys.executable)} -m mlops_dev.services"
    with open(base / "start.log", "wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", f"{services} setup && {services} start api-server"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        yield stack, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stack.run("stop", "api-server", timeout=120)


@pytest.fixture(scope="module")
def seeded(airflow_starting: tuple[AirflowStack, subprocess.Popen[bytes]], view_setup: ViewSetup, mlflow_server: MlflowServer) -> Iterator[ViewSetup]:
    """The registry, the lake and a live router with a 75/25 split (no serving models needed)."""
    from mlops_pipeline.config import DeploySettings, Settings, get_settings
    from mlops_pipeline.deploy.backends import ROUTER_BACKEND
    from mlops_pipeline.deploy.haproxy import HAProxyRuntime
    from mlops_pipeline.deploy.local_backend import LocalBackend

    view_setup.champion_run_id = seed_registry(mlflow_server.uri, view_setup.model_name)
    seed_lake(view_setup.lake_uri, view_setup.model_name)
    stable, canary = ReadyServer(), ReadyServer()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLOPS_RUN_DIR", str(view_setup.run_dir))
        get_settings.cache_clear()
        backend = LocalBackend(
            Settings(lake_uri=view_setup.lake_uri, router_port=view_setup.router_port, deploy_backend="local"),
            DeploySettings(namespace=view_setup.namespace, check_interval_ms=200),
        )
        slots = {
            name: {"address": "127.0.0.1", "port": server.server_address[1], "weight": weight, "enabled": True}
            for name, server, weight in (("stable", stable, 75), ("canary", canary, 25))
        }
        try:
            endpoint = backend.ensure_router(slots)
            HAProxyRuntime(endpoint.runtime_address).wait_until(ROUTER_BACKEND, ["stable", "canary"], timeout=WAIT)
            yield view_setup
        finally:
            backend.teardown()
            for server in (stable, canary):
                server.shutdown()
                server.server_close()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def api_server(airflow_starting: tuple[AirflowStack, subprocess.Popen[bytes]], seeded: ViewSetup) -> AirflowStack:
    stack, process = airflow_starting
    code = process.wait(timeout=900)
    log = (stack.base / "start.log").read_text(errors="replace")[-4000:]
    assert code == 0, f"airflow setup / api-server start failed:\n{log}"
    return stack


def base_url(stack: AirflowStack) -> str:
    return f"http://127.0.0.1:{stack.env['MLOPS_AIRFLOW_PORT']}"


def raw_get(stack: AirflowStack, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One GET with the path sent as given (no normalisation, no redirect following)."""
    connection = http.client.HTTPConnection("127.0.0.1", int(stack.env["MLOPS_AIRFLOW_PORT"]), timeout=60)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_plugin_is_registered_and_guards_the_reports(api_server: AirflowStack) -> None:
    api = api_server.api()
    plugins = {plugin["name"]: plugin for plugin in api._request("GET", "/api/v2/plugins")["plugins"]}
    assert "mlops" in plugins, "the timetable plugin must still load"
    view = plugins["mlops_ui"]
    assert [app["url_prefix"] for app in view["fastapi_apps"]] == ["/mlops"]
    assert [(v["name"], v["url_route"], v["href"]) for v in view["external_views"]] == [("Model ops", "mlops", "mlops/")]

    bearer = {"Authorization": f"Bearer {api.token()}"}
    status, _, _ = raw_get(api_server, "/mlops/api/overview")
    assert status == 401
    status, headers, _ = raw_get(api_server, f"/mlops/reports/ds={REPORT_DS}/report.html", {"Accept": "text/html"})
    assert status == 303 and "/auth/login" in headers["location"]

    status, _, body = raw_get(api_server, "/mlops/api/overview", bearer)
    overview = json.loads(body)
    assert status == 200 and overview["sections"]["versions"]["value"]["champion"]["version"] == "1"
    status, headers, body = raw_get(api_server, f"/mlops/reports/ds={REPORT_DS}/decision.json", bearer)
    assert status == 200 and json.loads(body)["action"] == "retrain"
    for path in (
        "/mlops/reports/../../../etc/passwd",
        f"/mlops/reports/ds={REPORT_DS}/../../../deployments/audit",
        f"/mlops/reports/ds={REPORT_DS}/..%2F..%2F..%2Fetc%2Fpasswd",
        "/mlops/reports/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/mlops/reports/ds=2026-01-09/%2Fetc%2Fpasswd",
        f"/mlops/reports/ds={REPORT_DS}/report.html%00.json",
    ):
        status, _, body = raw_get(api_server, path, bearer)
        assert status == 404 and b"root:" not in body, path


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT).until(condition)
    except TimeoutException:
        raise AssertionError(f"{what} not seen within {WAIT}s at {driver.current_url}:\n{driver.page_source[:3000]}") from None


def _saved_png(path: Path, png: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def _points(driver: Any, chart: str, series: str, status: str | None = None) -> list[Any]:
    from selenium.webdriver.common.by import By

    selector = f"svg[data-testid={chart}] .point[data-series={series}]" + (f"[data-status={status}]" if status else "")
    return driver.find_elements(By.CSS_SELECTOR, selector)


def _drawn_inside(driver: Any, chart: str) -> None:
    """The chart is laid out with a real size, and every point is drawn within its box."""
    from selenium.webdriver.common.by import By

    svg = driver.find_element(By.CSS_SELECTOR, f"svg[data-testid={chart}]")
    assert svg.is_displayed() and svg.size["width"] > 400 and svg.size["height"] > 200, (chart, svg.size)
    outside = driver.execute_script(
        "const svg = arguments[0].getBoundingClientRect();"
        "return [...arguments[0].querySelectorAll('.point')].filter(p => { const r = p.getBoundingClientRect();"
        " return r.width === 0 || r.left < svg.left || r.right > svg.right || r.top < svg.top || r.bottom > svg.bottom; }).length",
        svg,
    )
    assert outside == 0, f"{outside} point(s) of {chart} are not drawn inside it"


def check_charts(driver: Any) -> None:
    """The charts of the seeded lake: one point per monitored window, per traffic step and per check."""
    from selenium.webdriver.common.by import By

    assert len(_points(driver, "drift-share-chart", "drift_share")) == len(WINDOWS) + 1  # and REPORT_DS
    assert len(_points(driver, "quality-chart", "estimated")) == len(WINDOWS)
    assert len(_points(driver, "quality-chart", "realised")) == sum(1 for w in WINDOWS if w.realised_roc_auc is not None)
    threshold = driver.find_element(By.CSS_SELECTOR, "svg[data-testid=drift-share-chart] .threshold")
    assert threshold.get_attribute("data-value") == DRIFT_SHARE_THRESHOLD
    title = driver.find_element(By.CSS_SELECTOR, "svg[data-testid=drift-share-chart] > desc").get_attribute("textContent")
    assert f"{len(WINDOWS) + 1} monitored window(s), 2026-01-02 to {REPORT_DS}" in title and "Threshold 0.35: 4 window(s)" in title
    # Newest deployment first: the v2 canary in progress, then the one rolled back at 5 %.
    assert len(_points(driver, "canary-chart-0", "traffic")) == 2
    assert len(_points(driver, "canary-chart-0", "analysis", "passed")) == 2
    assert len(_points(driver, "canary-chart-0", "check", "passed")) == 2 * len(CANARY_CHECKS)
    assert len(_points(driver, "canary-chart-1", "traffic")) == 1
    assert len(_points(driver, "canary-chart-1", "analysis", "failed")) == 1
    assert len(_points(driver, "canary-chart-1", "check", "failed")) == 1
    assert "rolled_back" in driver.find_element(By.CSS_SELECTOR, "svg[data-testid=canary-chart-1]").text
    for chart in ("drift-share-chart", "quality-chart", "canary-chart-0", "canary-chart-1"):
        _drawn_inside(driver, chart)


def test_view_renders_in_headless_chromium(api_server: AirflowStack, seeded: ViewSetup) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    password = json.loads((Path(api_server.env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    driver = start_driver(ensure_chromium())
    try:
        # Not logged in: the view sends the browser to Airflow's login page, which brings it back.
        driver.get(f"{base_url(api_server)}/mlops/")
        _wait(driver, ec.presence_of_element_located((By.NAME, "username")), "Airflow's login form").send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=champion-version]")), "the view after login")

        # The view inside the Airflow UI, reached from the navigation bar.
        driver.get(f"{base_url(api_server)}/")
        nav = _wait(driver, ec.element_to_be_clickable((By.XPATH, "//a[contains(@href, 'plugin/mlops')]")), "the 'Model ops' navigation entry")
        nav.click()
        _wait(driver, lambda d: d.current_url.rstrip("/").endswith("/plugin/mlops"), "the plugin route")
        frame = _wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[src*='mlops']")), "the view's iframe")
        driver.switch_to.frame(frame)
        champion = _wait(driver, ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=champion-version]")), "the champion")
        assert champion.text == "version 1"
        assert driver.find_element(By.CSS_SELECTOR, "[data-testid=challenger-version]").text == "version 2"
        assert driver.find_element(By.CSS_SELECTOR, "[data-testid=champion-run]").text == seeded.champion_run_id
        assert "0.8123" in driver.find_element(By.CSS_SELECTOR, "[data-testid=champion]").text
        assert "canary share of the traffic: 25.0%" in driver.find_element(By.CSS_SELECTOR, "[data-testid=router-state]").text
        slots = driver.find_element(By.CSS_SELECTOR, "[data-testid=router-slots]").text
        assert "stable" in slots and "canary" in slots and "UP" in slots
        assert "passed v2 at 25%" in driver.find_element(By.CSS_SELECTOR, "[data-testid=canary-checks]").text
        audit = driver.find_element(By.CSS_SELECTOR, "[data-testid=audit-log]").text
        assert audit.index("analysis_passed") < audit.index("deployed"), "the audit log is newest first"
        links = {link.text: link for link in driver.find_elements(By.CSS_SELECTOR, "[data-testid=report-link]")}
        assert set(links) >= {"report.html", "report.json", "decision.json"}
        report_link = links["report.html"]
        assert report_link.get_attribute("href") == f"{base_url(api_server)}/mlops/reports/ds={REPORT_DS}/report.html"
        driver.switch_to.default_content()
        assert "Model ops" in driver.find_element(By.TAG_NAME, "body").text
        screenshot = _saved_png(SCREENSHOT, driver.get_screenshot_as_png())

        # The charts, drawn in the view's frame: checked, then shown in screenshots of their own.
        driver.switch_to.frame(frame)
        check_charts(driver)
        canary_chart = driver.find_element(By.CSS_SELECTOR, "svg[data-testid=canary-chart-0]")
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", canary_chart)
        canary_screenshot = _saved_png(CANARY_CHART_SCREENSHOT, canary_chart.screenshot_as_png)
        driver.execute_script("document.getElementById('trends').scrollIntoView({block: 'start'})")
        driver.switch_to.default_content()
        charts_screenshot = _saved_png(CHARTS_SCREENSHOT, driver.get_screenshot_as_png())

        # Follow the link: the report opens in the view's frame, rendered by Evidently's own scripts.
        driver.switch_to.frame(frame)
        report_link.click()
        _wait(
            driver,
            lambda d: d.execute_script("const root = document.querySelector('[id^=root_metric_]'); return !!root && root.children.length > 0"),
            "Evidently's rendered report in the view's frame",
        )
        assert driver.execute_script("return document.location.pathname") == f"/mlops/reports/ds={REPORT_DS}/report.html"
        _wait(driver, lambda d: "drift" in d.find_element(By.TAG_NAME, "body").text.lower(), "the report's drift text")
        driver.switch_to.default_content()
        report_screenshot = _saved_png(REPORT_SCREENSHOT, driver.get_screenshot_as_png())
    finally:
        driver.quit()

    for path, least in ((screenshot, 30_000), (report_screenshot, 30_000), (charts_screenshot, 30_000), (canary_screenshot, 8_000)):
        png = path.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", path
        assert len(png) > least, f"{path} is {len(png)} bytes: a blank page?"
