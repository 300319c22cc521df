"""Memory benchmark (not a test): what the embedded stack holds on a laptop, by service, in PSS.

    python tests/benchmarks/bench_memory.py [--settle 30]

PSS (proportional set size) splits a page shared by N processes into N parts, so the sum over every
process counts shared pages once: the figure a laptop's memory actually pays. Each service is its
supervisor and every process under it (uvicorn workers, executor workers, PostgreSQL's backends).

1. The embedded MLflow server, side by side with what ``mlflow server`` starts with MLflow's own
   defaults (4 uvicorn workers and the job runner with its consumers, which this project never uses):
   the embedded default must hold less (the goal is in goals.py).
2. The whole embedded stack as ``make demo`` starts it, idle after --settle seconds: PostgreSQL,
   MLflow, api-server, scheduler, DAG processor, triggerer. The serving containers and the router are
   not in it: they exist only after a deploy, and bench_serving measures them.

Every process runs from temp folders on their own ports. Writes tests/benchmarks/results/memory.json
with the goals met or missed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "benchmarks"))
from provenance import provenance, write_results  # noqa: E402

RESULTS = REPO / "tests" / "benchmarks" / "results" / "memory.json"
MB = 1024 * 1024


def tree_pss_mb(pid: int) -> tuple[float, int]:
    """PSS of ``pid`` and all its descendants, in MB, and how many processes that is."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0
    total = 0
    counted = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
            counted += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return round(total / MB, 1), counted


def _wait_http(url: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


def mlflow_with_its_own_defaults(scratch: Path, port: int, settle: float) -> dict:
    """``mlflow server`` as its documentation starts it: no --workers, the job runner on."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    root = scratch / "mlflow-defaults"
    root.mkdir()
    log = (root / "server.log").open("ab")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/health")
        time.sleep(settle)
        pss, processes = tree_pss_mb(process.pid)
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=60)
    return {"pss_mb": pss, "processes": processes}


def embedded_stack(settle: float) -> dict:
    from mlops_dev import services

    names = ["postgres", "mlflow", *services.AIRFLOW_SERVICES]
    services.setup()
    services.start(names, wait=300)
    try:
        time.sleep(settle)
        by_service = {}
        for name in names:
            pid = services.running_pid(name)
            pss, processes = tree_pss_mb(pid) if pid else (0.0, 0)
            by_service[name] = {"pss_mb": pss, "processes": processes}
    finally:
        services.stop(list(reversed(names)))
    return {
        "services": by_service,
        "total_pss_mb": round(sum(entry["pss_mb"] for entry in by_service.values()), 1),
    }



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds idle after start before measuring")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    scratch.chmod(0o755)  # the embedded PostgreSQL runs as its own system user and must reach its data
    os.environ.update(
        {
            "AIRFLOW_HOME": str(scratch / "airflow"),
            "MLOPS_RUN_DIR": str(scratch / "run"),
            "MLOPS_LAKE_URI": str(scratch / "lake"),
            "MLOPS_MLFLOW_DIR": str(scratch / "mlflow"),
            "MLOPS_AIRFLOW_PORT": os.environ.get("MLOPS_BENCH_AIRFLOW_PORT", "28180"),
            "MLOPS_POSTGRES_PORT": os.environ.get("MLOPS_BENCH_POSTGRES_PORT", "25533"),
            "MLOPS_MLFLOW_PORT": os.environ.get("MLOPS_BENCH_MLFLOW_PORT", "25100"),
        }
    )
    result: dict = {
        **provenance(),
        "settle_s": args.settle,
    }
    stack = embedded_stack(args.settle)
    defaults = mlflow_with_its_own_defaults(scratch, int(os.environ["MLOPS_MLFLOW_PORT"]) + 1, args.settle)
    ratio = round(stack["services"]["mlflow"]["pss_mb"] / defaults["pss_mb"], 2)
    result["mlflow"] = {
        "embedded_default": stack["services"]["mlflow"],
        "mlflow_own_defaults": defaults,
        "ratio": ratio,
    }
    result["embedded_stack"] = stack
    for name, entry in stack["services"].items():
        print(f"{name:14s} {entry['pss_mb']:8.1f} MB PSS  ({entry['processes']} processes)")
    print(f"{'total':14s} {stack['total_pss_mb']:8.1f} MB PSS")
    print(
        f"MLflow: embedded {stack['services']['mlflow']['pss_mb']} MB vs its own defaults {defaults['pss_mb']} MB "
        f"({defaults['processes']} processes): ratio {ratio}"
    )
    write_results(RESULTS, result, "memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
