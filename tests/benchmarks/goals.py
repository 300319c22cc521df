"""The benchmarks' goals, in one place, and their evaluation against the results files.

    python tests/benchmarks/goals.py

prints every goal as MET, MISSED or NOT MEASURED with its value and threshold, and each results
file's machine, date and commit. A missed goal is a finding, not a failure: the exit status is 0
unless a results file is missing or malformed.

Each goal reads its value from what a benchmark recorded (never a copy of it): the bench scripts
call :func:`evaluate` when they write their results (``provenance.write_results``), and this file
evaluates the files as they are, so a file written before a goal existed is judged on its
measurements too. A value a file does not hold is NOT MEASURED with the reason, never a guess.

The goals of the performance issue replace the earlier ones on the same measure (serving p99, the
prediction log's cost, HAProxy, the ingest backfill, the drift time and memory); the earlier goals on
other measures (ours against ``mlflow models serve`` and a bare app, the DAG parse ratio, the drift
verdicts, the shadow's client latency, the embedded MLflow's memory) stay.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RESULTS_DIR = HERE / "results"
DAGS_DIR = REPO / "dags"
# Every results file `make bench` writes, in the order reports list them.
BENCHES = ("serving", "ingest", "drift", "score", "shadow", "memory")

Result = dict[str, Any]
Value = float | bool


class NotMeasured(Exception):
    """The results file does not hold what the goal needs; the message says what is missing."""


class MalformedResults(ValueError):
    """A results file that is not what a benchmark writes (not JSON, not an object, a wrong type)."""


@dataclass(frozen=True)
class Goal:
    bench: str  # the results file: tests/benchmarks/results/<bench>.json
    name: str  # stable id, e.g. "serving.p99_1row_c32"
    description: str
    sense: str  # "<=", ">=" or "==" (the value must equal the threshold)
    threshold: Value
    unit: str  # "ms", "MB", "x" (a ratio) or "" (a yes/no check)
    measure: Callable[[Result], Value]

    @property
    def threshold_text(self) -> str:
        if isinstance(self.threshold, bool):
            return "yes" if self.threshold else "no"
        return f"{self.sense} {format_value(self.threshold, self.unit)}"

    def met_by(self, value: Value) -> bool:
        if self.sense == "<=":
            return value <= self.threshold
        if self.sense == ">=":
            return value >= self.threshold
        return value == self.threshold


def format_value(value: Value | None, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "x":
        return f"{value:g}x"
    return f"{value:g} {unit}".strip()


# --- reading a results file ---------------------------------------------------------------------------


def dig(result: Result, *keys: str | int) -> Any:
    """``result[k1][k2]...``; NotMeasured naming the path when a level is absent."""
    node: Any = result
    for depth, key in enumerate(keys):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
            node = node[key]
        elif node is None or isinstance(node, dict | list):
            raise NotMeasured(f"{'.'.join(map(str, keys[: depth + 1]))} not recorded")
        else:
            raise MalformedResults(f"{'.'.join(map(str, keys[:depth]))} is {type(node).__name__}, not an object")
    return node


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedResults(f"{where} is {value!r}, not a number")
    return float(value)


def serving_entry(result: Result, variant: str, rows: int, concurrency: int) -> Result:
    """The cell of one serving variant (medians over rounds, and the rounds)."""
    entries = dig(result, "results")
    if not isinstance(entries, list):
        raise MalformedResults(f"results is {type(entries).__name__}, not a list")
    for entry in entries:
        if isinstance(entry, dict) and (entry.get("name"), entry.get("rows"), entry.get("concurrency")) == (
            variant,
            rows,
            concurrency,
        ):
            return entry
    raise NotMeasured(f"no {variant} cell at {rows} rows, c={concurrency}")


def paired_ratio(result: Result, a: str, b: str, rows: int, concurrency: int, key: str = "rps") -> float:
    """Median over rounds of ``a / b``, each from one round where the two ran back to back (on a
    shared machine, background load changes between rounds more than within one)."""
    rounds_a = serving_entry(result, a, rows, concurrency).get("rounds") or []
    rounds_b = serving_entry(result, b, rows, concurrency).get("rounds") or []
    where = f"{key} of {a}/{b} at {rows} rows, c={concurrency}"
    ratios = [
        number(x.get(key), where) / number(y.get(key), where)
        for x, y in zip(rounds_a, rounds_b, strict=False)
        if y.get(key)
    ]
    if not ratios:
        raise NotMeasured(f"no rounds of {a} and {b} at {rows} rows, c={concurrency}")
    return round(statistics.median(ratios), 3)


def serving_value(variant: str, rows: int, concurrency: int, key: str) -> Callable[[Result], float]:
    def measure(result: Result) -> float:
        entry = serving_entry(result, variant, rows, concurrency)
        return number(dig(entry, key), f"{variant} {key} at {rows} rows, c={concurrency}")

    return measure


def serving_ratio(a: str, b: str, rows: int, concurrency: int, key: str = "rps") -> Callable[[Result], float]:
    return lambda result: paired_ratio(result, a, b, rows, concurrency, key)


def ingest_backfill_ratio(result: Result) -> float:
    days = dig(result, "backfill", "days")
    if days != 90:
        raise NotMeasured(f"the backfill covered {days} days, not 90")
    if "floor" not in dig(result, "backfill"):
        raise NotMeasured("no backfill of the no-op floor DAG recorded (the file predates it)")
    runs = [*dig(result, "backfill", "ours"), *dig(result, "backfill", "floor")]
    failed = sum(run.get("failed", 0) for run in runs if isinstance(run, dict))
    if failed:
        raise NotMeasured(f"{failed} backfill runs failed: the times are not of complete backfills")
    return number(dig(result, "backfill", "ratio_to_floor"), "backfill.ratio_to_floor")


def parse_ratio(dag_file: str) -> Callable[[Result], float]:
    def measure(result: Result) -> float:
        files = dig(result, "dag_parse", "files")
        if not isinstance(files, dict):
            raise MalformedResults(f"dag_parse.files is {type(files).__name__}, not an object")
        entry = files.get(dag_file)
        if entry is None:
            raise NotMeasured(f"{dag_file} not in the parse-time results")
        return number(dig(entry, "parse_ratio"), f"dag_parse.files.{dag_file}.parse_ratio")

    return measure


def on_million_rows(measure: Callable[[Result], Value]) -> Callable[[Result], Value]:
    def on_1m(result: Result) -> Value:
        rows = dig(result, "input", "rows")
        if rows != 1_000_000:
            raise NotMeasured(f"measured on {rows} rows, not 1M")
        return measure(result)

    return on_1m


def drift_time_ratio(result: Result) -> float:
    """Monitor / Evidently on the medians of the rounds; on the best runs where a file predates medians."""
    try:
        return number(dig(result, "comparison", "time_ratio_of_medians"), "comparison.time_ratio_of_medians")
    except NotMeasured:
        return number(dig(result, "comparison", "time_ratio"), "comparison.time_ratio")


def drift_verdicts_identical(result: Result) -> bool:
    """Same per-feature verdicts as Evidently, and exactly the planted features found drifting."""
    same = dig(result, "comparison", "same_verdicts")
    found = dig(result, "comparison", "drifted_per_monitor")
    planted = dig(result, "input", "planted_drift")
    return bool(same) and sorted(found) == sorted(planted)


# --- the goals ----------------------------------------------------------------------------------------


def _serving_goals() -> list[Goal]:
    goals = [
        Goal("serving", "serving.p99_1row_c32", "ours' p99 at 1 row, c=32, prediction log on", "<=", 25, "ms",
             serving_value("ours", 1, 32, "p99_ms")),
    ]  # fmt: skip
    for concurrency in (8, 32):
        goals += [
            Goal("serving", f"serving.log_rps_100rows_c{concurrency}",
                 f"prediction log on / off, throughput at 100 rows, c={concurrency} (costs <= 10 %)", ">=", 0.9, "x",
                 serving_ratio("ours", "ours_nolog", 100, concurrency)),
            Goal("serving", f"serving.log_p99_100rows_c{concurrency}",
                 f"prediction log on / off, p99 at 100 rows, c={concurrency}", "<=", 1.5, "x",
                 serving_ratio("ours", "ours_nolog", 100, concurrency, "p99_ms")),
        ]  # fmt: skip
    for rows in (1, 100):
        goals.append(
            Goal("serving", f"serving.haproxy_{rows}rows_c32",
                 f"behind HAProxy / direct, throughput at {rows} row{'s' * (rows > 1)}, c=32", ">=", 0.85, "x",
                 serving_ratio("ours_haproxy", "ours", rows, 32))
        )  # fmt: skip
    for rows in (1, 100):
        goals += [
            Goal("serving", f"serving.vs_mlflow_{rows}rows_c32",
                 f"ours / mlflow models serve, throughput at {rows} row{'s' * (rows > 1)}, c=32", ">=", 20, "x",
                 serving_ratio("ours", "mlflow", rows, 32)),
            Goal("serving", f"serving.vs_bare_{rows}rows_c32",
                 f"ours / bare FastAPI app, throughput at {rows} row{'s' * (rows > 1)}, c=32", ">=", 0.8, "x",
                 serving_ratio("ours", "bare", rows, 32)),
        ]  # fmt: skip
    goals.append(
        Goal("serving", "serving.batched_vs_bare_1row_c32", "ours micro-batched / bare FastAPI app, throughput at 1 row, c=32",
             ">=", 1.8, "x", serving_ratio("ours_batched", "bare", 1, 32))
    )  # fmt: skip
    return goals


def dag_files() -> list[str]:
    return sorted(path.name for path in DAGS_DIR.glob("*.py"))


def all_goals() -> list[Goal]:
    """Every goal, the DAG parse goal once per file in dags/ (so a DAG not measured shows)."""
    return [
        *_serving_goals(),
        Goal("ingest", "ingest.backfill_90d_vs_floor",
             "90-day backfill of mlops_ingest / the no-op floor DAG's backfill", "<=", 1.3, "x",
             ingest_backfill_ratio),
        *(
            Goal("ingest", f"ingest.parse_{name.removesuffix('.py')}", f"dags/{name} parse / bare import airflow.sdk",
                 "<=", 1.5, "x", parse_ratio(name))
            for name in dag_files()
        ),
        Goal("drift", "drift.time_vs_evidently_1m", "monitor / Evidently on every row, wall time, 1M rows", "<=", 0.2, "x",
             on_million_rows(drift_time_ratio)),
        Goal("drift", "drift.peak_rss_1m", "monitor's peak memory (RSS), 1M rows", "<=", 500, "MB",
             on_million_rows(lambda r: number(dig(r, "monitor", "peak_rss_mb"), "monitor.peak_rss_mb"))),
        Goal("drift", "drift.same_verdicts", "monitor's per-feature verdicts identical to Evidently's, planted drift found",
             "==", True, "", drift_verdicts_identical),
        Goal("shadow", "shadow.client_p50", "stable's client p50 with the shadow mirrored / without", "<=", 1.05, "x",
             lambda r: number(dig(r, "ratios", "p50"), "ratios.p50")),
        Goal("memory", "memory.mlflow_vs_own_defaults", "embedded MLflow / mlflow server with its own defaults, PSS",
             "<=", 0.5, "x", lambda r: number(dig(r, "mlflow", "ratio"), "mlflow.ratio")),
    ]  # fmt: skip


def goals_of(bench: str) -> list[Goal]:
    return [goal for goal in all_goals() if goal.bench == bench]


def evaluate(bench: str, result: Result) -> list[dict[str, Any]]:
    """Each goal of ``bench`` against its results: name, threshold, value, met (None: not measured).

    Raises MalformedResults when the file holds a field of the wrong type."""
    report = []
    for goal in goals_of(bench):
        entry: dict[str, Any] = {
            "name": goal.name,
            "description": goal.description,
            "threshold": goal.threshold_text,
            "unit": goal.unit,
        }
        try:
            value = goal.measure(result)
        except NotMeasured as missing:
            entry.update(value=None, met=None, status="not measured", reason=str(missing))
        else:
            met = goal.met_by(value)
            entry.update(value=value, met=met, status="met" if met else "missed")
        report.append(entry)
    return report


# --- provenance of a file -----------------------------------------------------------------------------


def goal_line(goal: dict[str, Any]) -> str:
    """One evaluated goal as ``MET  description: value (goal threshold)``."""
    value = goal["reason"] if goal["status"] == "not measured" else format_value(goal["value"], goal["unit"])
    return f"{goal['status'].upper():<12}  {goal['description']}: {value} (goal {goal['threshold']})"


def provenance_of(result: Result) -> dict[str, str | None]:
    """Date, commit and machine of a results file as one-line texts; None where not recorded.

    Files written before ``provenance.py`` name the fields ``date``, ``git_commit`` and ``git_dirty``."""
    date = result.get("measured_at") or result.get("date")
    commit = result.get("commit") or result.get("git_commit")
    if commit and result.get("git_dirty") and not commit.endswith("+dirty"):
        commit += "+dirty"
    machine = result.get("machine")
    described = None
    if isinstance(machine, dict):
        cpus = machine.get("cpus")
        parts = [
            machine.get("host"),
            f"{cpus} x {machine['cpu_model']}" if machine.get("cpu_model") else f"{cpus} CPUs" if cpus else None,
            f"{machine['memory_gb']} GB" if machine.get("memory_gb") else None,
            f"Python {machine['python']}" if machine.get("python") else None,
        ]
        described = ", ".join(str(part) for part in parts if part) or None
    return {"date": date, "commit": commit or None, "machine": described}


def load(bench: str, results_dir: Path = RESULTS_DIR) -> Result:
    path = results_dir / f"{bench}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (run make bench-{bench})")
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise MalformedResults(f"{path} is not JSON: {error}") from error
    if not isinstance(result, dict):
        raise MalformedResults(f"{path} holds a {type(result).__name__}, not an object")
    return result


def load_all(results_dir: Path = RESULTS_DIR) -> tuple[dict[str, Result], list[str]]:
    """Every results file that loads, and one error line for each that does not."""
    results, errors = {}, []
    for bench in BENCHES:
        try:
            results[bench] = load(bench, results_dir)
        except (FileNotFoundError, MalformedResults) as error:
            errors.append(str(error))
    return results, errors


def main(results_dir: Path = RESULTS_DIR) -> int:
    results, errors = load_all(results_dir)
    print("Results files:")
    for bench, result in results.items():
        prov = provenance_of(result)
        print(
            f"  {bench + '.json':<13} measured {prov['date'] or 'at a date not recorded'}, "
            f"commit {prov['commit'] or 'not recorded'}, machine {prov['machine'] or 'not recorded'}"
        )
    print("\nGoals:")
    counts = {"met": 0, "missed": 0, "not measured": 0}
    for bench, result in results.items():
        try:
            evaluated = evaluate(bench, result)
        except MalformedResults as error:
            errors.append(f"{results_dir / (bench + '.json')}: {error}")
            continue
        print(f"  {bench}.json" + ("" if evaluated else ": no goals (figures only)"))
        for goal in evaluated:
            counts[goal["status"]] += 1
            print(f"    {goal_line(goal)}")
    print(f"\n{counts['met']} met, {counts['missed']} missed, {counts['not measured']} not measured")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
