"""The train adapter with a fake context: what the run's context becomes, and the runs that must fail at once."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlops_pipeline.orchestration import train
from mlops_pipeline.training.data import TrainingDataError
from mlops_pipeline.training.pipeline import TrainingStepError
from tests.orchestration.fakes import FakeDagRun, RunType, use_settings

AS_OF = datetime(2013, 3, 1, 3, tzinfo=UTC)
MONITOR_CONF = {
    "reason": "drift",
    "report": "file:///lake/reports/drift/ds=2013-02-27/report.html",
    "window": {"ds": "2013-02-27", "start": "2013-02-27T00:00:00+00:00", "end": "2013-02-28T00:00:00+00:00"},
    "change_start": "2013-02-25",
}


@pytest.mark.parametrize(
    ("params", "run_type", "reason"),
    [
        ({"reason": "manual"}, "manual", "manual"),
        ({"reason": "manual"}, "scheduled", "schedule"),
        ({"reason": "manual"}, "backfill", "backfill"),
        ({"reason": "drift"}, "manual", "drift"),
        ({}, None, "manual"),
    ],
)
def test_trigger_reason(params, run_type, reason):
    assert train.trigger_reason(params, run_type) == reason


def test_conf_beyond_the_params_becomes_run_tags():
    tags = train.extra_tags({**MONITOR_CONF, "days": 7})
    assert set(tags) == {"trigger_report", "trigger_window", "trigger_change_start"}
    assert (
        tags["trigger_change_start"] == "2013-02-25"
        and json.loads(tags["trigger_window"])["ds"] == "2013-02-27"
    )


def test_the_candidates_param_offers_the_configured_candidates():
    from mlops_pipeline.config import DEFAULT_CANDIDATES

    assert train.CANDIDATES == list(DEFAULT_CANDIDATES)


def test_the_context_becomes_the_training_request(monkeypatch, tmp_path):
    use_settings(monkeypatch, tmp_path / "lake", MLOPS_START_DATE="2013-01-01")
    seen = {}

    def train_and_register(request):
        seen["request"] = request
        return {"model_name": "churn", "version": "4"}

    monkeypatch.setattr("mlops_pipeline.training.pipeline.train_and_register", train_and_register)
    dag_run = FakeDagRun(
        run_id="mlops_monitor__2013-02-27", run_type=RunType.MANUAL, conf=MONITOR_CONF, dag_id="mlops_train"
    )
    params = {"reason": "drift", "days": None, "candidates": [], "hyperparameters": {}, "seed": None}
    assert train.train(params, dag_run=dag_run, data_interval_end=AS_OF, logical_date=AS_OF) == {
        "model_name": "churn",
        "version": "4",
    }
    request = seen["request"]
    assert (request.as_of, request.reason, request.dag_run_id) == (
        AS_OF,
        "drift",
        "mlops_monitor__2013-02-27",
    )
    assert request.days is None and request.candidates is None and request.hyperparameters is None
    assert request.extra_tags["trigger_change_start"] == "2013-02-25"


def test_a_date_before_the_start_date_fails_at_once_without_training(monkeypatch, tmp_path):
    use_settings(monkeypatch, tmp_path / "lake", MLOPS_START_DATE="2013-01-01")

    def train_and_register(request):
        raise AssertionError("must not train")

    monkeypatch.setattr("mlops_pipeline.training.pipeline.train_and_register", train_and_register)
    moment = datetime(2012, 12, 30, 3, tzinfo=UTC)
    with pytest.raises(
        AirflowFailException,
        match=r"mlops_train for 2012-12-30 is before the configured start date 2013-01-01",
    ):
        train.train(
            {}, dag_run=FakeDagRun(dag_id="mlops_train"), data_interval_end=moment, logical_date=moment
        )


def test_a_date_without_validated_data_before_it_fails_at_once_naming_the_date(monkeypatch, tmp_path):
    use_settings(monkeypatch, tmp_path / "lake", MLOPS_START_DATE="2013-01-01")
    # A stand-in client: the empty window is found before anything is written to MLflow.
    monkeypatch.setattr("mlops_pipeline.registry.client.mlflow_client", lambda settings: object())
    with pytest.raises(AirflowFailException) as failed:
        train.train({}, dag_run=FakeDagRun(dag_id="mlops_train"), data_interval_end=AS_OF, logical_date=AS_OF)
    assert str(failed.value).startswith(
        "mlops_train cannot train as of 2013-03-01: training run manual__2026-01-09T00:00:00+00:00 (as of 2013-03-01) "
        "failed at step prepare: empty training window: no validated partition before ds=2013-03-01"
    )
    assert isinstance(failed.value.__cause__, TrainingStepError) and isinstance(
        failed.value.__cause__, TrainingDataError
    )


def test_the_run_after_stands_in_for_a_run_without_a_logical_date():
    moment = datetime(2013, 3, 4, 9, tzinfo=UTC)
    assert train.as_of_of(None, None, moment) == moment
    assert train.as_of_of(AS_OF, None, moment) == AS_OF
    with pytest.raises(ValueError, match="no data interval"):
        train.as_of_of(None, None, None)


def test_a_manual_run_trains_as_of_its_logical_date_not_the_interval_inferred_from_when_it_was_triggered():
    # the monitor's TriggerDagRunOperator passes its window's end; Airflow infers the interval from "now"
    now = datetime(2026, 12, 1, 18, tzinfo=UTC)
    assert train.as_of_of(now, AS_OF, now, "manual") == AS_OF
    assert train.as_of_of(now, AS_OF, now, "operator_triggered") == AS_OF  # Airflow >= 3.2's run type for it
    assert train.as_of_of(AS_OF, datetime(2013, 2, 25, 3, tzinfo=UTC), now, "scheduled") == AS_OF


def test_gate_failures_on_bad_input_fail_at_once_and_a_pass_is_announced(monkeypatch):
    def gate_candidate(result):
        raise TrainingDataError("rebuilt holdout has 10 rows, the run logged 12")

    monkeypatch.setattr("mlops_pipeline.training.pipeline.gate_candidate", gate_candidate)
    with pytest.raises(AirflowFailException, match=r"gate for churn v4: rebuilt holdout has 10 rows"):
        train.gate({"model_name": "churn", "version": "4"})
    decision = {
        "model_name": "churn",
        "version": "4",
        "run_id": "r",
        "model_uri": "models:/churn/4",
        "candidate_score": 0.8,
        "metric": "roc_auc",
        "passed": True,
        "reason": "above the floor",
    }
    assert train.announce_challenger(decision) == {k: decision[k] for k in train.CHALLENGER_KEYS}
