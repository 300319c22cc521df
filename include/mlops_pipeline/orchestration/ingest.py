"""The thin layer between Airflow tasks and the library: settings, lake, and Airflow's exceptions.

DAG files import this module at parse time, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)


def _window(start: datetime, end: datetime):
    from mlops_pipeline.ingest import Window

    return Window(start, end)


def ingest_extract(start: datetime, end: datetime, *, scenario: str | None, dag_run_id: str | None) -> dict[str, Any]:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.ingest import extract
    from mlops_pipeline.storage import open_lake

    settings = get_settings()
    spec = load_dataset_spec(settings.dataset)
    lake = open_lake(settings)
    window = _window(start, end)
    manifest = extract(lake, spec, window, settings, scenario=scenario, dag_run_id=dag_run_id)
    log.info("raw ds=%s: %s file(s) from %s -> %s", window.ds, len(manifest["files"]), manifest["source"], lake.partition_uri("raw", window.ds))
    return {"ds": window.ds, "uri": lake.partition_uri("raw", window.ds), "files": [f["sha256"] for f in manifest["files"]]}


def ingest_validate(start: datetime, end: datetime, *, dag_run_id: str | None) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.ingest import BatchRejected, validate
    from mlops_pipeline.storage import open_lake

    settings = get_settings()
    spec = load_dataset_spec(settings.dataset)
    try:
        return validate(open_lake(settings), spec, _window(start, end), dag_run_id=dag_run_id)
    except BatchRejected as exc:
        # Bad data stays bad on a retry: fail now, without retries, with the reasons in the message.
        raise AirflowFailException(str(exc)) from exc
