"""The registered artifact's digest: recorded at registration, checked before any image is built."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from mlops_pipeline.deploy.artifacts import (
    DIGEST_TAG,
    ArtifactDigestMismatch,
    ArtifactError,
    directory_digest,
    download_verified,
    read_verified,
)
from tests.deploy.canary_scenario import register
from tests.serving.model_fixture import build_model_dir


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_directory_digest_covers_paths_and_contents(tmp_path: Path) -> None:
    base = write_tree(tmp_path / "a", {"MLmodel": "x", "sub/model.ubj": "weights"})
    digest = directory_digest(base)

    assert digest == directory_digest(write_tree(tmp_path / "b", {"sub/model.ubj": "weights", "MLmodel": "x"}))
    assert digest != directory_digest(write_tree(tmp_path / "c", {"MLmodel": "x", "sub/model.ubj": "weightz"}))
    assert digest != directory_digest(write_tree(tmp_path / "d", {"MLmodel": "x", "model.ubj": "weights"}))
    assert len(digest) == 64


def test_directory_digest_leaves_out_download_and_deploy_metadata(tmp_path: Path) -> None:
    plain = directory_digest(write_tree(tmp_path / "a", {"MLmodel": "x"}))
    extra = write_tree(tmp_path / "b", {"MLmodel": "x", "registered_model_meta": "name: m", "model_info.json": "{}"})

    assert directory_digest(extra) == plain


def test_directory_digest_of_nothing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="holds no files"):
        directory_digest(tmp_path / "empty")
    with pytest.raises(ArtifactError, match="not a directory"):
        directory_digest(tmp_path / "missing")


@pytest.fixture(scope="module")
def registry(mlflow_server, tmp_path_factory: pytest.TempPathFactory):
    """A model name of this module's own on the session's MLflow server, and a built model dir."""
    import mlflow
    from mlflow import MlflowClient

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_server.uri)
    model_dir = build_model_dir(tmp_path_factory.mktemp("artifact") / "model")
    yield MlflowClient(mlflow_server.uri), f"churn-artifact-{uuid.uuid4().hex[:8]}", model_dir, mlflow_server
    mlflow.set_tracking_uri(previous)


def test_registration_records_the_digest_and_the_deploy_checks_it(registry, tmp_path: Path) -> None:
    client, name, model_dir, _ = registry
    version = register(client, name, model_dir)

    recorded = client.get_model_version(name, version).tags[DIGEST_TAG]
    artifact = download_verified(client, name, version, tmp_path / "deploy" / "model")

    assert artifact.sha256 == recorded and artifact.version == version and artifact.run_id
    info = json.loads((tmp_path / "deploy" / "model" / "model_info.json").read_text())
    assert info == {"model_name": name, "model_version": version, "run_id": artifact.run_id, "artifact_sha256": recorded}
    assert read_verified(tmp_path / "deploy" / "model") == artifact
    assert artifact.labels() == {"name": name, "version": version, "run_id": artifact.run_id, "sha256": recorded}


def test_a_tampered_artifact_is_refused_with_both_digests(registry, tmp_path: Path) -> None:
    client, name, model_dir, server = registry
    version = register(client, name, model_dir)
    model_id = client.get_model_version(name, version).source.removeprefix("models:/")  # the logged model
    stored = next(path for path in server.root.rglob("model.ubj") if model_id in path.parts)
    stored.write_bytes(stored.read_bytes() + b"\0")
    recorded = client.get_model_version(name, version).tags[DIGEST_TAG]

    with pytest.raises(ArtifactDigestMismatch) as failure:
        download_verified(client, name, version, tmp_path / "model")

    assert recorded in str(failure.value) and f"{name} version {version}" in str(failure.value)
    assert not (tmp_path / "model").exists()


def test_a_version_without_a_digest_is_refused_unless_allowed(registry, tmp_path: Path) -> None:
    client, name, model_dir, _ = registry
    version = register(client, name, model_dir)
    client.delete_model_version_tag(name, version, DIGEST_TAG)

    with pytest.raises(ArtifactError, match="no 'artifact_sha256' tag"):
        download_verified(client, name, version, tmp_path / "model")

    artifact = download_verified(client, name, version, tmp_path / "model", require_digest=False)
    assert client.get_model_version(name, version).tags[DIGEST_TAG] == artifact.sha256
