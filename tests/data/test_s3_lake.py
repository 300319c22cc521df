"""The lake and the file source on S3, against a real S3-compatible server (moto in server mode).

The server is a separate process speaking the S3 HTTP API on 127.0.0.1; the code under test goes
through s3fs/boto exactly as it would against AWS or MinIO (MinIO itself is used in compose).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import day_window, free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3_server():
    port = free_port()
    binary = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("the S3-compatible test server did not start")
            time.sleep(0.2)
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    import boto3

    from mlops_pipeline.config import get_settings

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "MLOPS_S3_ENDPOINT_URL": s3_server, "MLOPS_LAKE_URI": "s3://lake-bucket/churn",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLOPS_DATASET", raising=False)
    monkeypatch.delenv("MLOPS_BAD_BATCH_DAYS", raising=False)
    get_settings.cache_clear()
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    for bucket in ("lake-bucket", "source-bucket"):
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
    yield client
    get_settings.cache_clear()


def test_ingest_into_an_s3_lake_writes_manifests_that_match(s3_env):
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.ingest import extract, validate
    from mlops_pipeline.storage import open_lake

    settings = get_settings()
    lake = open_lake(settings)
    window = day_window(date(2026, 1, 5))
    spec = load_dataset_spec("churn")
    extract(lake, spec, window, settings)
    result = validate(lake, spec, window, build_docs=True)
    assert result["uri"] == "s3://lake-bucket/churn/validated/ds=2026-01-05"

    manifest = json.loads(s3_env.get_object(Bucket="lake-bucket", Key="churn/validated/ds=2026-01-05/_manifest.json")["Body"].read())
    for entry in manifest["files"]:
        body = s3_env.get_object(Bucket="lake-bucket", Key=f"churn/validated/ds=2026-01-05/{entry['path']}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    assert lake.list_partitions("validated") == ["2026-01-05"]
    index = s3_env.get_object(Bucket="lake-bucket", Key="churn/data_docs/index.html")["Body"].read().decode()
    assert '<a href="ds=2026-01-05/validations/' in index and '>2026-01-05</a></td><td class="validated">' in index, index
    day = "churn/data_docs/ds=2026-01-05/"
    published = {o["Key"][len(day):] for o in s3_env.list_objects_v2(Bucket="lake-bucket", Prefix=day)["Contents"]}
    assert {"index.html", "_status.json", "static/images/favicon.ico"} <= published, published
    assert sum(key.startswith("validations/") for key in published) == 2 and len(published) < 12, published

    # a re-run gives the same validated bytes
    first = [e["sha256"] for e in manifest["files"]]
    extract(lake, spec, window, settings)
    validate(lake, spec, window, build_docs=False)
    assert [e["sha256"] for e in lake.read_manifest("validated", "2026-01-05")["files"]] == first


def test_file_source_reads_users_data_from_s3(s3_env, tmp_path):
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.data.synthetic import generate_day
    from mlops_pipeline.datasets import DATASETS_DIR, load_dataset_spec
    from mlops_pipeline.ingest import SourceMissing, extract, validate
    from mlops_pipeline.storage import open_lake

    frame = generate_day(date(2026, 1, 7), seed=3, rows=500)
    sink = io.BytesIO()
    frame.to_parquet(sink, index=False)
    s3_env.put_object(Bucket="source-bucket", Key="exports/2026-01-07/churn.parquet", Body=sink.getvalue())

    churn = (DATASETS_DIR / "churn.yaml").read_text()
    suite = (DATASETS_DIR.parent / "gx" / "churn_suite.json").resolve()
    own = churn[churn.index("id_column:"):].replace("suite: ../gx/churn_suite.json", f"suite: {suite}")
    spec_file = tmp_path / "own.yaml"
    spec_file.write_text(
        "name: own_s3\nsource:\n  kind: file\n  path_template: s3://source-bucket/exports/{ds}/churn.parquet\n" + own
    )
    spec = load_dataset_spec(str(spec_file))
    settings = get_settings()
    lake = open_lake(settings)
    raw = extract(lake, spec, day_window(date(2026, 1, 7)), settings)
    assert raw["source"] == {"kind": "file", "uri": "s3://source-bucket/exports/2026-01-07/churn.parquet"}
    assert validate(lake, spec, day_window(date(2026, 1, 7)), build_docs=False)["rows"] == 500
    with pytest.raises(SourceMissing, match="no source file for ds=2026-01-08 at s3://source-bucket/exports/2026-01-08/churn.parquet"):
        extract(lake, spec, day_window(date(2026, 1, 8)), settings)


def test_versions_on_s3_keep_history_and_refuse_a_taken_number(s3_env):
    import pandas as pd

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.data.lake import DataFile, frame_to_parquet_bytes
    from mlops_pipeline.storage import open_lake

    lake = open_lake(get_settings())
    frames = [pd.DataFrame({"id": [f"x{i}" for i in range(n)], "value": [float(i) for i in range(n)]}) for n in (4, 6, 8)]
    written = [
        lake.write_partition("validated", "2026-02-01", [DataFile("part-00000", ".parquet", frame_to_parquet_bytes(f), len(f))], {})
        for f in frames
    ]
    assert [m["version"] for m in written] == [1, 2, 3]
    assert lake.version_numbers("validated", "2026-02-01") == [1, 2, 3]
    assert lake.read_manifest("validated", "2026-02-01") == written[-1]
    pd.testing.assert_frame_equal(lake.read_frame("validated", "2026-02-01", version=written[0]["version_digest"]), frames[0])
    again = lake.write_partition("validated", "2026-02-01", [DataFile("part-00000", ".parquet", frame_to_parquet_bytes(frames[2]), 8)], {})
    assert again == written[-1] and lake.version_numbers("validated", "2026-02-01") == [1, 2, 3]

    # A version file is created only if absent: the conditional PUT refuses a taken key.
    taken = lake.version_path("validated", "2026-02-01", 2)
    original = lake.read_bytes(taken)
    assert not lake._create_if_absent(taken, b"{}")
    with pytest.raises(FileExistsError):  # the server itself refuses, not only the check before the PUT
        lake.fs.pipe_file(taken, b"{}", mode="create")
    assert lake.read_bytes(taken) == original
    lake.fs.rm(taken)
    lake.fs.invalidate_cache()
    assert lake._create_if_absent(taken, original) and lake.read_bytes(taken) == original

    assert lake.prune("validated", "2026-02-01", keep=1, protected={written[0]["version_digest"]}) == [2]
    assert lake.version_numbers("validated", "2026-02-01") == [1, 3]
