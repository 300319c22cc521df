"""The benchmarks' goals (tests/benchmarks/goals.py) on synthetic results, and the README's generated
tables (tests/benchmarks/report.py) against the committed results files."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parent / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))
import goals  # noqa: E402
import report  # noqa: E402


def cell(name: str, rows: int, concurrency: int, rps: list[float], p99: list[float]) -> dict:
    rounds = [{"rps": r, "p99_ms": p} for r, p in zip(rps, p99, strict=True)]
    return {"name": name, "rows": rows, "concurrency": concurrency, "rps": sorted(rps)[len(rps) // 2],
            "p99_ms": sorted(p99)[len(p99) // 2], "rounds": rounds}  # fmt: skip


def serving_results(ours_p99_1row: float = 20.0) -> dict:
    cells = []
    for rows in (1, 100):
        for concurrency in (8, 32):
            cells += [
                cell("ours", rows, concurrency, [950, 900, 1000], [ours_p99_1row, 30, 40]),
                # ours / nolog per round: 0.95, 0.90, 0.80 -> median 0.90 (met at the threshold)
                cell("ours_nolog", rows, concurrency, [1000, 1000, 1250], [10, 20, 20]),
                # haproxy / ours per round: 0.8, 0.8, 0.9 -> median 0.8 (missed)
                cell("ours_haproxy", rows, concurrency, [760, 720, 900], [30, 30, 30]),
            ]
    return {"results": cells}


def by_name(evaluated: list[dict]) -> dict[str, dict]:
    return {goal["name"]: goal for goal in evaluated}


def test_serving_goals_met_missed_and_not_measured():
    evaluated = by_name(goals.evaluate("serving", serving_results(ours_p99_1row=20.0)))
    p99 = evaluated["serving.p99_1row_c32"]
    # the p99 is the cell's median (30 ms), not a round's
    assert (p99["value"], p99["met"], p99["status"]) == (30.0, False, "missed")
    log_rps = evaluated["serving.log_rps_100rows_c32"]
    assert (log_rps["value"], log_rps["met"]) == (0.9, True)
    # p99 ratio per round: 2.0, 1.5, 2.0 -> 2.0 > 1.5
    assert evaluated["serving.log_p99_100rows_c8"]["status"] == "missed"
    assert evaluated["serving.haproxy_1rows_c32"]["value"] == 0.8
    assert evaluated["serving.haproxy_1rows_c32"]["met"] is False
    # no mlflow variant in these results: not measured, with no value invented
    vs_mlflow = evaluated["serving.vs_mlflow_1rows_c32"]
    assert (vs_mlflow["value"], vs_mlflow["met"], vs_mlflow["status"]) == (None, None, "not measured")
    assert "mlflow" in vs_mlflow["reason"]


def test_serving_p99_met_under_threshold():
    results = serving_results()
    for entry in results["results"]:
        if entry["name"] == "ours" and entry["rows"] == 1 and entry["concurrency"] == 32:
            entry["p99_ms"] = 24.9
    assert by_name(goals.evaluate("serving", results))["serving.p99_1row_c32"]["status"] == "met"


def ingest_results(ratio: float = 1.2, days: int = 90, failed: int = 0) -> dict:
    files = {name: {"median_s": 4.0, "parse_ratio": 1.1} for name in goals.dag_files()}
    return {
        "dag_parse": {"bare_import_airflow_sdk_median_s": 3.6, "files": files},
        "backfill": {
            "days": days,
            "ours": [{"backfill_s": 100.0, "failed": failed}],
            "floor": [{"backfill_s": 100.0 / ratio, "failed": 0}],
            "ratio_to_floor": ratio,
        },
    }


@pytest.mark.parametrize(
    ("results", "status"),
    [
        (ingest_results(ratio=1.3), "met"),
        (ingest_results(ratio=1.31), "missed"),
        (ingest_results(days=30), "not measured"),
        (ingest_results(failed=2), "not measured"),
        ({"backfill": {"days": 90, "backfill_s": 944.2, "succeeded": 90, "failed": 0}}, "not measured"),
        ({}, "not measured"),
    ],
)
def test_ingest_backfill_goal(results, status):
    assert by_name(goals.evaluate("ingest", results))["ingest.backfill_90d_vs_floor"]["status"] == status


def test_every_dag_file_has_a_parse_goal_and_a_missing_one_is_not_measured():
    names = goals.dag_files()
    assert "mlops_ingest.py" in names and len(names) >= 5
    results = ingest_results()
    missing = names[0]
    del results["dag_parse"]["files"][missing]
    evaluated = by_name(goals.evaluate("ingest", results))
    parse = {name: goal for name, goal in evaluated.items() if name.startswith("ingest.parse_")}
    assert len(parse) == len(names)
    assert parse[f"ingest.parse_{missing.removesuffix('.py')}"]["status"] == "not measured"
    assert sum(goal["status"] == "met" for goal in parse.values()) == len(names) - 1


def drift_results(rows: int = 1_000_000, time_ratio: float = 0.15, peak: float = 480.0) -> dict:
    planted = ["n00", "c0"]
    return {
        "input": {"rows": rows, "planted_drift": planted},
        "monitor": {"peak_rss_mb": peak},
        "comparison": {"time_ratio": time_ratio, "same_verdicts": True, "drifted_per_monitor": planted},
    }


def test_drift_goals():
    evaluated = by_name(goals.evaluate("drift", drift_results()))
    assert [evaluated[n]["status"] for n in ("drift.time_vs_evidently_1m", "drift.peak_rss_1m", "drift.same_verdicts")] == [
        "met", "met", "met"]  # fmt: skip
    evaluated = by_name(goals.evaluate("drift", drift_results(time_ratio=0.314, peak=500.1)))
    assert evaluated["drift.time_vs_evidently_1m"]["status"] == "missed"
    assert evaluated["drift.peak_rss_1m"]["status"] == "missed"
    # a reduced run measures no goal that names 1M rows
    evaluated = by_name(goals.evaluate("drift", drift_results(rows=20_000)))
    assert evaluated["drift.time_vs_evidently_1m"]["status"] == "not measured"
    assert "20000 rows" in evaluated["drift.time_vs_evidently_1m"]["reason"]


def test_a_field_of_the_wrong_type_is_malformed():
    results = serving_results()
    ours_1row_c32 = next(e for e in results["results"] if (e["name"], e["rows"], e["concurrency"]) == ("ours", 1, 32))
    ours_1row_c32["p99_ms"] = "fast"
    with pytest.raises(goals.MalformedResults, match="p99_ms"):
        goals.evaluate("serving", results)
    with pytest.raises(goals.MalformedResults, match="not an object"):
        goals.evaluate("drift", {"input": {"rows": 1_000_000}, "comparison": "fast"})


def test_provenance_reads_the_earlier_field_names():
    legacy = {"date": "2026-12-01T16:18:36+00:00", "git_commit": "30c0365", "git_dirty": True, "machine": {"cpus": 2}}
    assert goals.provenance_of(legacy) == {"date": "2026-12-01T16:18:36+00:00", "commit": "30c0365+dirty", "machine": "2 CPUs"}
    assert goals.provenance_of({})["commit"] is None


def committed_results(tmp_path: Path) -> Path:
    for bench in goals.BENCHES:
        (tmp_path / f"{bench}.json").write_text((goals.RESULTS_DIR / f"{bench}.json").read_text())
    return tmp_path


def test_goals_main_exits_0_with_missed_goals_and_1_for_a_missing_or_malformed_file(tmp_path, capsys):
    results_dir = committed_results(tmp_path)
    # Whatever the committed figures are: one goal missed, one not measured, one file without a commit.
    drift = json.loads((results_dir / "drift.json").read_text())
    drift["comparison"]["time_ratio"] = drift["comparison"]["time_ratio_of_medians"] = 0.9
    drift.pop("commit", None)
    (results_dir / "drift.json").write_text(json.dumps(drift))
    ingest = json.loads((results_dir / "ingest.json").read_text())
    ingest.pop("backfill", None)
    (results_dir / "ingest.json").write_text(json.dumps(ingest))
    assert goals.main(results_dir) == 0
    printed = capsys.readouterr().out
    assert "MISSED" in printed and "NOT MEASURED" in printed and "commit not recorded" in printed
    (results_dir / "shadow.json").write_text("{not json")
    assert goals.main(results_dir) == 1
    (results_dir / "shadow.json").unlink()
    assert goals.main(results_dir) == 1
    assert "shadow.json is missing" in capsys.readouterr().err


def test_the_committed_readme_matches_the_results_files():
    assert report.main(["--check"]) == 0


def test_check_fails_when_a_number_in_the_readme_differs(tmp_path):
    readme = tmp_path / "README.md"
    text = report.README.read_text()
    begin = text.index("<!-- bench:begin memory -->")
    stale = text[:begin] + text[begin:].replace("| 14 |", "| 15 |", 1)
    assert stale != text
    readme.write_text(stale)
    assert report.main(["--check"], readme=readme) == 1
    assert report.main([], readme=readme) == 0  # rewrites it
    assert readme.read_text() == text


def test_report_renders_results_written_by_the_current_scripts(tmp_path):
    """A file with provenance's fields and a goals list renders its date and commit."""
    results_dir = committed_results(tmp_path)
    memory = json.loads((results_dir / "memory.json").read_text())
    memory = copy.deepcopy(memory) | {"commit": "abcdef0123456789+dirty"}
    memory["goals"] = goals.evaluate("memory", memory)
    (results_dir / "memory.json").write_text(json.dumps(memory))
    drift = json.loads((results_dir / "drift.json").read_text())
    drift = {k: v for k, v in drift.items() if k not in ("commit", "git_commit")} | {"measured_at": "2026-12-02T17:22:02Z"}
    (results_dir / "drift.json").write_text(json.dumps(drift))
    results = {bench: goals.load(bench, results_dir) for bench in goals.BENCHES}
    rendered = report.render(report.README.read_text(), results)
    assert "at commit `abcdef0123` with uncommitted changes" in rendered
    assert "drift.json`, measured 2026-12-02T17:22:02Z," in rendered and "The file does not record its commit." in rendered


def test_the_commit_is_dirty_for_changed_code_not_for_results_already_written(tmp_path: Path, monkeypatch) -> None:
    """``make bench`` writes its results one benchmark after another: the files it has written do not
    make the next benchmark's commit "+dirty", a changed tracked file anywhere else does."""
    import subprocess

    import provenance

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)

    results = tmp_path / "tests" / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "ingest.json").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "base")
    monkeypatch.setattr(provenance, "REPO", tmp_path)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert provenance.git_commit() == head
    (results / "ingest.json").write_text('{"new": true}\n')
    assert provenance.git_commit() == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_commit() == head + "+dirty"
