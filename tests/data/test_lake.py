import json

import pandas as pd
import pytest

from mlops_pipeline.data.lake import (
    DataFile,
    Lake,
    LakeError,
    ManifestMismatchError,
    frame_to_parquet_bytes,
    sha256_bytes,
    version_digest,
)


@pytest.fixture
def local_lake(tmp_path):
    return Lake((tmp_path / "lake").as_uri())


def frame(n=10, offset=0):
    return pd.DataFrame({"id": [f"x{i + offset}" for i in range(n)], "value": [float(i) for i in range(n)]})


def test_parquet_bytes_are_deterministic():
    assert frame_to_parquet_bytes(frame()) == frame_to_parquet_bytes(frame())


def test_manifest_lists_every_file_with_its_sha256(local_lake):
    data = frame_to_parquet_bytes(frame())
    manifest = local_lake.write_partition("validated", "2026-01-05", [DataFile("part-00000", ".parquet", data, rows=10)], {"dataset": "t"})
    on_disk = json.loads(local_lake.read_bytes(f"{local_lake.partition_path('validated', '2026-01-05')}/_manifest.json"))
    assert on_disk == manifest
    (entry,) = manifest["files"]
    assert entry["sha256"] == sha256_bytes(data)
    assert sha256_bytes(local_lake.read_bytes(f"{local_lake.partition_path('validated', '2026-01-05')}/{entry['path']}")) == entry["sha256"]
    assert manifest["row_count"] == 10
    pd.testing.assert_frame_equal(local_lake.read_frame("validated", "2026-01-05"), frame())


def _names(lake, zone, ds):
    return sorted(p.rsplit("/", 1)[-1] for p in lake.fs.ls(lake.partition_path(zone, ds), detail=False))


def _part(n=10, offset=0):
    return [DataFile("part-00000", ".parquet", frame_to_parquet_bytes(frame(n, offset)), n)]


def test_rewrite_is_a_new_version_and_keeps_the_old_one(local_lake):
    first = local_lake.write_partition("raw", "2026-01-05", _part(), {})
    second = local_lake.write_partition("raw", "2026-01-05", _part(5, 3), {})
    assert (first["version"], second["version"]) == (1, 2)
    assert first["version_digest"] == version_digest([first["files"][0]["sha256"]]) != second["version_digest"]
    assert local_lake.read_manifest("raw", "2026-01-05") == second  # the head: what readers see
    assert _names(local_lake, "raw", "2026-01-05") == sorted(
        ["_manifest.json", "_versions", first["files"][0]["path"], second["files"][0]["path"]]
    )
    assert local_lake.version_numbers("raw", "2026-01-05") == [1, 2]
    assert [v["version_digest"] for v in local_lake.list_versions("raw", "2026-01-05")] == [first["version_digest"], second["version_digest"]]
    pd.testing.assert_frame_equal(local_lake.read_frame("raw", "2026-01-05"), frame(5, 3))
    pd.testing.assert_frame_equal(local_lake.read_frame("raw", "2026-01-05", version=1), frame())
    pd.testing.assert_frame_equal(local_lake.read_frame("raw", "2026-01-05", version=first["version_digest"]), frame())
    pd.testing.assert_frame_equal(local_lake.read_frame("raw", "2026-01-05", version=first["version_digest"][:10]), frame())
    with pytest.raises(LakeError, match=r"no version 3 of raw/ds=2026-01-05 in file://.* \(kept versions: \[1, 2\]\)"):
        local_lake.read_frame("raw", "2026-01-05", version=3)
    with pytest.raises(LakeError, match="too short"):
        local_lake.read_frame("raw", "2026-01-05", version="abc")
    # Going back to the first content is a third version (history is a sequence, not a set).
    third = local_lake.write_partition("raw", "2026-01-05", _part(), {})
    assert third["version"] == 3 and third["version_digest"] == first["version_digest"]


def test_retention_keeps_the_newest_k_and_protected_versions(tmp_path):
    protected: set[str] | None = set()
    lake = Lake((tmp_path / "lake").as_uri(), keep_versions=2, protected_versions=lambda: protected)
    written = [lake.write_partition("validated", "2026-01-05", _part(10, offset), {}) for offset in range(3)]
    assert lake.version_numbers("validated", "2026-01-05") == [2, 3]
    assert written[0]["files"][0]["path"] not in _names(lake, "validated", "2026-01-05")  # its file went with it
    with pytest.raises(LakeError, match="no version 1 of validated/ds=2026-01-05"):
        lake.read_frame("validated", "2026-01-05", version=1)

    protected = {written[1]["version_digest"]}  # a registered model was trained on v2
    lake.write_partition("validated", "2026-01-05", _part(10, 3), {})
    lake.write_partition("validated", "2026-01-05", _part(10, 4), {})
    assert lake.version_numbers("validated", "2026-01-05") == [2, 4, 5]
    pd.testing.assert_frame_equal(lake.read_frame("validated", "2026-01-05", version=written[1]["version_digest"]), frame(10, 1))


def test_unknown_protection_prunes_nothing(tmp_path, caplog):
    lake = Lake((tmp_path / "lake").as_uri(), keep_versions=1, protected_versions=lambda: None)
    for offset in range(3):
        lake.write_partition("validated", "2026-01-05", _part(10, offset), {})
    assert lake.version_numbers("validated", "2026-01-05") == [1, 2, 3]
    assert "registry unreachable); pruning nothing" in caplog.text
    assert lake.prune("validated", "2026-01-05", keep=1, protected=set()) == [1, 2]
    assert lake.version_numbers("validated", "2026-01-05") == [3]
    assert len([n for n in _names(lake, "validated", "2026-01-05") if n.endswith(".parquet")]) == 1


def test_orphan_files_wait_for_the_grace_period(local_lake):
    """A data file no version names may be another writer's that is not committed yet."""
    import os
    import time

    local_lake.write_partition("validated", "2026-01-05", _part(), {})
    folder = local_lake.partition_path("validated", "2026-01-05")
    fresh, stale = f"{folder}/part-00000-0000000000000001.parquet", f"{folder}/part-00000-0000000000000002.parquet"
    for path in (fresh, stale):
        local_lake.write_bytes_atomic(path, b"not committed")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    local_lake.prune("validated", "2026-01-05")
    names = _names(local_lake, "validated", "2026-01-05")
    assert fresh.rsplit("/", 1)[-1] in names and stale.rsplit("/", 1)[-1] not in names


def test_a_head_from_before_versions_is_kept_as_version_1(local_lake):
    import json as json_module

    data = _part()
    legacy = local_lake.write_partition("validated", "2026-01-05", data, {})
    folder = local_lake.partition_path("validated", "2026-01-05")
    local_lake.fs.rm(f"{folder}/_versions", recursive=True)
    unversioned = {k: v for k, v in legacy.items() if k not in ("version", "version_digest")}
    local_lake.write_bytes_atomic(f"{folder}/_manifest.json", json_module.dumps(unversioned).encode())
    assert local_lake.find_version("validated", "2026-01-05", legacy["version_digest"]) == unversioned  # by its computed digest
    assert local_lake.write_partition("validated", "2026-01-05", data, {}) == unversioned  # same files: nothing new
    second = local_lake.write_partition("validated", "2026-01-05", _part(5, 3), {})
    assert second["version"] == 2
    assert local_lake.read_version("validated", "2026-01-05", 1)["version_digest"] == legacy["version_digest"]
    pd.testing.assert_frame_equal(local_lake.read_frame("validated", "2026-01-05", version=1), frame())


def test_concurrent_writers_of_one_day_get_distinct_versions(local_lake):
    """Writers racing on one day: every content is committed once, under its own number, none lost."""
    from concurrent.futures import ThreadPoolExecutor

    contents = [_part(10, offset) for offset in range(8)] * 2  # each content twice: retries racing too
    with ThreadPoolExecutor(max_workers=8) as pool:
        manifests = list(pool.map(lambda files: local_lake.write_partition("validated", "2026-01-05", files, {}), contents))
    versions = local_lake.list_versions("validated", "2026-01-05")
    numbers = [v["version"] for v in versions]
    assert numbers == list(range(1, len(numbers) + 1))  # no number lost or shared
    assert {v["version_digest"] for v in versions} == {m["version_digest"] for m in manifests}  # every content committed
    assert 8 <= len(versions) <= 16
    head = local_lake.read_manifest("validated", "2026-01-05")
    assert head == versions[-1]  # the head follows the newest version
    for version in versions:
        local_lake.read_frame("validated", "2026-01-05", version=version["version"])  # files present, checksums match
    assert not [n for n in local_lake.fs.ls(local_lake.path("validated", "ds=2026-01-05", "_versions"), detail=False) if ".tmp-" in n]


def test_same_content_twice_gives_the_same_file(local_lake):
    data = frame_to_parquet_bytes(frame())
    a = local_lake.write_partition("validated", "2026-01-05", [DataFile("part-00000", ".parquet", data, 10)], {"dag_run_id": "a"})
    b = local_lake.write_partition("validated", "2026-01-05", [DataFile("part-00000", ".parquet", data, 10)], {"dag_run_id": "b"})
    assert a["files"] == b["files"]
    assert b == a and local_lake.version_numbers("validated", "2026-01-05") == [1]  # a retry commits no new version


def test_a_partition_without_manifest_is_not_listed(local_lake):
    """An interrupted write (files but no manifest yet) is invisible to readers."""
    folder = local_lake.partition_path("validated", "2026-01-09")
    local_lake.write_bytes_atomic(f"{folder}/part-00000-deadbeef.parquet", b"half")
    local_lake.write_partition("validated", "2026-01-05", [DataFile("p", ".parquet", frame_to_parquet_bytes(frame()), 10)], {})
    assert local_lake.list_partitions("validated") == ["2026-01-05"]
    with pytest.raises(LakeError, match="no committed partition validated/ds=2026-01-09"):
        local_lake.read_frame("validated", "2026-01-09")


def test_tampered_file_fails_verification(local_lake):
    manifest = local_lake.write_partition("validated", "2026-01-05", [DataFile("p", ".parquet", frame_to_parquet_bytes(frame()), 10)], {})
    path = f"{local_lake.partition_path('validated', '2026-01-05')}/{manifest['files'][0]['path']}"
    with open(path, "ab") as handle:
        handle.write(b"tamper")
    with pytest.raises(ManifestMismatchError, match="does not match the manifest"):
        local_lake.verify_partition("validated", "2026-01-05")


def test_atomic_write_leaves_no_temp_files(local_lake):
    path = local_lake.path("x", "file.bin")
    local_lake.write_bytes_atomic(path, b"one")
    local_lake.write_bytes_atomic(path, b"two")
    assert local_lake.read_bytes(path) == b"two"
    assert [p.rsplit("/", 1)[-1] for p in local_lake.fs.ls(local_lake.path("x"), detail=False)] == ["file.bin"]


def test_delete_partition_withdraws_the_head_and_keeps_the_history(local_lake):
    written = local_lake.write_partition("quarantine", "2026-01-05", [DataFile("p", ".json", b"{}")], {})
    assert local_lake.delete_partition("quarantine", "2026-01-05")
    assert local_lake.list_partitions("quarantine") == []
    assert local_lake.read_manifest("quarantine", "2026-01-05") is None
    assert not local_lake.delete_partition("quarantine", "2026-01-05")
    assert local_lake.find_version("quarantine", "2026-01-05", written["version_digest"]) == written
    # the same content again restores that version as the head, no new number
    assert local_lake.write_partition("quarantine", "2026-01-05", [DataFile("p", ".json", b"{}")], {}) == written


def test_unknown_zone_is_refused(local_lake):
    with pytest.raises(LakeError, match="unknown lake zone 'gold'"):
        local_lake.partition_path("gold", "2026-01-05")


def test_open_lake_prunes_nothing_when_the_registry_is_unreachable(tmp_path, caplog):
    """Retention cannot tell which versions registered models use: it keeps them all and says so."""
    from mlops_pipeline.config import Settings
    from mlops_pipeline.storage import open_lake
    from tests.conftest import free_port

    settings = Settings(lake_uri=(tmp_path / "lake").as_uri(), mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}", lake_keep_versions=1)
    lake = open_lake(settings)
    assert lake.keep_versions == 1
    for offset in range(3):
        lake.write_partition("validated", "2026-01-05", _part(10, offset), {})
    assert lake.version_numbers("validated", "2026-01-05") == [1, 2, 3]
    assert "lake retention skipped" in caplog.text and "pruning nothing" in caplog.text
