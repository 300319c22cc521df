"""The one place a training meets MLflow: it records a finished training and registers its winner.

:func:`record` takes the :class:`TrainingOutcome` the steps produced (``training.steps``) and writes
one MLflow run:

* tags (trigger reason, Airflow run, git commit, request digest, window, winner) and params
  (window and its pinned lake versions ``window.data_versions``, split, seed, search budget, each candidate's final hyperparameters, threshold and
  calibration method, the gate's settings);
* metrics: every candidate's valid and holdout metrics on calibrated probabilities, its
  cross-validated search score (mean and standard deviation over the folds), the calibration
  error before and after; the winner's metrics again without prefix;
* the three splits as MLflow datasets whose source is the lake partitions (``registry.lineage``);
* nested runs: one per candidate (its best parameters, fold scores, metrics), and under it one
  per search trial (its parameters, fold scores, mean and standard deviation, state), with the
  trials' own start and end times;
* artifacts: SHAP importances, the environment lock, the window and the monitoring reference
  sample, each search and calibration as JSON, the model card, ``train_result.json``, and
  ``reproduce/request.json`` (pinned data versions, resolved config, training settings: what
  ``training.reproduce`` retrains from);
* the winner's model in its native flavor with ``metadata.mlops`` (features, threshold and the
  calibration map), then a new registered version linked to the run.

:func:`find_finished` finds the finished run of the same Airflow run and inputs, so a retried
task returns that run's result instead of registering a second version.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_pipeline.contracts.tags import (
    CANDIDATE,
    DAG_RUN_ID,
    DATA_VERSIONS,
    DATA_WINDOW,
    FLAVOR,
    GATE_STATUS,
    GIT_COMMIT,
    REGISTERED_VERSION,
    TRIGGER_REASON,
)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models.model import ModelInfo

    from mlops_pipeline.config import RegistrySettings, TrainSettings
    from mlops_pipeline.datasets import DatasetSpec
    from mlops_pipeline.training.candidates import Candidate
    from mlops_pipeline.training.steps import CandidateOutcome, Prepared, TrainConfig
    from mlops_pipeline.training.tuning import Tuning

log = logging.getLogger(__name__)

RESULT_ARTIFACT = "train_result.json"
REPRODUCE_ARTIFACT = "reproduce/request.json"
MAX_VERSION_TAG_CHARS = 5000  # MLflow's limit on a model version tag value
MODEL_CARD_ARTIFACT = "model_card.md"
DATASET_CONTEXTS = {"train": "training", "valid": "validation", "holdout": "holdout"}
KIND_TAG = "mlops.kind"
CANDIDATE_TAG = "mlops.candidate"
PARENT_TAG = "mlflow.parentRunId"


@dataclass(frozen=True)
class Provenance:
    """Where a training came from: the code's commit, whether it had local changes, the request digest."""

    commit: str
    dirty: bool | None
    digest: str


@dataclass(frozen=True)
class TrainingOutcome:
    """A finished training, as the steps left it: what to record."""

    model_name: str
    dataset: DatasetSpec
    as_of: str
    reason: str
    dag_run_id: str | None
    config: TrainConfig
    training: TrainSettings
    prepared: Prepared
    split_info: dict[str, dict[str, Any]]
    outcomes: dict[str, CandidateOutcome]
    winner: str
    selection_metric: str
    provenance: Provenance
    extra_tags: dict[str, str] = field(default_factory=dict)

    @property
    def won(self) -> CandidateOutcome:
        return self.outcomes[self.winner]


ABANDONED_TAG = "mlops.abandoned"


def find_finished(client: MlflowClient, experiment_id: str, dag_run_id: str, digest: str) -> dict[str, Any] | None:
    """The result of a finished run of the same Airflow run and inputs (a task retry), if any."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.{DAG_RUN_ID} = '{dag_run_id.replace(chr(39), '')}' and tags.request_digest = '{digest}' "
            "and attributes.status = 'FINISHED'"
        ),
        max_results=5,
    )
    for run in runs:
        if REGISTERED_VERSION in run.data.tags:
            import mlflow.artifacts

            try:
                return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{RESULT_ARTIFACT}")
            except Exception as exc:  # a run that died before writing its result is no result
                log.warning("run %s has no readable %s (%s); training again", run.info.run_id, RESULT_ARTIFACT, exc)
    return None


def end_abandoned(client: MlflowClient, experiment_id: str, dag_run_id: str, digest: str) -> list[str]:
    """Runs of the same Airflow run and inputs still RUNNING, with their nested runs: a try whose process
    died (a SIGKILLed worker) before it could end them. Airflow runs one try of a task at a time, so a
    new try finds them abandoned: each is tagged as such and ended KILLED, so the experiment shows no
    run as running for ever. Their ids."""
    quoted = dag_run_id.replace(chr(39), "")
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{DAG_RUN_ID} = '{quoted}' and tags.request_digest = '{digest}' and attributes.status = 'RUNNING'",
        max_results=50,
    )
    ended: list[str] = []
    for run in runs:
        nested = client.search_runs(
            [experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}' and attributes.status = 'RUNNING'",
            max_results=1000,
        )
        for abandoned in [*nested, run]:
            client.set_tag(abandoned.info.run_id, ABANDONED_TAG, f"a later try of Airflow run {quoted} started; this try's process died")
            client.set_terminated(abandoned.info.run_id, status="KILLED")
            ended.append(abandoned.info.run_id)
    if ended:
        log.warning("ended %d abandoned MLflow run(s) of an earlier try of %s as KILLED: %s", len(ended), quoted, ended)
    return ended


# --- what goes on the run -----------------------------------------------------------------------------


def run_tags(outcome: TrainingOutcome) -> dict[str, str]:
    window = outcome.prepared.window
    provenance = outcome.provenance
    return {
        TRIGGER_REASON: outcome.reason,
        DAG_RUN_ID: outcome.dag_run_id or "",
        GIT_COMMIT: provenance.commit,
        "mlflow.source.git.commit": provenance.commit,
        "git_dirty": "unknown" if provenance.dirty is None else str(provenance.dirty).lower(),
        "request_digest": provenance.digest,
        "dataset": outcome.dataset.name,
        DATA_WINDOW: f"{window.first_ds}..{window.last_ds}",
        "winner": outcome.winner,
        KIND_TAG: "training",
        **{k: str(v)[:5000] for k, v in outcome.extra_tags.items()},
    }


def run_params(outcome: TrainingOutcome, registry: RegistrySettings) -> dict[str, Any]:
    window, splits, training = outcome.prepared.window, outcome.prepared.splits, outcome.training
    winner = outcome.won
    params: dict[str, Any] = {
        "dataset": outcome.dataset.name,
        "window.as_of": outcome.as_of,
        "window.days_requested": outcome.config.days,
        "window.days": len(window.partitions),
        "window.first_ds": window.first_ds,
        "window.last_ds": window.last_ds,
        "window.data_versions": data_versions(outcome),
        "split.valid_start": splits.boundaries.valid_start,
        "split.holdout_start": splits.boundaries.holdout_start,
        "split.valid_fraction": training.valid_fraction,
        "split.holdout_fraction": training.holdout_fraction,
        "seed": outcome.config.seed,
        "nthread": training.nthread,
        "candidates": ",".join(outcome.config.candidates),
        "winner": outcome.winner,
        "threshold": winner.candidate.spec.threshold,
        "selection_metric": outcome.selection_metric,
        "tune.trials": training.tune_trials,
        "tune.timeout_seconds": training.tune_timeout_seconds,
        "tune.folds": training.tune_folds,
        "tune.sampler": f"TPESampler(seed={outcome.config.seed})",
        "tune.metric": outcome.selection_metric,
        "calibration.folds": training.calibration_folds,
        "calibration.method": winner.calibration.method,
        "gate.metric": registry.gate_metric,
        "gate.floor": registry.gate_floor,
        "gate.margin": registry.gate_margin,
        "gate.mode": registry.gate_mode,
    }
    for name, result in outcome.outcomes.items():
        candidate = result.candidate
        params.update({f"{name}.{k}": v for k, v in candidate.params.items()})
        params.update({f"{name}.{k}": v for k, v in candidate.info.items()})
        params[f"{name}.threshold"] = candidate.spec.threshold
        params[f"{name}.calibration"] = result.calibration.method
        params[f"{name}.tuned"] = ",".join(result.tuning.searched) if result.tuning.best_trial is not None else "-"
    return params


def data_versions(outcome: TrainingOutcome) -> str:
    """The pinned lake version of each partition of the window: ``ds@vN:digest`` separated by spaces."""
    return " ".join(p.pin for p in outcome.prepared.window.partitions)


def reproduce_record(outcome: TrainingOutcome) -> dict[str, Any]:
    """Everything a retraining needs to repeat this one (``training.reproduce``): the pinned window,
    the split, the resolved choices (days, seed, candidates, fixed values) and the training settings."""
    return {
        "model_name": outcome.model_name,
        "dataset": outcome.dataset.name,
        "as_of": outcome.as_of,
        "window": outcome.prepared.window.to_dict(),
        "split": outcome.prepared.splits.boundaries.to_dict(),
        "config": outcome.config.to_dict(),
        "training": outcome.training.model_dump(mode="json"),
        "selection_metric": outcome.selection_metric,
        "winner": outcome.winner,
        "flavor": outcome.won.candidate.flavor,
        "request_digest": outcome.provenance.digest,
    }


def _calibration_metrics(result: CandidateOutcome) -> dict[str, float]:
    fitted = result.calibration
    metrics = {f"{method}_cv_brier": value for method, value in fitted.cv_brier.items()}
    metrics.update({f"valid_{k}_before": v for k, v in fitted.valid_before.items()})
    metrics.update({f"valid_{k}_after_cv": v for k, v in fitted.valid_after.items()})
    metrics.update({f"holdout_{k}_before": v for k, v in result.evaluation.holdout_raw.items()})
    metrics.update({"holdout_brier_after": result.holdout["brier"], "holdout_ece_after": result.holdout["ece"]})
    return metrics


def _search_metrics(tuning: Tuning) -> dict[str, float]:
    best = tuning.best
    if best is None:
        return {}
    metrics = {f"cv_{tuning.metric}_mean": best.mean, f"cv_{tuning.metric}_std": best.std}
    metrics.update({f"fold_{i}_{tuning.metric}": score for i, score in enumerate(best.fold_scores, start=1)})
    metrics.update({"tune_trials_finished": float(tuning.finished), "tune_seconds": tuning.seconds})
    return metrics


def run_metrics(outcome: TrainingOutcome) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name, result in outcome.outcomes.items():
        metrics.update({f"{name}.valid_{k}": v for k, v in result.valid.items()})
        metrics.update({f"{name}.holdout_{k}": v for k, v in result.holdout.items()})
        metrics.update({f"{name}.{k}": v for k, v in _search_metrics(result.tuning).items() if not k.startswith("fold_")})
        metrics.update({f"{name}.calibration.{k}": v for k, v in _calibration_metrics(result).items()})
    winner = outcome.won
    metrics.update({f"valid_{k}": v for k, v in winner.valid.items()})
    metrics.update({f"holdout_{k}": v for k, v in winner.holdout.items()})
    metrics.update({f"calibration.{k}": v for k, v in _calibration_metrics(winner).items()})
    for split_name, info in outcome.split_info.items():
        metrics[f"{split_name}_rows"] = float(info["rows"])
    return metrics


def result_of(outcome: TrainingOutcome, *, run_id: str, version: str, logged_model_uri: str, importances: list[dict[str, Any]]) -> dict[str, Any]:
    """The training result: what the task returns through XCom and ``train_result.json`` keeps."""
    from mlops_pipeline.training.steps import auc_standard_error

    winner = outcome.won
    holdout = outcome.split_info["holdout"]
    return {
        "model_name": outcome.model_name,
        "version": version,
        "run_id": run_id,
        "model_uri": f"models:/{outcome.model_name}/{version}",
        "logged_model_uri": logged_model_uri,
        "flavor": winner.candidate.flavor,
        "winner": outcome.winner,
        "dataset": outcome.dataset.name,
        "trigger_reason": outcome.reason,
        "dag_run_id": outcome.dag_run_id,
        "git_commit": outcome.provenance.commit,
        "git_dirty": outcome.provenance.dirty,
        "seed": outcome.config.seed,
        "window": outcome.prepared.window.to_dict(),
        "split": outcome.prepared.splits.boundaries.to_dict(),
        "splits": outcome.split_info,
        "model_spec": winner.candidate.spec.to_metadata(),
        "selection_metric": outcome.selection_metric,
        "candidates": {name: {"valid": r.valid, "holdout": r.holdout} for name, r in outcome.outcomes.items()},
        "tuning": {name: r.tuning.summary() for name, r in outcome.outcomes.items()},
        "calibration": {
            name: {**r.calibration.report(), "holdout_before": r.evaluation.holdout_raw,
                   "holdout_after": {"brier": r.holdout["brier"], "ece": r.holdout["ece"]}}
            for name, r in outcome.outcomes.items()
        },  # fmt: skip
        "holdout_roc_auc_se": auc_standard_error(
            winner.holdout["roc_auc"], holdout["positives"], holdout["rows"] - holdout["positives"]
        ),
        "importances": importances[:20],
    }


# --- recording ------------------------------------------------------------------------------------------


def record(
    outcome: TrainingOutcome, *, client: MlflowClient, experiment_id: str, registry: RegistrySettings
) -> dict[str, Any]:
    """Log ``outcome`` as one MLflow run with nested candidate and trial runs; register the winner.

    Returns the training result (see :func:`result_of`). The run ends FAILED if anything here raises,
    and its ``registered_version`` tag is set last: only a run that carries it is reused by a retry."""
    import mlflow

    from mlops_pipeline.registry.lineage import register_version
    from mlops_pipeline.training.model_card import render_model_card

    winner = outcome.won
    run_name = f"{outcome.model_name}-{outcome.as_of}-{outcome.reason}"[:200]
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=run_tags(outcome)) as run:
        run_id = run.info.run_id
        mlflow.log_params({k: str(v)[:6000] for k, v in run_params(outcome, registry).items()})
        mlflow.log_metrics({k: v for k, v in run_metrics(outcome).items() if math.isfinite(v)})
        _log_datasets(outcome)
        _log_nested_runs(client, experiment_id, run_id, outcome)
        with tempfile.TemporaryDirectory(prefix="mlops-train-") as scratch:
            folder = Path(scratch)
            importances = _write_explanations(outcome, folder / "explain")
            _write_environment(folder / "environment")
            _write_data_records(folder / "data", outcome)
            _write_json(folder / "tuning", {name: r.tuning.to_dict() for name, r in outcome.outcomes.items()})
            _write_json(folder / "calibration", {name: r.calibration.report() for name, r in outcome.outcomes.items()})
            _write_json(folder / "reproduce", {"request": reproduce_record(outcome)})
            mlflow.log_artifacts(str(folder))
        model_info = _log_model(winner.candidate, outcome.prepared.splits.train)
        window = outcome.prepared.window
        metric = outcome.selection_metric
        pins = data_versions(outcome)
        # Retention protects these lake versions (registry.lineage.protected_data_versions); a window too
        # long for a tag is read from the run's reproduce record instead.
        pin_tag = {DATA_VERSIONS: pins} if len(pins) <= MAX_VERSION_TAG_CHARS else {}
        version = register_version(
            client,
            outcome.model_name,
            model_info,
            run_id,
            tags={
                TRIGGER_REASON: outcome.reason,
                DAG_RUN_ID: outcome.dag_run_id or "",
                CANDIDATE: outcome.winner,
                FLAVOR: winner.candidate.flavor,
                DATA_WINDOW: f"{window.first_ds}..{window.last_ds}",
                GIT_COMMIT: outcome.provenance.commit,
                "calibration": winner.calibration.method,
                f"holdout_{metric}": f"{winner.holdout[metric]:.6f}",
                GATE_STATUS: "pending",
                **pin_tag,
            },
            description=(
                f"{outcome.winner} trained on ds={window.first_ds}..{window.last_ds} ({outcome.reason}); "
                f"holdout {metric} {winner.holdout[metric]:.4f}. Gate pending."
            ),
        )
        result = result_of(
            outcome, run_id=run_id, version=str(version.version), logged_model_uri=model_info.model_uri,
            importances=importances,
        )  # fmt: skip
        mlflow.log_text(render_model_card(result, None, result["importances"]), MODEL_CARD_ARTIFACT)
        mlflow.log_dict(result, RESULT_ARTIFACT)
        client.set_tag(run_id, REGISTERED_VERSION, str(version.version))
    log.info("registered %s version %s from run %s (%s)", outcome.model_name, version.version, run_id, outcome.winner)
    return result


def _log_datasets(outcome: TrainingOutcome) -> None:
    from mlops_pipeline.registry.lineage import log_lake_dataset

    bounds = outcome.prepared.splits.boundaries
    row_ranges = {
        "train": (None, bounds.valid_start),
        "valid": (bounds.valid_start, bounds.holdout_start),
        "holdout": (bounds.holdout_start, None),
    }
    for split_name, part in outcome.prepared.splits.items():
        info = outcome.split_info[split_name]
        log_lake_dataset(
            part,
            name=f"{outcome.dataset.name}-{split_name}",
            context=DATASET_CONTEXTS[split_name],
            uris=info["uris"],
            digest=info["digest"],
            target=outcome.dataset.target,
            rows_from=row_ranges[split_name][0],
            rows_until=row_ranges[split_name][1],
            versions=info.get("versions"),
        )


def _child_run(
    client: MlflowClient,
    experiment_id: str,
    parent_id: str,
    name: str,
    *,
    kind: str,
    candidate: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    started_ms: int,
    finished_ms: int,
    status: str,
) -> str:
    """A finished run nested under ``parent_id``, with its times as they happened."""
    from mlflow.entities import Metric, Param

    run = client.create_run(
        experiment_id,
        start_time=started_ms,
        tags={PARENT_TAG: parent_id, KIND_TAG: kind, CANDIDATE_TAG: candidate, **tags},
        run_name=name,
    )
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), finished_ms, 0) for k, v in metrics.items() if math.isfinite(v)],
        params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        tags=[],
    )
    client.set_terminated(run_id, status=status, end_time=finished_ms)
    return run_id


def _log_nested_runs(client: MlflowClient, experiment_id: str, parent_id: str, outcome: TrainingOutcome) -> None:
    """One run per candidate under the training run, and one per search trial under its candidate."""
    now = int(time.time() * 1000)
    for name, result in outcome.outcomes.items():
        tuning = result.tuning
        started = min((t.started_ms for t in tuning.trials), default=now)
        finished = max((t.finished_ms for t in tuning.trials), default=now)
        metrics = {
            **_search_metrics(tuning),
            **{f"valid_{k}": v for k, v in result.valid.items()},
            **{f"holdout_{k}": v for k, v in result.holdout.items()},
            **{f"calibration.{k}": v for k, v in _calibration_metrics(result).items()},
        }
        params = {
            **result.candidate.params,
            **result.candidate.info,
            "threshold": result.candidate.spec.threshold,
            "calibration": result.calibration.method,
            "searched": ",".join(tuning.searched) or "-",
            "fixed": json.dumps(tuning.fixed, sort_keys=True, default=str),
            "tune.trials": tuning.budget.trials,
            "tune.timeout_seconds": tuning.budget.timeout_seconds,
            "tune.folds": tuning.budget.folds,
        }
        tags = {
            "stopped_by": tuning.stopped_by,
            "best_trial": "-" if tuning.best_trial is None else str(tuning.best_trial),
            "winner": str(name == outcome.winner).lower(),
        }
        candidate_run = _child_run(
            client, experiment_id, parent_id, f"candidate {name}", kind="candidate", candidate=name, params=params,
            metrics=metrics, tags=tags, started_ms=started, finished_ms=max(finished, now), status="FINISHED",
        )  # fmt: skip
        for trial in tuning.trials:
            trial_metrics = {f"fold_{i}_{tuning.metric}": s for i, s in enumerate(trial.fold_scores, start=1)}
            if trial.state == "COMPLETE":
                trial_metrics.update({f"cv_{tuning.metric}_mean": trial.mean, f"cv_{tuning.metric}_std": trial.std})
            trial_metrics.update(
                {f"fold_{i}_best_iteration": float(info["best_iteration"])
                 for i, info in enumerate(trial.fold_info, start=1) if "best_iteration" in info}
            )  # fmt: skip
            trial_tags = {"trial": str(trial.number), "state": trial.state, "best": str(trial.number == tuning.best_trial).lower()}
            if trial.error:
                trial_tags["error"] = trial.error[:5000]
            _child_run(
                client, experiment_id, candidate_run, f"{name} trial {trial.number}", kind="trial", candidate=name,
                params={**trial.params, "trial": trial.number}, metrics=trial_metrics, tags=trial_tags,
                started_ms=trial.started_ms, finished_ms=trial.finished_ms,
                status="FINISHED" if trial.state == "COMPLETE" else "FAILED",
            )  # fmt: skip


def _write_json(folder: Path, documents: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, document in documents.items():
        (folder / f"{name}.json").write_text(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")


def _write_explanations(outcome: TrainingOutcome, folder: Path) -> list[dict[str, Any]]:
    from mlops_pipeline.training.candidates import XGBOOST
    from mlops_pipeline.training.explain import plot_importances, shap_importances

    if XGBOOST not in outcome.outcomes:
        return []
    candidate = outcome.outcomes[XGBOOST].candidate
    holdout = outcome.prepared.splits.holdout
    table = shap_importances(candidate.model, holdout, candidate.spec)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "shap_importance.csv", index=False)
    records = table.to_dict(orient="records")
    (folder / "shap_importance.json").write_text(json.dumps(records, indent=2) + "\n")
    plot_importances(table, folder / "shap_importance.png", f"XGBoost SHAP importance on the holdout ({len(holdout)} rows)")
    return records


def _write_environment(folder: Path) -> None:
    from mlops_pipeline.training.reproducibility import installed_distributions, python_version

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requirements-lock.txt").write_text(
        f"# python {python_version()}\n" + "\n".join(installed_distributions()) + "\n"
    )


def _write_data_records(folder: Path, outcome: TrainingOutcome) -> None:
    """The window (partitions and checksums) and a reference sample of the training split for monitoring."""
    window, splits, training = outcome.prepared.window, outcome.prepared.splits, outcome.training
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "window.json").write_text(
        json.dumps({"window": window.to_dict(), "split": splits.boundaries.to_dict()}, indent=2) + "\n"
    )
    if training.reference_sample_rows:
        rows = min(training.reference_sample_rows, len(splits.train))
        sample = splits.train.sample(n=rows, random_state=outcome.config.seed).sort_index()
        sample.to_parquet(folder / "reference_sample.parquet", index=False)


@contextlib.contextmanager
def _without_log_records(logger_name: str, prefix: str) -> Iterator[None]:
    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(prefix)

    logger = logging.getLogger(logger_name)
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def model_flavor(winner: Candidate, train: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    """The MLflow flavor module the winner is stored with and its arguments (signature, input example,
    ``metadata.mlops`` with the serving contract and calibration, format, pinned requirements). One
    place for both: the training logs with them, a reproduction saves with them."""
    from mlops_pipeline.training.features import input_example, model_signature
    from mlops_pipeline.training.reproducibility import pinned

    arguments: dict[str, Any] = {
        "signature": model_signature(train, winner.spec),
        "input_example": input_example(train, winner.spec),
        "metadata": {"mlops": winner.spec.to_metadata()},
    }
    if winner.flavor == "xgboost":
        import mlflow.xgboost

        return mlflow.xgboost, {**arguments, "model_format": "ubj", "pip_requirements": pinned("xgboost", "numpy", "scipy", "pandas")}
    import mlflow.sklearn

    return mlflow.sklearn, {
        **arguments,
        "serialization_format": mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE,
        "pip_requirements": pinned("scikit-learn", "numpy", "scipy", "pandas"),
    }


def _quiet_example_check() -> contextlib.AbstractContextManager[None]:
    # MLflow checks the input example through the generic pyfunc wrapper, which hands raw string
    # columns to XGBoost and fails; the model server encodes with metadata.mlops first, so that
    # check does not apply and its warning would only mislead.
    return _without_log_records("mlflow.models.model", "Failed to validate serving input example")


def _log_model(winner: Candidate, train: pd.DataFrame) -> ModelInfo:
    """Log the winner in its native flavor with ``metadata.mlops`` (the serving contract, calibration included)."""
    flavor, arguments = model_flavor(winner, train)
    with _quiet_example_check():
        return flavor.log_model(winner.model, name="model", **arguments)


def save_model(winner: Candidate, train: pd.DataFrame, path: Path) -> None:
    """Write the winner's MLflow model directory to ``path`` exactly as :func:`record` logs it."""
    flavor, arguments = model_flavor(winner, train)
    with _quiet_example_check():
        flavor.save_model(winner.model, path=str(path), **arguments)
