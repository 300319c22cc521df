"""make reprocess against a fake Airflow API (its routes in memory, the scheduler's work simulated on a
real lake): the backfill request it sends, the quarantined days it expects, and the per-day report."""

from __future__ import annotations

import json
import urllib.parse
from datetime import date
from typing import Any

import pytest
from mlops_dev.airflow_api import AirflowAPI
from mlops_dev.reprocess import days_between, quarantined_days, reprocess

from mlops_pipeline.data.lake import DataFile, Lake

CREATED_AT = "2026-12-01T10:00:00+00:00"


def validated(lake: Lake, ds: str, rows: int = 10) -> None:
    lake.write_partition("validated", ds, [DataFile("part", ".parquet", b"x" * rows, rows=rows)], {"status": "validated"})


def quarantined(lake: Lake, ds: str, *failures: str) -> None:
    result = DataFile("validation_result", ".json", json.dumps(failures).encode())
    lake.write_partition("quarantine", ds, [result], {"status": "quarantined", "failures": list(failures)})


class FakeAirflow(AirflowAPI):
    """Answers the routes reprocess uses; on the backfill's creation it plays the scheduler: day 2 now
    validates, day 3 is quarantined again; day 1's last run succeeded, so the backfill skips it."""

    def __init__(self, lake: Lake, dag_id: str = "mlops_ingest") -> None:
        super().__init__("http://airflow.invalid", password="unused")
        self.lake = lake
        self.dag_id = dag_id
        self.calls: list[tuple[str, str, Any]] = []
        self.paused = True
        self.runs: list[dict[str, Any]] = [
            {"dag_run_id": "scheduled__2026-01-01", "logical_date": "2026-01-01T00:00:00+00:00", "state": "success",
             "run_type": "scheduled", "queued_at": "2026-01-02T00:00:01+00:00"},
        ]  # fmt: skip
        self.polls = 0
        self.created = False
        self.earlier: list[dict[str, Any]] = []  # backfills created before this one (open or complete)
        self.earlier_closes_after = 0  # polls of an open earlier backfill before the scheduler closes it

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        self.calls.append((method, path, body))
        route = urllib.parse.urlparse(path)
        if method == "GET" and route.path == f"/api/v2/dags/{self.dag_id}":
            return {"dag_id": self.dag_id, "is_paused": self.paused}
        if method == "PATCH" and route.path == f"/api/v2/dags/{self.dag_id}":
            self.paused = body["is_paused"]
            return {}
        if method == "POST" and route.path == "/api/v2/backfills":
            assert not [b for b in self.earlier if b["completed_at"] is None], "created while another backfill is open"
            self.created = True
            for ds, state in (("2026-01-02", "success"), ("2026-01-03", "failed")):
                self.runs.append({"dag_run_id": f"backfill__{ds}", "logical_date": f"{ds}T00:00:00+00:00", "state": "running",
                                  "run_type": "backfill", "queued_at": "2026-12-01T10:00:02+00:00",
                                  "start_date": "2026-12-01T10:00:03+00:00", "final": state})  # fmt: skip
            return {"id": 7, "dag_id": self.dag_id, "created_at": CREATED_AT, "completed_at": None}
        if method == "GET" and route.path == "/api/v2/backfills" and not self.created:
            for backfill in self.earlier:
                if backfill["completed_at"] is None and self.earlier_closes_after:
                    self.earlier_closes_after -= 1
                    if not self.earlier_closes_after:
                        backfill["completed_at"] = "2026-12-01T09:59:00+00:00"
            return {"backfills": self.earlier}
        if method == "GET" and route.path == "/api/v2/backfills":
            self.polls += 1
            if self.polls == 2:  # the scheduler finishes the runs between two polls
                for run in self.runs:
                    if run.get("final"):
                        run["state"] = run.pop("final")
                validated(self.lake, "2026-01-02", rows=42)
                quarantined(self.lake, "2026-01-03", "expect_column_values_to_be_in_set(plan)")
            return {"backfills": [{"id": 7, "completed_at": "2026-12-01T10:05:00+00:00" if self.polls >= 2 else None}]}
        if method == "GET" and route.path == f"/api/v2/dags/{self.dag_id}/dagRuns":
            query = urllib.parse.parse_qs(route.query)
            first, last = query["logical_date_gte"][0], query["logical_date_lte"][0]
            return {"dag_runs": [r for r in self.runs if first <= r["logical_date"] <= last]}
        raise AssertionError(f"unexpected request {method} {path}")


def test_days_between_includes_both_ends_and_refuses_a_reversed_range():
    assert days_between(date(2026, 1, 30), date(2026, 2, 1)) == [date(2026, 1, 30), date(2026, 1, 31), date(2026, 2, 1)]
    with pytest.raises(ValueError, match="--to 2026-01-01 is before --from 2026-01-02"):
        days_between(date(2026, 1, 2), date(2026, 1, 1))


def test_a_day_validated_after_its_quarantine_is_not_expected(tmp_path):
    lake = Lake(tmp_path.as_uri())
    quarantined(lake, "2026-01-02", "a")
    quarantined(lake, "2026-01-05", "b")
    quarantined(lake, "2026-01-09", "c")  # outside the range
    validated(lake, "2026-01-05")  # committed after its quarantine: fixed already
    assert quarantined_days(lake, days_between(date(2026, 1, 1), date(2026, 1, 7))) == {"2026-01-02": ["a"]}


def test_reprocess_creates_a_failed_only_backfill_and_reports_each_day(tmp_path):
    lake = Lake(tmp_path.as_uri())
    validated(lake, "2026-01-01")
    quarantined(lake, "2026-01-02", "expect_column_values_to_not_be_null(monthly_charges)")
    quarantined(lake, "2026-01-03", "expect_column_values_to_be_in_set(plan)", "expect_column_values_to_be_between(tenure_months)")
    api = FakeAirflow(lake)
    lines: list[str] = []

    report = reprocess(api, lake, date(2026, 1, 1), date(2026, 1, 3), max_active_runs=2, poll_seconds=0, say=lines.append)

    posts = [(path, body) for method, path, body in api.calls if method == "POST"]
    assert posts == [("/api/v2/backfills", {
        "dag_id": "mlops_ingest", "from_date": "2026-01-01T00:00:00+00:00", "to_date": "2026-01-03T00:00:00+00:00",
        "reprocess_behavior": "failed", "max_active_runs": 2, "dag_run_conf": {}, "run_backwards": False,
    })]  # fmt: skip
    assert not api.paused  # backfill runs start only on an unpaused DAG
    assert report.backfill_id == 7 and sorted(report.expected) == ["2026-01-02", "2026-01-03"]
    assert lines[0] == "quarantined days expected to be reprocessed (2):"
    assert "  ds=2026-01-02: 1 failed check(s): expect_column_values_to_not_be_null(monthly_charges)" in lines
    outcomes = {day.ds: (day.status, day.detail) for day in report.days}
    assert outcomes == {
        "2026-01-01": ("not reprocessed", "its last run succeeded"),
        "2026-01-02": ("validated", "42 rows"),
        "2026-01-03": ("quarantined", "expect_column_values_to_be_in_set(plan)"),
    }
    assert "  ds=2026-01-03: quarantined (expect_column_values_to_be_in_set(plan))" in lines
    assert not report.ok  # a day still fails


def test_reprocess_waits_for_a_finished_backfill_the_scheduler_has_not_closed_yet(tmp_path):
    lake = Lake(tmp_path.as_uri())
    quarantined(lake, "2026-01-02", "a")
    api = FakeAirflow(lake)
    api.earlier = [{"id": 6, "from_date": "2025-12-01T00:00:00+00:00", "to_date": "2025-12-03T00:00:00+00:00", "completed_at": None}]
    api.earlier_closes_after = 3  # closed on the third look
    lines: list[str] = []

    report = reprocess(api, lake, date(2026, 1, 1), date(2026, 1, 3), poll_seconds=0, say=lines.append)

    assert report.backfill_id == 7
    assert "backfill 6 of mlops_ingest is still open: waiting up to 180s for it to complete" in lines


def test_reprocess_names_a_backfill_still_running_and_creates_nothing(tmp_path):
    from mlops_dev.airflow_api import AirflowAPIError

    lake = Lake(tmp_path.as_uri())
    quarantined(lake, "2026-01-02", "a")
    api = FakeAirflow(lake)
    api.earlier = [{"id": 6, "from_date": "2025-12-01T00:00:00+00:00", "to_date": "2025-12-03T00:00:00+00:00", "completed_at": None}]

    with pytest.raises(AirflowAPIError, match=r"backfill 6 of mlops_ingest \(2025-12-01\.\.2025-12-03\) is still running") as raised:
        reprocess(api, lake, date(2026, 1, 1), date(2026, 1, 3), open_backfill_timeout=0, poll_seconds=0, say=lambda _: None)

    assert "PUT /api/v2/backfills/6/cancel" in str(raised.value)
    assert not [call for call in api.calls if call[0] == "POST"]


def test_another_datasets_days_are_reprocessed_on_its_own_ingest_dag(tmp_path):
    lake = Lake(tmp_path.as_uri())
    quarantined(lake, "2026-01-03", "expect_column_values_to_be_in_set(plan)")
    api = FakeAirflow(lake, dag_id="mlops_ingest__leads")
    lines: list[str] = []

    report = reprocess(api, lake, date(2026, 1, 1), date(2026, 1, 3), poll_seconds=0, say=lines.append, dag_id="mlops_ingest__leads")

    assert [body["dag_id"] for method, _, body in api.calls if method == "POST"] == ["mlops_ingest__leads"]
    assert report.backfill_id == 7 and not api.paused
    assert any(line.startswith("backfill 7 of mlops_ingest__leads 2026-01-01..2026-01-03") for line in lines), lines


def test_an_unknown_dataset_is_refused_naming_it_before_anything_is_asked_of_airflow(capsys):
    from mlops_dev.reprocess import main

    assert main(["--from", "2026-01-01", "--to", "2026-01-03", "--dataset", "nope"]) == 2
    error = capsys.readouterr().err
    assert "reprocess failed: --dataset nope: no such dataset; this installation has" in error and "'churn'" in error
