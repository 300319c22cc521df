"""Batch scoring benchmark (not a test): ``mlops_score``'s scorer vs ``mlflow.pyfunc`` on a 1M-row day.

    python tests/benchmarks/bench_score.py [--rows 1000000] [--repeats 3] [--chunk-rows 100000] [--work-dir DIR]

The day is a validated partition of synthetic churn rows (one parquet file, as ingest writes it).
The models are trained by the project's training steps (fit, calibrate, evaluate) on 3 smaller days
and saved with the flavor and arguments training logs them with, one per candidate (xgboost,
baseline: a scikit-learn pipeline). Per model, both contenders run in one invocation, each in a
fresh child process whose peak RSS (``VmHWM``) is measured; times include importing the libraries
and loading the model:

* ``pyfunc``, what a user would otherwise write: ``pd.read_parquet`` the day into one frame,
  ``mlflow.pyfunc.load_model(uri).predict(frame)``, write id, time and prediction to parquet. For
  the xgboost model this fails (MLflow's generic wrapper hands the raw string columns to XGBoost,
  which only knows the contract's category codes); the error is recorded, not hidden;
* ``ours``: :func:`mlops_pipeline.scoring.batch.score_partition` (record batches of
  ``--chunk-rows`` rows, the contract's encoding, the calibrated probability, parts + manifest).

Each contender runs ``--repeats`` times, in alternating order; the reported time is the median
and the peak memory the highest seen. Writes tests/benchmarks/results/score.json with the
machine, the date and the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "benchmarks"))
from provenance import provenance, write_results  # noqa: E402

RESULTS = REPO / "tests" / "benchmarks" / "results" / "score.json"
DAY = "2026-03-02"
TRAIN_DAYS = 3
TRAIN_ROWS = 3000
CANDIDATES = ("xgboost", "baseline")


def _peak_mb() -> float:
    """This process's peak RSS. ``VmHWM`` rather than ``ru_maxrss``: Linux carries ``ru_maxrss``
    over an exec from the parent that spawned us, which would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --- inputs ------------------------------------------------------------------------------------------


def _day_frame(day: date, rows: int):
    import pandas as pd

    from mlops_pipeline.data.synthetic import generate_day
    from mlops_pipeline.datasets import load_dataset_spec

    spec = load_dataset_spec("churn")
    frame = generate_day(day, seed=42, rows=rows)
    frame[spec.time_column] = pd.to_datetime(frame[spec.time_column], utc=True)
    return frame


def write_inputs(work: Path, rows: int) -> dict:
    """The validated day to score, and one saved model per candidate."""
    import pandas as pd

    from mlops_pipeline.config import TrainSettings
    from mlops_pipeline.data.lake import DataFile, Lake, frame_to_parquet_bytes
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.deploy.artifacts import directory_digest
    from mlops_pipeline.training import steps
    from mlops_pipeline.training.data import PartitionRef, TrainingWindow
    from mlops_pipeline.training.recorder import model_flavor

    started = time.perf_counter()
    lake = Lake((work / "lake").as_uri())
    frame = _day_frame(date.fromisoformat(DAY), rows)
    data = frame_to_parquet_bytes(frame)
    lake.write_partition("validated", DAY, [DataFile("part-00000", ".parquet", data, rows=len(frame))], {})
    del frame

    dataset = load_dataset_spec("churn")
    first = date.fromisoformat(DAY) - timedelta(days=TRAIN_DAYS)
    days = [first + timedelta(days=i) for i in range(TRAIN_DAYS)]
    train = pd.concat([_day_frame(d, TRAIN_ROWS) for d in days], ignore_index=True)
    train = train.sort_values([dataset.time_column, dataset.id_column], kind="mergesort").reset_index(drop=True)
    parts = tuple(PartitionRef(d.isoformat(), f"bench://{d}", ("0" * 64,), TRAIN_ROWS) for d in days)
    settings = TrainSettings(calibration_folds=3, min_split_rows=50)
    prepared = steps.split(train, dataset, TrainingWindow("bench://", DAY, TRAIN_DAYS, parts), settings)
    models = {}
    for candidate in CANDIDATES:
        fitted = steps.fit(candidate, prepared.splits, prepared.spec, {}, seed=7, nthread=1)
        calibrated, _ = steps.calibrate(fitted, prepared.splits.valid, settings.calibration_folds)
        winner = steps.evaluate(calibrated, prepared.splits).candidate
        flavor, arguments = model_flavor(winner, prepared.splits.train)
        path = work / f"model-{candidate}"
        flavor.save_model(winner.model, str(path), **arguments)
        models[candidate] = {"path": str(path), "flavor": winner.flavor, "artifact_sha256": directory_digest(path)}
    (work / "models.json").write_text(json.dumps(models))
    return {"rows": rows, "parquet_bytes": len(data), "seconds": round(time.perf_counter() - started, 1), "models": models}


# --- contenders (each in its own child process) ------------------------------------------------------


def run_ours(work: Path, candidate: str, chunk_rows: int) -> dict:
    started = time.perf_counter()
    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.registry.models import load_model
    from mlops_pipeline.scoring.batch import ModelRef, score_partition

    model_info = json.loads((work / "models.json").read_text())[candidate]
    model = load_model(model_info["path"])
    ref = ModelRef("bench", "1", model_info["artifact_sha256"], "", "pinned")
    loaded = time.perf_counter()
    manifest = score_partition(Lake((work / "lake").as_uri()), DAY, model, ref, dataset="churn", chunk_rows=chunk_rows)
    finished = time.perf_counter()
    return {
        "rows": manifest["row_count"],
        "parts": len(manifest["files"]),
        "load_s": round(loaded - started, 2),
        "score_s": round(finished - loaded, 2),
        "total_s": round(finished - started, 2),
        "peak_rss_mb": _peak_mb(),
    }


def run_pyfunc(work: Path, candidate: str) -> dict:
    started = time.perf_counter()
    import mlflow.pyfunc
    import pandas as pd

    from mlops_pipeline.data.lake import Lake

    model_info = json.loads((work / "models.json").read_text())[candidate]
    lake = Lake((work / "lake").as_uri())
    model = mlflow.pyfunc.load_model(model_info["path"])
    loaded = time.perf_counter()
    frame = pd.read_parquet(lake.partition_path("validated", DAY))
    read = time.perf_counter()
    try:
        prediction = model.predict(frame)
    except Exception as exc:  # recorded: this is what a user of the generic wrapper meets
        return {"failed": f"{type(exc).__name__}: {str(exc)[:300]}", "rows": len(frame), "peak_rss_mb": _peak_mb(),
                "total_s": round(time.perf_counter() - started, 2)}  # fmt: skip
    predicted = time.perf_counter()
    out = frame[["customer_id", "event_time"]].assign(prediction=list(prediction) if not hasattr(prediction, "shape") else prediction)
    out.to_parquet(work / f"pyfunc-{candidate}.parquet", index=False)
    finished = time.perf_counter()
    return {
        "rows": len(frame),
        "load_s": round(loaded - started, 2),
        "read_s": round(read - loaded, 2),
        "predict_s": round(predicted - read, 2),
        "write_s": round(finished - predicted, 2),
        "total_s": round(finished - started, 2),
        "peak_rss_mb": _peak_mb(),
    }


def _child(kind: str, candidate: str, work: Path, chunk_rows: int) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'include'}:{REPO}", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--candidate", candidate, "--work-dir", str(work), "--chunk-rows", str(chunk_rows)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{kind} {candidate} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(samples: list[dict]) -> dict:
    """The median run (by total time), with every run's time and the highest peak memory of all."""
    ordered = sorted(samples, key=lambda s: s["total_s"])
    middle = dict(ordered[len(ordered) // 2])
    middle["median_total_s"] = round(statistics.median(s["total_s"] for s in samples), 2)
    middle["all_total_s"] = [s["total_s"] for s in samples]
    middle["peak_rss_mb"] = max(s["peak_rss_mb"] for s in samples)
    return middle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--work-dir", type=Path, default=None, help="keep inputs here (default: a temp dir, removed)")
    parser.add_argument("--child", choices=["ours", "pyfunc"], help=argparse.SUPPRESS)
    parser.add_argument("--candidate", choices=CANDIDATES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = run_ours(args.work_dir, args.candidate, args.chunk_rows) if args.child == "ours" else run_pyfunc(args.work_dir, args.candidate)
        print(json.dumps(result))
        return 0

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-score-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    try:
        print(f"[bench-score] writing a {args.rows}-row validated day and training the models under {work}", flush=True)
        inputs = write_inputs(work, args.rows)
        for candidate in CANDIDATES:
            runs: dict[str, list[dict]] = {"ours": [], "pyfunc": []}
            for repeat in range(args.repeats):
                for kind in (["ours", "pyfunc"] if repeat % 2 == 0 else ["pyfunc", "ours"]):
                    print(f"[bench-score] {candidate}: {kind} ({repeat + 1}/{args.repeats}) ...", flush=True)
                    runs[kind].append(_child(kind, candidate, work, args.chunk_rows))
                    last = runs[kind][-1]
                    print(f"[bench-score]   {last.get('failed') or str(last['total_s']) + ' s'}, peak {last['peak_rss_mb']} MB", flush=True)
            ours = _median(runs["ours"])
            if any("failed" in s for s in runs["pyfunc"]):
                pyfunc = {"failed": runs["pyfunc"][0].get("failed"), "peak_rss_mb": max(s["peak_rss_mb"] for s in runs["pyfunc"])}
                comparison = {"pyfunc_failed": True}
            else:
                pyfunc = _median(runs["pyfunc"])
                comparison = {
                    "time_ratio": round(ours["median_total_s"] / pyfunc["median_total_s"], 3),
                    "peak_rss_ratio": round(ours["peak_rss_mb"] / pyfunc["peak_rss_mb"], 3),
                }
            results[candidate] = {"ours": ours, "pyfunc": pyfunc, "comparison": comparison}
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)

    result = {
        **provenance(),
        "input": {**{k: v for k, v in inputs.items() if k != "models"}, "chunk_rows": args.chunk_rows, "repeats": args.repeats,
                  "flavors": {c: m["flavor"] for c, m in inputs["models"].items()}},  # fmt: skip
        "results": results,
    }
    print(json.dumps({c: r["comparison"] for c, r in results.items()}, indent=2))
    write_results(RESULTS, result, "score")
    return 0


if __name__ == "__main__":
    sys.exit(main())
