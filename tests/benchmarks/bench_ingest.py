"""Ingest benchmark (not a test): DAG parse cost and a 90-day backfill on the real scheduler, against
Airflow's own floor on this machine.

    python tests/benchmarks/bench_ingest.py [--repeats 7] [--days 90] [--rounds 3] [--skip-backfill]

1. Parse time of every DAG file, against a bare ``import airflow.sdk`` measured in the same run
   (fresh interpreter each time, medians of --repeats). ``parse_ratio`` = DAG file / bare import
   (a DAG file should cost little beyond Airflow itself). Every ``dags/*.py`` is measured.
2. Wall time of a backfill of --days daily windows of ``mlops_ingest`` (extract + GX validation +
   publish) on a real scheduler, DAG processor and api-server started for the run in temp folders,
   and, on the same stack in the same run, of a no-op DAG with the same timetable, the same number of
   tasks (one) and the same concurrency: Airflow's own floor here. --rounds rounds, the order of the
   two alternating, after a short backfill of each that is not measured (a fresh stack's first
   backfill pays one-time costs); ``ratio_to_floor`` = the median of ours / the median floor.

Writes tests/benchmarks/results/ingest.json with the goals (goals.py) met or missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "benchmarks"))
from provenance import provenance, write_results  # noqa: E402

RESULTS = REPO / "tests" / "benchmarks" / "results" / "ingest.json"
FLOOR_DAG_ID = "bench_ingest_floor"
WARMUP_DAYS = 8  # per DAG, before the measured rounds
# The floor: what Airflow alone costs for a backfill of the ingest DAG's shape (its timetable, one
# task, its concurrency), with a task that does nothing.
FLOOR_DAG = f'''
from airflow.sdk import dag, task

from mlops_pipeline.orchestration.timetables import DailyWindowTimetable


@dag(dag_id="{FLOOR_DAG_ID}", schedule=DailyWindowTimetable("0 0 * * *", timezone="UTC"), catchup=False,
     max_active_runs=4, tags=["benchmark"])
def floor():
    @task
    def ingest() -> None:
        return None

    ingest()


floor()
'''


def _time_python(code: str, env: dict[str, str], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        samples.append(time.perf_counter() - started)
    return samples


def bench_parse(env: dict[str, str], repeats: int) -> dict:
    bare = _time_python("import airflow.sdk", env, repeats)
    files = {}
    for dag_file in sorted((REPO / "dags").glob("*.py")):
        # Interleave with the baseline so machine noise hits both alike.
        samples = _time_python(f"import runpy; runpy.run_path({str(dag_file)!r})", env, repeats)
        bare += _time_python("import airflow.sdk", env, 1)
        files[dag_file.name] = {
            "median_s": round(statistics.median(samples), 3),
            "samples_s": [round(s, 3) for s in samples],
        }
    bare_median = statistics.median(bare)
    for entry in files.values():
        entry["parse_ratio"] = round(entry["median_s"] / bare_median, 3)
    return {
        "bare_import_airflow_sdk_median_s": round(bare_median, 3),
        "files": files,
    }


def _backfill(api, dag_id: str, first: date, last: date, days: int) -> dict:
    """One backfill of ``dag_id`` over [first, last], timed from its creation to its last run's end."""
    started = time.perf_counter()
    created = datetime.now(UTC)
    api.backfill(dag_id, first.isoformat(), last.isoformat(), max_active_runs=8)
    runs = api.wait_for_runs(
        dag_id,
        run_type="backfill",
        expected=days,
        timeout=3600,
        progress=lambda rs: sys.stdout.write(
            f"\r[{dag_id}] {sum(r['state'] in ('success', 'failed') for r in rs)}/{days} {time.perf_counter() - started:5.0f}s"
        ),
        logical_date_gte=f"{first.isoformat()}T00:00:00Z",
        logical_date_lte=f"{last.isoformat()}T23:59:59Z",
    )
    # From the runs' own end times (same clock, this machine), not from when the 3 s poll saw them.
    elapsed = max(datetime.fromisoformat(r["end_date"].replace("Z", "+00:00")) for r in runs) - created
    elapsed = elapsed.total_seconds()
    print()
    api.wait_for_backfills_completed(dag_id)  # the next round's backfill of this DAG needs it
    return {
        "backfill_s": round(elapsed, 1),
        "per_window_s": round(elapsed / days, 2),
        "succeeded": sum(r["state"] == "success" for r in runs),
        "failed": sum(r["state"] == "failed" for r in runs),
    }


def bench_backfill(days: int, rounds: int, dags_folder: Path) -> dict:
    from mlops_dev import services
    from mlops_dev.airflow_api import AirflowAPI

    from mlops_pipeline.config import get_settings

    # main() gave the run its own Airflow home, run dir (so its own PostgreSQL cluster and port) and
    # lake; the dataset's start date moves back to the first window. Each round takes the next block
    # of days, so no round finds its windows done by the one before.
    first = date(2025, 1, 1)
    overrides = {"MLOPS_START_DATE": first.isoformat(), "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder)}
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    get_settings.cache_clear()
    ours: list[dict] = []
    floor: list[dict] = []
    warmup: list[dict] = []
    try:
        services.setup()
        services.start(["api-server", "scheduler", "dag-processor"], wait=240)
        api = AirflowAPI.local()
        for dag_id in ("mlops_ingest", FLOOR_DAG_ID):
            api.wait_for_dag(dag_id, timeout=300)
        # A short backfill of each DAG first, not measured, on days after the measured ones: the
        # first backfill of a fresh stack pays one-time costs (the new metadata DB's first inserts,
        # the first runs' caches on disk) that would otherwise land on whichever DAG goes first.
        warm_first = first + timedelta(days=rounds * days)
        for dag_id, samples in (("mlops_ingest", warmup), (FLOOR_DAG_ID, warmup)):
            warm_last = warm_first + timedelta(days=WARMUP_DAYS - 1)
            samples.append({"dag_id": dag_id, "days": WARMUP_DAYS, **_backfill(api, dag_id, warm_first, warm_last, WARMUP_DAYS)})
        for number in range(rounds):
            start = first + timedelta(days=number * days)
            last = start + timedelta(days=days - 1)
            order = [("mlops_ingest", ours), (FLOOR_DAG_ID, floor)]
            for dag_id, samples in order if number % 2 == 0 else order[::-1]:
                samples.append({"round": number + 1, "first": start.isoformat(), **_backfill(api, dag_id, start, last, days)})
    finally:
        services.stop(["api-server", "scheduler", "dag-processor", "postgres"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
    ours_median = statistics.median(r["backfill_s"] for r in ours)
    floor_median = statistics.median(r["backfill_s"] for r in floor)
    ratio = round(ours_median / floor_median, 2)
    return {
        "days": days,
        "rounds": rounds,
        "ours": ours,
        "floor": floor,
        "warmup_not_measured": warmup,
        "ours_median_s": round(ours_median, 1),
        "floor_median_s": round(floor_median, 1),
        "ratio_to_floor": ratio,
        "failed_runs": sum(r["failed"] for r in ours + floor),
    }



def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-backfill", action="store_true")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    scratch.chmod(0o755)  # the embedded PostgreSQL runs as its own system user and must reach its data
    dags_folder = scratch / "dags"
    dags_folder.mkdir()
    (dags_folder / "mlops_ingest.py").symlink_to(REPO / "dags" / "mlops_ingest.py")
    (dags_folder / f"{FLOOR_DAG_ID}.py").write_text(FLOOR_DAG)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(scratch / "airflow"),
            "MLOPS_RUN_DIR": str(scratch / "run"),
            "MLOPS_LAKE_URI": str(scratch / "lake"),
            "MLOPS_AIRFLOW_PORT": os.environ.get("MLOPS_BENCH_AIRFLOW_PORT", "28080"),
            "MLOPS_POSTGRES_PORT": os.environ.get("MLOPS_BENCH_POSTGRES_PORT", "25433"),
            # The opt-in executor that imports GX, pandas and pyarrow once before its workers fork
            # (the embedded default is Airflow's LocalExecutor; see mlops_dev.services)
            "AIRFLOW__CORE__EXECUTOR": os.environ.get(
                "AIRFLOW__CORE__EXECUTOR", "mlops_pipeline.orchestration.executor.PreloadingLocalExecutor"
            ),
        }
    )
    from mlops_dev.services import airflow_environment

    result: dict = provenance()
    result["dag_parse"] = bench_parse(airflow_environment(), args.repeats)
    for name, entry in result["dag_parse"]["files"].items():
        print(
            f"parse {name:24s} {entry['median_s']:.2f}s  ratio {entry['parse_ratio']:.2f} (bare import {result['dag_parse']['bare_import_airflow_sdk_median_s']:.2f}s)"
        )
    if not args.skip_backfill:
        backfill = result["backfill"] = bench_backfill(args.days, args.rounds, dags_folder)
        print(
            f"backfill of {args.days} days, median of {args.rounds}: ours {backfill['ours_median_s']}s, "
            f"Airflow's floor {backfill['floor_median_s']}s, ratio {backfill['ratio_to_floor']}, "
            f"{backfill['failed_runs']} failed runs"
        )
    write_results(RESULTS, result, "ingest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
