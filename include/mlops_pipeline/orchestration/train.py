"""Airflow glue for ``mlops_train``: task context -> :class:`TrainRequest`, errors -> Airflow's terms.

Bad input (an empty or one-class window, a missing column, unknown hyperparameters: every
``ValueError``) fails the task at once with :class:`AirflowFailException`, because a retry would
meet the same data. Infrastructure errors (MLflow unreachable, a lake read failing) are raised as
they are, so Airflow's retries apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

PARAM_NAMES = ("reason", "days", "candidates", "hyperparameters", "seed")
DEFAULT_REASON = "manual"
RUN_TYPE_REASONS = {"scheduled": "schedule", "backfill": "backfill", "asset_triggered": "asset"}


def trigger_reason(params: Mapping[str, Any], run_type: str | None) -> str:
    """The Param ``reason``; a run nobody gave a reason (scheduled, backfill) is named by its type."""
    reason = str(params.get("reason") or "").strip()
    if reason and reason != DEFAULT_REASON:
        return reason
    if run_type and run_type != "manual":
        return RUN_TYPE_REASONS.get(run_type, run_type)
    return reason or DEFAULT_REASON


def _extra_tags(conf: Mapping[str, Any] | None) -> dict[str, str]:
    """Conf keys beyond the Params (e.g. the monitor's ``report``) become ``trigger_<key>`` run tags."""
    tags = {}
    for key, value in (conf or {}).items():
        if key in PARAM_NAMES:
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        tags[f"trigger_{key}"[:250]] = text[:5000]
    return tags


def train_task(
    params: Mapping[str, Any],
    *,
    as_of: datetime,
    dag_run_id: str | None,
    run_type: str | None,
    conf: Mapping[str, Any] | None,
) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_pipeline.training.pipeline import TrainRequest, train_and_register

    request = TrainRequest(
        as_of=as_of,
        reason=trigger_reason(params, run_type),
        dag_run_id=dag_run_id,
        days=params.get("days"),
        seed=params.get("seed"),
        candidates=list(params.get("candidates") or []) or None,
        hyperparameters=dict(params.get("hyperparameters") or {}) or None,
        extra_tags=_extra_tags(conf),
    )
    log.info("training as of %s (reason %s, run %s)", as_of.isoformat(), request.reason, dag_run_id)
    try:
        return train_and_register(request)
    except ValueError as exc:
        raise AirflowFailException(f"mlops_train cannot train as of {as_of.date()}: {exc}") from exc


def gate_task(result: Mapping[str, Any]) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowFailException

    from mlops_pipeline.training.pipeline import gate_candidate

    try:
        return gate_candidate(dict(result))
    except ValueError as exc:
        raise AirflowFailException(f"gate for {result.get('model_name')} v{result.get('version')}: {exc}") from exc
