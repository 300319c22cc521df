"""Docker images for serving: base images, the serving base, and one image per model version.

- ``ensure_base_images`` runs the project scripts that start an engine if none answers, provide
  the base and router images (offline when no registry is reachable) and download the wheelhouse.
- ``build_serving_base`` builds ``serving/Dockerfile`` into ``mlops/serving-base:<hash>``, the hash
  covering the requirements, the app sources, the Dockerfile and the base image.
- ``build_model_image`` adds one model directory to a serving base (``serving/Dockerfile.model``),
  tagged ``mlops/model-<name>:<version>`` and labelled with the model's name, version, run id and
  artifact sha256.

Builds go through the docker SDK with a build context assembled from exactly the files an image
needs (never the whole repository), and the classic builder, which every engine has. The docker
SDK is imported inside the functions: DAG files import this module cheaply.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

SERVING_BASE_REPOSITORY = "mlops/serving-base"
MODEL_REPOSITORY_PREFIX = "mlops/model-"
MODEL_LABELS = ("name", "version", "run_id", "sha256")
LABEL_PREFIX = "org.mlops.model."
SERVING_BASE_LABEL = "org.mlops.serving.base"
SOURCE_HASH_LABEL = "org.mlops.serving.source_hash"
# Set on the untagged build stage of serving/Dockerfile: the newest is kept as the build cache.
BUILD_STAGE_LABEL = "org.mlops.build-stage=serving-base"
BUILD_TIMEOUT_S = 1800
# Older serving bases are untagged beyond this many (model images built on them keep their layers).
KEEP_SERVING_BASES = 3


class ImageBuildError(RuntimeError):
    """A script or an image build failed; the message carries the end of its log."""


def repo_root_default() -> Path:
    """The project checkout holding ``serving/`` (``MLOPS_REPO_ROOT`` overrides)."""
    return Path(os.environ.get("MLOPS_REPO_ROOT") or Path(__file__).resolve().parents[3])


# ---------------------------------------------------------------------------------------------
# base images
# ---------------------------------------------------------------------------------------------
def ensure_base_images(repo_root: Path | str, *, wheelhouse: bool = True) -> dict[str, str]:
    """Engine up, base and router images present, and (``wheelhouse=True``) the wheelhouse downloaded.

    Returns ``{"base": tag, "router": tag, "wheelhouse": path}`` (path "" without the wheelhouse).
    Quick when all exist already.
    """
    root = Path(repo_root)
    _run_script(root / "serving/docker/ensure-engine.sh")
    images = dict(
        line.split("=", 1)
        for line in _run_script(root / "serving/docker/build-base-image.sh").splitlines()
        if "=" in line
    )
    path = _run_script(root / "serving/docker/wheelhouse.sh").strip().splitlines()[-1] if wheelhouse else ""
    return {"base": images["base"], "router": images["router"], "wheelhouse": path}


def _run_script(script: Path) -> str:
    completed = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        env=_script_environment(),
    )
    for line in completed.stderr.splitlines():
        log.info("%s: %s", script.name, line)
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.splitlines()[-30:])
        raise ImageBuildError(f"{script} failed with exit code {completed.returncode}:\n{tail}")
    return completed.stdout


def _script_environment() -> dict[str, str]:
    """The scripts' environment. ``PYTHON`` (whose pip downloads the wheelhouse) defaults to the
    interpreter this one was made from: inside Airflow the project's virtualenv comes first on the
    PATH, and a virtualenv made by uv has no pip; the script tries its other candidates after it."""
    env = dict(os.environ)
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    if "PYTHON" not in env and base.is_file():
        env["PYTHON"] = str(base)
    return env


# ---------------------------------------------------------------------------------------------
# serving base
# ---------------------------------------------------------------------------------------------
def serving_sources(repo_root: Path | str) -> dict[str, Path]:
    """The files of the serving base's build context, by their path in that context (no wheels): the
    server (``mlops_serving/``) and the project's contract package it imports
    (``mlops_pipeline/__init__.py``, ``mlops_pipeline/contracts/``), nothing else of the pipeline."""
    serving = Path(repo_root) / "serving"
    package = Path(repo_root) / "include" / "mlops_pipeline"
    sources = {"Dockerfile": serving / "Dockerfile", "requirements.txt": serving / "requirements.txt"}
    sources["mlops_pipeline/__init__.py"] = package / "__init__.py"
    for prefix, folder in (("mlops_serving", serving / "mlops_serving"), ("mlops_pipeline/contracts", package / "contracts")):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}:
                sources[f"{prefix}/{path.relative_to(folder).as_posix()}"] = path
    missing = [str(path) for path in sources.values() if not path.is_file()]
    for needed in ("mlops_serving/", "mlops_pipeline/contracts/"):
        if not any(name.startswith(needed) for name in sources):
            missing.append(needed)
    if missing:
        raise ImageBuildError(f"serving sources missing under {repo_root}: {missing}")
    return sources


def serving_base_tag(repo_root: Path | str, base_image_id: str) -> str:
    """``mlops/serving-base:<hash>``: changes when requirements, app, Dockerfile or base change."""
    digest = hashlib.sha256(base_image_id.encode())
    for name, path in serving_sources(repo_root).items():
        digest.update(b"\0" + name.encode() + b"\0" + path.read_bytes())
    return f"{SERVING_BASE_REPOSITORY}:{digest.hexdigest()[:16]}"


def build_serving_base(repo_root: Path | str) -> str:
    """Build (or reuse) the serving base image; its tag."""
    import docker

    root = Path(repo_root)
    # The tag covers requirements.txt: when the image exists, the wheelhouse is not needed.
    bases = ensure_base_images(root, wheelhouse=False)
    client = docker.from_env(timeout=BUILD_TIMEOUT_S)
    base_id = client.images.get(bases["base"]).id
    tag = serving_base_tag(root, base_id)
    if _image_exists(client, tag):
        log.info("serving base %s exists", tag)
        return tag

    files = dict(serving_sources(root))
    wheelhouse = Path(_run_script(root / "serving/docker/wheelhouse.sh").strip().splitlines()[-1])
    wheels = sorted(wheelhouse.glob("*.whl"))
    if not wheels:
        raise ImageBuildError(f"the wheelhouse {wheelhouse} holds no wheels")
    files.update({f"wheelhouse/{wheel.name}": wheel for wheel in wheels})
    log.info("building %s on %s with %d wheels", tag, bases["base"], len(wheels))
    with _context_tar(files) as context:
        _build(
            client,
            context,
            tag,
            buildargs={"BASE_IMAGE": bases["base"]},
            labels={SOURCE_HASH_LABEL: tag.split(":", 1)[1]},
        )
    _prune_build_stages(client, BUILD_STAGE_LABEL)
    _prune_serving_bases(client, keep=KEEP_SERVING_BASES)
    return tag


# ---------------------------------------------------------------------------------------------
# model images
# ---------------------------------------------------------------------------------------------
def model_image_tag(name: str, version: str | int) -> str:
    """``mlops/model-<name>:<version>``, both made valid for Docker (lower case, no odd characters)."""
    repository = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(version)).lstrip(".-")[:128]
    if not repository or not tag:
        raise ValueError(f"cannot make an image tag of model {name!r} version {version!r}")
    return f"{MODEL_REPOSITORY_PREFIX}{repository}:{tag}"


def build_model_image(
    model_dir: Path | str,
    labels: Mapping[str, object],
    serving_base_tag: str,
    *,
    repo_root: Path | str | None = None,
) -> str:
    """Build the image of one model version; its tag.

    ``labels`` has ``name``, ``version``, ``run_id`` and ``sha256`` (the registered artifact's
    digest, checked by the caller); keys with a dot are added as extra image labels as they are.
    An image that already has this tag, the same sha256 and the same serving base is reused.
    """
    import docker

    model_dir = Path(model_dir)
    missing = [key for key in MODEL_LABELS if not str(labels.get(key) or "").strip()]
    if missing:
        raise ValueError(f"model labels lack {missing}: {dict(labels)}")
    if not (model_dir / "MLmodel").is_file():
        raise ImageBuildError(f"{model_dir} is not an MLflow model directory (no MLmodel file)")
    tag = model_image_tag(str(labels["name"]), str(labels["version"]))
    client = docker.from_env(timeout=BUILD_TIMEOUT_S)
    if not _image_exists(client, serving_base_tag):
        raise ImageBuildError(f"serving base image {serving_base_tag} does not exist: build it first")

    current = _labels_if_exists(client, tag)
    if current is not None:
        if (
            current.get(LABEL_PREFIX + "sha256") == str(labels["sha256"])
            and current.get(SERVING_BASE_LABEL) == serving_base_tag
        ):
            log.info("model image %s exists with sha256 %s", tag, labels["sha256"])
            return tag
        log.warning(
            "rebuilding %s: it holds sha256 %s on %s, wanted %s on %s",
            tag,
            current.get(LABEL_PREFIX + "sha256"),
            current.get(SERVING_BASE_LABEL),
            labels["sha256"],
            serving_base_tag,
        )

    previous_id = client.images.get(tag).id if current is not None else None
    root = Path(repo_root) if repo_root is not None else repo_root_default()
    files = {"Dockerfile": root / "serving/Dockerfile.model"}
    for path in sorted(model_dir.rglob("*")):
        if path.is_file():
            files[f"model/{path.relative_to(model_dir).as_posix()}"] = path
    extra = {str(key): str(value) for key, value in labels.items() if "." in str(key)}
    log.info("building %s from %s on %s", tag, model_dir, serving_base_tag)
    with _context_tar(files) as context:
        _build(
            client,
            context,
            tag,
            buildargs={
                "SERVING_BASE": serving_base_tag,
                "MODEL_NAME": str(labels["name"]),
                "MODEL_VERSION": str(labels["version"]),
                "MODEL_RUN_ID": str(labels["run_id"]),
                "MODEL_SHA256": str(labels["sha256"]),
            },
            labels=extra,
        )
    if previous_id is not None:
        _remove_if_untagged(client, previous_id)
    return tag


def image_labels(tag: str) -> dict[str, str]:
    """The labels of a local image; LookupError when there is no such image."""
    import docker

    labels = _labels_if_exists(docker.from_env(), tag)
    if labels is None:
        raise LookupError(f"no local image {tag}")
    return labels


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _image_exists(client: Any, tag: str) -> bool:
    return _labels_if_exists(client, tag) is not None


def _labels_if_exists(client: Any, tag: str) -> dict[str, str] | None:
    import docker

    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    return dict(image.labels or {})


@contextmanager
def _context_tar(files: Mapping[str, Path]) -> Iterator[IO[bytes]]:
    """A build context as an uncompressed tar in a temporary file: deterministic owners and modes."""
    with tempfile.TemporaryFile() as handle:
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for directory in sorted(_parent_dirs(files)):
                info = tarfile.TarInfo(directory)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                tar.addfile(info)
            for name, path in sorted(files.items()):
                stat = path.stat()
                info = tarfile.TarInfo(name)
                info.size, info.mtime = stat.st_size, int(stat.st_mtime)
                info.mode = 0o644  # readable by the image's non-root user, whatever the host's umask
                with path.open("rb") as data:
                    tar.addfile(info, data)
        handle.seek(0)
        yield handle


def _prune_build_stages(client: Any, label: str) -> None:
    """Remove the untagged build-stage images of earlier builds, keeping the newest as cache."""
    import docker

    stages = client.images.list(filters={"dangling": True, "label": label})
    for image in sorted(stages, key=lambda image: image.attrs.get("Created", ""), reverse=True)[1:]:
        try:
            client.images.remove(image.id)
        except docker.errors.APIError as exc:  # in use by a running build, say: next time
            log.info("kept build stage %s: %s", image.short_id, exc)


def _prune_serving_bases(client: Any, keep: int) -> None:
    """Untag all but the ``keep`` newest serving bases (an image still in use is kept)."""
    import docker

    bases = sorted(
        client.images.list(name=SERVING_BASE_REPOSITORY),
        key=lambda i: i.attrs.get("Created", ""),
        reverse=True,
    )
    for image in bases[keep:]:
        for tag in image.tags:
            try:
                client.images.remove(tag)
            except docker.errors.APIError as exc:
                log.info("kept %s: %s", tag, exc)


def _remove_if_untagged(client: Any, image_id: str) -> None:
    """Remove an image that a rebuild replaced, unless it is still tagged or used."""
    import docker

    try:
        if not client.images.get(image_id).tags:
            client.images.remove(image_id)
    except docker.errors.APIError as exc:  # ImageNotFound included; or a container still uses it
        log.info("kept replaced image %s: %s", image_id[:19], exc)


def _parent_dirs(files: Mapping[str, Path]) -> set[str]:
    dirs: set[str] = set()
    for name in files:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return dirs


def _build(
    client: Any, context: IO[bytes], tag: str, buildargs: dict[str, str], labels: dict[str, str]
) -> None:
    """Build with the classic builder, streaming the log; ImageBuildError with its tail on failure."""
    lines: list[str] = []
    for chunk in _stream(client, context, tag, buildargs, labels):
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            tail = "".join(lines[-40:])
            raise ImageBuildError(f"building {tag} failed: {detail}\n{tail}")
        text = chunk.get("stream")
        if text:
            lines.append(text)
            if text.strip():
                log.debug("%s: %s", tag, text.rstrip())
    log.info("built %s", tag)


def _stream(
    client: Any, context: IO[bytes], tag: str, buildargs: dict[str, str], labels: dict[str, str]
) -> Iterator[dict]:
    return client.api.build(
        fileobj=context,
        custom_context=True,
        tag=tag,
        buildargs=buildargs,
        labels=labels or None,
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
