"""The README's benchmark tables, generated from tests/benchmarks/results/*.json.

    python tests/benchmarks/report.py           # rewrite the generated blocks of README.md
    python tests/benchmarks/report.py --check   # exit 1 (and show the difference) if they are stale

Each block sits between ``<!-- bench:begin NAME -->`` and ``<!-- bench:end NAME -->`` in README.md;
the prose around them (conditions, causes) is written by hand, every figure inside comes from a
results file, with the file's date, commit and machine, or a sentence saying which it lacks.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from goals import (  # noqa: E402
    BENCHES,
    REPO,
    RESULTS_DIR,
    MalformedResults,
    dag_files,
    evaluate,
    format_value,
    load,
    provenance_of,
)

README = REPO / "README.md"
Result = dict[str, Any]
BLOCK = re.compile(r"(<!-- bench:begin (?P<name>[a-z]+) -->\n)(?P<body>.*?)(<!-- bench:end (?P=name) -->)", re.S)


# --- formatting ---------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f} s" if value < 100 else f"{value:,.0f} s"


def ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def megabytes(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} MB"


def table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A Markdown table; ``align`` has one letter a column, ``l`` or ``r``."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" if a == "l" else "---:" for a in align) + " |"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def provenance_line(bench: str, result: Result) -> str:
    """Where the figures come from: the file, its date, commit and machine, or what it lacks."""
    prov = provenance_of(result)
    parts = [f"From `tests/benchmarks/results/{bench}.json`"]
    if prov["date"]:
        parts.append(f"measured {prov['date']}")
    if prov["commit"]:
        commit = prov["commit"]
        dirty = commit.endswith("+dirty")
        parts.append(f"at commit `{commit.removesuffix('+dirty')[:10]}`" + (" with uncommitted changes" if dirty else ""))
    if prov["machine"]:
        parts.append(f"on {prov['machine']}")
    line = ", ".join(parts) + "."
    missing = [what for what, key in (("date", "date"), ("commit", "commit"), ("machine", "machine")) if not prov[key]]
    if missing:
        line += f" The file does not record its {' or '.join(missing)}."
    return line


def get(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


# --- one block a results file, and the goals ---------------------------------------------------------


def goals_block(results: dict[str, Result]) -> list[str]:
    rows = []
    for bench in BENCHES:
        for goal in evaluate(bench, results[bench]):
            if goal["status"] == "not measured":
                measured, status = f"– ({goal['reason']})", "not measured"
            else:
                measured = format_value(goal["value"], goal["unit"])
                status = "met" if goal["met"] else "**missed**"
            rows.append([f"`{bench}.json`", goal["description"], goal["threshold"], measured, status])
    return table(["file", "goal", "threshold", "measured", "status"], rows, "lllrl")


SERVING_VARIANTS = {
    "mlflow": "`mlflow models serve`",
    "bare": "bare FastAPI + booster",
    "bare_1t": "bare FastAPI + booster, 1 XGBoost thread",
    "ours": "ours (prediction log on)",
    "ours_batched": "ours, micro-batched",
    "ours_nolog": "ours, prediction log off (reference)",
    "ours_haproxy": "ours behind HAProxy",
}


def serving_block(result: Result) -> list[str]:
    lines = [provenance_line("serving", result)]
    settings, load = result.get("settings") or {}, result.get("load_average_1m") or {}
    conditions = []
    if settings:
        conditions.append(
            f"{settings.get('rounds')} rounds of {settings.get('duration_s'):g} s a cell"
            + (f" (the variants taking turns in {settings['slices']} slices)" if settings.get("slices", 1) > 1 else "")
            + ", medians; "
            f"{settings.get('server_workers')} server workers"
        )
        if "ours_haproxy" in (settings.get("variants") or []):
            mode = settings.get("haproxy_mode", "http")
            conditions.append("HAProxy with the model router's own config" if mode == "router"
                              else f"HAProxy with a minimal config in {mode} mode, not the router's own")
    if load.get("median_during") is not None:
        conditions.append(
            f"load average during the run: median {load['median_during']}, max {load.get('max_during')} "
            f"on {get(result, 'machine', 'cpus')} cores" + (" (other jobs shared the cores)" if result.get("machine_busy") else "")
        )
    if conditions:
        joined = "; ".join(conditions)
        lines[0] += " " + joined[:1].upper() + joined[1:] + "."
    entries = [e for e in result.get("results") or [] if isinstance(e, dict)]
    for rows in sorted({e["rows"] for e in entries}):
        cells = [e for e in entries if e["rows"] == rows and e["concurrency"] == 32]
        if not cells:
            continue
        lines += [""] + table(
            [f"{rows} row{'s' * (rows > 1)} a request, 32 concurrent", "req/s", "p50 ms", "p99 ms", "server CPU µs/req"],
            [
                [SERVING_VARIANTS.get(e["name"], e["name"]), count(e.get("rps")), ms(e.get("p50_ms")), ms(e.get("p99_ms")),
                 count(e.get("cpu_us_per_request"))]
                for e in cells
            ],
            "lrrrr",
        )  # fmt: skip
    return lines


def ingest_block(result: Result) -> list[str]:
    lines = [provenance_line("ingest", result), ""]
    parse = result.get("dag_parse") or {}
    files = parse.get("files") or {}
    rows = [["bare `import airflow.sdk`", seconds(parse.get("bare_import_airflow_sdk_median_s")), "–"]]
    for name in dag_files():
        entry = files.get(name)
        if entry is None:
            rows.append([f"`dags/{name}`", "not measured", "–"])
        else:
            rows.append([f"`dags/{name}`", seconds(entry.get("median_s")), ratio(entry.get("parse_ratio"))])
    lines += table(["parse (median of fresh interpreters)", "time", "ratio to the bare import"], rows, "lrr")
    backfill = result.get("backfill") or {}
    if backfill:
        days = backfill.get("days")
        if "floor" in backfill:
            rows = [
                [f"{days}-day backfill of `mlops_ingest`, median of {backfill.get('rounds')}", seconds(backfill.get("ours_median_s"))],
                ["the no-op floor DAG, as many days, median", seconds(backfill.get("floor_median_s"))],
                ["ratio to the floor", ratio(backfill.get("ratio_to_floor"))],
                ["failed runs", str(backfill.get("failed_runs", sum(r.get("failed", 0) for r in backfill["ours"] + backfill["floor"])))],
                *([[f"before the rounds, not measured: each DAG backfilled over {warmup[0]['days']} days",
                    " / ".join(seconds(w.get("backfill_s")) for w in warmup)]]
                  if (warmup := backfill.get("warmup_not_measured")) and "days" in warmup[0] else []),
            ]  # fmt: skip
        else:
            done = f"{backfill.get('succeeded')}/{days} succeeded"
            rows = [
                [f"{days}-day backfill of `mlops_ingest` ({done})", f"{seconds(backfill.get('backfill_s'))} "
                 f"({backfill.get('per_window_s')} s a window)"],
                ["the no-op floor DAG, as many days", "not measured (the file predates it)"],
            ]  # fmt: skip
        lines += [""] + table(["backfill on the real scheduler", "wall time"], rows, "lr")
    missing = [name for name in dag_files() if name not in files]
    if missing:
        lines += ["", f"Not in this file's parse times: {', '.join(f'`dags/{n}`' for n in missing)} (`make bench-ingest` measures every file in dags/)."]
    return lines


def drift_block(result: Result) -> list[str]:
    full, ours, comparison = (result.get(k) or {} for k in ("evidently_full", "monitor", "comparison"))
    data = result.get("input") or {}
    lines = [
        provenance_line("drift", result)
        + f" {count(data.get('rows'))} rows × {data.get('numeric_features')} numeric + {data.get('categorical_features')} "
        f"categorical features, {len(data.get('planted_drift') or [])} with planted drift, reference "
        f"{count(data.get('reference_rows'))} rows.",
        "",
    ]
    verdicts = "identical" if comparison.get("same_verdicts") else f"differ on {', '.join(comparison.get('verdict_mismatches') or [])}"
    if comparison.get("max_value_difference") is not None:
        verdicts += f" (max distance difference {comparison['max_value_difference']:.0e})"
    lines += table(
        ["measure", "Evidently on all rows", "the monitor", "ratio"],
        [
            ["wall time (read + drift + HTML report)", seconds(full.get("total_s")), seconds(ours.get("total_s")),
             ratio(comparison.get("time_ratio"))],
            ["peak memory (RSS)", megabytes(full.get("peak_rss_mb")), megabytes(ours.get("peak_rss_mb")),
             ratio(comparison.get("peak_rss_ratio"))],
            ["per-feature drift verdicts", "reference", verdicts, "–"],
        ],
        "lrrr",
    )  # fmt: skip
    return lines


def score_block(result: Result) -> list[str]:
    lines = [provenance_line("score", result)]
    data = result.get("input") or {}
    if data:
        lines[0] += f" {count(data.get('rows'))} rows, chunks of {count(data.get('chunk_rows'))}, median of {data.get('repeats')} runs."
    rows = []
    for candidate, label in (("baseline", "scikit-learn model"), ("xgboost", "XGBoost model")):
        entry = get(result, "results", candidate) or {}
        ours, pyfunc, comparison = (entry.get(k) or {} for k in ("ours", "pyfunc", "comparison"))
        if not ours:
            continue
        if pyfunc.get("failed"):
            rows.append([f"{label}: time / peak memory", f"{seconds(ours.get('median_total_s'))} / {megabytes(ours.get('peak_rss_mb'))}",
                         f"fails ({pyfunc['failed'].split(':')[0]}, in the file)", "–"])  # fmt: skip
            continue
        rows.append([f"{label}: time", seconds(ours.get("median_total_s")), seconds(pyfunc.get("median_total_s")),
                     ratio(comparison.get("time_ratio"))])  # fmt: skip
        rows.append([f"{label}: peak memory", megabytes(ours.get("peak_rss_mb")), megabytes(pyfunc.get("peak_rss_mb")),
                     ratio(comparison.get("peak_rss_ratio"))])  # fmt: skip
    lines += [""] + table(["", "`mlops_score`'s scorer", "`mlflow.pyfunc` predict on one frame", "ratio"], rows, "lrrr")
    return lines


MEMORY_SERVICES = {
    "postgres": "PostgreSQL",
    "mlflow": "MLflow (embedded default)",
    "api-server": "api-server",
    "scheduler": "scheduler",
    "dag-processor": "DAG processor",
    "triggerer": "triggerer",
}


def memory_block(result: Result) -> list[str]:
    lines = [provenance_line("memory", result) + f" Idle after {result.get('settle_s', '?'):g} s.", ""]
    stack = result.get("embedded_stack") or {}
    rows = [
        [MEMORY_SERVICES.get(name, name), megabytes(entry.get("pss_mb")), str(entry.get("processes"))]
        for name, entry in (stack.get("services") or {}).items()
    ]
    rows.append(["**total**", f"**{megabytes(stack.get('total_pss_mb'))}**", ""])
    lines += table(["service", "PSS", "processes"], rows, "lrr")
    mlflow = result.get("mlflow") or {}
    defaults = mlflow.get("mlflow_own_defaults") or {}
    if defaults:
        lines += ["", *table(
            ["MLflow", "PSS", "processes"],
            [
                ["embedded default", megabytes(get(mlflow, "embedded_default", "pss_mb")), str(get(mlflow, "embedded_default", "processes"))],
                ["`mlflow server` with its own defaults", megabytes(defaults.get("pss_mb")), str(defaults.get("processes"))],
                ["ratio", ratio(mlflow.get("ratio")), ""],
            ],
            "lrr",
        )]  # fmt: skip
    return lines


def shadow_block(result: Result) -> list[str]:
    params = result.get("parameters") or {}
    load = result.get("load_average") or {}
    line = provenance_line("shadow", result)
    if params:
        line += (
            f" {params.get('rounds')} rounds of {params.get('duration_s'):g} s, {params.get('rows')} rows a request at "
            f"{params.get('rate'):g} requests/s, a poke every {params.get('poke_s'):g} s"
        )
        if load:
            line += f"; load average {load.get('before')} before, {load.get('after')} after"
        line += "."
    medians, ratios = result.get("medians") or {}, result.get("ratios") or {}
    rows = [
        ["without the mirror", ms(get(medians, "off", "p50_ms")), ms(get(medians, "off", "p99_ms"))],
        ["with the shadow mirrored", ms(get(medians, "on", "p50_ms")), ms(get(medians, "on", "p99_ms"))],
        ["ratio (median of the rounds' ratios)", ratio(ratios.get("p50")), ratio(ratios.get("p99"))],
    ]
    lines = [line, ""] + table(["stable's client", "p50 ms", "p99 ms"], rows, "lrr")
    lines += ["", f"Failed requests: {result.get('errors', 'not recorded')}."]
    return lines


BLOCKS: dict[str, Callable[[dict[str, Result]], list[str]]] = {
    "goals": goals_block,
    "serving": lambda results: serving_block(results["serving"]),
    "ingest": lambda results: ingest_block(results["ingest"]),
    "drift": lambda results: drift_block(results["drift"]),
    "score": lambda results: score_block(results["score"]),
    "memory": lambda results: memory_block(results["memory"]),
    "shadow": lambda results: shadow_block(results["shadow"]),
}


def render(readme: str, results: dict[str, Result]) -> str:
    """``readme`` with every block between markers regenerated; ValueError for an unknown block."""

    def block(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise ValueError(f"README.md has a bench block {name!r}; known: {', '.join(BLOCKS)}")
        return match[1] + "\n".join(BLOCKS[name](results)) + "\n" + match[4]

    rendered = BLOCK.sub(block, readme)
    missing = set(BLOCKS) - {m["name"] for m in BLOCK.finditer(readme)}
    if missing:
        raise ValueError(f"README.md lacks the bench blocks {', '.join(sorted(missing))}")
    return rendered


def main(argv: list[str] | None = None, readme: Path = README, results_dir: Path = RESULTS_DIR) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is not what the results files give")
    args = parser.parse_args(argv)
    try:
        results = {bench: load(bench, results_dir) for bench in BENCHES}
        current = readme.read_text()
        rendered = render(current, results)
    except (FileNotFoundError, MalformedResults, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        if rendered == current:
            print(f"{readme.name}: the benchmark tables match the results files")
            return 0
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), rendered.splitlines(True), "README.md", "generated"))
        print(f"{readme.name} is out of date: run `make bench-report`", file=sys.stderr)
        return 1
    if rendered != current:
        tmp = readme.with_suffix(".md.tmp")
        tmp.write_text(rendered)
        tmp.replace(readme)
        print(f"updated the benchmark tables in {readme}")
    else:
        print(f"{readme.name}: the benchmark tables were up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
