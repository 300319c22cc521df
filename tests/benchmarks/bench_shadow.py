"""Shadow benchmark: what a client of stable pays while a shadow gets a copy of its traffic.

The shadow strategy mirrors outside the client's path (``mlops_pipeline.deploy.shadow.mirror``, run
by the ``mirror`` sensor on an Airflow worker): each poke reads the lines stable's prediction log
gained and sends each request to the shadow. The claim to measure: clients pay no added latency,
client p50 with mirroring within 5 % of the p50 without.

Everything runs on 127.0.0.1 with the same model (tests/serving/model_fixture.py): ``stable`` and
``shadow`` are ``python -m mlops_serving`` (2 workers each, prediction log on), and a client sends
``--rows`` rows a request at a fixed rate (open loop, ``--rate`` requests/s, keep-alive). Each round
runs both variants back to back, in alternating order, so both see the same background load:

* ``off``  stable alone answers the client; the shadow runs idle;
* ``on``   the same, with a separate mirror process calling ``mirror()`` every ``--poke`` seconds
           (the demo's poke interval; production pokes every 30 s), its copies spaced over half
           the interval, as the ``mirror`` sensor does.

On this 2-core machine the shadow server, the mirror and stable share the cores; in production the
shadow is a container of its own and the mirror runs on a worker. The ratio is the median of the
per-round ratios of p50 (and p99). Nothing else a user would pick mirrors here: HAProxy mirrors only
through an SPOE agent Debian does not ship, so the reference is stable without a copy.

Writes tests/benchmarks/results/shadow.json (date, git commit, machine, load average, every round,
the medians and the goal of goals.py, met or missed). Run: ``.venv/bin/python tests/benchmarks/bench_shadow.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_serving import (  # noqa: E402
    HOST,
    PYTHON,
    REPO,
    WORKERS,
    Variant,
    base_env,
    free_port,
    load_average,
    machine,
    spawn,
    stop,
    wait_ready,
)
from provenance import provenance, write_results  # noqa: E402

from tests.serving.model_fixture import build_model_dir, make_records  # noqa: E402

HEADERS = {"Content-Type": "application/json", "X-Traffic-Source": "bench-client"}


def start_server(name: str, work: Path, model_dir: Path) -> Variant:
    variant = Variant(name, "/predict", "records", port=free_port())
    env = {
        **base_env(),
        "PYTHONPATH": str(REPO / "serving"),
        "MLOPS_MODEL_DIR": str(model_dir),
        "MLOPS_SERVING_HOST": HOST,
        "MLOPS_SERVING_PORT": str(variant.port),
        "MLOPS_SERVING_WORKERS": str(WORKERS),
        "MLOPS_PREDICTION_LOG_DIR": str(work / f"{name}-predictions"),
    }
    spawn(variant, [PYTHON, "-m", "mlops_serving"], env, work / f"{name}.log")
    return variant


def fixed_rate(url: str, body: bytes, rate: float, seconds: float, threads: int = 4) -> dict[str, Any]:
    """Open-loop load: request i is sent at ``start + i / rate`` (or as soon as a sender is free);
    latency is measured from the send. Returns p50/p99 in ms, the count and the errors."""
    total = int(rate * seconds)
    counter = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.1

    def sender() -> None:
        with httpx.Client(timeout=10) as client:
            while (index := next(counter)) < total:
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent = time.perf_counter()
                try:
                    status = client.post(url, content=body, headers=HEADERS).status_code
                except httpx.HTTPError as exc:
                    status, detail = 0, f"{type(exc).__name__}: {exc}"
                else:
                    detail = f"HTTP {status}"
                elapsed = (time.perf_counter() - sent) * 1000
                with lock:
                    if status == 200:
                        latencies.append(elapsed)
                    else:
                        errors.append(detail)

    workers = [threading.Thread(target=sender, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    latencies.sort()
    pick = lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 3) if latencies else None  # noqa: E731
    return {"requests": total, "ok": len(latencies), "errors": len(errors), "p50_ms": pick(0.5), "p99_ms": pick(0.99)}


def stable_version(log_dir: Path, timeout: float = 30.0) -> str:
    """The version stable logs under (its first logged line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(log_dir.glob("ds=*/*.requests.jsonl")):
            for line in path.read_text().splitlines():
                return str(json.loads(line)["model_version"])
        time.sleep(0.5)
    raise RuntimeError(f"stable logged nothing under {log_dir} in {timeout:.0f}s")


def mirror_loop(args: argparse.Namespace) -> int:
    """The mirror process: ``mirror()`` every ``--poke`` seconds until SIGTERM, as the sensor pokes."""
    from mlops_pipeline.deploy.shadow import MirrorState, mirror

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    log_dir, saved = Path(args.log_dir), Path(args.state)
    state = MirrorState.begin(log_dir)
    while not stopping.wait(args.poke):
        mirror(state, log_dir, args.version, args.shadow_url, saved, spread=args.poke / 2)
    mirror(state, log_dir, args.version, args.shadow_url, saved)  # what came since the last poke
    state.save(saved)
    return 0


def measure(args: argparse.Namespace) -> int:
    rounds: list[dict[str, Any]] = []
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as tmp:
        work = Path(tmp)
        model_dir = build_model_dir(work / "model", "xgboost")
        body = json.dumps({"records": make_records(args.rows, seed=2024, with_ids=True)}).encode()
        (work / "body.json").write_bytes(body)
        servers = {name: start_server(name, work, model_dir) for name in ("stable", "shadow")}
        try:
            for server in servers.values():
                wait_ready(server, work / "body.json")
            fixed_rate(servers["stable"].url, body, args.rate, args.warmup)  # warm-up, not measured
            version = stable_version(work / "stable-predictions")
            for index in range(args.rounds):
                order = ("off", "on") if index % 2 == 0 else ("on", "off")
                measured: dict[str, Any] = {}
                for mode in order:
                    mirrorer = None
                    state = work / f"mirror-{index}.json"
                    if mode == "on":
                        mirrorer = Variant("mirror", "", "records")
                        spawn(
                            mirrorer,
                            [PYTHON, str(Path(__file__)), "mirror", "--log-dir", str(work / "stable-predictions"),
                             "--version", version, "--shadow-url", f"http://{HOST}:{servers['shadow'].port}",
                             "--poke", str(args.poke), "--state", str(state)],
                            {**base_env(), "PYTHONPATH": f"{REPO / 'include'}:{REPO}"},
                            work / f"mirror-{index}.log",
                        )  # fmt: skip
                        time.sleep(1.0)  # its imports, before the window
                    measured[mode] = fixed_rate(servers["stable"].url, body, args.rate, args.duration)
                    if mirrorer is not None:
                        stop(mirrorer)
                        saved = json.loads(state.read_text())
                        measured[mode].update(mirrored=saved["sent"], shadow_answered=saved["answered"], shadow_failed=saved["failed"])
                rounds.append(measured)
                off, on = measured["off"], measured["on"]
                print(f"round {index + 1}: p50 {off['p50_ms']} -> {on['p50_ms']} ms, p99 {off['p99_ms']} -> {on['p99_ms']} ms, "
                      f"{on.get('mirrored')} mirrored", flush=True)  # fmt: skip
        finally:
            for server in servers.values():
                stop(server)

    def ratio(key: str) -> float:
        return round(statistics.median(r["on"][key] / r["off"][key] for r in rounds), 3)

    result = {
        "benchmark": "shadow",
        **provenance(),
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_average()},
        "parameters": {"rows": args.rows, "rate": args.rate, "duration_s": args.duration, "rounds": args.rounds,
                       "poke_s": args.poke, "workers": WORKERS},  # fmt: skip
        "medians": {
            mode: {key: statistics.median(r[mode][key] for r in rounds) for key in ("p50_ms", "p99_ms")} for mode in ("off", "on")
        },
        "ratios": {"p50": ratio("p50_ms"), "p99": ratio("p99_ms")},
        "errors": sum(r[mode]["errors"] for r in rounds for mode in ("off", "on")),
        "rounds": rounds,
    }
    print(json.dumps({k: result[k] for k in ("medians", "ratios", "errors")}, indent=2))
    write_results(args.output, result, "shadow")
    return 0 if result["errors"] == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    loop = commands.add_parser("mirror", help="(internal) the mirror process")
    loop.add_argument("--log-dir", required=True)
    loop.add_argument("--version", required=True)
    loop.add_argument("--shadow-url", required=True)
    loop.add_argument("--poke", type=float, default=5.0)
    loop.add_argument("--state", required=True)
    parser.add_argument("--rows", type=int, default=10, help="rows a request (default 10, as the demo's client)")
    parser.add_argument("--rate", type=float, default=100.0, help="client requests per second (default 100)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds a variant a round (default 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up before the first round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported (default 5)")
    parser.add_argument("--poke", type=float, default=5.0, help="seconds between the mirror's pokes (default 5)")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "shadow.json")
    args = parser.parse_args()
    return mirror_loop(args) if args.command == "mirror" else measure(args)


if __name__ == "__main__":
    raise SystemExit(main())
