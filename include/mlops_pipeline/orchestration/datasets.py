"""One set of DAGs per dataset, from one DAG file per step.

Each DAG file (``dags/mlops_<step>.py``) defines ``build(ds)`` and ends with
``globals().update(dags_per_dataset("mlops_<step>", build))``: one DAG per dataset file of the
installation (:func:`mlops_pipeline.config.dataset_entries`):

- the primary dataset (``MLOPS_DATASET``) keeps the plain names: ``mlops_ingest``, the ``mlops_validated``
  asset, its model, the lake's root, the namespace, ``MLOPS_ROUTER_PORT``;
- every other one gets its own: ``mlops_ingest__<name>``, ``mlops_validated__<name>``, the model
  ``<name>``, ``<lake>/datasets/<name>``, ``<namespace>-<name>``, its router port
  (:func:`mlops_pipeline.config._with_dataset_scope`).

Every task of a dataset's DAGs starts with :class:`UseDataset` as its first ``on_execute_callback``
(and ``on_failure_callback``): it points the task's process (and its children) at that dataset's
settings, so the adapters below read the right ones through ``get_settings()`` as before.

A dataset file that does not load becomes, in each DAG file, a DAG of that dataset's id that says so
(its description names the file, its docs hold the error, it is tagged ``broken-dataset``) and whose
one task fails at once with the error; the DAG processor's log has it too. Every other dataset's DAGs
are unaffected. It is not an import error on purpose: Airflow marks every DAG of a file that has an
import error stale, and a stale DAG's runs are never scheduled, so one broken file would stop every
dataset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from mlops_pipeline.config import Settings
    from mlops_pipeline.datasets import DatasetEntry

log = logging.getLogger(__name__)


class UseDataset:
    """A task callback that points the task's process at one dataset's settings (the first callback of
    every task of that dataset's DAGs)."""

    def __init__(self, entry: DatasetEntry) -> None:
        self.name = entry.name
        self.path = None if entry.primary else str(entry.path)

    def __call__(self, context: Any = None) -> None:
        from mlops_pipeline.config import SCOPE_ENV, get_settings

        if self.path is None:
            os.environ.pop(SCOPE_ENV, None)
        else:
            os.environ[SCOPE_ENV] = self.path
        get_settings.cache_clear()

    def __repr__(self) -> str:
        return f"UseDataset({self.name!r})"


class DatasetDags:
    """What one dataset's DAGs are called and configured with."""

    def __init__(self, entry: DatasetEntry) -> None:
        self.entry = entry
        self.use = UseDataset(entry)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def primary(self) -> bool:
        return self.entry.primary

    def dag_id(self, base: str) -> str:
        """``mlops_ingest`` for the primary dataset, ``mlops_ingest__<name>`` for the others."""
        return self.entry.dag_id(base)

    def asset_name(self, base: str) -> str:
        """The dataset's own asset (``mlops_validated``, ``mlops_validated__<name>`` ...)."""
        return self.entry.dag_id(base)

    @cached_property
    def settings(self) -> Settings:
        """This dataset's settings, read at parse time (what shapes its DAGs)."""
        from mlops_pipeline.config import settings_for

        return settings_for(None if self.primary else self.entry.path)

    def callbacks(self, *others: Any) -> list[Any]:
        """This dataset's :class:`UseDataset` first, then ``others`` (for ``on_execute_callback`` and
        ``on_failure_callback``)."""
        return [self.use, *(callback for callback in others if callback is not None)]

    def doc(self, doc: str | None) -> str:
        if self.primary:
            return doc or ""
        return f"**Dataset `{self.name}`** (`{self.entry.path}`).\n\n{doc or ''}"

    def tags(self, *tags: str) -> list[str]:
        return [*tags, f"dataset:{self.name}"]


BROKEN_TASK_ID = "dataset_file_error"


def _broken_dag(dag_id: str, entry: DatasetEntry) -> DAG:
    """The DAG of a dataset whose file does not load: it shows the file's error (description, docs, the
    ``broken-dataset`` tag) and its one task fails at once with it, so a run of it is never a success.

    Not an import error of the DAG file: Airflow marks every DAG of a file with an import error stale
    (no run of them is scheduled), which would stop every other dataset's DAGs too."""
    from airflow.sdk import DAG, task

    message = f"{dag_id}: {entry.error}"
    log.error("%s (the other datasets' DAGs are unaffected)", message)
    with DAG(
        dag_id=dag_id,
        schedule=None,
        description=f"BROKEN dataset file {entry.path}"[:200],
        doc_md=f"**This dataset's file does not load; fix it and the DAG is rebuilt.**\n\n```\n{message}\n```",
        tags=["mlops", "broken-dataset", f"dataset:{entry.name}"],
    ) as dag:

        @task(task_id=BROKEN_TASK_ID, retries=0)
        def dataset_file_error() -> None:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(message)

        dataset_file_error()
    return dag


def dags_per_dataset(base: str, build: Callable[[DatasetDags], DAG]) -> dict[str, DAG]:
    """``build`` called for each dataset of the installation: ``{dag_id: DAG}``, for the DAG file's globals."""
    from mlops_pipeline.config import dataset_entries

    built: dict[str, DAG] = {}
    for entry in dataset_entries():
        dag_id = entry.dag_id(base)
        built[dag_id] = _broken_dag(dag_id, entry) if entry.error else build(DatasetDags(entry))
    return built
