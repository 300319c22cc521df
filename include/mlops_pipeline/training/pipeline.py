"""The two functions behind the ``mlops_train`` DAG's tasks.

:func:`train_and_register`
    wires the steps of :mod:`mlops_pipeline.training.steps` (resolve -> prepare -> per candidate:
    tune -> fit -> calibrate -> evaluate -> select) and hands their outcome to
    :mod:`mlops_pipeline.training.recorder`, which logs one MLflow run (with a nested run per
    candidate and per search trial) and registers the winner as a new version. Returns a small
    JSON-able dict (the DAG passes it through XCom).
:func:`gate_candidate`
    candidate and ``@champion`` scored on the same holdout (rebuilt from the lake, checksums
    verified) -> ``@challenger`` or ``rejected`` -> the model card.

Both are safe to run again: a retry of a training whose run already finished (same Airflow run,
same inputs) returns that run's result instead of registering a second version, and the gate
returns the decision already recorded on the version. A step that meets bad input raises
:class:`TrainingStepError` (a ``ValueError``) naming the run, the step and the reason, before
anything is written to MLflow: nothing is registered and no alias moves.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from mlops_pipeline.contracts.tags import GATE_REASON, GATE_STATUS
from mlops_pipeline.training import steps
from mlops_pipeline.training.data import TrainingDataError
from mlops_pipeline.training.recorder import MODEL_CARD_ARTIFACT, RESULT_ARTIFACT

if TYPE_CHECKING:
    import pandas as pd

    from mlops_pipeline.config import Settings, TrainSettings
    from mlops_pipeline.data.lake import Lake

log = logging.getLogger(__name__)

__all__ = [
    "MODEL_CARD_ARTIFACT",
    "RESULT_ARTIFACT",
    "TrainRequest",
    "TrainingDataError",
    "TrainingStepError",
    "gate_candidate",
    "train_and_register",
    "train_candidates",
]


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

    @property
    def label(self) -> str:
        """How errors name this training: its Airflow run, else its as-of date."""
        from mlops_pipeline.training.data import as_of_date

        try:
            as_of = as_of_date(self.as_of).isoformat()
        except ValueError:  # a naive moment: the prepare step says so
            as_of = str(self.as_of)
        return f"run {self.dag_run_id} (as of {as_of})" if self.dag_run_id else f"as of {as_of} (no Airflow run)"


class TrainingStepError(TrainingDataError):
    """A training step met input it cannot work with; retrying will not help. Says which run and step."""

    def __init__(self, run: str, step: str, reason: str):
        self.run, self.step, self.reason = run, step, reason
        super().__init__(
            f"training {run} failed at step {step}: {reason}. No MLflow run was started; nothing was registered "
            "and no alias moved"
        )

    def __reduce__(self) -> tuple[type[TrainingStepError], tuple[str, str, str]]:
        return type(self), (self.run, self.step, self.reason)  # survives pickling between processes


@contextlib.contextmanager
def _step(run: str, step: str) -> Iterator[None]:
    """Bad input in a step (any ``ValueError``) becomes a :class:`TrainingStepError` naming the run and the step;
    other errors (a lake read, a crash) pass as they are, so Airflow's retries apply."""
    try:
        yield
    except TrainingStepError:
        raise
    except ValueError as exc:
        raise TrainingStepError(run, step, str(exc)) from exc


def train_candidates(
    prepared: steps.Prepared, config: steps.TrainConfig, training: TrainSettings, *, metric: str, run: str = "-"
) -> dict[str, steps.CandidateOutcome]:
    """The candidates' slice of the pipeline, without MLflow: per candidate tune -> fit -> calibrate -> evaluate.

    ``run`` names the training in errors (see :class:`TrainingStepError`)."""
    splits, budget = prepared.splits, steps.budget_of(training)
    outcomes: dict[str, steps.CandidateOutcome] = {}
    for name in config.candidates:
        with _step(run, f"tune ({name})"):
            tuning = steps.tune(
                name, splits.train, prepared.spec, config.fixed[name], metric=metric, seed=config.seed,
                nthread=training.nthread, budget=budget,
            )  # fmt: skip
        with _step(run, f"fit ({name})"):
            fitted = steps.fit(name, splits, prepared.spec, tuning.best_params, seed=config.seed, nthread=training.nthread)
        with _step(run, f"calibrate ({name})"):
            calibrated, calibration = steps.calibrate(fitted, splits.valid, training.calibration_folds)
        with _step(run, f"evaluate ({name})"):
            evaluation = steps.evaluate(calibrated, splits)
        outcomes[name] = steps.CandidateOutcome(tuning, calibration, evaluation)
        log.info("candidate %s (%s calibration): valid %s, holdout %s", name, calibration.method, evaluation.valid, evaluation.holdout)
    return outcomes


def _reason(request: TrainRequest) -> str:
    reason = (request.reason or "").strip() or "manual"
    return reason[:250]


def _lake_for(uri: str, settings: Settings) -> Lake:
    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.storage import storage_options_for

    return Lake(uri, storage_options_for(uri, settings))


def train_and_register(
    request: TrainRequest,
    *,
    settings: Settings | None = None,
    training: TrainSettings | None = None,
) -> dict[str, Any]:
    """Train, log and register one new version; see the module docstring. Returns the training result."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.registry.client import ensure_experiment, mlflow_client
    from mlops_pipeline.storage import open_lake
    from mlops_pipeline.training import recorder
    from mlops_pipeline.training.data import as_of_date
    from mlops_pipeline.training.reproducibility import git_commit, git_is_dirty, request_digest

    settings = settings or get_settings()
    training = training or settings.train
    config = steps.resolve(
        training, days=request.days, seed=request.seed, candidates=request.candidates,
        hyperparameters=request.hyperparameters,
    )  # fmt: skip
    client = mlflow_client(settings)  # fail fast when MLflow is down, before any work
    dataset = load_dataset_spec(settings.dataset)
    model_name = settings.registered_model_name
    metric = settings.registry.gate_metric

    with _step(request.label, "prepare"):
        prepared = steps.prepare(open_lake(settings), dataset, request.as_of, config.days, training)
    commit = git_commit(settings.home)
    digest = request_digest(
        {"window": prepared.window.to_dict(), "config": config.to_dict(), "dataset": dataset.name, "model": model_name,
         "commit": commit, "metric": metric,
         "training": training.model_dump(mode="json", exclude={"hyperparameters", "candidates", "days", "seed"})}
    )  # fmt: skip
    experiment_id = ensure_experiment(client, training.experiment_name or model_name)
    if request.dag_run_id:
        previous = recorder.find_finished(client, experiment_id, request.dag_run_id, digest)
        if previous is not None:
            log.info("run %s already trained version %s for these inputs; reusing it", previous["run_id"], previous["version"])
            return previous
        recorder.end_abandoned(client, experiment_id, request.dag_run_id, digest)

    outcomes = train_candidates(prepared, config, training, metric=metric, run=request.label)
    with _step(request.label, "select"):
        winner = steps.select(outcomes, metric)

    outcome = recorder.TrainingOutcome(
        model_name=model_name,
        dataset=dataset,
        as_of=as_of_date(request.as_of).isoformat(),
        reason=_reason(request),
        dag_run_id=request.dag_run_id,
        config=config,
        training=training,
        prepared=prepared,
        split_info=steps.describe_splits(prepared, dataset),
        outcomes=outcomes,
        winner=winner,
        selection_metric=metric,
        provenance=recorder.Provenance(commit, git_is_dirty(settings.home), digest),
        extra_tags=dict(request.extra_tags),
    )
    return recorder.record(outcome, client=client, experiment_id=experiment_id, registry=settings.registry)


def record_expected_shift(
    client: Any, name: str, version: str, champion_version: str, champion_proba: Any, candidate_proba: Any, settings: Settings
) -> float:
    """Tag ``version`` with the prediction shift (PSI) between it and the champion on the holdout,
    binned as the canary check bins: the canary's shift from stable is judged against it."""
    from mlops_pipeline.contracts.tags import EXPECTED_SHIFT
    from mlops_pipeline.deploy.canary import expected_shift

    bins = settings.deploy.psi_bins
    value = expected_shift(champion_proba, candidate_proba, bins)
    record = {"psi": round(value, 6), "against": champion_version, "bins": bins, "rows": len(candidate_proba)}
    client.set_model_version_tag(name, version, EXPECTED_SHIFT, json.dumps(record, sort_keys=True))
    log.info("v%s vs champion v%s on the holdout: prediction shift PSI %.4f (%d rows)", version, champion_version, value, len(candidate_proba))
    return value


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
    from mlops_pipeline.registry.gate import GateConfig, compare, decide, record_decision, recorded_decision
    from mlops_pipeline.training.features import FeatureError
    from mlops_pipeline.training.model_card import render_model_card

    settings = settings or get_settings()
    training = training or get_settings().train
    client = mlflow_client(settings)
    from mlops_pipeline.registry.models import load_model

    name, version, run_id = result["model_name"], str(result["version"]), result["run_id"]
    decision = recorded_decision(client.get_model_version(name, version))
    if decision is None:
        config = GateConfig.from_settings(settings.registry)
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
                # Before the decision (whose @challenger starts a deployment): what its canary should show.
                record_expected_shift(client, name, version, champion_version, champion_proba, candidate_proba, settings)
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
        client.set_tag(run_id, GATE_STATUS, decision.status)
        client.set_tag(run_id, GATE_REASON, decision.reason[:5000])
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
