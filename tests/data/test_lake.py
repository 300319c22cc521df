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


def test_rewrite_replaces_files_and_removes_stale_ones(local_lake):
    first = local_lake.write_partition("raw", "2026-01-05", [DataFile("part-00000", ".parquet", frame_to_parquet_bytes(frame()), 10)], {})
    second = local_lake.write_partition("raw", "2026-01-05", [DataFile("part-00000", ".parquet", frame_to_parquet_bytes(frame(5, 3)), 5)], {})
    folder = local_lake.partition_path("raw", "2026-01-05")
    names = sorted(p.rsplit("/", 1)[-1] for p in local_lake.fs.ls(folder, detail=False))
    assert names == sorted(["_manifest.json", second["files"][0]["path"]])
    assert first["files"][0]["path"] not in names


def test_same_content_twice_gives_the_same_file(local_lake):
    data = frame_to_parquet_bytes(frame())
    a = local_lake.write_partition("validated", "2026-01-05", [DataFile("part-00000", ".parquet", data, 10)], {"dag_run_id": "a"})
    b = local_lake.write_partition("validated", "2026-01-05", [DataFile("part-00000", ".parquet", data, 10)], {"dag_run_id": "b"})
    assert a["files"] == b["files"]


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


def test_delete_partition_removes_manifest_and_files(local_lake):
    local_lake.write_partition("quarantine", "2026-01-05", [DataFile("p", ".json", b"{}")], {})
    assert local_lake.delete_partition("quarantine", "2026-01-05")
    assert local_lake.list_partitions("quarantine") == []
    assert not local_lake.delete_partition("quarantine", "2026-01-05")


def test_unknown_zone_is_refused(local_lake):
    with pytest.raises(LakeError, match="unknown lake zone 'gold'"):
        local_lake.partition_path("gold", "2026-01-05")
