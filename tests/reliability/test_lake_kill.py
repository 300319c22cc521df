"""A task killed (SIGKILL) in the middle of a lake write: the partition is the old one or the new
one, never a mix, and the retry commits the new one.

The write runs in a real child process, the ingest ``extract`` step a task runs; the child kills
itself at a chosen point of the write (before/after each atomic rename, before/after the hard link
that creates the version file, during retention's clean-up) by wrapping ``os.replace`` /
``os.link`` / the filesystem's ``rm`` with a SIGKILL. The parent then reads the partition as a
reader would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.timeout(120)

CHILD = r"""
import os, signal, sys
from datetime import UTC, date, datetime, time, timedelta
from mlops_pipeline.config import get_settings
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.ingest import Window, extract
from mlops_pipeline.storage import open_lake

point = os.environ.get("KILL_AT", "")
calls = {"replace": 0}
real_replace = os.replace

def replace(src, dst):
    calls["replace"] += 1
    n = calls["replace"]
    if point == f"before_replace_{n}":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
    if point == f"after_replace_{n}":
        os.kill(os.getpid(), signal.SIGKILL)

real_link = os.link

def link(src, dst):
    if point == "before_link":
        os.kill(os.getpid(), signal.SIGKILL)
    real_link(src, dst)
    if point == "after_link":
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
os.link = link
settings = get_settings()
lake = open_lake(settings)
if point == "during_cleanup":
    # retention drops the old version (a registry that protects nothing): the clean-up has work to do
    lake.keep_versions, lake.protected_versions = 1, set
    real_rm = lake.fs.rm
    def rm(path, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    lake.fs.rm = rm
if point == "mid_data_write":
    real_fsync = os.fsync
    def fsync(fd):
        os.kill(os.getpid(), signal.SIGKILL)
    os.fsync = fsync
start = datetime.combine(date(2026, 2, 1), time(0), tzinfo=UTC)
extract(lake, load_dataset_spec(settings.dataset), Window(start, start + timedelta(days=1)), settings)
print("committed")
"""

# kill point -> which version a reader must see afterwards
KILL_POINTS = {
    "mid_data_write": "old",
    "before_replace_1": "old",  # the new data file is not in place yet
    "after_replace_1": "old",  # the new data file is in place, the manifest still names the old one
    "before_link": "old",  # the version file is written aside, not created
    "after_link": "old",  # version 2 is in the history, the head still names version 1
    "before_replace_2": "old",  # the new head is written aside, not committed
    "after_replace_2": "new",  # committed: the new head names the new file
    "during_cleanup": "new",  # committed, the old version not removed yet
}


def run_extract(env: dict[str, str], rows: int, kill_at: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD],
        env={**env, "MLOPS_SYNTHETIC_ROWS_PER_DAY": str(rows), "KILL_AT": kill_at},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


@pytest.mark.parametrize("kill_at", list(KILL_POINTS))
def test_killed_write_leaves_old_or_new_partition(tmp_path: Path, kill_at: str, reliability) -> None:
    from mlops_pipeline.data.lake import Lake

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_") or k == "MLOPS_HOME"}
    env.update({"MLOPS_LAKE_URI": (tmp_path / "lake").as_uri(), "MLOPS_DATASET": "churn", "MLOPS_RUN_DIR": str(tmp_path / "run")})
    old = run_extract(env, rows=300)
    assert old.returncode == 0 and "committed" in old.stdout, old.stderr[-2000:]
    lake = Lake((tmp_path / "lake").as_uri())
    old_manifest = lake.verify_partition("raw", "2026-02-01")

    started = time.monotonic()
    killed = run_extract(env, rows=500, kill_at=kill_at)
    assert killed.returncode == -9, f"the writer was not killed at {kill_at}: {killed.returncode} {killed.stderr[-2000:]}"

    seen = lake.verify_partition("raw", "2026-02-01")  # every file the manifest names is there, checksums match
    rows = len(lake.read_frame("raw", "2026-02-01"))
    expected = KILL_POINTS[kill_at]
    assert rows == (300 if expected == "old" else 500), f"killed at {kill_at}: a reader sees {rows} rows"
    if expected == "old":
        assert seen["files"] == old_manifest["files"]

    retry = run_extract(env, rows=500)  # Airflow's retry of the task
    assert retry.returncode == 0, retry.stderr[-2000:]
    final = lake.verify_partition("raw", "2026-02-01")
    assert len(lake.read_frame("raw", "2026-02-01")) == 500
    assert final["version"] == 2  # the retry completed the killed write's version, it did not add one
    kept = lake.list_versions("raw", "2026-02-01")
    assert [v["version"] for v in kept] == [1, 2] and len(lake.read_frame("raw", "2026-02-01", version=1)) == 300
    names = {p.name for p in Path(lake.partition_path("raw", "2026-02-01")).iterdir() if ".tmp-" not in p.name}
    assert names == {"_manifest.json", "_versions", *(e["path"] for v in kept for e in v["files"])}, names
    reliability.record(
        "faults",
        f"task SIGKILLed mid lake write ({kill_at})",
        f"reader sees the {expected} partition, checksums valid; the retry commits the new one",
        seconds=round(time.monotonic() - started, 1),
    )
