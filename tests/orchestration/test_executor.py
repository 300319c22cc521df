"""The preloading LocalExecutor: what it imports, when, and that a failed import never stops it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlops_pipeline.orchestration import executor as preloading


def test_every_module_of_the_preload_list_imports() -> None:
    """In a fresh interpreter, as the scheduler would: a name that no longer imports (a module
    renamed) must not go unnoticed, even though the executor only logs it."""
    code = """
import sys
from mlops_pipeline.orchestration.executor import PRELOAD_MODULES, preload
assert preload(PRELOAD_MODULES) == []
for heavy in ("great_expectations", "pandas", "pyarrow.parquet", "mlops_pipeline.validation.gx_runner"):
    assert heavy in sys.modules, heavy
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_the_environment_replaces_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(preloading.PRELOAD_VARIABLE, " json, csv ,,")
    assert preloading.preload_modules() == ("json", "csv")
    monkeypatch.setenv(preloading.PRELOAD_VARIABLE, "")
    assert preloading.preload_modules() == ()
    monkeypatch.delenv(preloading.PRELOAD_VARIABLE)
    assert preloading.preload_modules() == preloading.PRELOAD_MODULES


def test_a_module_that_cannot_be_imported_is_reported_not_raised() -> None:
    assert preloading.preload(("json", "mlops_no_such_module_here")) == ["mlops_no_such_module_here"]


@pytest.mark.parametrize("forks", [True, False])
def test_start_preloads_before_the_workers_fork_and_only_when_they_fork(monkeypatch: pytest.MonkeyPatch, forks: bool) -> None:
    calls: list[str] = []
    monkeypatch.setattr(preloading, "preload", lambda modules: calls.append("preload") or [])
    monkeypatch.setattr(preloading.LocalExecutor, "start", lambda self: calls.append("workers"))
    executor = preloading.PreloadingLocalExecutor(parallelism=1)
    executor.is_mp_using_fork = forks
    executor.start()
    assert calls == (["preload", "workers"] if forks else ["workers"])
