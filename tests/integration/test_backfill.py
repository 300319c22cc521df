"""A real backfill: scheduler, DAG processor and api-server as processes, `airflow backfill create`."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

pytestmark = pytest.mark.integration

FROM, TO = "2026-02-01", "2026-02-07"
DAYS = [f"2026-02-0{i}" for i in range(1, 8)]


def validated_checksums(lake_dir):
    sums = {}
    for ds in DAYS:
        partition = lake_dir / "validated" / f"ds={ds}"
        manifest = json.loads((partition / "_manifest.json").read_text())
        for entry in manifest["files"]:
            assert hashlib.sha256((partition / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
        sums[ds] = sorted(e["sha256"] for e in manifest["files"])
    return sums


def backfill(stack, *extra: str) -> list[dict]:
    """``airflow backfill create`` while the scheduler runs and the DAG is unpaused, then its runs."""
    api = stack.api()
    before = {r["dag_run_id"]: r.get("end_date") for r in api.dag_runs("mlops_ingest", run_type="backfill")}
    done = stack.airflow("backfill", "create", "--dag-id", "mlops_ingest", "--from-date", FROM, "--to-date", TO, *extra)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        runs = api.dag_runs("mlops_ingest", run_type="backfill")
        fresh = [r for r in runs if r["dag_run_id"] not in before or r.get("end_date") != before[r["dag_run_id"]]]
        if len(fresh) == len(DAYS) and all(r["state"] in ("success", "failed") for r in fresh):
            api.wait_for_backfills_completed("mlops_ingest")
            return fresh
        time.sleep(3)
    pytest.fail(f"backfill did not finish: {[(r['dag_run_id'], r['state']) for r in runs]}")


def test_backfill_twice_gives_seven_validated_partitions_with_identical_checksums(airflow_stack):
    airflow_stack.run("start", "api-server", "scheduler", "dag-processor", check=True, timeout=300)
    api = airflow_stack.api()
    api.wait_for_dag("mlops_ingest", timeout=300)
    api.set_paused("mlops_ingest", False)

    first = backfill(airflow_stack)
    assert [r["state"] for r in first] == ["success"] * 7, first
    assert sorted(r["logical_date"][:10] for r in first) == DAYS
    partitions = sorted(p.name for p in (airflow_stack.lake_dir / "validated").glob("ds=2026-02-*"))
    assert partitions == [f"ds={d}" for d in DAYS]
    sums_first = validated_checksums(airflow_stack.lake_dir)

    second = backfill(airflow_stack, "--reprocess-behavior", "completed")
    assert [r["state"] for r in second] == ["success"] * 7, second
    assert validated_checksums(airflow_stack.lake_dir) == sums_first
