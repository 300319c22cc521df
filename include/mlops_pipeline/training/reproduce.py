"""Reproduce a registered version: retrain it from its pinned data and compare the model bytes.

``make reproduce ARGS="--version N"`` (``python -m mlops_pipeline reproduce --version N``) reads what
the version's run recorded in ``reproduce/request.json`` (see ``training.recorder``): the window's
partitions with their lake versions (number and digest), the split, the resolved choices (days,
seed, candidates, fixed hyperparameters) and the training settings. It reads exactly those
partition versions (a day re-ingested since is read as it was; a version that retention or a delete
took is named with its digest), runs the same steps (split -> tune -> fit -> calibrate -> evaluate
-> select), saves the winner with the same MLflow flavor arguments, and compares with the registered
model directory:

* the serialized model (``model.ubj`` for XGBoost, ``model.pkl`` for scikit-learn), byte for byte, and
  the serving contract (``metadata.mlops``: features, threshold, calibration) and signature in
  ``MLmodel``: these decide "identical";
* ``MLmodel`` as a whole is not compared: it carries the run id, the logged model id, the creation
  time and the artifact path, which differ on every save of the same model;
* the environment files (``requirements.txt``, ``conda.yaml``, ``python_env.yaml``) and the input
  examples are compared and reported, but they describe the installed packages and a sample of the
  training rows, not the model: a changed environment shows there, and usually in the bytes too.

Nothing is written to MLflow or the lake.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_pipeline.training.data import TrainingDataError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_pipeline.config import Settings

log = logging.getLogger(__name__)

ENVIRONMENT_FILES = frozenset({"requirements.txt", "conda.yaml", "python_env.yaml"})
EXAMPLE_FILES = frozenset({"input_example.json", "serving_input_example.json"})
MLMODEL = "MLmodel"
NOT_MODEL_FILES = ENVIRONMENT_FILES | EXAMPLE_FILES | {MLMODEL, "registered_model_meta"}


class ReproduceError(TrainingDataError):
    """A version cannot be reproduced (no run, no reproduce record, data that does not split the same)."""


@dataclass(frozen=True)
class FileComparison:
    name: str
    registered: str | None  # sha256, None when the file is missing on that side
    reproduced: str | None

    @property
    def same(self) -> bool:
        return self.registered is not None and self.registered == self.reproduced

    def line(self) -> str:
        def short(digest: str | None) -> str:
            return digest[:16] if digest else "missing"

        state = "identical" if self.same else "DIFFERENT"
        return f"{self.name}: {state} (registered {short(self.registered)}, reproduced {short(self.reproduced)})"


@dataclass
class Reproduction:
    model_name: str
    version: str
    run_id: str
    winner: str
    reproduced_winner: str
    flavor: str
    pins: list[str]
    model_files: list[FileComparison]
    contract_same: bool
    other_files: list[FileComparison] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return (
            self.winner == self.reproduced_winner
            and bool(self.model_files)
            and all(f.same for f in self.model_files)
            and self.contract_same
        )

    def report(self) -> str:
        lines = [
            f"{self.model_name} version {self.version} (run {self.run_id}, {self.flavor} {self.winner})",
            f"pinned data: {' '.join(self.pins)}",
        ]
        if self.winner != self.reproduced_winner:
            lines.append(f"winner: DIFFERENT (registered {self.winner}, reproduced {self.reproduced_winner})")
        lines += [f"model file {f.line()}" for f in self.model_files]
        lines.append(f"serving contract and signature (MLmodel metadata.mlops, signature): {'identical' if self.contract_same else 'DIFFERENT'}")
        lines += [f"not compared for identity: {f.line()}" for f in self.other_files]
        lines.append("MLmodel as a whole is not compared: it carries run id, model id and creation time")
        verdict = "identical model bytes" if self.identical else "NOT identical"
        lines.append(f"result: {verdict}")
        return "\n".join(lines)


def reproduce_version(version: int | str, *, model_name: str | None = None, settings: Settings | None = None) -> Reproduction:
    """Retrain ``model_name`` version ``version`` from its pinned data and compare; see the module docstring.

    Raises :class:`~mlops_pipeline.training.data.PinnedDataMissing` (naming each partition and digest)
    when the pinned data is gone, :class:`ReproduceError` when the version lacks what is needed."""
    import mlflow.artifacts

    from mlops_pipeline.config import TrainSettings, get_settings
    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.registry.client import mlflow_client
    from mlops_pipeline.storage import storage_options_for
    from mlops_pipeline.training import steps
    from mlops_pipeline.training.data import TimeSplit, TrainingWindow, load_window
    from mlops_pipeline.training.pipeline import train_candidates
    from mlops_pipeline.training.recorder import save_model

    settings = settings or get_settings()
    client = mlflow_client(settings)
    name = model_name or settings.registered_model_name
    model_version = client.get_model_version(name, str(version))
    if not model_version.run_id:
        raise ReproduceError(f"{name} version {version} is not linked to a run; nothing records how it was trained")
    record = _reproduce_record(client, name, str(version), model_version.run_id)

    window = TrainingWindow.from_dict(record["window"])
    # A plain lake (no retention): reproducing only reads.
    lake = Lake(window.lake_uri, storage_options_for(window.lake_uri, settings))
    dataset = _dataset(record["dataset"], settings)
    training = TrainSettings(**record["training"])
    config = steps.TrainConfig(
        days=int(record["config"]["days"]),
        seed=int(record["config"]["seed"]),
        candidates=tuple(record["config"]["candidates"]),
        fixed={k: dict(v) for k, v in record["config"]["fixed"].items()},
    )
    label = f"reproduce {name} v{version}"
    log.info("%s: reading %s", label, " ".join(p.pin for p in window.partitions))
    frame = load_window(lake, dataset, window)  # PinnedDataMissing names what is gone
    prepared = steps.split(frame, dataset, window, training)
    if prepared.splits.boundaries != TimeSplit.from_dict(record["split"]):
        raise ReproduceError(
            f"{label}: the pinned data splits at {prepared.splits.boundaries.to_dict()}, the run split at {record['split']}"
        )
    metric = record["selection_metric"]
    outcomes = train_candidates(prepared, config, training, metric=metric, run=label)
    winner = steps.select(outcomes, metric)

    with tempfile.TemporaryDirectory(prefix="mlops-reproduce-") as scratch:
        reproduced_dir, registered_dir = Path(scratch) / "reproduced", Path(scratch) / "registered"
        # The registered winner is what is compared: the reproduced one of that name (a different
        # winner is reported as such).
        compared = outcomes.get(record["winner"]) or outcomes[winner]
        save_model(compared.candidate, prepared.splits.train, reproduced_dir)
        registered_dir.mkdir()
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(registered_dir))
        registered_root = _model_root(registered_dir)
        model_files, other_files = _compare_files(registered_root, reproduced_dir)
        contract_same = _contract(registered_root) == _contract(reproduced_dir)

    return Reproduction(
        model_name=name,
        version=str(version),
        run_id=model_version.run_id,
        winner=record["winner"],
        reproduced_winner=winner,
        flavor=record.get("flavor", "?"),
        pins=[p.pin for p in window.partitions],
        model_files=model_files,
        contract_same=contract_same,
        other_files=other_files,
    )


def _reproduce_record(client: MlflowClient, name: str, version: str, run_id: str) -> dict[str, Any]:
    from mlops_pipeline.training.recorder import REPRODUCE_ARTIFACT

    with tempfile.TemporaryDirectory(prefix="mlops-reproduce-record-") as scratch:
        try:
            path = client.download_artifacts(run_id, REPRODUCE_ARTIFACT, scratch)
        except Exception as exc:
            raise ReproduceError(
                f"{name} version {version} (run {run_id}) has no {REPRODUCE_ARTIFACT}: it was trained before "
                f"runs recorded what a reproduction needs ({exc})"
            ) from exc
        return json.loads(Path(path).read_text())


def _dataset(name: str, settings: Settings) -> Any:
    from mlops_pipeline.datasets import load_dataset_spec

    configured = load_dataset_spec(settings.dataset)
    return configured if configured.name == name else load_dataset_spec(name)


def _model_root(folder: Path) -> Path:
    """The folder holding ``MLmodel`` (a download may nest it one level down)."""
    if (folder / MLMODEL).exists():
        return folder
    found = sorted(folder.rglob(MLMODEL))
    if not found:
        raise ReproduceError(f"no {MLMODEL} in the downloaded model at {folder}")
    return found[0].parent


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _compare_files(registered: Path, reproduced: Path) -> tuple[list[FileComparison], list[FileComparison]]:
    ours, theirs = _files(reproduced), _files(registered)
    model: list[FileComparison] = []
    other: list[FileComparison] = []
    for name in sorted(set(ours) | set(theirs)):
        if name == MLMODEL or name == "registered_model_meta":
            continue
        comparison = FileComparison(
            name, _sha256(theirs[name]) if name in theirs else None, _sha256(ours[name]) if name in ours else None
        )
        (other if name in NOT_MODEL_FILES else model).append(comparison)
    return model, other


def _contract(root: Path) -> dict[str, Any]:
    """What serving reads from ``MLmodel`` besides ids and times: ``metadata.mlops`` and the signature."""
    import yaml

    document = yaml.safe_load((root / MLMODEL).read_text())
    return {"metadata": document.get("metadata"), "signature": document.get("signature")}
