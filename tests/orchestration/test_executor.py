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
    monkeypatch.setattr(preloading, "prepare", lambda modules: calls.append("prepare") or [])
    monkeypatch.setattr(preloading.LocalExecutor, "start", lambda self: calls.append("workers"))
    executor = preloading.PreloadingLocalExecutor(parallelism=1)
    executor.is_mp_using_fork = forks
    executor.start()
    assert calls == (["preload", "prepare", "workers"] if forks else ["workers"])


def test_prepare_calls_only_what_was_preloaded_and_reports_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    called: list[str] = []
    good = types.ModuleType("mlops_test_good")
    good.ready = lambda: called.append("good")  # type: ignore[attr-defined]
    bad = types.ModuleType("mlops_test_bad")
    bad.ready = lambda: 1 / 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlops_test_good", good)
    monkeypatch.setitem(sys.modules, "mlops_test_bad", bad)
    monkeypatch.setattr(preloading, "PREPARE_CALLS", (("mlops_test_good", "ready"), ("mlops_test_bad", "ready"), ("json", "nothing")))
    assert preloading.prepare(("mlops_test_good", "mlops_test_bad")) == ["mlops_test_bad.ready"]
    assert called == ["good"]  # json was not in the preload list: not called
    assert preloading.prepare(()) == [] and called == ["good"]


def test_a_forked_task_takes_the_prepared_context_once_and_the_parent_never() -> None:
    """As a task process forked from a worker: the first validation uses the context built before
    the fork, the next one a new context; the process that prepared it keeps building new ones."""
    code = """
import os
from mlops_pipeline.validation import gx_runner
gx_runner.prepare_context()
prepared = gx_runner._prepared[1][0]
assert gx_runner.new_context(None)[0] is not prepared  # the preparing process never takes it
assert gx_runner._prepared[1][0] is prepared
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    from great_expectations.data_context.data_context.context_factory import project_manager
    first = gx_runner.new_context(None)[0]
    ok = first is prepared and project_manager.get_current_project() is first  # GX's current context
    second = gx_runner.new_context(None)[0]
    ok = ok and second is not prepared and gx_runner._prepared is None
    os.write(write, b"ok" if ok else b"no")
    os._exit(0)
os.waitpid(pid, 0)
assert os.read(read, 2) == b"ok"
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
