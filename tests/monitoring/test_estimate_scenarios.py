"""Estimated against realised performance through the whole monitor, with a champion trained by the
project's own training code (calibrated on its validation slice) and the synthetic churn source.

For each scenario one event day ``DAY`` after the lake's days is generated (``ROWS`` rows, labels
included), predicted by the champion into the prediction log and put into a private lake copy as
a validated partition. The monitor then runs twice, as the nightly DAG would:

* window ``DAY``: its rows have no labels yet: the record holds the estimate only;
* window ``DAY + 2``: ``DAY``'s labels have arrived (the churn label delay is 3 days): the realised
  numbers of ``DAY`` sit beside the estimate on the same rows, and are written back into the record
  and the MLflow run of window ``DAY``.

``ROWS`` is large enough that the realised ROC AUC's own sampling error (about 0.004) is small
against the tolerance.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from mlflow import MlflowClient

from mlops_pipeline.config import MonitorSettings, Settings
from mlops_pipeline.data.synthetic import Scenario
from mlops_pipeline.ingest import Window
from mlops_pipeline.monitoring.decision import decide_window, read_decision
from mlops_pipeline.monitoring.pipeline import run_monitor
from mlops_pipeline.monitoring.tracking import window_run_id
from tests.monitoring.scenario import add_labelled_day, copy_lake, scenario_day, train_champion, write_day_log

pytestmark = pytest.mark.integration

DAY = date(2026, 1, 12)  # after the lake's days: none of its rows were seen in training
ROWS = 20_000


def day_window(day: date) -> Window:
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


@pytest.fixture(scope="module")
def champion(mlops_env_module):
    from mlops_pipeline.registry.models import load_model

    trained = train_champion(mlops_env_module.lake.day_after)
    model = load_model(trained["model_uri"])
    # The estimate takes the served probabilities as P(churn | features): the champion must serve
    # calibrated ones (training calibrates on its validation slice and stores the map in the model).
    assert model.spec.calibration is not None, f"the champion {trained['model_uri']} serves uncalibrated scores"
    return {"env": mlops_env_module, "model": model, **trained}


def monitor_scenario(champion, base, scenario: Scenario | None) -> dict:
    """Both windows of one scenario; returns their summaries, ``DAY``'s record and the lake."""
    from mlops_pipeline.data.lake import Lake

    env = champion["env"]
    lake_uri = copy_lake(env.lake.uri, base / "lake")
    logs = base / "predictions"
    frame = scenario_day(DAY, scenario, ROWS)
    add_labelled_day(lake_uri, DAY, frame)
    write_day_log(logs, champion, DAY, frame, model=champion["model"])
    settings = Settings(lake_uri=lake_uri, model_name=env.model_name, mlflow_tracking_uri=env.tracking_uri, prediction_log_dir=logs)
    # A monitoring experiment per scenario: each has its own run of window DAY.
    monitor = MonitorSettings(report_sample_rows=1000, experiment_name=f"{env.model_name}-monitoring-{scenario or 'normal'}")
    client = MlflowClient(env.tracking_uri)
    found: dict = {"lake": Lake(lake_uri), "monitor": monitor, "scenario": str(scenario or "normal")}
    for name, day in (("window", DAY), ("labelled", DAY + timedelta(days=2))):
        window = day_window(day)
        found[name] = run_monitor(window, settings=settings, monitor=monitor, client=client)
        found[f"{name}_decision"] = decide_window(found[name], window, monitor=monitor, settings=settings, client=client)
    found["record"] = read_decision(found["lake"], monitor.reports_prefix, DAY.isoformat())
    return found


@pytest.fixture(scope="module")
def scenarios(champion, tmp_path_factory) -> dict:
    """Each scenario's monitor runs (the same seed: every scenario's day has the same customers, so
    concept drift leaves the features exactly as they are and changes the labels only)."""
    return {
        scenario: monitor_scenario(champion, tmp_path_factory.mktemp(str(scenario or "normal")), scenario)
        for scenario in (None, Scenario.COVARIATE_DRIFT, Scenario.CONCEPT_DRIFT)
    }


def estimated_and_realised(found: dict) -> tuple[dict, dict]:
    """The window's estimate (made without labels) and what window DAY + 2 measured on the same rows."""
    estimate, tracked = found["window"]["estimate"], found["labelled"]["quality"]["estimate"]
    print(json.dumps({"scenario": found["scenario"], "estimate": {k: estimate[k] for k in ("roc_auc", "accuracy", "calibration")}, **tracked}))
    return estimate, tracked


def test_without_drift_the_estimate_matches_the_realised_performance(scenarios):
    estimate, tracked = estimated_and_realised(scenarios[None])
    assert estimate["rows"] == tracked["rows"] == ROWS and estimate["calibration"] is not None
    assert tracked["estimated_roc_auc"] == pytest.approx(estimate["roc_auc"])  # the same rows, the same estimate
    assert abs(tracked["roc_auc_error"]) <= 0.02 and abs(tracked["accuracy_error"]) <= 0.02


def test_under_covariate_drift_the_estimate_follows_the_realised_performance(scenarios):
    """Covariate drift: the features move and P(churn | features) stays. A calibrated champion's
    probabilities still say how likely each row is to churn, so the estimate made on the window's
    night, without a single label, lands within 0.03 of what the labels say three days later,
    while drift itself is detected on the same night."""
    found = scenarios[Scenario.COVARIATE_DRIFT]
    estimate, tracked = estimated_and_realised(found)
    assert found["window"]["drift"]["drift_share"] >= 0.3 and found["window_decision"]["reason"] == "drift"
    assert estimate["roc_auc"] == pytest.approx(tracked["realised_roc_auc"], abs=0.03)
    assert estimate["accuracy"] == pytest.approx(tracked["realised_accuracy"], abs=0.03)
    # The estimate saw what the drift did to accuracy at the champion's threshold, before the labels:
    normal, _ = estimated_and_realised(scenarios[None])
    assert normal["accuracy"] - estimate["accuracy"] > 0.05
    assert estimate["accuracy"] == pytest.approx(tracked["realised_accuracy"], abs=0.01)


def test_the_record_and_the_mlflow_run_of_a_window_show_its_estimate_beside_the_realised_value(scenarios, champion):
    found = scenarios[Scenario.COVARIATE_DRIFT]
    estimate, tracked = estimated_and_realised(found)
    record = found["record"]
    assert (record["estimated_days"], record["estimated_roc_auc"], record["estimated_accuracy"]) == (
        [DAY.isoformat()], estimate["roc_auc"], estimate["accuracy"],
    )
    assert record["realised_days"] == [DAY.isoformat()] and record["realised_roc_auc"] == tracked["realised_roc_auc"]
    assert record["realised"]["measured_by"] == (DAY + timedelta(days=2)).isoformat()
    assert record["realised"]["roc_auc_error"] == pytest.approx(estimate["roc_auc"] - tracked["realised_roc_auc"])
    later = found["labelled_decision"]
    assert later["labelled"]["days"] == [DAY.isoformat()] and later["labelled"]["realised_roc_auc"] == tracked["realised_roc_auc"]
    assert later["estimated_roc_auc"] is None and later["realised_roc_auc"] is None  # DAY + 2 itself has no rows

    client = MlflowClient(champion["env"].tracking_uri)
    experiment = client.get_experiment_by_name(found["monitor"].experiment_for(champion["env"].model_name))
    run = client.get_run(window_run_id(client, experiment.experiment_id, DAY.isoformat()))
    metrics = run.data.metrics
    assert metrics["estimated_roc_auc"] == pytest.approx(estimate["roc_auc"])
    assert metrics["realised_roc_auc"] == pytest.approx(tracked["realised_roc_auc"])
    assert metrics["estimate_error_roc_auc"] == pytest.approx(tracked["roc_auc_error"])
    assert run.data.tags["realised_by_window"] == (DAY + timedelta(days=2)).isoformat()
    measuring = client.get_run(found["labelled"]["mlflow_run_id"]).data.metrics
    assert measuring["quality.roc_auc"] == pytest.approx(tracked["realised_roc_auc"])
    assert measuring["quality.estimated_roc_auc"] == pytest.approx(estimate["roc_auc"])


def test_under_concept_drift_the_estimate_cannot_see_the_loss(scenarios):
    """Concept drift: P(churn | features) changes while the features look as before. CBPE cannot see
    it: the estimate is computed from the champion's probabilities, which depend on the features
    alone, so it stays where it was while the realised ROC AUC falls. Only labels show concept
    drift; here the realised performance (the ``performance`` reason, three days later) has to
    catch it. This is the expected behaviour of the method, asserted as such."""
    normal_estimate, normal_tracked = estimated_and_realised(scenarios[None])
    estimate, tracked = estimated_and_realised(scenarios[Scenario.CONCEPT_DRIFT])
    assert scenarios[Scenario.CONCEPT_DRIFT]["window"]["drift"]["drifted_features"] == []  # nothing moved
    assert estimate["roc_auc"] == pytest.approx(normal_estimate["roc_auc"], abs=0.005)  # the estimate stays ...
    assert normal_tracked["realised_roc_auc"] - tracked["realised_roc_auc"] > 0.03  # ... the realised AUC falls
    assert tracked["roc_auc_error"] > 0.03  # and the estimate is too hopeful by that much
