"""Drift reports for the view: listing the newest, and serving files of the reports folder only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mlops_pipeline.ui.reports import (
    ReportNotFound,
    ReportPathError,
    check_report_path,
    latest_reports,
    read_report_file,
    report_file_path,
)

PREFIX = "reports/drift"


def write_report(lake, ds: str, files: dict[str, bytes | dict]) -> None:
    for name, content in files.items():
        data = json.dumps(content).encode() if isinstance(content, dict) else content
        lake.write_bytes_atomic(lake.path(PREFIX, f"ds={ds}", name), data)


@pytest.mark.parametrize(
    "relative",
    ["ds=2026-01-09/report.html", "ds=2026-01-09/quality.html", "ds=2026-01-09/report.json", "ds=2026-01-09/decision.json"],
)
def test_report_files_are_accepted(relative: str) -> None:
    ds, name = check_report_path(relative)
    assert f"ds={ds}/{name}" == relative


@pytest.mark.parametrize(
    "relative",
    [
        "",
        "report.html",
        "../report.html",
        "ds=2026-01-09/../../validated/ds=2026-01-09/_manifest.json",
        "ds=2026-01-09/../report.html",
        "/etc/passwd",
        "ds=2026-01-09//etc/passwd",
        "ds=2026-01-09/sub/report.html",
        "ds=2026-01-09/..",
        "ds=2026-01-09/..html",
        "ds=2026-01-09/.hidden.html",
        "ds=2026-01-09/report.html\x00.json",
        "ds=2026-01-09\\report.html",
        "ds=2026-01-09/%2e%2e%2fx.html",
        "ds=2026-13-45/report.html",
        "ds=latest/report.html",
        "validated/report.json",
        "ds=2026-01-09/data.parquet",
        "ds=2026-01-09/report.html.tmp-0123abcd",
        "ds=2026-01-09/script.js",
        "ds=2026-01-09/" + "a" * 300 + ".html",
    ],
)
def test_anything_else_is_refused(relative: str) -> None:
    with pytest.raises(ReportPathError):
        check_report_path(relative)


def test_a_report_file_is_read_with_its_media_type(lake) -> None:
    write_report(lake, "2026-01-09", {"report.html": b"<html>drift</html>", "report.json": {"status": "ok"}})

    assert read_report_file(lake, PREFIX, "ds=2026-01-09/report.html") == (b"<html>drift</html>", "text/html; charset=utf-8")
    content, media_type = read_report_file(lake, PREFIX, "ds=2026-01-09/report.json")
    assert json.loads(content) == {"status": "ok"} and media_type == "application/json"
    with pytest.raises(ReportNotFound, match="no report file ds=2026-01-09/quality.html"):
        read_report_file(lake, PREFIX, "ds=2026-01-09/quality.html")
    with pytest.raises(ReportNotFound):
        read_report_file(lake, PREFIX, "ds=2026-01-10/report.html")


def test_a_symlink_out_of_the_reports_folder_is_refused(lake, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "x"}')
    folder = Path(lake.path(PREFIX, "ds=2026-01-09"))
    folder.mkdir(parents=True)
    os.symlink(secret, folder / "report.json")
    (Path(lake.path(PREFIX)) / "ds=2026-01-10").symlink_to(tmp_path)
    (tmp_path / "report.html").write_text("outside")

    with pytest.raises(ReportPathError, match="leads out of the reports folder"):
        read_report_file(lake, PREFIX, "ds=2026-01-09/report.json")
    with pytest.raises(ReportPathError, match="leads out of the reports folder"):
        report_file_path(lake, PREFIX, "ds=2026-01-10/report.html")


def test_latest_reports_newest_first_with_the_decision(lake) -> None:
    decision = {
        "action": "retrain",
        "triggered": True,
        "summary": "retrain (drift): 8 of 14 features drifted",
        "numbers": {"drift_share": 0.57, "drifted_features": ["plan", "region"], "roc_auc": 0.78},
    }
    summary = {"status": "ok", "drift": {"rows": 2000, "drift_share": 0.57, "prediction": {"value": 0.66}}}
    for ds in ("2026-01-07", "2026-01-08", "2026-01-09"):
        write_report(lake, ds, {"report.html": b"<html></html>", "report.json": summary})
    write_report(lake, "2026-01-09", {"decision.json": decision, "quality.html": b"<html></html>"})
    lake.write_bytes_atomic(lake.path(PREFIX, "ds=2026-01-09", "evidently.parquet"), b"not served")
    lake.write_bytes_atomic(lake.path(PREFIX, "not-a-day", "report.html"), b"ignored")
    write_report(lake, "2026-01-06", {"report.json": {"status": "no_champion", "message": "churn has no @champion"}})

    reports = latest_reports(lake, PREFIX, limit=3)

    assert [r.ds for r in reports] == ["2026-01-09", "2026-01-08", "2026-01-07"]
    newest = reports[0]
    assert newest.files == ["report.html", "quality.html", "report.json", "decision.json"]
    assert newest.action == "retrain" and newest.triggered and newest.status == "ok"
    assert newest.numbers["drift_share"] == 0.57 and newest.numbers["prediction_drift"] == 0.66
    assert newest.numbers["drifted_features"] == ["plan", "region"]
    assert newest.main_file == "report.html" and newest.relative_path("report.html") == "ds=2026-01-09/report.html"
    assert reports[1].action is None and reports[1].files == ["report.html", "report.json"]
    oldest = latest_reports(lake, PREFIX, limit=10)[-1]
    assert (oldest.ds, oldest.status, oldest.summary, oldest.main_file) == ("2026-01-06", "no_champion", "churn has no @champion", "report.json")


def test_no_reports_folder_is_an_empty_list(lake) -> None:
    assert latest_reports(lake, PREFIX) == []
