"""The two steps behind the ``mlops_train`` DAG, as plain functions.

:func:`train_and_register`
    last N validated days -> split by event time -> candidates (baseline, XGBoost) -> threshold on
    valid, metrics on holdout -> one MLflow run (params, metrics, datasets, git commit, environment,
    SHAP importances, reference sample, the winner's model with ``metadata.mlops``) -> a new
    registered version. Returns a small JSON-able dict (the DAG passes it through XCom).
:func:`gate_candidate`
    candidate and ``@champion`` scored on the same holdout (rebuilt from the lake, checksums
    verified) -> ``@challenger`` or ``rejected`` -> the model card.

Both are safe to run again: a retry of a training whose run already finished (same Airflow run,
same inputs) returns that run's result instead of registering a second version, and the gate
returns the decision already recorded on the version. Bad input raises :class:`TrainingDataError`
(or a ``ValueError`` subclass) before anything is written to MLflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_pipeline.training.data import TrainingDataError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from mlops_pipeline.config import Settings, TrainSettings
    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.datasets import DatasetSpec
    from mlops_pipeline.training.candidates import Candidate
    from mlops_pipeline.training.data import Splits, TrainingWindow

log = logging.getLogger(__name__)

RESULT_ARTIFACT = "train_result.json"
MODEL_CARD_ARTIFACT = "model_card.md"
DATASET_CONTEXTS = {"train": "training", "valid": "validation", "holdout": "holdout"}

__all__ = ["TrainRequest", "TrainingDataError", "gate_candidate", "train_and_register"]


@dataclass
class TrainRequest:
    """One training: as of which moment, why, and the per-run overrides (None = the settings' value)."""

    as_of: datetime | date
    reason: str = "manual"
    dag_run_id: str | None = None
    days: int | None = None
    seed: int | None = None
    candidates: list[str] | None = None
    hyperparameters: dict[str, dict[str, Any]] | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _Evaluated:
    candidate: Candidate
    valid: dict[str, float]
    holdout: dict[str, float]


def _effective(request: TrainRequest, training: TrainSettings) -> dict[str, Any]:
    from mlops_pipeline.training.candidates import FLAVORS, HyperparameterError, merged_params

    names = list(dict.fromkeys(request.candidates or training.candidates))
    unknown = [n for n in names if n not in FLAVORS]
    if unknown or not names:
        raise HyperparameterError(f"unknown candidate(s) {unknown or names}; known: {sorted(FLAVORS)}")
    overrides = {k: dict(v) for k, v in training.hyperparameters.items()}
    for name, values in (request.hyperparameters or {}).items():
        if not isinstance(values, dict):
            raise HyperparameterError(f"hyperparameters for {name!r} must be a mapping, got {values!r}")
        overrides.setdefault(name, {}).update(values)
    stray = sorted(set(overrides) - set(FLAVORS))
    if stray:
        raise HyperparameterError(f"hyperparameters given for unknown candidate(s) {stray}; known: {sorted(FLAVORS)}")
    days = request.days if request.days is not None else training.days
    if days < 1:
        raise TrainingDataError(f"training days must be at least 1, got {days}")
    return {
        "days": days,
        "seed": request.seed if request.seed is not None else training.seed,
        "candidates": names,
        "hyperparameters": {name: merged_params(name, overrides.get(name)) for name in names},
    }


def _lake_for(uri: str, settings: Settings) -> Lake:
    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.storage import storage_options_for

    return Lake(uri, storage_options_for(uri, settings))


def _auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): the sampling standard error of a ROC AUC."""
    if positives == 0 or negatives == 0 or not math.isfinite(auc):
        return float("nan")
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))


def prepare_data(
    lake: Lake, dataset: DatasetSpec, as_of: datetime | date, days: int, training: TrainSettings
) -> tuple[TrainingWindow, Splits]:
    """Window -> frame -> time split, checked to be trainable (raises TrainingDataError otherwise)."""
    from mlops_pipeline.training.data import check_trainable, load_window, select_window, split_by_time

    window = select_window(lake, as_of, days)
    frame = load_window(lake, dataset, window)
    splits = split_by_time(
        frame, dataset, valid_fraction=training.valid_fraction, holdout_fraction=training.holdout_fraction
    )
    check_trainable(splits, dataset, window, training.min_split_rows)
    return window, splits


def fit_candidates(
    splits: Splits, dataset: DatasetSpec, config: dict[str, Any], nthread: int
) -> dict[str, _Evaluated]:
    """Train every configured candidate; pick its threshold on valid; measure valid and holdout."""
    from mlops_pipeline.training.candidates import train_candidate
    from mlops_pipeline.training.evaluation import choose_threshold, classification_metrics
    from mlops_pipeline.training.features import fit_model_spec

    base_spec = fit_model_spec(splits.train, dataset)
    y_valid = splits.valid[dataset.target].to_numpy()
    y_holdout = splits.holdout[dataset.target].to_numpy()
    evaluated = {}
    for name in config["candidates"]:
        candidate = train_candidate(
            name, splits.train, splits.valid, base_spec, config["hyperparameters"][name], seed=config["seed"], nthread=nthread
        )
        valid_proba = candidate.predict_proba(splits.valid)
        threshold = choose_threshold(y_valid, valid_proba)
        candidate.spec = candidate.spec.with_threshold(threshold)
        evaluated[name] = _Evaluated(
            candidate,
            valid=classification_metrics(y_valid, valid_proba, threshold),
            holdout=classification_metrics(y_holdout, candidate.predict_proba(splits.holdout), threshold),
        )
        log.info("candidate %s: valid %s, holdout %s", name, evaluated[name].valid, evaluated[name].holdout)
    return evaluated


def _select(evaluated: dict[str, _Evaluated], metric: str) -> str:
    """The best candidate on the valid split (ties: the first listed, i.e. the simpler baseline)."""
    return max(evaluated, key=lambda name: evaluated[name].valid[metric])


def _find_finished(client: MlflowClient, experiment_id: str, dag_run_id: str, digest: str) -> dict[str, Any] | None:
    """The result of a finished run of the same Airflow run and inputs (a task retry), if any."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.dag_run_id = '{dag_run_id.replace(chr(39), '')}' and tags.request_digest = '{digest}' "
            "and attributes.status = 'FINISHED'"
        ),
        max_results=5,
    )
    for run in runs:
        if "registered_version" in run.data.tags:
            import mlflow.artifacts

            try:
                return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{RESULT_ARTIFACT}")
            except Exception as exc:  # a run that died before writing its result is no result
                log.warning("run %s has no readable %s (%s); training again", run.info.run_id, RESULT_ARTIFACT, exc)
    return None


def _experiment_id(client: MlflowClient, name: str) -> str:
    from mlops_pipeline.registry.client import ensure_experiment

    return ensure_experiment(client, name)
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name)
    except MlflowException:  # created concurrently
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _write_explanations(evaluated: dict[str, _Evaluated], splits: Splits, folder: Path) -> list[dict[str, Any]]:
    from mlops_pipeline.training.candidates import XGBOOST
    from mlops_pipeline.training.explain import plot_importances, shap_importances

    if XGBOOST not in evaluated:
        return []
    candidate = evaluated[XGBOOST].candidate
    table = shap_importances(candidate.model, splits.holdout, candidate.spec)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "shap_importance.csv", index=False)
    records = table.to_dict(orient="records")
    (folder / "shap_importance.json").write_text(json.dumps(records, indent=2) + "\n")
    plot_importances(table, folder / "shap_importance.png", f"XGBoost SHAP importance on the holdout ({len(splits.holdout)} rows)")
    return records


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


def _log_model(winner: Candidate, train: pd.DataFrame):
    """Log the winner in its native flavor with ``metadata.mlops`` (the serving contract)."""
    from mlops_pipeline.training.features import input_example, model_signature
    from mlops_pipeline.training.reproducibility import pinned

    signature = model_signature(train, winner.spec)
    example = input_example(train, winner.spec)
    metadata = {"mlops": winner.spec.to_metadata()}
    if winner.flavor == "xgboost":
        import mlflow.xgboost

        # MLflow checks the input example through the generic pyfunc wrapper, which hands raw string
        # columns to XGBoost and fails; the model server encodes with metadata.mlops first, so that
        # check does not apply and its warning would only mislead.
        with _without_log_records("mlflow.models.model", "Failed to validate serving input example"):
            return mlflow.xgboost.log_model(
                winner.model,
                name="model",
                signature=signature,
                input_example=example,
                metadata=metadata,
                model_format="ubj",
                pip_requirements=pinned("xgboost", "numpy", "scipy", "pandas"),
            )
    import mlflow.sklearn

    return mlflow.sklearn.log_model(
        winner.model,
        name="model",
        signature=signature,
        input_example=example,
        metadata=metadata,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE,
        pip_requirements=pinned("scikit-learn", "numpy", "scipy", "pandas"),
    )


def _reason(request: TrainRequest) -> str:
    reason = (request.reason or "").strip() or "manual"
    return reason[:250]


def train_and_register(
    request: TrainRequest,
    *,
    settings: Settings | None = None,
    training: TrainSettings | None = None,
) -> dict[str, Any]:
    """Train, log and register one new version; see the module docstring. Returns the training result."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.registry.client import mlflow_client
    from mlops_pipeline.storage import open_lake
    from mlops_pipeline.training.data import as_of_date, split_digest, split_partitions
    from mlops_pipeline.training.reproducibility import git_commit, git_is_dirty, request_digest

    settings = settings or get_settings()
    training = training or get_settings().train
    config = _effective(request, training)
    client = mlflow_client(settings)  # fail fast when MLflow is down, before any work

    import mlflow

    from mlops_pipeline.registry.lineage import log_lake_dataset, register_version

    dataset = load_dataset_spec(settings.dataset)
    lake = open_lake(settings)
    window, splits = prepare_data(lake, dataset, request.as_of, config["days"], training)
    model_name = settings.registered_model_name
    commit = git_commit(settings.home)
    dirty = git_is_dirty(settings.home)
    reason = _reason(request)
    digest = request_digest(
        {"window": window.to_dict(), "config": config, "dataset": dataset.name, "model": model_name, "commit": commit,
         "training": training.model_dump(mode="json", exclude={"hyperparameters", "candidates", "days", "seed"})}
    )
    from mlops_pipeline.registry.client import ensure_experiment

    experiment_id = ensure_experiment(client, training.experiment_name or model_name)
    if request.dag_run_id:
        previous = _find_finished(client, experiment_id, request.dag_run_id, digest)
        if previous is not None:
            log.info("run %s already trained version %s for these inputs; reusing it", previous["run_id"], previous["version"])
            return previous

    evaluated = fit_candidates(splits, dataset, config, training.nthread)
    selection_metric = settings.registry.gate_metric
    winner_name = _select(evaluated, selection_metric)
    winner = evaluated[winner_name]
    as_of = as_of_date(request.as_of).isoformat()

    split_info: dict[str, dict[str, Any]] = {}
    for split_name, part in splits.items():
        split_info[split_name] = {
            "rows": len(part),
            "positives": int(part[dataset.target].sum()),
            "digest": split_digest(window, split_name, splits.boundaries),
            "uris": [p.uri for p in split_partitions(window, part, dataset)],
        }
    holdout_positives = split_info["holdout"]["positives"]
    auc_se = _auc_standard_error(
        winner.holdout["roc_auc"], holdout_positives, split_info["holdout"]["rows"] - holdout_positives
    )

    tags = {
        "trigger_reason": reason,
        "dag_run_id": request.dag_run_id or "",
        "git_commit": commit,
        "mlflow.source.git.commit": commit,
        "git_dirty": "unknown" if dirty is None else str(dirty).lower(),
        "request_digest": digest,
        "dataset": dataset.name,
        "data_window": f"{window.first_ds}..{window.last_ds}",
        "winner": winner_name,
        **{k: str(v)[:5000] for k, v in request.extra_tags.items()},
    }
    params: dict[str, Any] = {
        "dataset": dataset.name,
        "window.as_of": as_of,
        "window.days_requested": config["days"],
        "window.days": len(window.partitions),
        "window.first_ds": window.first_ds,
        "window.last_ds": window.last_ds,
        "split.valid_start": splits.boundaries.valid_start,
        "split.holdout_start": splits.boundaries.holdout_start,
        "split.valid_fraction": training.valid_fraction,
        "split.holdout_fraction": training.holdout_fraction,
        "seed": config["seed"],
        "nthread": training.nthread,
        "candidates": ",".join(config["candidates"]),
        "winner": winner_name,
        "threshold": winner.candidate.spec.threshold,
        "selection_metric": selection_metric,
        "gate.metric": settings.registry.gate_metric,
        "gate.floor": settings.registry.gate_floor,
        "gate.margin": settings.registry.gate_margin,
        "gate.mode": settings.registry.gate_mode,
    }
    for name, fitted in evaluated.items():
        params.update({f"{name}.{k}": v for k, v in fitted.candidate.params.items()})
        params.update({f"{name}.{k}": v for k, v in fitted.candidate.info.items()})
        params[f"{name}.threshold"] = fitted.candidate.spec.threshold
    metrics: dict[str, float] = {}
    for name, fitted in evaluated.items():
        metrics.update({f"{name}.valid_{k}": v for k, v in fitted.valid.items()})
        metrics.update({f"{name}.holdout_{k}": v for k, v in fitted.holdout.items()})
    metrics.update({f"valid_{k}": v for k, v in winner.valid.items()})
    metrics.update({f"holdout_{k}": v for k, v in winner.holdout.items()})
    for split_name, info in split_info.items():
        metrics[f"{split_name}_rows"] = float(info["rows"])

    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model_name}-{as_of}-{reason}"[:200], tags=tags) as run:
        run_id = run.info.run_id
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
        bounds = splits.boundaries
        row_ranges = {
            "train": (None, bounds.valid_start),
            "valid": (bounds.valid_start, bounds.holdout_start),
            "holdout": (bounds.holdout_start, None),
        }
        for split_name, part in splits.items():
            info = split_info[split_name]
            log_lake_dataset(
                part,
                name=f"{dataset.name}-{split_name}",
                context=DATASET_CONTEXTS[split_name],
                uris=info["uris"],
                digest=info["digest"],
                target=dataset.target,
                rows_from=row_ranges[split_name][0],
                rows_until=row_ranges[split_name][1],
            )
        with tempfile.TemporaryDirectory(prefix="mlops-train-") as scratch:
            folder = Path(scratch)
            importances = _write_explanations(evaluated, splits, folder / "explain")
            _write_environment(folder / "environment")
            _write_data_records(folder / "data", window, splits, training, dataset)
            mlflow.log_artifacts(str(folder))
        model_info = _log_model(winner.candidate, splits.train)
        version = register_version(
            client,
            model_name,
            model_info,
            run_id,
            tags={
                "trigger_reason": reason,
                "dag_run_id": request.dag_run_id or "",
                "candidate": winner_name,
                "flavor": winner.candidate.flavor,
                "data_window": f"{window.first_ds}..{window.last_ds}",
                "git_commit": commit,
                f"holdout_{selection_metric}": f"{winner.holdout[selection_metric]:.6f}",
                "gate_status": "pending",
            },
            description=(
                f"{winner_name} trained on ds={window.first_ds}..{window.last_ds} ({reason}); "
                f"holdout {selection_metric} {winner.holdout[selection_metric]:.4f}. Gate pending."
            ),
        )
        result = {
            "model_name": model_name,
            "version": str(version.version),
            "run_id": run_id,
            "model_uri": f"models:/{model_name}/{version.version}",
            "logged_model_uri": model_info.model_uri,
            "flavor": winner.candidate.flavor,
            "winner": winner_name,
            "dataset": dataset.name,
            "trigger_reason": reason,
            "dag_run_id": request.dag_run_id,
            "git_commit": commit,
            "git_dirty": dirty,
            "seed": config["seed"],
            "window": window.to_dict(),
            "split": splits.boundaries.to_dict(),
            "splits": split_info,
            "model_spec": winner.candidate.spec.to_metadata(),
            "selection_metric": selection_metric,
            "candidates": {name: {"valid": r.valid, "holdout": r.holdout} for name, r in evaluated.items()},
            "holdout_roc_auc_se": auc_se,
            "importances": importances[:20],
        }
        mlflow.log_dict(result, RESULT_ARTIFACT)
        client.set_tag(run_id, "registered_version", str(version.version))
    log.info("registered %s version %s from run %s (%s)", model_name, version.version, run_id, winner_name)
    return result


def _write_environment(folder: Path) -> None:
    from mlops_pipeline.training.reproducibility import installed_distributions, python_version

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requirements-lock.txt").write_text(
        f"# python {python_version()}\n" + "\n".join(installed_distributions()) + "\n"
    )


def _write_data_records(
    folder: Path, window: TrainingWindow, splits: Splits, training: TrainSettings, dataset: DatasetSpec
) -> None:
    """The window (partitions and checksums) and a reference sample of the training split for monitoring."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "window.json").write_text(
        json.dumps({"window": window.to_dict(), "split": splits.boundaries.to_dict()}, indent=2) + "\n"
    )
    if training.reference_sample_rows:
        rows = min(training.reference_sample_rows, len(splits.train))
        sample = splits.train.sample(n=rows, random_state=training.seed).sort_index()
        sample.to_parquet(folder / "reference_sample.parquet", index=False)


def _holdout_for(result: dict[str, Any], settings: Settings) -> pd.DataFrame:
    """Rebuild the training run's holdout from the lake (same partitions, checksums verified, same cut)."""
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.training.data import TimeSplit, TrainingWindow, apply_split, load_window

    dataset = load_dataset_spec(settings.dataset)
    window = TrainingWindow.from_dict(result["window"])
    frame = load_window(_lake_for(window.lake_uri, settings), dataset, window)
    holdout = apply_split(frame, dataset, TimeSplit.from_dict(result["split"])).holdout
    expected = result["splits"]["holdout"]["rows"]
    if len(holdout) != expected:
        raise TrainingDataError(f"rebuilt holdout of {window.label} has {len(holdout)} rows, the run logged {expected}")
    return holdout


def _metric_of(metric: str):
    """The gate metric as a function of (labels, probabilities)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    functions = {"roc_auc": roc_auc_score, "pr_auc": average_precision_score}
    if metric not in functions:
        raise ValueError(f"the gate cannot score {metric!r}; known: {sorted(functions)}")
    return lambda labels, proba: float(functions[metric](labels, proba))


def gate_candidate(
    result: dict[str, Any],
    *,
    settings: Settings | None = None,
    training: TrainSettings | None = None,
) -> dict[str, Any]:
    """Decide ``@challenger`` for the version in ``result`` (from :func:`train_and_register`); write the card."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.registry.aliases import CHAMPION, version_for_alias
    from mlops_pipeline.registry.client import mlflow_client
    from mlops_pipeline.registry.gate import compare, decide, record_decision, recorded_decision
    from mlops_pipeline.training.features import FeatureError
    from mlops_pipeline.training.model_card import render_model_card

    settings = settings or get_settings()
    training = training or get_settings().train
    client = mlflow_client(settings)
    from mlops_pipeline.registry.models import load_model

    name, version, run_id = result["model_name"], str(result["version"]), result["run_id"]
    decision = recorded_decision(client.get_model_version(name, version))
    if decision is None:
        config = settings.registry.gate_config()
        holdout = _holdout_for(result, settings)
        target = result["model_spec"]["target"]
        if holdout.empty or holdout[target].nunique() < 2:
            raise ValueError(
                f"gate for {name} v{version} (run {run_id}): the holdout has {len(holdout)} row(s) and "
                f"{holdout[target].nunique()} class(es); the gate needs both classes"
            )
        labels = holdout[target].to_numpy()
        candidate_proba = load_model(f"models:/{name}/{version}").predict_proba(holdout)
        candidate_score = _metric_of(config.metric)(labels, candidate_proba)
        champion = version_for_alias(client, name, CHAMPION)
        comparison = champion_version = note = None
        if champion is not None:
            champion_version = str(champion.version)
            try:
                champion_proba = load_model(f"models:/{name}/{champion_version}").predict_proba(holdout)
            except FeatureError as exc:
                # The data no longer carries what the champion needs: it cannot be compared, and the
                # floor alone decides; the reason says so on the version and in the card.
                note = f"champion v{champion_version} cannot be scored on this holdout ({exc})"
                log.warning(note)
            else:
                metric = None if config.metric == "roc_auc" else _metric_of(config.metric)
                comparison = compare(labels, candidate_proba, champion_proba, config, metric)
        decision = decide(
            candidate_score, config, comparison=comparison, champion_version=champion_version, champion_note=note,
            n=len(labels), positives=int(labels.sum()),
        )  # fmt: skip
        record_decision(client, name, version, decision)
        client.log_metric(run_id, f"gate_candidate_{config.metric}", candidate_score)
        if comparison is not None:
            client.log_metric(run_id, f"gate_champion_{config.metric}", comparison.champion_score)
            client.log_metric(run_id, "gate_difference", comparison.difference)
            client.log_metric(run_id, "gate_difference_low", comparison.low)
            client.log_metric(run_id, "gate_difference_high", comparison.high)
        client.set_tag(run_id, "gate_status", decision.status)
        client.set_tag(run_id, "gate_reason", decision.reason[:5000])
    log.info("gate for %s version %s: %s (%s); decision %s", name, version, decision.status, decision.reason,
             json.dumps({k: v for k, v in decision.to_dict().items() if k in ("n", "interval", "method", "difference")}))

    card = render_model_card(result, decision.to_dict(), result.get("importances") or [])
    client.log_text(run_id, card, MODEL_CARD_ARTIFACT)
    client.update_model_version(
        name,
        version,
        description=f"{result['winner']} on ds={result['window']['partitions'][0]['ds']}.."
        f"{result['window']['partitions'][-1]['ds']}: gate {decision.status}: {decision.reason}",
    )
    return {
        "model_name": name,
        "version": version,
        "run_id": run_id,
        "model_uri": f"models:/{name}/{version}",
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **decision.to_dict(),
    }
