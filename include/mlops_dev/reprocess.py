"""Reprocess the quarantined days of a range, after the suite or the source was fixed.

    python -m mlops_dev.reprocess --from 2026-01-01 --to 2026-01-31 [--dataset NAME]     (make reprocess ARGS="...")

Lists the days of the range whose latest batch sits in the lake's quarantine zone (those are the ones
expected to be reprocessed), then creates a backfill of ``mlops_ingest`` over the range through the
Airflow REST API with ``reprocess_behavior`` ``failed``: Airflow runs again every day whose last run
failed (a quarantined batch fails its run) and every day without a run, and leaves the validated days
alone. It follows the backfill to completion and reports each day: validated, quarantined again
(with the checks that failed), failed for another reason, or left alone. The exit status is 0 when
every reprocessed day validated.

The scheduler does the work: this only creates the backfill and watches (the DAG is unpaused when it
is paused, since backfill runs only start on an unpaused DAG). With ``--dataset NAME``, the days are
that dataset's: its ingest DAG (``mlops_ingest__<name>``) and its lake.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from mlops_dev.airflow_api import AirflowAPI, AirflowAPIError

if TYPE_CHECKING:
    from mlops_pipeline.data.lake import Lake

DAG_ID = "mlops_ingest"
REPROCESS_BEHAVIOR = "failed"
FINISHED = ("success", "failed")


def midnight(day: date) -> str:
    return f"{day.isoformat()}T00:00:00+00:00"


def days_between(first: date, last: date) -> list[date]:
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def quarantined_days(lake: Lake, days: Sequence[date]) -> dict[str, list[str]]:
    """``ds`` -> the failed checks of each day of ``days`` whose latest batch is in quarantine (no
    validated partition committed after it)."""
    wanted = {day.isoformat() for day in days}
    found: dict[str, list[str]] = {}
    for ds in lake.list_partitions("quarantine"):
        if ds not in wanted:
            continue
        quarantined = lake.read_manifest("quarantine", ds) or {}
        validated = lake.read_manifest("validated", ds)
        if validated is not None and str(validated.get("committed_at", "")) >= str(quarantined.get("committed_at", "")):
            continue  # validated since: nothing to reprocess
        found[ds] = [str(failure) for failure in quarantined.get("failures") or []]
    return found


@dataclass
class DayOutcome:
    ds: str
    status: str  # validated | quarantined | failed | not reprocessed
    detail: str = ""
    run_id: str | None = None


@dataclass
class Report:
    backfill_id: int | None
    expected: dict[str, list[str]]
    days: list[DayOutcome] = field(default_factory=list)

    @property
    def reprocessed(self) -> list[DayOutcome]:
        return [day for day in self.days if day.run_id is not None]

    @property
    def ok(self) -> bool:
        return bool(self.reprocessed) and all(day.status == "validated" for day in self.reprocessed)


def _newest_runs(runs: Sequence[dict[str, Any]], since: str) -> dict[str, dict[str, Any]]:
    """Per day, the newest run started for the backfill (queued at or after ``since``)."""
    newest: dict[str, dict[str, Any]] = {}
    for run in runs:
        queued = str(run.get("queued_at") or run.get("start_date") or "")
        if run.get("run_type") != "backfill" or queued < since:
            continue
        ds = str(run.get("logical_date") or "")[:10]
        if ds not in newest or queued > str(newest[ds].get("queued_at") or ""):
            newest[ds] = run
    return newest


def follow(
    api: AirflowAPI,
    backfill: dict[str, Any],
    days: Sequence[date],
    *,
    timeout: float,
    poll_seconds: float = 3.0,
    say: Callable[[str], None] = print,
    dag_id: str = DAG_ID,
) -> dict[str, dict[str, Any]]:
    """Wait until the backfill is complete and its runs are finished; its newest run per day."""
    since = str(backfill.get("created_at") or "")
    deadline = time.monotonic() + timeout
    first, last = midnight(min(days)), midnight(max(days))
    last_line = ""
    while True:
        state = next((b for b in api.backfills(dag_id) if b["id"] == backfill["id"]), {})
        runs = _newest_runs(api.dag_runs(dag_id, logical_date_gte=first, logical_date_lte=last), since)
        finished = [run for run in runs.values() if run["state"] in FINISHED]
        if state.get("completed_at") and len(finished) == len(runs):
            return runs
        line = f"backfill {backfill['id']}: {len(finished)}/{len(runs)} run(s) finished"
        if line != last_line:
            say(line)
            last_line = line
        if time.monotonic() > deadline:
            raise AirflowAPIError(f"backfill {backfill['id']} of {dag_id} not complete after {timeout:.0f}s: "
                                  f"{ {ds: run['state'] for ds, run in runs.items()} }")  # fmt: skip
        time.sleep(poll_seconds)


def outcome_of(lake: Lake, ds: str, run: dict[str, Any] | None) -> DayOutcome:
    if run is None:
        return DayOutcome(ds, "not reprocessed", "its last run succeeded")
    if run["state"] == "success":
        validated = lake.read_manifest("validated", ds) or {}
        return DayOutcome(ds, "validated", f"{validated.get('row_count', '?')} rows", run["dag_run_id"])
    quarantined = lake.read_manifest("quarantine", ds)
    since = str(run.get("start_date") or run.get("queued_at") or "")[:19]
    if quarantined is not None and str(quarantined.get("committed_at", ""))[:19] >= since:
        failures = [str(failure) for failure in quarantined.get("failures") or []]
        return DayOutcome(ds, "quarantined", "; ".join(failures) or "see Data Docs", run["dag_run_id"])
    return DayOutcome(ds, "failed", "the run failed before validation: see its task logs", run["dag_run_id"])


def wait_for_open_backfill(
    api: AirflowAPI, *, timeout: float, poll_seconds: float = 3.0, say: Callable[[str], None] = print, dag_id: str = DAG_ID
) -> None:
    """Airflow allows one open backfill per DAG. One whose runs have all finished is closed by the
    scheduler's next pass (and one left by a stopped scheduler when it starts again): wait for that,
    up to ``timeout``. One still running is named, with how to cancel it."""
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        open_ = [b for b in api.backfills(dag_id) if b.get("completed_at") is None]
        if not open_:
            return
        backfill = open_[0]
        if time.monotonic() > deadline:
            raise AirflowAPIError(
                f"backfill {backfill['id']} of {dag_id} ({str(backfill.get('from_date'))[:10]}.."
                f"{str(backfill.get('to_date'))[:10]}) is still running, and Airflow allows one open backfill "
                f"per DAG: wait for it, or cancel it (PUT /api/v2/backfills/{backfill['id']}/cancel, or the "
                "Backfills tab of the DAG in the UI) and run this again"
            )
        if not announced:
            say(f"backfill {backfill['id']} of {dag_id} is still open: waiting up to {timeout:.0f}s for it to complete")
            announced = True
        time.sleep(poll_seconds)


def reprocess(
    api: AirflowAPI,
    lake: Lake,
    first: date,
    last: date,
    *,
    max_active_runs: int = 4,
    timeout: float = 1800.0,
    open_backfill_timeout: float = 180.0,
    poll_seconds: float = 3.0,
    say: Callable[[str], None] = print,
    dag_id: str = DAG_ID,
) -> Report:
    days = days_between(first, last)
    expected = quarantined_days(lake, days)
    if expected:
        say(f"quarantined days expected to be reprocessed ({len(expected)}):")
        for ds, failures in sorted(expected.items()):
            say(f"  ds={ds}: {len(failures)} failed check(s)" + (f": {failures[0]}" + (" ..." if len(failures) > 1 else "") if failures else ""))
    else:
        say(f"no quarantined day between {first} and {last} in {lake.uri}: only days whose last run failed "
            "or that have no run will be processed")  # fmt: skip
    if api.dag(dag_id).get("is_paused"):
        say(f"{dag_id} is paused: unpausing it (backfill runs start only on an unpaused DAG)")
        api.set_paused(dag_id, False)
    wait_for_open_backfill(api, timeout=open_backfill_timeout, poll_seconds=poll_seconds, say=say, dag_id=dag_id)
    # The DAG's default Params ({}): a scenario forced on the failed run is not carried over.
    backfill = api.create_backfill(dag_id, midnight(first), midnight(last), reprocess=REPROCESS_BEHAVIOR,
                                   max_active_runs=max_active_runs, conf={})  # fmt: skip
    say(f"backfill {backfill['id']} of {dag_id} {first}..{last} (reprocess_behavior={REPROCESS_BEHAVIOR})")
    runs = follow(api, backfill, days, timeout=timeout, poll_seconds=poll_seconds, say=say, dag_id=dag_id)
    report = Report(backfill.get("id"), expected)
    for day in days:
        report.days.append(outcome_of(lake, day.isoformat(), runs.get(day.isoformat())))
    for outcome in report.days:
        say(f"  ds={outcome.ds}: {outcome.status}" + (f" ({outcome.detail})" if outcome.detail else ""))
    missed = sorted(ds for ds in expected if ds not in {d.ds for d in report.reprocessed})
    if missed:
        say(f"quarantined but not reprocessed (their last run did not fail, e.g. it was marked success): {missed}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_dev.reprocess", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--from", dest="first", type=date.fromisoformat, required=True, help="first day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="last", type=date.fromisoformat, required=True, help="last day, included")
    parser.add_argument("--max-active-runs", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the backfill")
    parser.add_argument("--dataset", default=None, help="the dataset whose days to reprocess (default: the primary one, "
                        "MLOPS_DATASET); its DAG is mlops_ingest__<name>")
    args = parser.parse_args(argv)

    from mlops_dev.dataset_scope import UnknownDataset, scope_to_dataset

    from mlops_pipeline.storage import open_lake

    try:
        dag_id = scope_to_dataset(args.dataset, DAG_ID)  # the lake opened below is then that dataset's
        report = reprocess(AirflowAPI.local(), open_lake(), args.first, args.last,
                           max_active_runs=args.max_active_runs, timeout=args.timeout, dag_id=dag_id)  # fmt: skip
    except (AirflowAPIError, UnknownDataset, ValueError) as exc:
        print(f"reprocess failed: {exc}", file=sys.stderr)
        return 2
    if not report.reprocessed:
        print(f"nothing was reprocessed: no day between {args.first} and {args.last} had a failed run or no run")
        return 1
    still = [day.ds for day in report.reprocessed if day.status != "validated"]
    print(f"{len(report.reprocessed) - len(still)} day(s) validated" + (f", still failing: {still}" if still else ""))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
