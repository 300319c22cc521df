"""Backfills created while the scheduler writes: every DAG unpaused, no pause first, no retry.

The metadata DB takes concurrent writers, so neither the CLI (which writes the backfill and its runs
from its own process) nor the REST API (the api-server's) ever loses to the scheduler. Only one
backfill of a DAG may be open at a time, so each is cancelled before the next one is created; each
covers two new days, so every create also writes new DAG runs.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

pytestmark = pytest.mark.integration

DAGS = ["mlops_ingest", "mlops_train", "mlops_deploy", "mlops_monitor"]
CREATES = 10
FIRST_DAY = date(2026, 4, 1)


def windows(offset: int) -> list[tuple[str, str]]:
    """``CREATES`` two-day ranges, none shared with another create of this test."""
    starts = [FIRST_DAY + timedelta(days=offset + 2 * i) for i in range(CREATES)]
    return [(start.isoformat(), (start + timedelta(days=1)).isoformat()) for start in starts]


@pytest.fixture(scope="module")
def unpaused_stack(airflow_stack):
    """The scheduler, DAG processor and api-server running, all four DAGs unpaused (paused again after,
    so later tests of the session do not compete with scheduled runs)."""
    airflow_stack.run("start", "api-server", "scheduler", "dag-processor", check=True, timeout=300)
    api = airflow_stack.api()
    paused_before = {dag_id: api.wait_for_dag(dag_id, timeout=300)["is_paused"] for dag_id in DAGS}
    for dag_id in DAGS:
        api.set_paused(dag_id, False)
    try:
        yield airflow_stack
    finally:
        for dag_id, paused in paused_before.items():
            api.set_paused(dag_id, paused)


@pytest.fixture
def api(unpaused_stack):
    """The REST client; a backfill a failed test left open is cancelled after it."""
    api = unpaused_stack.api()
    yield api
    for backfill in open_backfills(api):
        api.cancel_backfill(backfill["id"])


def assert_scheduler_runs_and_dags_unpaused(api) -> None:
    health = api.health()
    assert health["scheduler"]["status"] == "healthy", health
    for dag_id in DAGS:
        assert api.wait_for_dag(dag_id)["is_paused"] is False, dag_id


def open_backfills(api) -> list[dict]:
    return [b for b in api.backfills("mlops_ingest") if b.get("completed_at") is None]


def cancel(api, backfill: dict) -> None:
    cancelled = api.cancel_backfill(backfill["id"])
    assert cancelled["completed_at"] is not None, cancelled


def test_cli_creates_ten_backfills_of_an_unpaused_dag_while_the_scheduler_runs(unpaused_stack, api):
    assert_scheduler_runs_and_dags_unpaused(api)
    assert open_backfills(api) == []
    for from_date, to_date in windows(0):
        known = {b["id"] for b in api.backfills("mlops_ingest")}
        done = unpaused_stack.airflow(
            "backfill", "create", "--dag-id", "mlops_ingest", "--from-date", from_date, "--to-date", to_date,
            "--max-active-runs", "1",
        )
        assert done.returncode == 0, f"backfill {from_date}..{to_date} failed:\n{(done.stdout + done.stderr)[-3000:]}"
        created = [b for b in api.backfills("mlops_ingest") if b["id"] not in known]
        assert len(created) == 1, created
        backfill = created[0]
        output = done.stdout + done.stderr
        # The command logs each run it created, with the backfill's id.
        logged = re.findall(r"Created backfill Dag run\..*?backfill_id\W+(\d+)", output)
        assert logged == [str(backfill["id"])] * 2, output[-3000:]
        assert (backfill["from_date"][:10], backfill["to_date"][:10]) == (from_date, to_date), backfill
        assert backfill["completed_at"] is None, backfill
        runs = api.dag_runs("mlops_ingest", run_type="backfill", logical_date_gte=f"{from_date}T00:00:00Z",
                            logical_date_lte=f"{to_date}T00:00:00Z")
        assert sorted(r["logical_date"][:10] for r in runs) == [from_date, to_date], done.stdout[-2000:]
        cancel(api, backfill)
    assert_scheduler_runs_and_dags_unpaused(api)


def test_rest_api_creates_ten_backfills_of_an_unpaused_dag_while_the_scheduler_runs(api):
    assert_scheduler_runs_and_dags_unpaused(api)
    assert open_backfills(api) == []
    for from_date, to_date in windows(2 * CREATES):
        backfill = api.create_backfill("mlops_ingest", from_date, to_date, max_active_runs=1)
        assert backfill["dag_id"] == "mlops_ingest" and backfill["completed_at"] is None, backfill
        assert (backfill["from_date"][:10], backfill["to_date"][:10]) == (from_date, to_date), backfill
        assert backfill["id"] in {b["id"] for b in open_backfills(api)}
        cancel(api, backfill)
    assert_scheduler_runs_and_dags_unpaused(api)
