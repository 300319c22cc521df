"""make reprocess on a real scheduler: two days validated, two quarantined (a broken export, forced by
the scenario Param), then the source is fine again and reprocess backfills the range with
reprocess_behavior=failed: the quarantined days are run again and validate, the validated ones are
left alone."""

from __future__ import annotations

import time
from datetime import date

import pytest
from mlops_dev.reprocess import quarantined_days, reprocess

from mlops_pipeline.data.lake import Lake

pytestmark = pytest.mark.integration


def wait_for_runs(api, days: list[str], since: str, timeout: float = 900) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in api.dag_runs("mlops_ingest", run_type="backfill") if str(r.get("queued_at") or "") >= since]
        states = {r["logical_date"][:10]: r["state"] for r in runs}
        if set(days) <= set(states) and all(states[d] in ("success", "failed") for d in days):
            api.wait_for_backfills_completed("mlops_ingest")
            return states
        time.sleep(3)
    pytest.fail(f"backfill did not finish: {states}")


def test_reprocess_runs_the_quarantined_days_again_and_leaves_the_validated_ones(airflow_stack):
    airflow_stack.run("start", "api-server", "scheduler", "dag-processor", check=True, timeout=300)
    api = airflow_stack.api()
    api.wait_for_dag("mlops_ingest", timeout=300)
    api.set_paused("mlops_ingest", False)
    api.wait_for_backfills_completed("mlops_ingest")  # one an earlier test of the session left for the scheduler to close
    lake = Lake(airflow_stack.lake_dir.as_uri())

    good = api.create_backfill("mlops_ingest", "2026-03-02T00:00:00+00:00", "2026-03-03T00:00:00+00:00", conf={})
    assert wait_for_runs(api, ["2026-03-02", "2026-03-03"], good["created_at"]) == {"2026-03-02": "success", "2026-03-03": "success"}
    bad = api.create_backfill("mlops_ingest", "2026-03-04T00:00:00+00:00", "2026-03-05T00:00:00+00:00",
                              conf={"scenario": "bad_batch"})  # fmt: skip
    assert wait_for_runs(api, ["2026-03-04", "2026-03-05"], bad["created_at"]) == {"2026-03-04": "failed", "2026-03-05": "failed"}
    days = [date(2026, 3, d) for d in range(2, 6)]
    assert sorted(quarantined_days(lake, days)) == ["2026-03-04", "2026-03-05"]
    validated_before = {ds: lake.read_manifest("validated", ds) for ds in ("2026-03-02", "2026-03-03")}

    lines: list[str] = []
    report = reprocess(api, lake, date(2026, 3, 2), date(2026, 3, 5), timeout=900, say=lines.append)

    assert sorted(report.expected) == ["2026-03-04", "2026-03-05"]
    outcomes = {day.ds: day.status for day in report.days}
    assert outcomes == {"2026-03-02": "not reprocessed", "2026-03-03": "not reprocessed",
                        "2026-03-04": "validated", "2026-03-05": "validated"}, lines  # fmt: skip
    assert report.ok
    assert {ds: lake.read_manifest("validated", ds) for ds in validated_before} == validated_before  # untouched
    for ds in ("2026-03-04", "2026-03-05"):
        assert lake.read_manifest("validated", ds)["row_count"] > 0
    assert quarantined_days(lake, days) == {}
    assert any(line.startswith("  ds=2026-03-04: validated (") for line in lines), lines
