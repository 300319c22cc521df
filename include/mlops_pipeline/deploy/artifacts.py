"""The registered model artifact: its digest, its download, and the check of one against the other.

A version's digest is recorded by ``registry.lineage.register_version`` as the version tag
``artifact_sha256``: the sha256 over the sorted relative paths of the model directory's files and
each file's own sha256 (:func:`directory_digest`). The deploy downloads ``models:/<name>/<version>``,
computes the same digest and refuses to build an image from anything else.

Two top-level files are not part of the artifact and are left out of the digest:
``registered_model_meta`` (MLflow writes it on the downloader's side for ``models:/`` URIs) and
``model_info.json`` (written by the deploy for the server, after the check).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_pipeline.contracts import tags as tag_names

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

DIGEST_TAG = tag_names.ARTIFACT_SHA256
NOT_ARTIFACT = frozenset({"registered_model_meta", "model_info.json"})
MODEL_INFO_FILE = "model_info.json"


class ArtifactError(RuntimeError):
    """The registered artifact is missing, unreadable or has no recorded digest."""


class ArtifactDigestMismatch(ArtifactError):
    """The downloaded artifact is not the one that was registered."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_digest(root: Path | str) -> str:
    """sha256 over ``"<relative path>\\0<file sha256>\\n"`` of every file, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise ArtifactError(f"{root} is not a directory")
    files = sorted(
        (path.relative_to(root).as_posix(), path)
        for path in root.rglob("*")
        if path.is_file() and path.relative_to(root).as_posix() not in NOT_ARTIFACT
    )
    if not files:
        raise ArtifactError(f"{root} holds no files")
    digest = hashlib.sha256()
    for relative, path in files:
        digest.update(f"{relative}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class VerifiedArtifact:
    """A model directory whose digest matched the registry's, ready to be served."""

    model_dir: str
    model_name: str
    version: str
    run_id: str
    sha256: str

    def labels(self) -> dict[str, str]:
        """The image/container labels of ``images.build_model_image``: name, version, run id, sha256."""
        return {"name": self.model_name, "version": self.version, "run_id": self.run_id, "sha256": self.sha256}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def download_verified(
    client: MlflowClient,
    model_name: str,
    version: str | int,
    destination: Path | str,
    *,
    require_digest: bool = True,
) -> VerifiedArtifact:
    """Download ``models:/<name>/<version>`` into ``destination`` (replaced) and check its digest.

    Raises :class:`ArtifactDigestMismatch` when the bytes differ from the registered digest, and
    :class:`ArtifactError` when the version has no digest tag (unless ``require_digest=False``: the
    digest is then computed, recorded on the version and the caller should audit that).
    Writes ``model_info.json`` (name, version, run id, digest) for the server.
    """
    import mlflow.artifacts

    version = str(version)
    model_version = client.get_model_version(model_name, version)
    recorded = (model_version.tags or {}).get(DIGEST_TAG)
    if not recorded and require_digest:
        raise ArtifactError(
            f"{model_name} version {version} has no {DIGEST_TAG!r} tag, so its artifact cannot be verified; "
            f"re-register it through the training pipeline, or set MLOPS_DEPLOY_REQUIRE_ARTIFACT_DIGEST=false "
            "to record the digest of what is stored now"
        )
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=destination.parent))
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}", dst_path=str(scratch))
        )
        if not (local / "MLmodel").is_file():
            raise ArtifactError(f"models:/{model_name}/{version} is not an MLflow model directory (no MLmodel)")
        actual = directory_digest(local)
        if recorded and actual != recorded:
            raise ArtifactDigestMismatch(
                f"{model_name} version {version}: the downloaded artifact has sha256 {actual}, but the registry "
                f"recorded {recorded} ({DIGEST_TAG} tag); refusing to deploy it (source {model_version.source})"
            )
        if not recorded:
            client.set_model_version_tag(model_name, version, DIGEST_TAG, actual)
            log.warning("%s version %s had no %s tag: recorded %s", model_name, version, DIGEST_TAG, actual)
        artifact = VerifiedArtifact(str(destination), model_name, version, model_version.run_id or "", actual)
        (local / MODEL_INFO_FILE).write_text(
            json.dumps(
                {"model_name": model_name, "model_version": version, "run_id": artifact.run_id, "artifact_sha256": actual},
                indent=2,
            )
            + "\n"
        )
        for path in [local, *local.rglob("*")]:  # readable by the server's own (non-root) user
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(local, destination)
        return artifact
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def read_verified(model_dir: Path | str) -> VerifiedArtifact:
    """The artifact a prepared model directory holds, checked again (a local server's model dir)."""
    model_dir = Path(model_dir)
    info = json.loads((model_dir / MODEL_INFO_FILE).read_text())
    actual = directory_digest(model_dir)
    if actual != info["artifact_sha256"]:
        raise ArtifactDigestMismatch(f"{model_dir} has sha256 {actual}, its {MODEL_INFO_FILE} says {info['artifact_sha256']}")
    return VerifiedArtifact(str(model_dir), info["model_name"], str(info["model_version"]), info["run_id"], actual)
