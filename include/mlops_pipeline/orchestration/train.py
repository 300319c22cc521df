"""The adapter of ``mlops_train``: one function per task, context values in, XCom-able dicts out.

* :func:`train` the run's context -> :class:`~mlops_pipeline.training.pipeline.TrainRequest` ->
  :func:`~mlops_pipeline.training.pipeline.train_and_register`; the run's first task, so it refuses a
  date before the configured start date;
* :func:`gate` the candidate vs ``@champion`` (:func:`~mlops_pipeline.training.pipeline.gate_candidate`);
* :func:`announce_challenger` what the ``mlops_challenger`` asset event carries.

Bad input (a date before the start, an empty or one-class window, a missing column, unknown
hyperparameters: every ``ValueError``) fails the task at once, because a retry would meet the same
data. Infrastructure errors (MLflow unreachable, a lake read failing) are raised as they are, so
Airflow's retries apply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mlops_pipeline.orchestration.context import (
    TRIGGERED_RUN_TYPES,
    MlflowIdentity,
    bad_input_fails_at_once,
    grant_model_permission,
    refuse_before_start,
    run_type_of,
    scoped,
)
from mlops_pipeline.registry.aliases import CHALLENGER_ASSET_NAME

log = logging.getLogger(__name__)

# The DAG's on_execute_callback: its tasks talk to MLflow as the user of Airflow connection mlflow_train.
MLFLOW_IDENTITY = MlflowIdentity("train")

__all__ = ["CANDIDATES", "CHALLENGER_ASSET_NAME", "announce_challenger", "gate", "train", "trigger_reason"]

DAG_ID = "mlops_train"
CANDIDATES = [
    "baseline",
    "xgboost",
]  # the candidates Param's choices (config.CandidateName, without importing config)
PARAM_NAMES = ("reason", "days", "candidates", "hyperparameters", "seed")
DEFAULT_REASON = "manual"
RUN_TYPE_REASONS = {"scheduled": "schedule", "backfill": "backfill", "asset_triggered": "asset"}
CHALLENGER_KEYS = ("model_name", "version", "run_id", "model_uri", "candidate_score", "metric")


def trigger_reason(params: Mapping[str, Any], run_type: str | None) -> str:
    """The Param ``reason``; a run nobody gave a reason (scheduled, backfill) is named by its type."""
    reason = str(params.get("reason") or "").strip()
    if reason and reason != DEFAULT_REASON:
        return reason
    if run_type and run_type not in TRIGGERED_RUN_TYPES:
        return RUN_TYPE_REASONS.get(run_type, run_type)
    return reason or DEFAULT_REASON


def extra_tags(conf: Mapping[str, Any] | None) -> dict[str, str]:
    """Conf keys beyond the Params (the monitor's ``report``, ``window``, ``change_start``) become
    ``trigger_<key>`` run tags."""
    tags = {}
    for key, value in (conf or {}).items():
        if key in PARAM_NAMES:
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        tags[f"trigger_{key}"[:250]] = text[:5000]
    return tags


def as_of_of(
    data_interval_end: datetime | None,
    logical_date: datetime | None,
    run_after: datetime | None,
    run_type: str | None = None,
) -> datetime:
    """The moment a run trains as of.

    A manual or operator-triggered run trains as of the logical date it was given (the monitor's trigger passes its
    window's end; a person may name any date): Airflow infers a manual run's data interval from when
    it was triggered, not from that date. Any other run trains as of its data interval's end. A run
    without either trains as of when it ran."""
    if run_type in TRIGGERED_RUN_TYPES:
        moment = logical_date or data_interval_end or run_after
    else:
        moment = data_interval_end or logical_date or run_after
    if moment is None:
        raise ValueError("the run has no data interval, logical date or run_after to train as of")
    return moment


def train(
    params: Mapping[str, Any] | None,
    *,
    dag_run: Any,
    data_interval_end: datetime | None,
    logical_date: datetime | None,
) -> dict[str, Any]:
    """Assemble the window, fit and evaluate the candidates, log to MLflow, register the best."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.training.pipeline import TrainRequest, train_and_register

    params = params or {}
    as_of = as_of_of(
        data_interval_end, logical_date, getattr(dag_run, "run_after", None), run_type_of(dag_run)
    )
    refuse_before_start(scoped(DAG_ID), as_of)
    request = TrainRequest(
        as_of=as_of,
        reason=trigger_reason(params, run_type_of(dag_run)),
        dag_run_id=getattr(dag_run, "run_id", None),
        days=params.get("days"),
        seed=params.get("seed"),
        candidates=list(params.get("candidates") or []) or None,
        hyperparameters=dict(params.get("hyperparameters") or {}) or None,
        extra_tags=extra_tags(getattr(dag_run, "conf", None)),
    )
    log.info("training as of %s (reason %s, run %s)", as_of.isoformat(), request.reason, request.dag_run_id)
    with bad_input_fails_at_once(f"{scoped(DAG_ID)} cannot train as of {as_of.date()}"):
        trained = train_and_register(request)
    # Under MLflow authentication the deploy identity may then release the model this identity created
    # (MLflow gives a model's creator MANAGE, everyone else the server's default, READ): move @champion
    # (which mlops-auth allows it alone) and clear @challenger on promotion, which basic-auth counts as a
    # deletion, allowed with MANAGE only.
    grant_model_permission("deploy", str(trained.get("model_name") or get_settings().registered_model_name), "MANAGE")
    return trained


def gate(candidate: Mapping[str, Any]) -> dict[str, Any]:
    """Candidate vs ``@champion`` on the same holdout; the recorded decision (``passed`` says which way)."""
    from mlops_pipeline.training.pipeline import gate_candidate

    with bad_input_fails_at_once(f"gate for {candidate.get('model_name')} v{candidate.get('version')}"):
        return gate_candidate(dict(candidate))


def announce_challenger(decision: Mapping[str, Any]) -> dict[str, Any]:
    """What the ``mlops_challenger`` asset event carries: the version that became ``@challenger``."""
    return {key: decision[key] for key in CHALLENGER_KEYS}
