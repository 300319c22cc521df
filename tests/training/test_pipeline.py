"""train_and_register + gate_candidate against a real MLflow server and the lake of 10 validated days.

The search is small here (``small_search_environment``: a few trials on two folds). One scenario per
module (training is the expensive part), then one test per property:

1. v1: both candidates, no champion yet -> the floor decides -> ``@challenger``; a retry of the same
   Airflow run reuses the finished run.
2. v1 promoted; v2: a crippled XGBoost -> registered, ``rejected``, no alias moves.
3. v3: a normal XGBoost, scored against the champion on the same holdout -> ``@challenger``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from mlops_pipeline.registry import CHALLENGER, CHAMPION, promote
from mlops_pipeline.registry.aliases import version_for_alias
from mlops_pipeline.registry.lineage import LAKE_SOURCE_TYPE, version_lineage
from mlops_pipeline.registry.models import load_model
from mlops_pipeline.training.pipeline import TrainRequest, gate_candidate, train_and_register

pytestmark = pytest.mark.integration

CRIPPLED = {"xgboost": {"max_depth": 1, "n_estimators": 1, "learning_rate": 0.3}}


@pytest.fixture(scope="module")
def scenario(mlops_env_module):
    client = MlflowClient(mlops_env_module.tracking_uri)
    name = mlops_env_module.model_name
    as_of = mlops_env_module.lake.day_after
    steps: dict = {"env": mlops_env_module, "client": client, "name": name}

    steps["first"] = train_and_register(TrainRequest(as_of=as_of, reason="test-first", dag_run_id="run-1"))
    steps["first_gate"] = gate_candidate(steps["first"])
    steps["aliases_after_first"] = _aliases(client, name)
    steps["retry"] = train_and_register(TrainRequest(as_of=as_of, reason="test-first", dag_run_id="run-1"))
    steps["retry_gate"] = gate_candidate(steps["first"])
    steps["versions_after_retry"] = len(client.search_model_versions(f"name = '{name}'"))

    promote(1)
    steps["aliases_after_promote"] = _aliases(client, name)
    steps["worse"] = train_and_register(
        TrainRequest(as_of=as_of, reason="test-worse", candidates=["xgboost"], hyperparameters=CRIPPLED)
    )
    steps["worse_gate"] = gate_candidate(steps["worse"])
    steps["aliases_after_worse"] = _aliases(client, name)

    steps["good"] = train_and_register(TrainRequest(as_of=as_of, reason="test-good", candidates=["xgboost"]))
    steps["good_gate"] = gate_candidate(steps["good"])
    steps["aliases_after_good"] = _aliases(client, name)

    # The sklearn flavor, whatever won v1: a baseline-only version (not gated, just registered).
    steps["baseline"] = train_and_register(TrainRequest(as_of=as_of, reason="test-baseline", candidates=["baseline"]))
    return steps


def _aliases(client: MlflowClient, name: str) -> dict[str, str | None]:
    found = {}
    for alias in (CHAMPION, CHALLENGER):
        version = version_for_alias(client, name, alias)
        found[alias] = None if version is None else str(version.version)
    return found


def test_first_version_becomes_challenger_on_the_floor(scenario):
    first, decision = scenario["first"], scenario["first_gate"]
    assert first["version"] == "1" and first["model_uri"] == f"models:/{scenario['name']}/1"
    assert set(first["candidates"]) == {"baseline", "xgboost"}
    assert decision["passed"] and "no @champion yet" in decision["reason"]
    assert scenario["aliases_after_first"] == {CHAMPION: None, CHALLENGER: "1"}
    # The gate re-scored the registered model (downloaded from MLflow) on the rebuilt holdout.
    winner = first["winner"]
    assert decision["candidate_score"] == pytest.approx(first["candidates"][winner]["holdout"]["roc_auc"])


def test_a_retry_of_the_same_airflow_run_reuses_the_finished_run(scenario):
    assert (scenario["retry"]["run_id"], scenario["retry"]["version"]) == (scenario["first"]["run_id"], "1")
    assert scenario["versions_after_retry"] == 1
    assert scenario["retry_gate"]["status"] == "passed"
    assert scenario["retry_gate"]["reason"] == scenario["first_gate"]["reason"]


def test_run_records_lineage_params_metrics_and_artifacts(scenario):
    client, first, lake = scenario["client"], scenario["first"], scenario["env"].lake
    lineage = version_lineage(client, scenario["name"], 1)
    assert lineage["run_id"] == first["run_id"]
    run = client.get_run(first["run_id"])
    tags = run.data.tags
    assert tags["trigger_reason"] == "test-first" and tags["dag_run_id"] == "run-1"
    assert tags["git_commit"] == tags["mlflow.source.git.commit"] != ""
    assert run.data.params["window.first_ds"] == "2026-01-01" and run.data.params["window.last_ds"] == "2026-01-10"
    assert run.data.params["seed"] == "42"
    assert {"holdout_roc_auc", "holdout_pr_auc", "holdout_log_loss", "holdout_brier", "holdout_f1", "holdout_ece",
            "baseline.holdout_roc_auc", "xgboost.valid_roc_auc", "xgboost.cv_roc_auc_mean", "xgboost.cv_roc_auc_std",
            "calibration.holdout_ece_before", "calibration.holdout_ece_after", "calibration.valid_brier_after_cv",
            "calibration.isotonic_cv_brier", "calibration.platt_cv_brier"} <= set(run.data.metrics)
    params = run.data.params
    assert (params["tune.trials"], params["tune.folds"], params["tune.sampler"]) == ("3", "2", "TPESampler(seed=42)")
    # the best parameters of each search are the candidate's parameters on the training run
    for name, search in first["tuning"].items():
        for key in search["searched"]:
            assert params[f"{name}.{key}"] == str(search["best_params"][key])
    winner = first["winner"]
    assert params["calibration.method"] == first["calibration"][winner]["method"] == first["model_spec"]["calibration"]["method"]

    datasets = {d["context"]: d for d in lineage["datasets"]}
    assert set(datasets) == {"training", "validation", "holdout"}
    split_of = {"training": "train", "validation": "valid", "holdout": "holdout"}
    for context, entry in datasets.items():
        assert entry["source_type"] == LAKE_SOURCE_TYPE
        assert entry["digest"] == first["splits"][split_of[context]]["digest"]
        assert all(uri.startswith(f"{lake.uri}/validated/ds=") for uri in entry["source"]["uris"])
    assert datasets["training"]["source"]["uris"][0].endswith("ds=2026-01-01")
    assert datasets["holdout"]["source"]["uris"][-1].endswith("ds=2026-01-10")
    assert datasets["holdout"]["source"]["rows_from"] == first["split"]["holdout_start"]

    for artifact in ("model_card.md", "explain/shap_importance.png", "explain/shap_importance.csv",
                     "explain/shap_importance.json", "environment/requirements-lock.txt", "data/window.json",
                     "data/reference_sample.parquet", "train_result.json", "tuning/xgboost.json",
                     "calibration/baseline.json"):
        assert artifact in lineage["artifacts"], artifact
    png = Path(client.download_artifacts(first["run_id"], "explain/shap_importance.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    importances = json.loads(Path(client.download_artifacts(first["run_id"], "explain/shap_importance.json")).read_text())
    assert {row["feature"] for row in importances} == {f["name"] for f in first["model_spec"]["features"]}
    assert importances[0]["rank"] == 1 and importances[0]["mean_abs_shap"] >= importances[-1]["mean_abs_shap"]


def test_candidates_and_search_trials_are_nested_runs_of_the_training_run(scenario):
    client, first = scenario["client"], scenario["first"]
    experiment_id = client.get_run(first["run_id"]).info.experiment_id

    def children(parent_id: str):
        return client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")

    candidates = {run.data.tags["mlops.candidate"]: run for run in children(first["run_id"])}
    assert set(candidates) == {"baseline", "xgboost"}
    for name, candidate_run in candidates.items():
        search = first["tuning"][name]
        assert candidate_run.data.tags["mlops.kind"] == "candidate" and candidate_run.info.status == "FINISHED"
        assert candidate_run.data.metrics["cv_roc_auc_mean"] == pytest.approx(search["cv_mean"])
        assert candidate_run.data.metrics["holdout_roc_auc"] == pytest.approx(first["candidates"][name]["holdout"]["roc_auc"])
        trials = children(candidate_run.info.run_id)
        assert len(trials) == search["trials_finished"] == 3
        for trial in trials:
            assert trial.data.tags["mlops.kind"] == "trial" and set(search["searched"]) <= set(trial.data.params)
            assert {"fold_1_roc_auc", "fold_2_roc_auc", "cv_roc_auc_mean", "cv_roc_auc_std"} <= set(trial.data.metrics)
        [best] = [t for t in trials if t.data.tags["best"] == "true"]
        assert best.data.params["trial"] == str(search["best_trial"])
        assert best.data.metrics["cv_roc_auc_mean"] == pytest.approx(search["cv_mean"])
        assert {k: best.data.params[k] for k in search["searched"]} == {k: str(search["best_params"][k]) for k in search["searched"]}
    # nested runs carry neither the trigger nor the Airflow run: the monitor's and the retry's searches skip them
    assert not {"trigger_reason", "dag_run_id"} & set(candidates["xgboost"].data.tags)


def test_model_card_says_what_the_model_is_and_what_the_gate_did(scenario):
    client = scenario["client"]
    card = Path(client.download_artifacts(scenario["first"]["run_id"], "model_card.md")).read_text()
    for heading in ("## Intended use", "## Data", "## Metrics (holdout)", "## Hyperparameter search", "## Calibration",
                    "## Gate", "## Limitations"):
        assert heading in card
    assert "ds=2026-01-01..2026-01-10" in card and "**passed**" in card
    rejected_card = Path(client.download_artifacts(scenario["worse"]["run_id"], "model_card.md")).read_text()
    assert "**rejected**" in rejected_card and "champion: version 1" in rejected_card


def test_worse_candidate_is_registered_rejected_and_moves_no_alias(scenario):
    client, name, worse, decision = scenario["client"], scenario["name"], scenario["worse"], scenario["worse_gate"]
    assert scenario["aliases_after_promote"] == {CHAMPION: "1", CHALLENGER: None}  # promote cleared v1's challenger
    assert worse["version"] == "2" and worse["flavor"] == "xgboost"
    assert not decision["passed"] and decision["champion_version"] == "1"
    tags = client.get_model_version(name, "2").tags
    assert tags["rejected"] == "true" and tags["rejection_reason"] == decision["reason"]
    assert tags["gate_status"] == "rejected"
    assert scenario["aliases_after_worse"] == {CHAMPION: "1", CHALLENGER: None}


def test_candidate_is_compared_with_the_champion_on_the_same_holdout(scenario):
    good, decision = scenario["good"], scenario["good_gate"]
    assert decision["passed"] and decision["champion_version"] == "1"
    champion_winner = scenario["first"]["winner"]
    assert decision["champion_score"] == pytest.approx(scenario["first"]["candidates"][champion_winner]["holdout"]["roc_auc"])
    # the paired evidence on the same rows: DeLong's interval of candidate - champion, recorded with n
    assert decision["method"] == "delong" and decision["n"] == good["splits"]["holdout"]["rows"]
    low, high = decision["interval"]
    assert low <= decision["difference"] <= high and low >= -decision["margin"]
    assert decision["difference"] == pytest.approx(decision["candidate_score"] - decision["champion_score"])
    assert scenario["aliases_after_good"] == {CHAMPION: "1", CHALLENGER: good["version"]}


def test_the_gate_records_the_prediction_shift_a_canary_should_show(scenario):
    """Both versions scored on the gate's holdout; their PSI, binned as the canary check bins the
    servers' histograms, is tagged on the candidate before its @challenger (none without a champion)."""
    import json

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.contracts.tags import EXPECTED_SHIFT
    from mlops_pipeline.deploy.canary import expected_shift
    from mlops_pipeline.training.pipeline import _holdout_for

    client, name, good = scenario["client"], scenario["name"], scenario["good"]
    recorded = json.loads(client.get_model_version(name, good["version"]).tags[EXPECTED_SHIFT])
    assert recorded["against"] == "1" and recorded["bins"] == 10 and recorded["rows"] == good["splits"]["holdout"]["rows"]
    holdout = _holdout_for(good, get_settings())
    champion = load_model(f"models:/{name}/1").predict_proba(holdout)
    candidate = load_model(f"models:/{name}/{good['version']}").predict_proba(holdout)
    assert recorded["psi"] == pytest.approx(expected_shift(champion, candidate, 10), abs=1e-6)
    assert EXPECTED_SHIFT not in (client.get_model_version(name, scenario["first"]["version"]).tags or {})


def test_registered_xgboost_model_follows_the_serving_contract(scenario, tmp_path):
    import mlflow.artifacts
    import numpy as np
    import pandas as pd
    import xgboost as xgb

    from mlops_pipeline.contracts.calibration import apply
    from mlops_pipeline.training.features import ModelSpec, encode

    good = scenario["good"]
    local = mlflow.artifacts.download_artifacts(f"models:/{scenario['name']}/{good['version']}", dst_path=str(tmp_path))
    mlmodel = yaml.safe_load(Path(local, "MLmodel").read_text())
    assert mlmodel["flavors"]["xgboost"]["model_format"] == "ubj"
    block = mlmodel["metadata"]["mlops"]
    assert [f["name"] for f in block["features"]][:2] == ["tenure_months", "monthly_charges"]
    assert {f["name"]: f for f in block["features"]}["plan"] == {
        "name": "plan", "kind": "categorical", "categories": ["basic", "premium", "standard"]
    }
    assert (block["id_column"], block["time_column"], block["target"]) == ("customer_id", "event_time", "churned")
    assert 0 < block["threshold"] < 1 and block["threshold"] == good["model_spec"]["threshold"]
    assert block["calibration"] == good["model_spec"]["calibration"]
    assert block["calibration"]["method"] == good["calibration"]["xgboost"]["method"]
    signature = json.loads(mlmodel["signature"]["inputs"])
    assert [c["name"] for c in signature] == [f["name"] for f in block["features"]]
    assert sorted(Path(local).iterdir()) and not Path(local, "uv.lock").exists()

    # What a server does: encode raw rows with metadata.mlops, predict with the plain booster.
    example = json.loads(Path(local, "input_example.json").read_text())
    rows = pd.DataFrame(example["data"], columns=example["columns"])
    spec = ModelSpec.from_metadata(block)
    booster = xgb.Booster()
    booster.load_model(str(Path(local, "model.ubj")))
    dmatrix = xgb.DMatrix(encode(rows, spec), feature_names=spec.names, feature_types=spec.feature_types,
                          enable_categorical=True)
    proba = apply(booster.predict(dmatrix), block["calibration"])  # the raw score through the stored map
    assert proba.shape == (len(rows),) and np.all((proba >= 0) & (proba <= 1))
    assert np.allclose(proba, load_model(good["model_uri"]).predict_proba(rows))  # what the gate scored


def test_registered_sklearn_model_takes_raw_columns(scenario, tmp_path):
    import mlflow.artifacts
    import mlflow.sklearn
    import pandas as pd

    baseline = scenario["baseline"]
    assert baseline["flavor"] == "sklearn"
    local = mlflow.artifacts.download_artifacts(baseline["model_uri"], dst_path=str(tmp_path))
    block = yaml.safe_load(Path(local, "MLmodel").read_text())["metadata"]["mlops"]
    pipeline = mlflow.sklearn.load_model(local)
    example = json.loads(Path(local, "input_example.json").read_text())
    proba = pipeline.predict_proba(pd.DataFrame(example["data"], columns=example["columns"]))[:, 1]
    assert len(proba) == len(example["data"]) and block["threshold"] == baseline["model_spec"]["threshold"]
    assert block["calibration"] == baseline["model_spec"]["calibration"]
