"""Serving benchmark: MLflow's scoring server vs a bare FastAPI app vs mlops_serving.

Everything runs on 127.0.0.1 with the same model (built by
tests/serving/model_fixture.py), 2 server workers each, load from ``wrk``
(Lua script for the POST body):

* ``mlflow``        ``mlflow models serve -m <dir> --env-manager local -w 2``
* ``bare``          tests/benchmarks/bare_app.py (FastAPI + Booster.inplace_predict, defaults)
* ``bare_1t``       the same with ``OMP_NUM_THREADS=1`` (extra reference point)
* ``ours``          ``python -m mlops_serving`` (validation, metrics, prediction log on)
* ``ours_batched``  the same with ``MLOPS_SERVING_BATCHING=1``
* ``ours_nolog``    ``ours`` with the prediction log off (extra reference point: what the log costs)
* ``ours_haproxy``  ``ours`` behind HAProxy, with the model router's own config (health checks,
                    retries, request logs; ``--haproxy-mode http|tcp``: a minimal config instead)

``mlflow`` cannot score the raw request (its xgboost pyfunc builds a DMatrix from
the DataFrame and rejects string columns), so it gets a copy of the model
directory whose signature declares the categorical columns as doubles, and
requests carry the category index instead of the string: same booster file,
same predictions (checked before measuring).

Cells: rows in {1, 100} x concurrency in {1, 8, 32}. Within a cell and round the
variants take turns in ``--slices`` short slices (A B C, C B A, A B C), so that a
burst of other work on this shared machine falls on all of them alike; a round's
throughput and latencies are over all its slices (percentiles from wrk's latency
histograms, merged), and a ratio between two variants is the median of the
per-round ratios. The default order puts ``ours`` between the two variants the goals
compare it with, ``ours_nolog`` and ``ours_haproxy``: in every pass its slice sits between
theirs, so a goal's two sides see the machine at nearly the same moment. Writes
tests/benchmarks/results/serving.json: the date, git commit, machine and its load
average during the run; ``results`` (per variant and cell: medians of rps,
rows_per_s, p50_ms, p99_ms, cpu_us_per_request, the error count, and every round);
``goals`` (goals.py: each with its threshold, value and ``met``) and
``comparisons`` (reference ratios without a target). Prints a table and the goals.

Goals (defined in goals.py): ours' p99 <= 25 ms at 1 row, c=32, the prediction log
on; what the log costs at 100 rows (c=8 and c=32): >= 0.9x the throughput of
``ours_nolog`` and <= 1.5x its p99; HAProxy in front keeps >= 0.85x (1 and 100
rows); ours >= 20x mlflow and >= 0.8x bare (c=32); batched >= 1.8x bare (1 row).

Run: ``.venv/bin/python tests/benchmarks/bench_serving.py`` (needs ``wrk`` and
``haproxy`` on PATH: ``apt-get install -y wrk haproxy``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = sys.executable
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))  # provenance.py

from provenance import provenance, write_results  # noqa: E402

from tests.serving.model_fixture import (  # noqa: E402
    CATEGORICAL_FEATURES,
    FEATURE_ORDER,
    build_model_dir,
    make_records,
)

WORKERS = 2
HOST = "127.0.0.1"
LUA = """
local f = io.open(os.getenv("BENCH_BODY"), "rb")
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format(
    "BENCH_JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, " ..
    "\\"status_errors\\": %d, \\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"timeout\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout))
  local buckets = {}
  for i = 1, #latency do
    local value, count = latency(i)
    buckets[#buckets + 1] = string.format("%d:%d", value, count)
  end
  io.write("BENCH_HIST " .. table.concat(buckets, ",") .. "\\n")
end
"""
HAPROXY_CFG = """
global
    maxconn 4096
    nbthread 1
defaults
    mode {mode}
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend bench
    bind {host}:{port}
    default_backend ours
backend ours
{backend_opts}
    server ours1 {host}:{backend_port} maxconn 256
"""
HAPROXY_HTTP_OPTS = "    option http-keep-alive\n    http-reuse always"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Variant:
    name: str
    path: str
    body_kind: str  # "records" | "mlflow"
    port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"


def spawn(variant: Variant, cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> None:
    out = log.open("wb")
    proc = subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True
    )
    variant.procs.append(proc)
    variant.logs.append(log)


def stop(variant: Variant) -> None:
    for proc in variant.procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in variant.procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(roots: list[int]) -> float:
    """user+system CPU of the given processes and all their descendants (from /proc)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK)
    wanted = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in stats.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                changed = True
    return sum(cpu for pid, (_, cpu) in stats.items() if pid in wanted)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "PROMETHEUS_", "OMP_"))}
    env.update(PYTHONDONTWRITEBYTECODE="1", MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    # `mlflow models serve` execs `uvicorn` from PATH: put this interpreter's bin dir first.
    env["PATH"] = str(Path(PYTHON).parent) + os.pathsep + env.get("PATH", "")
    return env


def mlflow_view(model_dir: Path, dest: Path) -> Path:
    """Copy of the model dir whose signature takes category indices (doubles) instead of strings."""
    shutil.copytree(model_dir, dest)
    doc = yaml.safe_load((dest / "MLmodel").read_text())
    cols = json.loads(doc["signature"]["inputs"])
    for col in cols:
        if col["name"] in CATEGORICAL_FEATURES:
            col["type"] = "double"
    doc["signature"]["inputs"] = json.dumps(cols)
    (dest / "MLmodel").write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def bodies(work: Path) -> dict[tuple[str, int], Path]:
    out = {}
    for rows in (1, 100):
        records = make_records(rows, seed=2024 + rows, with_ids=False)
        p = work / f"records-{rows}.json"
        p.write_text(json.dumps({"records": records}))
        out[("records", rows)] = p
        data = [
            [
                float(CATEGORICAL_FEATURES[c].index(r[c])) if c in CATEGORICAL_FEATURES else r[c]
                for c in FEATURE_ORDER
            ]
            for r in records
        ]
        p = work / f"mlflow-{rows}.json"
        p.write_text(json.dumps({"dataframe_split": {"columns": FEATURE_ORDER, "data": data}}))
        out[("mlflow", rows)] = p
    return out


def wait_ready(variant: Variant, body: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    content = body.read_bytes()
    while time.monotonic() < deadline:
        for proc, log in zip(variant.procs, variant.logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"{variant.name} exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            r = httpx.post(
                variant.url, content=content, headers={"content-type": "application/json"}, timeout=10
            )
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{variant.name} not ready after {timeout}s")


def probabilities(variant: Variant, body: Path) -> list[float]:
    r = httpx.post(
        variant.url, content=body.read_bytes(), headers={"content-type": "application/json"}, timeout=30
    )
    r.raise_for_status()
    preds = r.json()["predictions"]
    return [p["probability"] if isinstance(p, dict) else float(p) for p in preds]


def run_wrk(url: str, body: Path, concurrency: int, seconds: float, lua: Path) -> dict[str, Any]:
    cmd = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        url,
    ]
    env = {**os.environ, "BENCH_BODY": str(body)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    result: dict[str, Any] | None = None
    histogram: collections.Counter[int] = collections.Counter()
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result = json.loads(line[len("BENCH_JSON ") :])
        elif line.startswith("BENCH_HIST "):
            for bucket in filter(None, line[len("BENCH_HIST ") :].split(",")):
                value, count = bucket.split(":")
                histogram[int(value)] += int(count)
    if result is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    result["histogram"] = histogram  # latency in microseconds -> number of requests
    return result


def percentile(histogram: collections.Counter[int], q: float) -> float:
    """The ``q``-th percentile of a latency histogram, as wrk computes it from its own."""
    total = sum(histogram.values())
    if not total:
        return 0.0
    wanted, seen = q / 100 * total, 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= wanted:
            return float(value)
    return float(max(histogram))


def start_all(
    work: Path, model_dir: Path, mlflow_dir: Path, names: list[str], haproxy_mode: str = "router"
) -> dict[str, Variant]:
    variants: dict[str, Variant] = {}
    env = base_env()
    serving_env = {**env, "PYTHONPATH": str(REPO / "serving"), "MLOPS_MODEL_DIR": str(model_dir)}

    def ours(name: str, extra: dict[str, str]) -> None:
        v = variants[name] = Variant(name, "/predict", "records", port=free_port())
        spawn(
            v,
            [PYTHON, "-m", "mlops_serving"],
            {
                **serving_env,
                "MLOPS_SERVING_HOST": HOST,
                "MLOPS_SERVING_PORT": str(v.port),
                "MLOPS_SERVING_WORKERS": str(WORKERS),
                "MLOPS_PREDICTION_LOG_DIR": str(work / f"{name}-predictions"),
                **extra,
            },
            work / f"{name}.log",
        )

    if "mlflow" in names:
        v = variants["mlflow"] = Variant("mlflow", "/invocations", "mlflow", port=free_port())
        mlflow_bin = str(Path(PYTHON).parent / "mlflow")
        spawn(
            v,
            [
                mlflow_bin,
                "models",
                "serve",
                "-m",
                str(mlflow_dir),
                "--env-manager",
                "local",
                "-h",
                HOST,
                "-p",
                str(v.port),
                "-w",
                str(WORKERS),
            ],
            env,
            work / "mlflow.log",
        )
    for name, extra in (("bare", {}), ("bare_1t", {"OMP_NUM_THREADS": "1"})):
        if name in names:
            v = variants[name] = Variant(name, "/predict", "records", port=free_port())
            spawn(
                v,
                [
                    PYTHON,
                    "-m",
                    "uvicorn",
                    "bare_app:app",
                    "--host",
                    HOST,
                    "--port",
                    str(v.port),
                    "--workers",
                    str(WORKERS),
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                {**env, "BARE_MODEL_DIR": str(model_dir), **extra},
                work / f"{name}.log",
                cwd=HERE,
            )
    if "ours" in names or "ours_haproxy" in names:
        ours("ours", {})
    if "ours_batched" in names:
        ours("ours_batched", {"MLOPS_SERVING_BATCHING": "1"})
    if "ours_nolog" in names:  # metrics stay multi-process, as in ``ours`` (whose dir is in the log dir)
        ours("ours_nolog", {"MLOPS_PREDICTION_LOG_ENABLED": "0", "MLOPS_SERVING_METRICS_DIR": str(work / "ours_nolog-metrics")})
    if "ours_haproxy" in names:
        v = variants["ours_haproxy"] = Variant("ours_haproxy", "/predict", "records", port=free_port())
        cfg = work / "haproxy.cfg"
        if haproxy_mode == "router":  # the router a deploy starts: health checks, retries, request logs
            from mlops_pipeline.deploy.haproxy import render_config

            servers = [{"name": "stable", "address": HOST, "port": variants["ours"].port, "weight": 100}]
            cfg.write_text(render_config(f"{HOST}:{v.port}", servers, None, f"{HOST}:{free_port()}") + "\n")
        else:
            cfg.write_text(
                HAPROXY_CFG.format(
                    mode=haproxy_mode,
                    host=HOST,
                    port=v.port,
                    backend_port=variants["ours"].port,
                    backend_opts=HAPROXY_HTTP_OPTS if haproxy_mode == "http" else "",
                )
            )
        spawn(v, ["haproxy", "-db", "-f", str(cfg)], env, work / "haproxy.log")
    return variants


def fmt_table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'name':<14}{'rows':>5}{'conc':>6}{'req/s':>10}{'rows/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'cpu us/req':>12}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r['name']:<14}{r['rows']:>5}{r['concurrency']:>6}{r['rps']:>10.0f}{r['rows_per_s']:>11.0f}"
            f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>8}{r['cpu_us_per_request']:>12.0f}"
        )
    return "\n".join(lines)


Samples = dict[tuple[str, int, int], list[dict[str, Any]]]


def comparisons(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Reference points beside the goals (goals.py), without a target of their own."""
    from goals import NotMeasured, paired_ratio, serving_entry

    def ratio(a: str, b: str, rows: int, conc: int, key: str = "rps") -> float | None:
        try:
            return paired_ratio(payload, a, b, rows, conc, key)
        except NotMeasured:  # a variant of it was not run
            return None

    def get(name: str, rows: int, conc: int, key: str) -> float | None:
        try:
            return serving_entry(payload, name, rows, conc)[key]
        except NotMeasured:
            return None

    out = [
        ("ours / ours_nolog rps rows=1 c=32", ratio("ours", "ours_nolog", 1, 32)),
        ("ours_nolog p99 ms rows=1 c=32", get("ours_nolog", 1, 32, "p99_ms")),
        ("ours p99 ms rows=100 c=32", get("ours", 100, 32, "p99_ms")),
    ]
    for rows in (1, 100):
        out.append((f"cpu/req ours / ours_nolog rows={rows} c=32", ratio("ours", "ours_nolog", rows, 32, "cpu_us_per_request")))
    out.append(("ours / bare_1t rps rows=1 c=32", ratio("ours", "bare_1t", 1, 32)))
    out.append(("ours_batched / bare_1t rps rows=1 c=32", ratio("ours_batched", "bare_1t", 1, 32)))
    for other in ("mlflow", "bare", "bare_1t"):
        for rows in (1, 100):
            out.append((f"cpu/req {other} / ours rows={rows} c=32", ratio(other, "ours", rows, 32, "cpu_us_per_request")))
    return [{"comparison": label, "value": value} for label, value in out]


def machine() -> dict[str, Any]:
    from provenance import machine as common_machine

    return {
        **common_machine(),
        "wrk": (subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split("\n")[0]).strip(),
    }


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="seconds of warm-up per cell and variant, first round (0: none)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="repeat every cell; medians are reported")
    parser.add_argument("--slices", type=int, default=3,
                        help="within a round, the variants of a cell take turns in this many slices of duration/slices "
                        "seconds each (at least 1 s); a round's figures are over all its slices")
    parser.add_argument("--haproxy-mode", choices=("router", "http", "tcp"), default="router",
                        help="router: the model router's own config (mlops_pipeline.deploy.haproxy.render_config); "
                        "http/tcp: a minimal config in that proxy mode")
    parser.add_argument("--variants", default="mlflow,bare,bare_1t,ours_batched,ours_nolog,ours,ours_haproxy")
    parser.add_argument("--rows", default="1,100")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "serving.json")
    args = parser.parse_args()
    for tool in ("wrk", "haproxy"):
        if shutil.which(tool) is None:
            print(f"'{tool}' not found: apt-get install -y wrk haproxy", file=sys.stderr)
            return 2
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    row_set = [int(x) for x in args.rows.split(",")]
    conc_set = [int(x) for x in args.concurrency.split(",")]

    started = time.monotonic()
    meta: dict[str, Any] = {
        **provenance(),
        "machine": machine(),
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "slices": args.slices,
            "server_workers": WORKERS,
            "haproxy_mode": args.haproxy_mode,
            "variants": names,
            "rows": row_set,
            "concurrency": conc_set,
        },
        "load_average_1m": {"start": load_average()},
        "method": (
            "req/s, p50, p99 and cpu: medians over rounds; in a round, the variants of a cell take turns in "
            "slices of duration/slices seconds (order reversed every slice and every round), and a round's "
            "req/s, p50 and p99 are over all its slices (latencies from wrk's merged histograms); ratios: "
            "median over rounds of the ratio of two variants in the same round; cpu: the server processes' "
            "CPU time per request"
        ),
    }
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    variants: dict[str, Variant] = {}
    try:
        model_dir = build_model_dir(work / "model", "xgboost")
        mlflow_dir = mlflow_view(model_dir, work / "model-mlflow")
        body = bodies(work)
        lua = work / "post.lua"
        lua.write_text(LUA)
        variants = start_all(work, model_dir, mlflow_dir, names, args.haproxy_mode)
        for v in variants.values():
            wait_ready(v, body[(v.body_kind, 1)])
        print(f"servers ready after {time.monotonic() - started:.0f}s", flush=True)

        # Same model everywhere: compare the 100-row predictions.
        reference = probabilities(variants[names[0]], body[(variants[names[0]].body_kind, 100)])
        for v in variants.values():
            got = probabilities(v, body[(v.body_kind, 100)])
            assert len(got) == len(reference), f"{v.name}: {len(got)} predictions"
            worst = max(abs(a - b) for a, b in zip(got, reference, strict=True))
            assert worst < 1e-6, f"{v.name} disagrees with {names[0]}: {worst}"
        print("all variants return the same probabilities", flush=True)

        for v in variants.values():  # global warm-up
            run_wrk(v.url, body[(v.body_kind, 1)], 8, 2, lua)

        samples: Samples = {}
        loads: list[float] = []
        slice_seconds = max(1, round(args.duration / args.slices))
        for rnd in range(args.rounds):
            for rows in row_set:
                for conc in conc_set:
                    order = [n for n in names if n in variants]
                    if rnd % 2:
                        order.reverse()
                    if args.warmup > 0 and rnd == 0:
                        for name in order:
                            run_wrk(variants[name].url, body[(variants[name].body_kind, rows)], conc, args.warmup, lua)
                    # The variants take turns in short slices (A B C, C B A, A B C, ...), so that a
                    # burst of other work on the machine falls on all of them alike rather than on
                    # whichever held the cores at that moment.
                    acc = {name: {"requests": 0, "duration_us": 0, "errors": 0, "cpu_s": 0.0,
                                  "histogram": collections.Counter()} for name in order}  # fmt: skip
                    for piece in range(args.slices):
                        for name in order if piece % 2 == 0 else reversed(order):
                            v = variants[name]
                            roots = [p.pid for p in v.procs]
                            if name == "ours_haproxy":
                                roots += [p.pid for p in variants["ours"].procs]
                            cpu0 = tree_cpu_seconds(roots)
                            res = run_wrk(v.url, body[(v.body_kind, rows)], conc, slice_seconds, lua)
                            a = acc[name]
                            a["cpu_s"] += tree_cpu_seconds(roots) - cpu0
                            a["requests"] += res["requests"]
                            a["duration_us"] += res["duration_us"]
                            a["errors"] += res["status_errors"] + res["connect"] + res["read"] + res["write"] + res["timeout"]
                            a["histogram"].update(res["histogram"])
                    loads.append(load_average())
                    for name in order:
                        a = acc[name]
                        secs = a["duration_us"] / 1e6
                        cpu_us = a["cpu_s"] * 1e6 / max(a["requests"], 1)
                        entry = {
                            "name": name,
                            "rows": rows,
                            "concurrency": conc,
                            "rps": round(a["requests"] / secs, 1),
                            "rows_per_s": round(a["requests"] * rows / secs, 1),
                            "p50_ms": round(percentile(a["histogram"], 50) / 1000, 3),
                            "p99_ms": round(percentile(a["histogram"], 99) / 1000, 3),
                            "errors": int(a["errors"]),
                            "cpu_us_per_request": round(cpu_us, 1),
                        }
                        samples.setdefault((name, rows, conc), []).append(entry)
                        print(
                            f"[{time.monotonic() - started:5.0f}s] {name:<13} rows={rows:<3} c={conc:<2} "
                            f"{entry['rps']:>8.0f} req/s  p50 {entry['p50_ms']:.2f} ms  p99 {entry['p99_ms']:.2f} ms"
                            f"  errors {entry['errors']}  server cpu {cpu_us:.0f} us/req  load {loads[-1]}",
                            flush=True,
                        )
        results = []
        for (name, rows, conc), runs in samples.items():
            results.append(
                {
                    "name": name,
                    "rows": rows,
                    "concurrency": conc,
                    "rps": round(statistics.median(r["rps"] for r in runs), 1),
                    "rows_per_s": round(statistics.median(r["rows_per_s"] for r in runs), 1),
                    "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 3),
                    "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 3),
                    "errors": sum(r["errors"] for r in runs),
                    "cpu_us_per_request": round(statistics.median(r["cpu_us_per_request"] for r in runs), 1),
                    "rounds": runs,
                }
            )
        order_key = {n: i for i, n in enumerate(names)}
        results.sort(key=lambda r: (r["rows"], r["concurrency"], order_key.get(r["name"], 99)))
        meta["load_average_1m"].update(
            end=load_average(),
            median_during=round(statistics.median(loads), 2) if loads else None,
            max_during=max(loads, default=None),
        )
        meta["seconds"] = round(time.monotonic() - started)
        # Other tenants' work competes for the same cores: say so next to the numbers.
        meta["machine_busy"] = bool(loads) and statistics.median(loads) > (os.cpu_count() or 1)
        payload = {**meta, "results": results}
        payload["comparisons"] = comparisons(payload)
        print()
        print(fmt_table(results))
        print("(req/s, latencies, cpu: medians over rounds; cpu: server processes' CPU time per request)")
        print(f"load average (1 min) during the run: median {meta['load_average_1m']['median_during']}, "
              f"max {meta['load_average_1m']['max_during']} on {os.cpu_count()} cores")
        print()
        for c in payload["comparisons"]:
            print(f"(info) {c['comparison']:<48} {'-' if c['value'] is None else format(c['value'], '8.2f'):>8}")
        print()
        write_results(args.output, payload, "serving")
        print(f"in {time.monotonic() - started:.0f}s")
        return 0
    finally:
        for v in reversed(list(variants.values())):
            stop(v)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
