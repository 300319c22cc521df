"""``make demo``: the main job on embedded defaults, on a real scheduler.

Starts the project-local Airflow (api-server, scheduler, DAG processor) and backfills the last 14
complete days through ``mlops_ingest``. One of those days is scheduled as a bad batch (unless
``MLOPS_BAD_BATCH_DAYS`` is set) so the summary shows the quarantine path too. Services keep
running afterwards; ``make stop`` stops them.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta

DEMO_DAYS = 14


def _progress(prefix: str):
    started = time.monotonic()

    def show(runs: list[dict]) -> None:
        states = [r["state"] for r in runs]
        line = (
            f"\r{prefix} {sum(s in ('success', 'failed') for s in states)}/{len(states)} runs finished "
            f"({states.count('success')} ok, {states.count('failed')} failed, {states.count('running')} running) "
            f"{time.monotonic() - started:5.0f}s"
        )
        sys.stdout.write(line)
        sys.stdout.flush()

    return show


def main() -> int:
    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=DEMO_DAYS), today - timedelta(days=1)
    os.environ.setdefault("MLOPS_BAD_BATCH_DAYS", (last - timedelta(days=3)).isoformat())

    from mlops_pipeline import services
    from mlops_pipeline.airflow_api import AirflowAPI
    from mlops_pipeline.cli import cmd_summary
    from mlops_pipeline.config import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    print(f"[demo] starting Airflow (api-server, scheduler, dag-processor) under {services.airflow_home()}")
    services.start(["api-server", "scheduler", "dag-processor"], wait=180)
    api = AirflowAPI.local()
    print("[demo] waiting for the DAG processor to parse mlops_ingest")
    api.wait_for_dag("mlops_ingest", timeout=300)
    print(f"[demo] backfilling {first} .. {last} ({DEMO_DAYS} daily windows), bad batch scheduled on {os.environ['MLOPS_BAD_BATCH_DAYS']}")
    backfill = api.backfill("mlops_ingest", first.isoformat(), last.isoformat(), reprocess="completed")
    runs = api.wait_for_runs(
        "mlops_ingest", run_type="backfill", expected=DEMO_DAYS, timeout=1800, progress=_progress("[ingest]"),
        logical_date_gte=f"{first.isoformat()}T00:00:00Z", logical_date_lte=f"{last.isoformat()}T00:00:00Z",
    )
    runs = [r for r in runs if first.isoformat() <= r["logical_date"][:10] <= last.isoformat()]
    print()
    print(f"[demo] backfill {backfill['id']} done: {sum(r['state'] == 'success' for r in runs)} succeeded, "
          f"{sum(r['state'] == 'failed' for r in runs)} failed (quarantined)")
    print()

    class _Args:
        days = DEMO_DAYS

    cmd_summary(_Args())  # type: ignore[arg-type]
    password = services.admin_password()
    print()
    print(f"Airflow UI:  http://127.0.0.1:{settings.airflow_port}   login: admin / {password}")
    print(f"             (DAG mlops_ingest -> Grid shows the {DEMO_DAYS} backfill runs; a failed run's log names the expectations)")
    print(f"Lake:        {settings.lake_uri}")
    print("Stop with:   make stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
