"""score_partition against the session's validated lake and a real MLflow registry: parts and manifest,
the same numbers as the registered model's predict_proba, byte-identical re-runs, bounded chunks, and
the bad inputs (a missing day, a quarantined day, an empty day, no @champion)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlops_pipeline.data.lake import DataFile, Lake, frame_to_parquet_bytes
from mlops_pipeline.registry.client import mlflow_client
from mlops_pipeline.scoring.batch import (
    LABEL,
    PROBABILITY,
    NoChampion,
    NothingToScore,
    PartitionMissing,
    ScoringError,
    load_verified,
    partition_digest,
    read_predictions,
    resolve_model,
    score_partition,
)

DAY = "2026-01-05"


@pytest.fixture
def lake_copy(tmp_path: Path, scoring_env) -> Lake:  # type: ignore[no-untyped-def]
    """A private copy of the session lake's days, to write predictions and odd partitions into."""
    source = Path(scoring_env.lake.uri.removeprefix("file://"))
    target = tmp_path / "lake"
    shutil.copytree(source / "validated", target / "validated")
    return Lake(str(target))


@pytest.fixture(scope="module")
def loaded(champion, tmp_path_factory):  # type: ignore[no-untyped-def]
    client = mlflow_client()
    ref = resolve_model(client, champion.name)
    return ref, load_verified(client, ref, tmp_path_factory.mktemp("model"))


def test_the_champion_is_resolved_with_its_digest(champion):
    ref = resolve_model(mlflow_client(), champion.name)
    assert (ref.name, ref.version, ref.source) == (champion.name, champion.version, "champion")
    assert ref.artifact_sha256 == champion.artifact_sha256 and len(ref.artifact_sha256) == 64
    pinned = resolve_model(mlflow_client(), champion.name, champion.version)
    assert pinned.source == "pinned" and pinned.version == champion.version
    with pytest.raises(ScoringError, match=f"model '{champion.name}' has no version '99'"):
        resolve_model(mlflow_client(), champion.name, "99")


def test_a_partition_is_scored_in_chunks_with_a_manifest_naming_model_and_input(lake_copy, loaded):
    ref, model = loaded
    manifest = score_partition(lake_copy, DAY, model, ref, dataset="churn", chunk_rows=700)
    assert manifest["row_count"] == 2000
    assert [part["rows"] for part in manifest["files"]] == [700, 700, 600]
    assert manifest["model"] == {**ref.to_dict(), "flavor": "xgboost"}
    source = lake_copy.read_manifest("validated", DAY)
    assert manifest["input"] == {
        "zone": "validated", "ds": DAY, "uri": lake_copy.partition_uri("validated", DAY), "rows": 2000,
        "digest": partition_digest(source), **{k: source[k] for k in ("version", "version_digest") if k in source},
    }  # fmt: skip
    folder = Path(lake_copy.partition_path("predictions", DAY))
    committed = json.loads((folder / "_manifest.json").read_text())
    assert committed["files"] == manifest["files"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*(f["path"] for f in manifest["files"]), "_manifest.json"])
    for part in manifest["files"]:
        assert hashlib.sha256((folder / part["path"]).read_bytes()).hexdigest() == part["sha256"]

    predictions = read_predictions(lake_copy, DAY).to_pandas()
    frame = lake_copy.read_frame("validated", DAY)
    assert predictions[model.spec.id_column].tolist() == frame[model.spec.id_column].tolist()
    expected = model.predict_proba(frame)
    np.testing.assert_allclose(predictions[PROBABILITY].to_numpy(), expected, rtol=0, atol=1e-12)
    assert predictions[LABEL].tolist() == (expected >= model.spec.threshold).astype(int).tolist()
    assert 0.0 < predictions[PROBABILITY].min() < predictions[PROBABILITY].max() < 1.0


def test_a_rerun_gives_byte_identical_parts_and_other_chunks_replace_the_old_ones(lake_copy, loaded):
    ref, model = loaded
    first = score_partition(lake_copy, DAY, model, ref, dataset="churn", chunk_rows=900)
    folder = Path(lake_copy.partition_path("predictions", DAY))
    before = {p.name: p.read_bytes() for p in folder.glob("part-*")}
    chunked = read_predictions(lake_copy, DAY)
    second = score_partition(lake_copy, DAY, model, ref, dataset="churn", chunk_rows=900)
    assert second["files"] == first["files"]
    assert {p.name: p.read_bytes() for p in folder.glob("part-*")} == before
    third = score_partition(lake_copy, DAY, model, ref, dataset="churn", chunk_rows=5000)
    assert len(third["files"]) == 1 and sorted(p.name for p in folder.glob("part-*")) == [third["files"][0]["path"]]
    assert read_predictions(lake_copy, DAY).equals(chunked)  # chunking changes the parts, never a number


def test_a_file_no_manifest_named_goes_only_after_the_grace_period(lake_copy, loaded):
    """An overlapping run's part, written but not committed yet, is left alone; an old orphan goes."""
    import os
    import time

    from mlops_pipeline.data.lake import ORPHAN_GRACE_SECONDS

    ref, model = loaded
    folder = Path(lake_copy.partition_path("predictions", DAY))
    folder.mkdir(parents=True, exist_ok=True)
    fresh, old = folder / "part-00000-overlapping.parquet", folder / "part-00000-orphan.parquet"
    fresh.write_bytes(b"another run's part")
    old.write_bytes(b"a crashed run's part")
    long_ago = time.time() - ORPHAN_GRACE_SECONDS - 60
    os.utime(old, (long_ago, long_ago))

    manifest = score_partition(lake_copy, DAY, model, ref, dataset="churn", chunk_rows=5000)

    assert fresh.exists() and not old.exists()
    assert sorted(p.name for p in folder.glob("part-*")) == sorted([manifest["files"][0]["path"], fresh.name])


def test_a_missing_day_and_a_quarantined_day_are_named(lake_copy, loaded):
    ref, model = loaded
    with pytest.raises(PartitionMissing, match=r"ds=2025-12-30 has no validated partition in .*run mlops_ingest for that day first"):
        score_partition(lake_copy, "2025-12-30", model, ref, dataset="churn")
    lake_copy.write_partition("quarantine", "2025-12-31", [], {"status": "quarantined", "failures": [{"a": 1}, {"b": 2}]})
    with pytest.raises(PartitionMissing, match=r"ds=2025-12-31 has no validated partition: its batch was quarantined .*2 failed check"):
        score_partition(lake_copy, "2025-12-31", model, ref, dataset="churn")
    assert not Path(lake_copy.path("predictions")).exists()


def test_an_empty_day_is_not_a_success(lake_copy, loaded):
    ref, model = loaded
    empty = lake_copy.read_frame("validated", DAY).head(0)
    lake_copy.write_partition("validated", "2026-02-01", [DataFile("part", ".parquet", frame_to_parquet_bytes(empty), rows=0)], {})
    with pytest.raises(NothingToScore, match="ds=2026-02-01: the validated partition .* holds no rows: nothing to score"):
        score_partition(lake_copy, "2026-02-01", model, ref, dataset="churn")


def test_no_champion_is_a_clear_error(scoring_env):
    with pytest.raises(NoChampion, match="model 'no-such-model' has no @champion alias"):
        resolve_model(mlflow_client(), "no-such-model")


def test_a_partition_without_a_feature_the_model_needs_fails_naming_it(lake_copy, loaded):
    ref, model = loaded
    frame = lake_copy.read_frame("validated", DAY).drop(columns=["plan"])
    lake_copy.write_partition("validated", "2026-02-02", [DataFile("part", ".parquet", frame_to_parquet_bytes(frame), rows=len(frame))], {})
    with pytest.raises(ScoringError, match=r"the input lacks the column\(s\) \['plan'\] the model's contract names"):
        score_partition(lake_copy, "2026-02-02", model, ref, dataset="churn")
