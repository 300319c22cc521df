"""A LocalExecutor whose task processes start with the task libraries already imported.

Airflow 3's LocalExecutor forks its worker processes from the scheduler when it starts
(``LocalExecutor.start``, multiprocessing's fork start method, the default on Linux), and each
worker forks every task process from itself (``supervise_task`` -> ``os.fork`` without an exec, on
every platform but macOS). A module imported in the scheduler before the workers fork is therefore
in every task process for free, while a module a task imports itself is imported again by each
task: Great Expectations alone costs a task seconds of CPU, once per window of a backfill.

:class:`PreloadingLocalExecutor` imports :data:`PRELOAD_MODULES` in the scheduler, then starts the
LocalExecutor as it is. Nothing else changes: the workers, the task processes, their logs and
their isolation are Airflow's own; a task that imports a preloaded module gets the copy it inherited
(its module state is that of a fresh import: nothing runs at preload time but the imports and the
set-up of :data:`PREPARE_CALLS`, a GX context built ahead for the tasks to take). The cost moves
to the scheduler's start and memory, where the forked workers and tasks share it page by page until
they write to it.

Use it with ``AIRFLOW__CORE__EXECUTOR=mlops_pipeline.orchestration.executor.PreloadingLocalExecutor``
(opt-in: the embedded stack keeps Airflow's LocalExecutor, see ``mlops_dev.services``). ``MLOPS_EXECUTOR_PRELOAD`` replaces the
list (comma-separated module names; empty: preload nothing). With the spawn start method (macOS)
workers do not inherit the scheduler's modules and the preload is skipped.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import sys
import time

from airflow.executors.local_executor import LocalExecutor

log = logging.getLogger(__name__)

# What mlops_ingest's task imports beyond airflow.sdk and its DAG file (pandas, pyarrow and GX are
# ~90% of it). A module missing here is imported by the task itself, as before: slower, not wrong.
PRELOAD_MODULES: tuple[str, ...] = (
    "pandas",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "great_expectations",
    "great_expectations.render.renderer.site_builder",
    "mlops_pipeline.config",
    "mlops_pipeline.datasets",
    "mlops_pipeline.storage",
    "mlops_pipeline.data.lake",
    "mlops_pipeline.data.synthetic",
    "mlops_pipeline.ingest",
    "mlops_pipeline.validation.parsing",
    "mlops_pipeline.validation.suites",
    "mlops_pipeline.validation.gx_runner",
    "mlops_pipeline.validation.docs_view",
    "mlops_pipeline.orchestration.ingest",
)
PRELOAD_VARIABLE = "MLOPS_EXECUTOR_PRELOAD"


def preload_modules() -> tuple[str, ...]:
    """:data:`PRELOAD_MODULES`, or the comma-separated list in ``MLOPS_EXECUTOR_PRELOAD`` when set."""
    configured = os.environ.get(PRELOAD_VARIABLE)
    if configured is None:
        return PRELOAD_MODULES
    return tuple(name.strip() for name in configured.split(",") if name.strip())


def preload(modules: tuple[str, ...]) -> list[str]:
    """Import ``modules``; return those that could not be imported (logged, never raised: a task
    that needs one imports it itself and fails there, with its own traceback in its own log)."""
    # GX reads this at import time; Airflow's environment sets it too, but a scheduler started by
    # hand may not, and a preload must not send usage statistics from the scheduler.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    failed = []
    started = time.perf_counter()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            log.warning("preload: could not import %s; tasks that need it import it themselves", name, exc_info=True)
            failed.append(name)
    log.info("preload: imported %d module(s) in %.1fs before forking the workers", len(modules) - len(failed), time.perf_counter() - started)
    return failed


# Set-up done once before the workers fork, as (module, function): each is called only if its module
# was preloaded. Both processes and their state stay as fresh as an import leaves them; what a
# function builds is there for the task processes to take (see each one's doc).
PREPARE_CALLS: tuple[tuple[str, str], ...] = (("mlops_pipeline.validation.gx_runner", "prepare_context"),)


def prepare(modules: tuple[str, ...]) -> list[str]:
    """Call :data:`PREPARE_CALLS` whose module is among ``modules`` (and imported); return those that
    failed (logged, never raised: a task then does the set-up itself)."""
    failed = []
    for module, function in PREPARE_CALLS:
        if module not in modules or module not in sys.modules:
            continue
        try:
            getattr(sys.modules[module], function)()
        except Exception:
            log.warning("preload: %s.%s failed; tasks do that set-up themselves", module, function, exc_info=True)
            failed.append(f"{module}.{function}")
    return failed


class PreloadingLocalExecutor(LocalExecutor):
    """LocalExecutor that imports the tasks' libraries once, in the scheduler, before its workers fork."""

    def start(self) -> None:
        if self.is_mp_using_fork:
            modules = preload_modules()
            preload(modules)
            prepare(modules)
        else:
            log.info("preload: skipped, workers are started with %r and would not inherit it", multiprocessing.get_start_method())
        super().start()
