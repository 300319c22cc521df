"""What every benchmark result file carries beside its figures: the machine, the date and the commit it
measured, its goals met or missed, and the one way the file is written (atomically, so a killed run
leaves the last good one)."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from goals import RESULTS_DIR, evaluate, goal_line  # the same folder: every bench script puts it on sys.path

REPO = Path(__file__).resolve().parents[2]
RESULTS_PATHSPEC = RESULTS_DIR.relative_to(REPO).as_posix()  # tests/benchmarks/results


def git_commit() -> str:
    """HEAD, with ``+dirty`` when tracked files differ from it (the figures then measure no commit).

    The results folder does not count: ``make bench`` writes its files one benchmark after another,
    and the ones it has already written are not code that the next one measures."""
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){RESULTS_PATHSPEC}")
    return head + ("+dirty" if changed else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def provenance() -> dict[str, Any]:
    """The fields every result file starts with."""
    return {
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": git_commit(),
    }


def write_results(path: Path, result: dict[str, Any], bench: str) -> None:
    """Write ``result`` with the goals of ``bench`` (goals.py) evaluated on it, and print them."""
    result["goals"] = evaluate(bench, result)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    for goal in result["goals"]:
        print(goal_line(goal))
    print(f"wrote {path}")
