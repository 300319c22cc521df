"""The scoring adapter with a fake context, against a lake of validated days and a real MLflow registry:
XCom-able results, the asset's extra, and the runs that must fail at once (or wait, when scheduled)."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException

from mlops_pipeline.config import get_settings
from mlops_pipeline.data.lake import Lake
from mlops_pipeline.orchestration import score
from tests.orchestration.fakes import FakeDagRun, RunType, day
from tests.scoring.conftest import champion, scoring_env  # noqa: F401  (fixtures)

DAY = "2026-01-04"


def test_params_pick_the_version_and_the_chunk_size():
    assert score.pinned_version_of(None) is None
    assert score.pinned_version_of({"model_version": ""}) is None
    assert score.pinned_version_of({"model_version": " 3 "}) == "3"
    assert score.chunk_rows_of({}) == 100_000 and score.chunk_rows_of({"chunk_rows": 500}) == 500


def test_a_scheduled_run_waits_for_its_partition_and_any_other_run_fails_naming_the_day(scoring_env):  # noqa: F811
    found = score.validated_partition(*day(DAY), dag_run=FakeDagRun(run_type=RunType.BACKFILL))
    assert found == {"ds": DAY, "uri": f"{scoring_env.lake.uri}/validated/ds={DAY}", "rows": 2000}
    assert score.validated_partition(*day("2026-03-01"), dag_run=FakeDagRun(run_type=RunType.SCHEDULED)) is None
    for run_type in (RunType.MANUAL, RunType.BACKFILL):
        with pytest.raises(AirflowFailException, match=r"mlops_score: ds=2026-03-01 has no validated partition in .*run mlops_ingest"):
            score.validated_partition(*day("2026-03-01"), dag_run=FakeDagRun(run_type=run_type))
    Lake(scoring_env.lake.uri).write_partition("quarantine", "2026-03-02", [], {"status": "quarantined", "failures": ["x"]})
    # Waiting would not validate a quarantined day: even a scheduled run fails at once.
    with pytest.raises(AirflowFailException, match=r"ds=2026-03-02 has no validated partition: its batch was quarantined"):
        score.validated_partition(*day("2026-03-02"), dag_run=FakeDagRun(run_type=RunType.SCHEDULED))


def test_a_day_is_scored_into_xcom_able_dicts_and_the_asset_extra(scoring_env, champion):  # noqa: F811
    start, end = day(DAY)
    model = score.resolve_model(start, params={"model_version": ""})
    assert model == {"name": champion.name, "version": champion.version, "artifact_sha256": champion.artifact_sha256,
                     "run_id": model["run_id"], "source": "champion"}  # fmt: skip
    scored = score.score(start, end, model, params={"chunk_rows": 800}, run_id="backfill__2026-01-04")
    uri = f"{scoring_env.lake.uri}/predictions/ds={DAY}"
    assert (scored["ds"], scored["rows"], scored["parts"], scored["uri"]) == (DAY, 2000, 3, uri)
    assert score.asset_extra(scored) == {
        "dataset": "churn", "ds": DAY, "rows": 2000, "uri": uri, "model_name": champion.name, "model_version": champion.version,
    }  # fmt: skip
    json.dumps([model, scored])  # what XCom stores
    manifest = Lake(scoring_env.lake.uri).read_manifest("predictions", DAY)
    assert manifest["dag_run_id"] == "backfill__2026-01-04"
    assert manifest["window"] == {"start": "2026-01-04T00:00:00+00:00", "end": "2026-01-05T00:00:00+00:00"}


def test_bad_input_fails_at_once_naming_it(scoring_env, champion, monkeypatch):  # noqa: F811
    start, end = day("2026-03-05")
    model = score.resolve_model(start, params={})
    with pytest.raises(AirflowFailException, match=r"mlops_score cannot score ds=2026-03-05: ds=2026-03-05 has no validated partition"):
        score.score(start, end, model, params={}, run_id="manual__2026-03-05")
    with pytest.raises(AirflowFailException, match=r"before the configured start date"):
        score.resolve_model(day("2013-02-09")[0], params={})
    with pytest.raises(AirflowFailException, match=rf"model '{champion.name}' has no version '42'"):
        score.resolve_model(start, params={"model_version": "42"})
    monkeypatch.setenv("MLOPS_MODEL_NAME", "churn-never-registered")
    get_settings.cache_clear()
    try:
        with pytest.raises(AirflowFailException, match=r"mlops_score ds=2026-03-05 has no model to score with: model 'churn-never-registered' has no @champion alias"):
            score.resolve_model(start, params={})
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
