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


def test_monitored_windows_read_what_the_monitor_records(lake) -> None:
    from mlops_pipeline.ui.reports import monitored_windows
    from tests.ui.monitored import WindowNumbers, write_windows

    records = write_windows(
        lake,
        PREFIX,
        [
            WindowNumbers("2026-01-03", drifted=1, estimated_roc_auc=0.81, realised_roc_auc=0.80),
            WindowNumbers("2026-01-04", drifted=2, estimated_roc_auc=0.79, realised_roc_auc=0.78),
            WindowNumbers("2026-01-05", drifted=5, estimated_roc_auc=0.74),
        ],
    )
    assert records[0]["realised"]["measured_by"] == "2026-01-05", "the fixture wrote the realised number back"
    # A window the monitor reported on but has not decided yet: its drift share comes from report.json.
    write_report(lake, "2026-01-06", {"report.json": {"status": "ok", "drift": {"rows": 900, "drift_share": 0.6}}})
    # A window with nothing to draw (no champion yet) is left out, and so is a folder that is no day.
    write_report(lake, "2026-01-02", {"report.json": {"status": "no_champion", "message": "no @champion"}})
    lake.write_bytes_atomic(lake.path(PREFIX, "latest", "decision.json"), b"{}")

    windows = monitored_windows(lake, PREFIX)

    assert [w.ds for w in windows] == ["2026-01-03", "2026-01-04", "2026-01-05", "2026-01-06"], "oldest first"
    assert [w.drift_share for w in windows] == [0.1, 0.2, 0.5, 0.6]
    assert [w.estimated_roc_auc for w in windows] == [0.81, 0.79, 0.74, None]
    assert [w.realised_roc_auc for w in windows] == [0.80, 0.78, None, None]
    assert [w.drift_detected for w in windows] == [False, False, True, False]
    assert windows[2].action == "retrain" and windows[3].action is None
    assert [w.ds for w in monitored_windows(lake, PREFIX, limit=2)] == ["2026-01-05", "2026-01-06"], "the newest ones"
    assert monitored_windows(lake, "reports/none") == []


def test_a_monitored_window_ignores_numbers_that_are_not_numbers() -> None:
    from mlops_pipeline.ui.reports import monitored_window

    decision = {"numbers": {"drift_share": "0.4"}, "estimated_roc_auc": float("nan"), "realised_roc_auc": True}
    assert monitored_window("2026-01-05", decision, None) is None
    window = monitored_window("2026-01-05", {"numbers": {"drift_share": 0, "estimated_roc_auc": 0.7}}, None)
    assert window is not None and (window.drift_share, window.estimated_roc_auc) == (0.0, 0.7)
