"""``--dataset NAME`` for the local commands: which DAG of which dataset, and that dataset's settings.

Every dataset file of the installation gets its own DAGs (``mlops_<step>__<name>``; the primary
dataset keeps the plain ids, see :mod:`mlops_pipeline.orchestration.datasets`). A command given
``--dataset NAME`` acts on that dataset's DAG, and reads that dataset's settings (its lake, model,
namespace) through :data:`mlops_pipeline.config.SCOPE_ENV`, as that DAG's tasks do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


class UnknownDataset(ValueError):
    """The name is not a dataset of this installation, or its file is broken."""


def scope_to_dataset(name: str | None, base_dag_id: str) -> str:
    """The DAG id of step ``base_dag_id`` for dataset ``name`` (None: the primary one). For another
    dataset than the primary one, this process's settings become that dataset's. An unknown or
    broken dataset raises :class:`UnknownDataset` naming it and the known ones."""
    from mlops_pipeline.config import SCOPE_ENV, dataset_entries, get_settings

    if name is None:
        return base_dag_id
    entries = {entry.name: entry for entry in dataset_entries()}
    entry = entries.get(name)
    if entry is None or entry.error:
        why = entry.error if entry is not None else f"no such dataset; this installation has {sorted(entries)}"
        raise UnknownDataset(f"--dataset {name}: {why}")
    if not entry.primary:
        os.environ[SCOPE_ENV] = str(entry.path)
        get_settings.cache_clear()
    return entry.dag_id(base_dag_id)


def take_dataset(given: Sequence[str]) -> tuple[str | None, list[str]]:
    """``--dataset NAME`` (or ``--dataset=NAME``) out of ``given``: the name and the other arguments."""
    rest: list[str] = []
    name: str | None = None
    items = iter(given)
    for item in items:
        if item == "--dataset":
            name = next(items, None)
        elif item.startswith("--dataset="):
            name = item.split("=", 1)[1]
        else:
            rest.append(item)
    return name, rest
