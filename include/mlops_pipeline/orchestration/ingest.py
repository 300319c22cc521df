"""The adapter of ``mlops_ingest``: context values in, XCom-able dicts out.

The DAG's one task, :func:`ingest`, runs both steps of a window:

* :func:`extract`  the window's batch from the source into ``raw/ds=...``
  (:func:`mlops_pipeline.ingest.extract`); it refuses a window before the configured start date;
* :func:`validate` the expectation suite, then ``validated/`` or ``quarantine/``
  (:func:`mlops_pipeline.ingest.validate`).

One task, not two: a window's real work takes well under a second, while each task start costs a
few seconds of Airflow's own (a process, its imports, the API round trips), which a 90-day backfill
paid twice a window. Nothing is less visible for it: ``raw/`` is still written before validation,
the task log has both steps, and a rejected batch still fails naming every failed check.

Bad input fails at once, without retries: a window before the start date, a missing source file, a
scenario the source cannot play, a batch that fails its checks (quarantined first). A lake that
cannot be written raises as it is, so Airflow's retries apply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mlops_pipeline.orchestration.context import (
    bad_input_fails_at_once,
    refuse_before_start,
    scoped,
    window_of,
)

log = logging.getLogger(__name__)

DAG_ID = "mlops_ingest"
SCHEDULED_SCENARIO = "schedule"  # the scenario Param's default: follow the dataset's own schedule
SCENARIOS = [SCHEDULED_SCENARIO, "normal", "covariate_drift", "concept_drift", "bad_batch"]


def scenario_of(params: Mapping[str, Any] | None) -> str | None:
    """The scenario forced for this run by the ``scenario`` Param, or None to follow the schedule."""
    scenario = (params or {}).get("scenario") or SCHEDULED_SCENARIO
    return None if scenario == SCHEDULED_SCENARIO else str(scenario)


def extract(
    data_interval_start: datetime, data_interval_end: datetime, *, params: Mapping[str, Any] | None, run_id: str | None
) -> dict[str, Any]:
    """Copy the window's batch from the configured source into ``raw/ds=...`` with its manifest."""
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.ingest import SourceMissing
    from mlops_pipeline.ingest import extract as extract_window
    from mlops_pipeline.storage import open_lake

    settings = get_settings()
    refuse_before_start(scoped(DAG_ID), data_interval_start, settings)
    window = window_of(data_interval_start, data_interval_end)
    spec = load_dataset_spec(settings.dataset)
    lake = open_lake(settings)
    with bad_input_fails_at_once(f"{scoped(DAG_ID)} cannot extract ds={window.ds}"):
        try:
            manifest = extract_window(lake, spec, window, settings, scenario=scenario_of(params), dag_run_id=run_id)
        except SourceMissing as exc:
            # A day without a source file is a gap in the data, not a hiccup: name the file now.
            raise AirflowFailException(f"{scoped(DAG_ID)} ds={window.ds}: {exc}") from exc
    uri = lake.partition_uri("raw", window.ds)
    log.info("raw ds=%s: %d file(s) from %s -> %s", window.ds, len(manifest["files"]), manifest["source"], uri)
    return {
        "ds": window.ds,
        "uri": uri,
        "files": [entry["sha256"] for entry in manifest["files"]],
        "source": manifest["source"],
    }


def validate(data_interval_start: datetime, data_interval_end: datetime, *, run_id: str | None) -> dict[str, Any]:
    """Run the expectation suite on the raw batch; publish it to ``validated/`` or quarantine it and fail
    naming every failed check. Returns the validated partition (``ds``, ``rows``, ``uri``, ``data_docs``)."""
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.ingest import BatchRejected
    from mlops_pipeline.ingest import validate as validate_window
    from mlops_pipeline.storage import open_lake
    from mlops_pipeline.validation.suites import SuiteError

    settings = get_settings()
    spec = load_dataset_spec(settings.dataset)
    try:
        result = validate_window(open_lake(settings), spec, window_of(data_interval_start, data_interval_end), dag_run_id=run_id)
    except (BatchRejected, SuiteError) as exc:
        # Bad data (or a suite contradicting its dataset file) stays bad on a retry: fail now, without
        # retries, with the reasons in the message.
        raise AirflowFailException(str(exc)) from exc
    return {key: value for key, value in result.items() if key != "manifest"}


def ingest(
    data_interval_start: datetime, data_interval_end: datetime, *, params: Mapping[str, Any] | None, run_id: str | None
) -> dict[str, Any]:
    """:func:`extract`, then :func:`validate`: the validated partition, with the raw batch it came from
    under ``raw``. A retry starts again from the source (both steps replace their partition whole)."""
    raw = extract(data_interval_start, data_interval_end, params=params, run_id=run_id)
    validated = validate(data_interval_start, data_interval_end, run_id=run_id)
    return {**validated, "raw": {key: raw[key] for key in ("uri", "files", "source")}}


def asset_extra(validated: Mapping[str, Any]) -> dict[str, Any]:
    """What the ``mlops_validated`` asset event carries: the partition that became valid."""
    return {key: validated[key] for key in ("ds", "rows", "uri")}
