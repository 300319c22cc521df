"""Gathering the view's sections: each on its own, under a deadline, errors as messages; and the page."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from mlops_pipeline.deploy.audit import AuditEvent, AuditLog
from mlops_pipeline.ui.overview import AUDIT, HISTORY, REPORTS, ROUTER, VERSIONS, Overview, Section, gather
from mlops_pipeline.ui.render import overview_json, render_page
from mlops_pipeline.ui.reports import DriftReport, MonitoredWindow
from mlops_pipeline.ui.versions import VersionSummary, key_metrics
from tests.mlflow_fixtures import free_port


@pytest.fixture
def local_settings(lake_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mlops_pipeline.config import Settings

    monkeypatch.setenv("MLOPS_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("MLOPS_DEPLOY_NAMESPACE", "ui-test")
    return Settings(deploy_backend="local", mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}", model_name="churn")


def test_mlflow_down_is_a_message_in_its_section_only(local_settings, lake) -> None:
    AuditLog(lake).append("deployed", actor="cli:me", reason="first deployment", model_name="churn", version="1")
    lake.write_bytes_atomic(lake.path("reports/drift/ds=2026-01-09/report.html"), b"<html></html>")

    started = time.monotonic()
    overview = gather(local_settings, timeout=20)

    assert time.monotonic() - started < 15
    versions = overview[VERSIONS]
    assert versions.value is None
    assert versions.error is not None and versions.error.startswith(f"MLflow unreachable at {local_settings.mlflow_tracking_uri}")
    assert overview[AUDIT].ok and [e.event for e in overview[AUDIT].value] == ["deployed"]
    assert overview[REPORTS].ok and [r.ds for r in overview[REPORTS].value] == ["2026-01-09"]
    assert overview[ROUTER].ok and overview[ROUTER].value.running is False
    page = render_page(overview)
    assert f"MLflow unreachable at {local_settings.mlflow_tracking_uri}" in page
    assert 'href="reports/ds=2026-01-09/report.html"' in page
    assert overview_json(overview)["sections"][VERSIONS]["error"] == versions.error


def test_a_section_that_hangs_times_out_and_the_others_are_shown(local_settings) -> None:
    release = threading.Event()

    def hang() -> None:
        release.wait(30)

    def fail() -> None:
        raise PermissionError("access denied to s3://bucket/deployments/audit")

    started = time.monotonic()
    overview = gather(local_settings, timeout=1.0, sections={VERSIONS: hang, AUDIT: fail, REPORTS: lambda: []})
    release.set()

    assert time.monotonic() - started < 5
    assert overview[VERSIONS].error == f"MLflow at {local_settings.mlflow_tracking_uri} did not answer within 1s"
    assert overview[AUDIT].error == f"lake {local_settings.lake_uri} not readable: PermissionError: access denied to s3://bucket/deployments/audit"
    assert overview[REPORTS].ok and overview[REPORTS].value == []


def test_key_metrics_are_the_winners_with_roc_auc_first() -> None:
    metrics = {"xgboost.holdout_roc_auc": 0.8, "valid_roc_auc": 0.79, "holdout_log_loss": 0.4, "holdout_roc_auc": 0.81, "train_rows": 900.0}
    assert list(key_metrics(metrics)) == ["holdout_roc_auc", "holdout_log_loss", "valid_roc_auc"]


def _overview(**sections: Section) -> Overview:
    overview = Overview("churn", "http://mlflow:5000", "file:///lake", "reports/drift", "2026-01-10T00:00:00+00:00", drift_share_threshold=0.3)
    for name in (VERSIONS, ROUTER, AUDIT, REPORTS, HISTORY):
        overview.sections[name] = sections.get(name) or Section(name, value=None)
    return overview


def test_the_page_escapes_what_it_shows() -> None:
    evil = '<script>alert("x")</script>'
    champion = VersionSummary(
        alias="champion", model_name="churn", version="7", run_id="abc123", aliases=["champion"], created=None,
        status="READY", description=evil, metrics={"holdout_roc_auc": 0.8123456}, tags={"deploy_reason": evil},
    )
    event = AuditEvent(event="rolled_back", actor=evil, reason=evil, version="8", details={"note": evil}, ts="2026-01-10T00:00:00")
    report = DriftReport(ds="2026-01-09", files=["report.html"], summary=evil)
    page = render_page(
        _overview(
            versions=Section(VERSIONS, value={"champion": champion, "challenger": None}),
            audit=Section(AUDIT, value=[event]),
            reports=Section(REPORTS, value=[report]),
        )
    )

    assert "<script>" not in page and "&lt;script&gt;" in page
    assert re.search(r'data-testid="champion-version">version 7<', page)
    assert "0.8123" in page and "no version of churn has the @challenger alias" in page
    assert 'href="reports/ds=2026-01-09/report.html"' in page


def test_the_page_draws_the_charts_from_the_sections() -> None:
    windows = [MonitoredWindow(f"2026-01-0{day}", drift_share=day / 10, estimated_roc_auc=0.8) for day in range(1, 5)]
    common = {"actor": "airflow:mlops_deploy/manual__1", "model_name": "churn", "version": "2", "deployment_id": "churn-v2-a"}
    events = [  # newest first, as the audit section holds them
        AuditEvent(event="analysis_passed", reason="ok", details={"percent": 5, "checks": [{"name": "errors", "status": "passed"}]}, ts="2026-01-10T00:05:00+00:00", **common),
        AuditEvent(event="traffic_shifted", reason="5%", details={"percent": 5}, ts="2026-01-10T00:00:00+00:00", **common),
    ]  # fmt: skip
    page = render_page(_overview(history=Section(HISTORY, value=windows), audit=Section(AUDIT, value=events)))

    assert page.count('data-series="drift_share"') == 4 and page.count('data-series="estimated"') == 4
    assert 'class="threshold" data-value="0.3"' in page
    assert 'data-testid="canary-chart-0"' in page and page.count('data-series="traffic"') == 1
    assert page.count('data-series="check"') == 1 and 'data-status="passed"' in page


def test_the_page_without_windows_or_canary_says_so_and_a_lake_error_is_shown() -> None:
    page = render_page(_overview(history=Section(HISTORY, value=[]), audit=Section(AUDIT, value=[])))
    assert "<svg" not in page
    assert 'data-testid="drift-share-chart-empty"' in page and "No monitored windows yet" in page
    assert 'data-testid="canary-chart-empty"' in page

    page = render_page(_overview(history=Section(HISTORY, error="lake file:///lake not readable: PermissionError: denied")))
    assert 'data-testid="history-error"' in page and "PermissionError: denied" in page


def test_gather_reads_the_monitored_windows_and_the_configured_threshold(local_settings, lake, monkeypatch) -> None:
    from mlops_pipeline.config import get_settings
    from tests.ui.monitored import WindowNumbers, write_windows

    monkeypatch.setenv("MLOPS_MONITOR_DRIFT_SHARE_THRESHOLD", "0.45")
    get_settings.cache_clear()
    write_windows(lake, "reports/drift", [WindowNumbers("2026-01-04", drifted=3), WindowNumbers("2026-01-05", drifted=6)])
    # the view shows the given dataset's settings (each dataset of the installation has its own)
    settings = local_settings.model_copy(update={"monitor": get_settings().monitor})

    overview = gather(settings, timeout=20)

    assert overview.drift_share_threshold == 0.45
    assert overview[HISTORY].ok and [(w.ds, w.drift_share) for w in overview[HISTORY].value] == [("2026-01-04", 0.3), ("2026-01-05", 0.6)]
    assert 'class="threshold" data-value="0.45"' in render_page(overview)


def test_the_picker_lists_every_dataset_and_keeps_the_choice_in_every_link() -> None:
    """With several datasets: one entry per model, the shown one marked, a broken file named as such,
    and the refresh, JSON and report links keep ``?dataset=``; with one dataset there is no picker."""
    sections = {name: Section(name, value=[] if name in (REPORTS, HISTORY, AUDIT) else None)
                for name in (VERSIONS, ROUTER, AUDIT, REPORTS, HISTORY)}
    sections[REPORTS] = Section(REPORTS, value=[DriftReport(ds="2026-03-08", files=["report.html"])])
    choices = [
        {"dataset": "churn", "primary": True, "error": None, "path": "/x/churn.yaml"},
        {"dataset": "leads", "primary": False, "error": None, "path": "/x/leads.yaml"},
        {"dataset": "bad", "primary": False, "error": "dataset file /x/bad.yaml is invalid", "path": "/x/bad.yaml"},
    ]
    overview = Overview(model_name="leads", tracking_uri="http://m", lake_uri="file:///l/datasets/leads",
                        reports_prefix="reports/drift", generated_at="now", sections=sections,
                        dataset="leads", choices=choices)
    page = render_page(overview)
    picker = re.search(r'<nav class="meta" data-testid="model-picker">(.*?)</nav>', page).group(1)
    assert 'data-testid="model-choice-current">leads</b>' in picker
    assert '<a href="./" data-testid="model-choice">churn</a>' in picker  # the primary one: no parameter
    assert "bad (broken file)" in picker and "/x/bad.yaml is invalid" in picker
    assert 'href="./?dataset=leads">refresh' in page and 'href="api/overview?dataset=leads">JSON' in page
    assert "reports/ds=2026-03-08/report.html?dataset=leads" in page
    assert overview_json(overview)["dataset"] == "leads"

    alone = Overview(model_name="churn", tracking_uri="http://m", lake_uri="file:///l", reports_prefix="reports/drift",
                     generated_at="now", sections=sections, choices=choices[:1])
    assert "model-picker" not in render_page(alone)
