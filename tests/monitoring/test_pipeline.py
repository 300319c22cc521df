"""run_monitor against a real MLflow server: the champion's reference through lineage, two windows, the records.

One champion per module (a baseline trained on the session's lake, promoted); each test gets a
private copy of the lake and its own prediction log folder.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import pytest
from mlflow import MlflowClient

from mlops_pipeline.config import MonitorSettings, Settings
from mlops_pipeline.ingest import Window
from mlops_pipeline.monitoring.decision import mlflow_retrains
from mlops_pipeline.monitoring.pipeline import run_monitor
from mlops_pipeline.monitoring.reference import REFERENCE_ARTIFACT, champion_version, load_reference
from tests.monitoring.scenario import WINDOW_DAY, copy_lake, train_champion, write_scenario_logs

pytestmark = pytest.mark.integration

WINDOW = Window(datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC))
COVARIATE_SHIFTED = {"monthly_charges", "num_support_tickets", "days_since_last_login", "num_logins_30d", "plan", "region"}


@pytest.fixture(scope="module")
def champion(mlops_env_module):
    return {"env": mlops_env_module, **train_champion(mlops_env_module.lake.day_after)}


def _run(champion, tmp_path, *, drift: bool):
    lake_uri = copy_lake(champion["env"].lake.uri, tmp_path / "lake")
    write_scenario_logs(tmp_path / "predictions", lake_uri, champion, drift=drift, window_day=WINDOW_DAY)
    settings = Settings(
        lake_uri=lake_uri, model_name=champion["env"].model_name, mlflow_tracking_uri=champion["env"].tracking_uri,
        prediction_log_dir=tmp_path / "predictions",
    )
    monitor = MonitorSettings(report_sample_rows=1000)
    return run_monitor(WINDOW, settings=settings, monitor=monitor, dag_run_id="test-run"), lake_uri


def test_reference_is_the_champions_training_sample_found_through_lineage(champion):
    client = MlflowClient(champion["env"].tracking_uri)
    name = champion["env"].model_name
    assert champion_version(client, name) == champion["version"]
    reference = load_reference(client, name, champion["version"])
    assert reference.run_id == champion["run_id"]
    assert reference.artifact_uri == f"runs:/{champion['run_id']}/{REFERENCE_ARTIFACT}"
    assert len(reference.frame) == min(5000, champion["splits"]["train"]["rows"])
    assert {"customer_id", "event_time", "churned", "plan", "tenure_months"} <= set(reference.frame.columns)
    assert reference.frame["event_time"].max() < datetime.fromisoformat(champion["split"]["valid_start"])
    assert reference.holdout_roc_auc == pytest.approx(champion["candidates"]["baseline"]["holdout"]["roc_auc"])
    assert champion_version(client, "no-such-model") is None


def test_window_without_drift(champion, tmp_path):
    summary, lake_uri = _run(champion, tmp_path, drift=False)
    drift = summary["drift"]
    assert summary["status"] == "ok" and drift["rows"] == 2000
    assert drift["drifted_features"] == [] and drift["drift_share"] == 0.0
    assert not drift["prediction"]["drifted"]
    quality = summary["quality"]
    assert quality["days"] == ["2026-01-07"] and quality["rows"] == 2000
    assert quality["metrics"]["roc_auc"] == pytest.approx(summary["reference"]["holdout_roc_auc"], abs=0.06)
    estimate = summary["estimate"]
    assert (estimate["days"], estimate["rows"], estimate["champion_version"]) == (["2026-01-09"], 2000, champion["version"])
    assert estimate["threshold"] == summary["reference"]["threshold"] and estimate["calibration"] is not None
    assert estimate["roc_auc_error_bound"] < 1e-4
    tracked = quality["estimate"]  # the estimate on the labelled rows, beside what their labels say
    assert tracked["days"] == ["2026-01-07"] and tracked["rows"] == 2000
    assert tracked["realised_roc_auc"] == quality["metrics"]["roc_auc"] and abs(tracked["roc_auc_error"]) < 0.05
    assert list(quality["by_day"]) == ["2026-01-07"]
    folder = urlparse(lake_uri).path + "/reports/drift/ds=2026-01-09"
    written = json.loads(open(f"{folder}/report.json").read())
    assert written["drift"]["rows"] == 2000 and "drift" in written["evidently"] and "quality" in written["evidently"]
    assert "<html" in open(f"{folder}/report.html").read(500).lower()
    assert "quality.html" in summary["files"]


def test_window_with_covariate_drift_and_its_mlflow_run(champion, tmp_path):
    summary, _ = _run(champion, tmp_path, drift=True)
    drift = summary["drift"]
    assert COVARIATE_SHIFTED <= set(drift["drifted_features"])
    assert drift["drift_share"] >= 0.3
    assert {"age", "contract", "payment_method"}.isdisjoint(drift["drifted_features"])
    assert drift["max_error_bound"] < 1e-3
    client = MlflowClient(champion["env"].tracking_uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["window_ds"] == "2026-01-09" and run.data.tags["champion_version"] == champion["version"]
    assert run.data.metrics["drift_share"] == pytest.approx(drift["drift_share"])
    assert run.data.metrics["drift.monthly_charges"] >= 0.1 and run.data.metrics["quality.roc_auc"] > 0.6
    assert run.data.metrics["estimated_roc_auc"] == pytest.approx(summary["estimate"]["roc_auc"])
    assert run.data.metrics["quality.estimated_roc_auc"] == pytest.approx(summary["quality"]["estimate"]["estimated_roc_auc"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/report.html", "report/report.json", "report/quality.html"} <= artifacts
    # A second run of the window reuses its MLflow run.
    again, _ = _run(champion, tmp_path / "again", drift=True)
    assert again["mlflow_run_id"] == summary["mlflow_run_id"]


def test_no_champion_is_a_finding_not_a_failure(champion, tmp_path):
    lake_uri = copy_lake(champion["env"].lake.uri, tmp_path / "lake")
    settings = Settings(
        lake_uri=lake_uri, model_name="never-registered", mlflow_tracking_uri=champion["env"].tracking_uri, prediction_log_dir=tmp_path
    )
    summary = run_monitor(WINDOW, settings=settings, monitor=MonitorSettings())
    assert summary["status"] == "no_champion" and "no @champion" in summary["message"]


def test_retrains_are_found_in_the_training_experiment(champion):
    import mlflow

    client = MlflowClient(champion["env"].tracking_uri)
    experiment = champion["env"].model_name  # the training experiment defaults to the model name
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    window = {"ds": "2026-01-08", "start": "2026-01-08T00:00:00+00:00", "end": "2026-01-09T00:00:00+00:00"}
    with mlflow.start_run(experiment_id=experiment_id, tags={"trigger_reason": "drift", "trigger_window": json.dumps(window)}):
        pass
    found = mlflow_retrains(client, experiment, ["drift", "performance"])
    assert [(r.window_ds, r.reason, r.window_end) for r in found] == [("2026-01-08", "drift", datetime(2026, 1, 9, tzinfo=UTC))]
    assert mlflow_retrains(client, experiment, ["drift"], exclude_ds="2026-01-08") == []
    assert mlflow_retrains(client, "no-such-experiment", ["drift"]) == []
    assert found[0].window_end + timedelta(days=1) == datetime(2026, 1, 10, tzinfo=UTC)


def test_the_background_import_of_evidently_shortens_the_switch_interval_only_while_it_runs():
    import sys

    from mlops_pipeline.monitoring.evidently_report import IMPORT_SWITCH_SECONDS, import_in_background

    before = sys.getswitchinterval()
    thread = import_in_background()
    during = sys.getswitchinterval()
    thread.join()
    assert "evidently" in sys.modules
    assert sys.getswitchinterval() == before
    assert during in (IMPORT_SWITCH_SECONDS, before)  # ``before`` if the import had already finished
