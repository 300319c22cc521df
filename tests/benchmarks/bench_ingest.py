"""Ingest benchmark (not a test): DAG parse cost and a 90-day backfill on the real scheduler.

    python tests/benchmarks/bench_ingest.py [--repeats 7] [--days 90] [--skip-backfill]

1. Parse time of every DAG file, against a bare ``import airflow.sdk`` measured in the same run
   (fresh interpreter each time, medians of --repeats). ``parse_ratio`` = DAG file / bare import;
   goal: at most 1.5 (a DAG file costs little beyond Airflow itself).
2. Wall time of a backfill of --days daily windows of ``mlops_ingest`` (extract + GX validation +
   publish) on a real scheduler, DAG processor and api-server started for the run in temp folders;
   goal: at most 600 s for 90 days on 2 cores.

Writes tests/benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tests" / "benchmarks" / "results" / "ingest.json"


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
        "goal_parse_ratio_max": 1.5,
    }


def bench_backfill(days: int) -> dict:
    from mlops_dev import services
    from mlops_dev.airflow_api import AirflowAPI

    from mlops_pipeline.config import get_settings

    first = date(2025, 1, 1)
    last = first + timedelta(days=days - 1)
    # main() gave the run its own Airflow home, run dir (so its own PostgreSQL cluster and port) and
    # lake; the dataset's start date moves back to the first window.
    overrides = {"MLOPS_START_DATE": first.isoformat()}
    saved = {key: os.environ.get(key) for key in overrides}
    os.environ.update(overrides)
    get_settings.cache_clear()
    try:
        services.setup()
        services.start(["api-server", "scheduler", "dag-processor"], wait=240)
        api = AirflowAPI.local()
        api.wait_for_dag("mlops_ingest", timeout=300)
        started = time.perf_counter()
        api.backfill("mlops_ingest", first.isoformat(), last.isoformat(), max_active_runs=8)
        runs = api.wait_for_runs(
            "mlops_ingest",
            run_type="backfill",
            expected=days,
            timeout=3600,
            progress=lambda rs: sys.stdout.write(
                f"\r[backfill] {sum(r['state'] in ('success', 'failed') for r in rs)}/{days} {time.perf_counter() - started:5.0f}s"
            ),
        )
        elapsed = time.perf_counter() - started
        print()
    finally:
        services.stop(["api-server", "scheduler", "dag-processor", "postgres"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
    return {
        "days": days,
        "backfill_s": round(elapsed, 1),
        "per_window_s": round(elapsed / days, 2),
        "succeeded": sum(r["state"] == "success" for r in runs),
        "failed": sum(r["state"] == "failed" for r in runs),
        "goal_backfill_90d_s_max": 600,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--skip-backfill", action="store_true")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    scratch.chmod(0o755)  # the embedded PostgreSQL runs as its own system user and must reach its data
    os.environ.update(
        {
            "AIRFLOW_HOME": str(scratch / "airflow"),
            "MLOPS_RUN_DIR": str(scratch / "run"),
            "MLOPS_LAKE_URI": str(scratch / "lake"),
            "MLOPS_AIRFLOW_PORT": os.environ.get("MLOPS_BENCH_AIRFLOW_PORT", "28080"),
            "MLOPS_POSTGRES_PORT": os.environ.get("MLOPS_BENCH_POSTGRES_PORT", "25433"),
        }
    )
    from mlops_dev.services import airflow_environment

    result: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result["dag_parse"] = bench_parse(airflow_environment(), args.repeats)
    for name, entry in result["dag_parse"]["files"].items():
        print(
            f"parse {name:24s} {entry['median_s']:.2f}s  ratio {entry['parse_ratio']:.2f} (bare import {result['dag_parse']['bare_import_airflow_sdk_median_s']:.2f}s)"
        )
    if not args.skip_backfill:
        result["backfill"] = bench_backfill(args.days)
        if args.days == 90:
            result["backfill_90d_s"] = result["backfill"]["backfill_s"]
        print(
            f"backfill of {args.days} days: {result['backfill']['backfill_s']}s ({result['backfill']['per_window_s']}s a window)"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(RESULTS)
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
