"""Data versions in training lineage, retention that spares them, and ``mlops reproduce``.

One scenario against the session's MLflow server and a lake of this module's own (synthetic days
written straight into validated/): train and register v1 on six days, then re-ingest one of them
twice with other content. Version 1 must still be reproduced byte for byte from the versions it
pinned (through the command line, in a fresh process, as ``make reproduce`` runs it); retention must
keep those versions; once they are gone, the reproduction names the partition and digest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta

import pytest
from mlflow import MlflowClient

from mlops_pipeline.contracts.tags import DATA_VERSIONS
from mlops_pipeline.data.synthetic import generate_day
from mlops_pipeline.registry.lineage import protected_data_versions, run_datasets
from mlops_pipeline.training.data import PinnedDataMissing
from mlops_pipeline.training.pipeline import TrainRequest, train_and_register
from mlops_pipeline.training.reproduce import reproduce_version
from tests.mlflow_fixtures import ValidatedLake, _point_settings_at
from tests.training.lake_helpers import synthetic_lake, write_validated

pytestmark = pytest.mark.integration

FIRST_DAY = date(2026, 1, 1)
DAYS = 6
REINGESTED = "2026-01-03"


def _changed_day(seed: int, rows: int):
    frame = generate_day(date.fromisoformat(REINGESTED), seed=seed, rows=rows)
    for column in ("customer_id", "plan", "contract", "payment_method", "region"):
        frame[column] = frame[column].astype("string")
    return frame


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, mlflow_server_launched, mlflow_server):
    lake = synthetic_lake(tmp_path_factory.mktemp("versioned") / "lake", FIRST_DAY, DAYS, rows=600)
    days = [(FIRST_DAY + timedelta(days=i)).isoformat() for i in range(DAYS)]
    with pytest.MonkeyPatch.context() as monkeypatch:
        env = _point_settings_at(monkeypatch, mlflow_server, ValidatedLake(lake.uri, days))
        result = train_and_register(TrainRequest(as_of=FIRST_DAY + timedelta(days=DAYS), reason="test-reproduce", days=DAYS))
        pinned = next(p for p in result["window"]["partitions"] if p["ds"] == REINGESTED)
        # The day is ingested again, twice, with other content: versions 2 and 3, the head moves on.
        write_validated(lake, REINGESTED, _changed_day(seed=7, rows=500))
        write_validated(lake, REINGESTED, _changed_day(seed=8, rows=650))
        yield {"env": env, "lake": lake, "result": result, "pinned": pinned, "client": MlflowClient(env.tracking_uri)}


def test_training_pins_each_partition_version(scenario):
    result, client, env = scenario["result"], scenario["client"], scenario["env"]
    partitions = result["window"]["partitions"]
    assert [p["version"] for p in partitions] == [1] * DAYS and all(len(p["version_digest"]) == 32 for p in partitions)
    pins = " ".join(f"{p['ds']}@v1:{p['version_digest']}" for p in partitions)
    run = client.get_run(result["run_id"])
    assert run.data.params["window.data_versions"] == pins
    assert client.get_model_version(env.model_name, result["version"]).tags[DATA_VERSIONS] == pins
    training = next(d for d in run_datasets(run) if d["context"] == "training")
    assert {v["ds"]: v["version_digest"] for v in training["source"]["versions"]} == {
        p["ds"]: p["version_digest"] for p in partitions if p["ds"] in {v["ds"] for v in training["source"]["versions"]}
    }
    # the dataset digest keeps its meaning: the split's checksums and boundaries
    assert training["digest"] == result["splits"]["train"]["digest"]

    lake = scenario["lake"]
    head = lake.read_manifest("validated", REINGESTED)
    assert head["version"] == 3 and head["version_digest"] != scenario["pinned"]["version_digest"]


def test_reproduce_after_reingest_gives_identical_model_bytes(scenario):
    """Through the command line ``make reproduce`` calls, in a fresh process."""
    env = scenario["env"]
    completed = subprocess.run(
        [sys.executable, "-m", "mlops_pipeline", "reproduce", "--version", str(scenario["result"]["version"])],
        env={**os.environ, "MLOPS_LAKE_URI": env.lake.uri, "MLFLOW_TRACKING_URI": env.tracking_uri,
             "MLOPS_MODEL_NAME": env.model_name, "MLOPS_DATASET": "churn"},
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert f"{REINGESTED}@v1:{scenario['pinned']['version_digest']}" in out
    model_file = "model.ubj" if scenario["result"]["flavor"] == "xgboost" else "model.pkl"
    assert f"model file {model_file}: identical" in out
    assert "serving contract and signature (MLmodel metadata.mlops, signature): identical" in out
    assert out.strip().endswith("result: identical model bytes")


def test_a_baseline_version_is_reproduced_and_a_difference_is_reported(scenario):
    """A baseline-only version (the scikit-learn pickle), reproduced in this process; then the verdict
    on a comparison whose registered bytes differ."""
    env = scenario["env"]
    baseline = train_and_register(TrainRequest(as_of=FIRST_DAY + timedelta(days=DAYS), reason="test-baseline", days=DAYS, candidates=["baseline"]))
    reproduction = reproduce_version(baseline["version"], model_name=env.model_name)
    assert reproduction.identical and [f.name for f in reproduction.model_files] == ["model.pkl"]
    # the new training read the re-ingested head, not v1
    assert next(p for p in baseline["window"]["partitions"] if p["ds"] == REINGESTED)["version"] == 3

    mismatched = reproduction.model_files[0].__class__("model.pkl", "0" * 64, reproduction.model_files[0].reproduced)
    reproduction.model_files = [mismatched]
    assert not reproduction.identical and "result: NOT identical" in reproduction.report()


def test_retention_keeps_the_versions_registered_models_use(scenario, monkeypatch):
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.storage import open_lake

    pinned = scenario["pinned"]["version_digest"]
    assert pinned in protected_data_versions(scenario["client"])
    monkeypatch.setenv("MLOPS_LAKE_KEEP_VERSIONS", "1")
    get_settings.cache_clear()
    try:
        lake = open_lake()
        write_validated(lake, REINGESTED, _changed_day(seed=9, rows=400))
    finally:
        get_settings.cache_clear()
    kept = {v["version"]: v["version_digest"] for v in lake.list_versions("validated", REINGESTED)}
    # v1 (model 1 trained on it) and v3 (the baseline version) stay, v2 goes, v4 is the head
    assert sorted(kept) == [1, 3, 4] and kept[1] == pinned


def test_reproduce_names_the_partition_and_digest_that_are_gone(scenario):
    env, lake = scenario["env"], scenario["lake"]
    assert lake.prune("validated", REINGESTED, keep=1, protected=set()) == [1, 3]
    with pytest.raises(PinnedDataMissing, match=rf"validated/ds={REINGESTED} version 1 \(digest {scenario['pinned']['version_digest']}\)"):
        reproduce_version(scenario["result"]["version"], model_name=env.model_name)
    completed = subprocess.run(
        [sys.executable, "-m", "mlops_pipeline", "reproduce", "--version", str(scenario["result"]["version"])],
        env={**os.environ, "MLOPS_LAKE_URI": env.lake.uri, "MLFLOW_TRACKING_URI": env.tracking_uri,
             "MLOPS_MODEL_NAME": env.model_name, "MLOPS_DATASET": "churn"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert f"validated/ds={REINGESTED} version 1 (digest {scenario['pinned']['version_digest']})" in completed.stderr
