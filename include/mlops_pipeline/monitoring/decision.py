"""Retrain or not: the rules, as a pure function of a window's findings, the thresholds and what the
earlier windows recorded (:func:`decide`); and the record of that decision beside the window's
report (:func:`decide_window`, ``decision.json``).

First, is there anything to judge?

* no ``@champion`` yet: nothing to compare (action ``none``, said in the summary);
* no prediction row in the window: action ``no_data`` (the model got no traffic, or its prediction
  log stopped: an incident);
* fewer than ``min_rows`` rows: action ``not_enough_data`` (no drift verdict). Labels of earlier
  days may still give a performance verdict, which then decides as below.

A retrain is asked for when

* **drift** (checked first): the window has at least ``min_rows`` rows and either the share of
  drifted features reaches ``drift_share_threshold`` or one of the ``key_features`` drifted; or
* **performance**: at least ``min_labelled_rows`` predictions of the champion have arrived labels
  and their ROC AUC is below ``roc_auc_floor`` or below the champion's own holdout ROC AUC
  times ``1 - max_relative_drop``; or
* **estimated_performance**: the ROC AUC estimated from the window's own served probabilities
  (:mod:`~mlops_pipeline.monitoring.estimate`, no labels needed) on at least ``min_rows`` rows is
  below the same floor or allowed drop. Only for a champion that serves calibrated probabilities
  (the estimate rests on them), and unless ``retrain_on_estimate`` is off. When the labels say
  so too, the reason is ``performance``: measured beats estimated.

The order is drift, performance, estimated_performance: the first that holds is the reason.
Prediction drift is reported and alerted on, but does not by itself ask for a retrain (the
features and the labels are what a new model would learn from). A requested retrain is then
*blocked*, and recorded as such, when

* this window already triggered one (a re-run): ``already_triggered``;
* drift only: fewer than ``min_post_change_days`` days of data exist since the change started:
  ``waiting_for_post_change_data``. The change starts with the first window of the current drift
  episode: when the previous window's record shows drift, this window inherits its
  ``change_start``, otherwise this window starts the episode. A retrain on the first drifted day
  would see one post-change day, most of it taken by its holdout, and fail the champion gate;
* the last retrain's window ended less than ``cooldown_days`` before this one's (time is data
  time, so backfills behave like the nights they replay): ``cooldown``;
* the run is a backfill and backfill runs may not trigger (``trigger_on_backfill``, or the run's
  ``retrain_on_backfill`` Param): ``backfill``.

Because the episode and the cooldown are read from earlier windows' records, windows must be
decided in order: the monitor DAG runs one window at a time.

The record (``decision.json``) says which event days each performance number covers:
``estimated_roc_auc`` / ``estimated_accuracy`` are the window's own rows (``estimated_days``);
``labelled`` is what this run measured on the days whose labels have arrived (realised numbers and
the estimate on the same rows); ``realised_roc_auc`` / ``realised_accuracy`` are the window's own
rows once their labels arrive: the later window that measures them writes them back into this
record (``realised.measured_by``), so every window's record ends up with its estimate next to its
realised performance.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_pipeline.config import MonitorSettings, Settings
    from mlops_pipeline.data.lake import Lake
    from mlops_pipeline.ingest import Window

log = logging.getLogger(__name__)

# actions
RETRAIN = "retrain"
NO_ACTION = "none"
NO_DATA = "no_data"
NOT_ENOUGH_DATA = "not_enough_data"
# reasons
DRIFT = "drift"
PERFORMANCE = "performance"
ESTIMATED_PERFORMANCE = "estimated_performance"
# what blocks a requested retrain
ALREADY_TRIGGERED = "already_triggered"
WAITING_FOR_POST_CHANGE_DATA = "waiting_for_post_change_data"
COOLDOWN = "cooldown"
BACKFILL = "backfill"
# data_status: whether the window could be judged
DATA_OK = "ok"
NO_CHAMPION = "no_champion"
# where the backfill rule came from
RULE_SETTING = "setting trigger_on_backfill"
RULE_VARIABLE = "Airflow Variable mlops_monitor_trigger_on_backfill"
RULE_PARAM = "run Param retrain_on_backfill"

DECISION_FILE = "decision.json"


@dataclass(frozen=True)
class Thresholds:
    feature_drift: float = 0.1
    drift_share: float = 0.3
    key_features: tuple[str, ...] = ()
    min_rows: int = 500
    roc_auc_floor: float = 0.70
    max_relative_drop: float = 0.05
    min_labelled_rows: int = 200
    retrain_on_estimate: bool = True
    cooldown_days: int = 3
    min_post_change_days: int = 3
    trigger_on_backfill: bool = False

    @classmethod
    def from_settings(cls, settings: MonitorSettings) -> Thresholds:
        return cls(
            feature_drift=settings.feature_drift_threshold,
            drift_share=settings.drift_share_threshold,
            key_features=tuple(settings.key_features),
            min_rows=settings.min_rows,
            roc_auc_floor=settings.roc_auc_floor,
            max_relative_drop=settings.max_relative_drop,
            min_labelled_rows=settings.min_labelled_rows,
            retrain_on_estimate=settings.retrain_on_estimate,
            cooldown_days=settings.cooldown_days,
            min_post_change_days=settings.min_post_change_days,
            trigger_on_backfill=settings.trigger_on_backfill,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key_features": list(self.key_features)}


@dataclass(frozen=True)
class Retrain:
    """A retrain that happened: the end of the window that asked for it (data time), and where it is recorded."""

    window_end: datetime
    reason: str
    source: str
    window_ds: str | None = None


@dataclass(frozen=True)
class Decision:
    action: str  # retrain | none | no_data | not_enough_data
    reason: str | None  # drift | performance | estimated_performance: why a retrain is (or would be) asked for
    trigger: bool  # whether this run triggers the training DAG
    blocked_by: str | None  # already_triggered | waiting_for_post_change_data | cooldown | backfill
    summary: str
    data_status: str = DATA_OK  # ok | no_data | not_enough_data | no_champion
    rows: int = 0  # prediction rows in the window
    min_rows: int = 0
    drift_detected: bool = False  # a drift signal (share or key feature), whatever the decision
    change_start: str | None = None  # ISO day the current drift episode started (None without drift)
    post_change_days: int | None = None  # days from change_start to this window's end
    min_post_change_days: int = 0
    backfill_rule: dict[str, Any] | None = None  # for backfill runs: may it trigger, and which rule said so
    signals: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    last_retrain: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shows_drift(record: Mapping[str, Any] | None) -> bool:
    """Whether a window's decision record found drift (records written before ``drift_detected`` existed
    say so through their reason or signals)."""
    if not record:
        return False
    if "drift_detected" in record:
        return bool(record["drift_detected"])
    return record.get("reason") == DRIFT or any(s.get("kind") == DRIFT for s in record.get("signals") or [])


def change_start_for(previous: Mapping[str, Any] | None, window_start: datetime) -> date:
    """The first day of the current drift episode, for a window that shows drift: the previous window's
    ``change_start`` when that window showed drift too, else this window's first day."""
    if previous is not None and shows_drift(previous):
        inherited = previous.get("change_start") or (previous.get("window") or {}).get("ds")
        if inherited:
            return date.fromisoformat(str(inherited)[:10])
    return window_start.astimezone(UTC).date()


def post_change_days(change_start: date, window_end: datetime) -> int:
    """Whole days of data from the change's first day to the window's end (the window included)."""
    end = window_end.astimezone(UTC)
    last_day = (end - timedelta(microseconds=1)).date()
    return (last_day - change_start).days + 1


def decide(
    findings: Mapping[str, Any],
    thresholds: Thresholds,
    *,
    window_end: datetime,
    window_start: datetime | None = None,
    run_type: str | None = None,
    last_retrain: Retrain | None = None,
    already_triggered: str | None = None,
    previous: Mapping[str, Any] | None = None,
    backfill_rule_source: str = RULE_SETTING,
) -> Decision:
    """The decision for a window from the monitor's findings (the dict :func:`run_monitor` returns).

    ``previous`` is the previous window's decision record (None when there is none); ``window_start``
    defaults to one day before ``window_end``."""
    start = window_start or window_end - timedelta(days=1)
    common: dict[str, Any] = {
        "min_rows": thresholds.min_rows,
        "min_post_change_days": thresholds.min_post_change_days,
        "thresholds": thresholds.to_dict(),
        "backfill_rule": _backfill_rule(run_type, thresholds, backfill_rule_source),
    }
    if findings.get("status") == NO_CHAMPION:
        return Decision(
            action=NO_ACTION, reason=None, trigger=False, blocked_by=None,
            summary=f"nothing to compare: {findings.get('message') or 'no @champion'}",
            data_status=NO_CHAMPION, numbers={"rows": 0}, **common,
        )

    signals: list[dict[str, str]] = []
    notes: list[str] = []
    numbers: dict[str, Any] = {"rows": findings.get("rows", 0)}
    _judge_drift(findings.get("drift") or {}, thresholds, signals, notes, numbers)
    _judge_performance(findings.get("quality") or {}, thresholds, signals, notes, numbers)
    _judge_estimate(findings.get("estimate") or {}, findings.get("quality") or {}, thresholds, signals, notes, numbers)
    rows = int(numbers["rows"] or 0)
    data_status, data_text = _data_status(rows, thresholds.min_rows)

    kinds = {s["kind"] for s in signals}
    drift_detected = DRIFT in kinds
    change: dict[str, Any] = {"drift_detected": drift_detected, "change_start": None, "post_change_days": None}
    if drift_detected:
        first_day = change_start_for(previous, start)
        change.update(change_start=first_day.isoformat(), post_change_days=post_change_days(first_day, window_end))
    common.update(change, data_status=data_status, rows=rows, signals=signals, notes=notes, numbers=numbers)
    if last_retrain is not None:
        common["last_retrain"] = {**asdict(last_retrain), "window_end": last_retrain.window_end.isoformat()}

    reason = next((kind for kind in (DRIFT, PERFORMANCE, ESTIMATED_PERFORMANCE) if kind in kinds), None)
    if reason is None:
        if data_status != DATA_OK:
            alerts = "; ".join(s["message"] for s in signals)
            return Decision(
                action=data_status, reason=None, trigger=False, blocked_by=None,
                summary=data_text + (f"; also: {alerts}" if alerts else ""), **common,
            )
        findings_text = "; ".join(s["message"] for s in signals) or "no drift and no performance loss"
        return Decision(
            action=NO_ACTION, reason=None, trigger=False, blocked_by=None, summary=f"no retrain: {findings_text}", **common
        )

    why = "; ".join(s["message"] for s in signals if s["kind"] == reason)
    blocked_by, blocked_text = None, ""
    if already_triggered:
        blocked_by, blocked_text = ALREADY_TRIGGERED, f"this window already triggered {already_triggered}"
    elif reason == DRIFT and change["post_change_days"] < thresholds.min_post_change_days:
        blocked_by = WAITING_FOR_POST_CHANGE_DATA
        blocked_text = (
            f"drift since {change['change_start']}: {change['post_change_days']} of {thresholds.min_post_change_days} "
            f"post-change days; retrain when {thresholds.min_post_change_days} days exist"
        )
    elif last_retrain is not None and _within_cooldown(last_retrain, window_end, thresholds.cooldown_days):
        blocked_by = COOLDOWN
        blocked_text = (
            f"cooldown: the last retrain ({last_retrain.reason}, window ending {last_retrain.window_end.date()}, "
            f"{last_retrain.source}) is less than {thresholds.cooldown_days} day(s) before this window's end"
        )
    elif run_type == "backfill" and not thresholds.trigger_on_backfill:
        blocked_by = BACKFILL
        blocked_text = f"backfill runs record decisions without retraining (trigger_on_backfill is off: {backfill_rule_source})"
    summary = f"retrain ({reason}): {why}"
    if blocked_by:
        summary += f"; not triggered: {blocked_text}"
    elif reason == DRIFT:
        summary += f"; drift since {change['change_start']}: {change['post_change_days']} post-change day(s)"
    if blocked_by is None and run_type == "backfill":
        summary += f"; backfill run allowed to trigger by the {backfill_rule_source}"
    if data_status != DATA_OK:
        summary += f"; {data_text}"
    return Decision(action=RETRAIN, reason=reason, trigger=blocked_by is None, blocked_by=blocked_by, summary=summary, **common)


def _data_status(rows: int, min_rows: int) -> tuple[str, str]:
    if rows == 0:
        return NO_DATA, (
            f"no data: 0 prediction rows in the window (min_rows {min_rows}); "
            "the model got no traffic or its prediction log stopped"
        )
    if rows < min_rows:
        return NOT_ENOUGH_DATA, (
            f"not enough data: {rows} prediction row(s) in the window, fewer than min_rows {min_rows}: no drift verdict"
        )
    return DATA_OK, ""


def _backfill_rule(run_type: str | None, thresholds: Thresholds, source: str) -> dict[str, Any] | None:
    if run_type != "backfill":
        return None
    return {"trigger_on_backfill": thresholds.trigger_on_backfill, "source": source}


def _judge_drift(
    drift: Mapping[str, Any], thresholds: Thresholds, signals: list[dict[str, str]], notes: list[str], numbers: dict[str, Any]
) -> None:
    rows = int(drift.get("rows") or 0)
    numbers["rows"] = rows
    features = drift.get("features") or {}
    judged = {name: f["value"] for name, f in features.items() if f.get("value") is not None}
    drifted = sorted(name for name, value in judged.items() if value >= thresholds.feature_drift)
    share = len(drifted) / len(judged) if judged else None
    numbers.update({"drift_share": share, "drifted_features": drifted, "features_judged": len(judged)})
    prediction = drift.get("prediction") or {}
    numbers["prediction_drift"] = prediction.get("value")
    if rows < thresholds.min_rows:
        notes.append(f"{rows} window row(s) < min_rows {thresholds.min_rows}: no drift verdict")
        return
    if share is not None and share >= thresholds.drift_share:
        signals.append(
            {
                "kind": DRIFT,
                "message": f"{len(drifted)} of {len(judged)} features drifted (share {share:.2f} >= "
                f"{thresholds.drift_share:.2f}): {', '.join(drifted)}",
            }
        )
    unknown = [name for name in thresholds.key_features if name not in features]
    if unknown:
        notes.append(f"key feature(s) {unknown} are not features of this dataset")
    key_drifted = [name for name in thresholds.key_features if name in drifted]
    if key_drifted:
        values = ", ".join(f"{name} {judged[name]:.3f}" for name in key_drifted)
        signals.append({"kind": DRIFT, "message": f"key feature(s) drifted: {values} (>= {thresholds.feature_drift:g})"})
    value = prediction.get("value")
    if value is not None and value >= thresholds.feature_drift:
        signals.append({"kind": "prediction", "message": f"prediction drift {value:.3f} >= {thresholds.feature_drift:g}"})


def _judge_performance(
    quality: Mapping[str, Any], thresholds: Thresholds, signals: list[dict[str, str]], notes: list[str], numbers: dict[str, Any]
) -> None:
    metrics = quality.get("metrics") or {}
    rows = int(quality.get("rows") or 0)
    roc_auc = metrics.get("roc_auc")
    champion = quality.get("champion_holdout_roc_auc")
    numbers.update({"labelled_rows": rows, "roc_auc": roc_auc, "champion_holdout_roc_auc": champion})
    if rows < thresholds.min_labelled_rows or roc_auc is None:
        notes.append(f"{rows} labelled row(s) (min_labelled_rows {thresholds.min_labelled_rows}): no performance verdict")
        return
    if roc_auc < thresholds.roc_auc_floor:
        signals.append(
            {"kind": PERFORMANCE, "message": f"ROC AUC {roc_auc:.4f} on {rows} labelled rows < floor {thresholds.roc_auc_floor:.4f}"}
        )
    if champion is not None:
        required = champion * (1.0 - thresholds.max_relative_drop)
        numbers["roc_auc_required"] = required
        if roc_auc < required:
            signals.append(
                {
                    "kind": PERFORMANCE,
                    "message": f"ROC AUC {roc_auc:.4f} on {rows} labelled rows < {required:.4f} = champion holdout "
                    f"{champion:.4f} * (1 - {thresholds.max_relative_drop:g})",
                }
            )


def _judge_estimate(
    estimate: Mapping[str, Any],
    quality: Mapping[str, Any],
    thresholds: Thresholds,
    signals: list[dict[str, str]],
    notes: list[str],
    numbers: dict[str, Any],
) -> None:
    rows = int(estimate.get("rows") or 0)
    roc_auc = estimate.get("roc_auc")
    champion = estimate.get("champion_holdout_roc_auc", quality.get("champion_holdout_roc_auc"))
    days = ", ".join(estimate.get("days") or [])
    numbers.update(
        {
            "estimated_rows": rows,
            "estimated_roc_auc": roc_auc,
            "estimated_accuracy": estimate.get("accuracy"),
            "estimated_days": list(estimate.get("days") or []),
        }
    )
    if not estimate:
        return
    if rows < thresholds.min_rows or roc_auc is None:
        notes.append(f"{rows} window row(s) for the estimate (min_rows {thresholds.min_rows}): no estimated performance verdict")
        return
    if not estimate.get("calibration"):
        notes.append("the champion serves uncalibrated scores: its estimated performance is reported, not judged")
        return
    if not thresholds.retrain_on_estimate:
        notes.append("retrain_on_estimate is off: the estimated performance is reported, not judged")
        return
    where = f"estimated ROC AUC {roc_auc:.4f} on {rows} unlabelled rows of {days}"
    if roc_auc < thresholds.roc_auc_floor:
        signals.append({"kind": ESTIMATED_PERFORMANCE, "message": f"{where} < floor {thresholds.roc_auc_floor:.4f}"})
    if champion is not None:
        required = champion * (1.0 - thresholds.max_relative_drop)
        numbers["roc_auc_required"] = required
        if roc_auc < required:
            signals.append(
                {
                    "kind": ESTIMATED_PERFORMANCE,
                    "message": f"{where} < {required:.4f} = champion holdout {champion:.4f} * (1 - {thresholds.max_relative_drop:g})",
                }
            )


def _within_cooldown(last: Retrain, window_end: datetime, cooldown_days: int) -> bool:
    return cooldown_days > 0 and last.window_end <= window_end and window_end - last.window_end < timedelta(days=cooldown_days)


# --- where past retrains are recorded -------------------------------------------------------------


def decision_path(lake: Lake, reports_prefix: str, ds: str) -> str:
    return lake.path(reports_prefix, f"ds={ds}", DECISION_FILE)


def read_decision(lake: Lake, reports_prefix: str, ds: str) -> dict[str, Any] | None:
    try:
        return json.loads(lake.read_bytes(decision_path(lake, reports_prefix, ds)))
    except FileNotFoundError:
        return None


def lake_retrains(lake: Lake, reports_prefix: str, *, since: datetime, exclude_ds: str | None = None) -> list[Retrain]:
    """Retrains this monitor triggered (decision records marked ``triggered``) for windows ending since ``since``."""
    base = lake.path(reports_prefix)
    if not lake.exists(base):
        return []
    found = []
    for entry in lake.fs.ls(base, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith("ds=") or name[3:] == exclude_ds or name[3:] < (since - timedelta(days=1)).date().isoformat():
            continue
        record = read_decision(lake, reports_prefix, name[3:])
        if not record or not record.get("triggered"):
            continue
        end = _parse_time((record.get("window") or {}).get("end"))
        if end is not None:
            found.append(Retrain(end, str(record.get("reason")), f"{lake.uri_of(reports_prefix, name, DECISION_FILE)}", name[3:]))
    return found


def mlflow_retrains(client: MlflowClient, experiment_name: str, reasons: Sequence[str], *, exclude_ds: str | None = None) -> list[Retrain]:
    """Training runs whose ``trigger_reason`` is one of ``reasons``, dated by the window that asked for them."""
    if not reasons:
        return []
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    runs: list[Any] = []
    for reason in reasons:  # MLflow filters tags by equality only
        quoted = reason.replace("'", "")
        runs += client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.trigger_reason = '{quoted}'",
            max_results=100, order_by=["attributes.start_time DESC"],
        )
    found = []
    for run in runs:
        tags = run.data.tags
        window = _json_object(tags.get("trigger_window"))
        if exclude_ds is not None and window.get("ds") == exclude_ds:
            continue
        end = _parse_time(window.get("end"))
        if end is None and run.data.params.get("window.as_of"):
            end = _parse_time(run.data.params["window.as_of"])
        if end is None:
            end = datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC)
        found.append(Retrain(end, tags.get("trigger_reason", "?"), f"MLflow run {run.info.run_id}", window.get("ds")))
    return found


def latest_retrain(retrains: Sequence[Retrain], window_end: datetime) -> Retrain | None:
    """The most recent retrain whose window ended at or before ``window_end``."""
    earlier = [r for r in retrains if r.window_end <= window_end]
    return max(earlier, key=lambda r: r.window_end) if earlier else None


def past_retrains(
    lake: Lake, monitor: MonitorSettings, window: Window, *, client: MlflowClient | None, experiment: str | None
) -> list[Retrain]:
    """Retrains that count for the cooldown of ``window``: those this monitor recorded in the lake and,
    with a client, the training runs of ``experiment`` started for a drift or performance reason."""
    if monitor.cooldown_days <= 0:
        return []
    since = window.end - timedelta(days=monitor.cooldown_days)
    retrains = lake_retrains(lake, monitor.reports_prefix, since=since, exclude_ds=window.ds)
    if client is not None and experiment:
        retrains += mlflow_retrains(client, experiment, monitor.cooldown_reasons, exclude_ds=window.ds)
    return retrains


# --- a window's decision record -------------------------------------------------------------------


def previous_window_ds(window: Window) -> str:
    """The ``ds`` of the window just before ``window`` (of the same length)."""
    return (window.start - (window.end - window.start)).astimezone(UTC).date().isoformat()


def decision_record(
    decision: Decision,
    window: Window,
    *,
    findings: Mapping[str, Any],
    run_type: str | None,
    dag_run_id: str | None,
    already_triggered: str | None,
    previous: Mapping[str, Any] | None,
    decided_at: datetime,
    previous_realised: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``decision.json``: the decision, the window, the performance numbers with the event days each
    covers, and the conf a triggered ``mlops_train`` run gets. ``previous_realised`` is the realised
    block an earlier record of this window held (labels do not un-arrive on a re-run)."""
    window_info = {"ds": window.ds, "start": window.start.isoformat(), "end": window.end.isoformat()}
    conf = None
    if decision.trigger:
        conf = {
            "reason": decision.reason,
            "report": findings.get("report"),
            "window": window_info,
            "change_start": decision.change_start,
        }
    estimate = findings.get("estimate") or {}
    return {
        **decision.to_dict(),
        "window": window_info,
        "report": findings.get("report"),
        "champion_version": (findings.get("reference") or {}).get("version"),
        # This window's rows: estimated now, realised once their labels arrive (written back later).
        "estimated_roc_auc": estimate.get("roc_auc"),
        "estimated_accuracy": estimate.get("accuracy"),
        "estimated_days": list(estimate.get("days") or []),
        "estimate": _estimate_summary(estimate) if estimate else None,
        **realised_fields(previous_realised),
        # The days whose labels have arrived: realised numbers and the estimate on the same rows.
        "labelled": labelled_summary(findings.get("quality") or {}),
        # What ingestion's watch suite noted on the window's batches: shown, not used to decide.
        "data_watch": findings.get("data_watch"),
        # Whether the previous window's record was there to read: the drift episode depends on it.
        "previous_window": {"ds": previous_window_ds(window), "recorded": previous is not None},
        "run_type": run_type,
        "dag_run_id": dag_run_id,
        "decided_at": decided_at.isoformat(timespec="seconds"),
        "conf": conf,
        "triggered": bool(already_triggered),
        "train_run_id": already_triggered,
    }


def _estimate_summary(estimate: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "days", "rows", "roc_auc", "roc_auc_error_bound", "accuracy", "precision", "recall", "f1", "threshold",
        "expected_positive_rate", "predicted_positive_rate", "calibration", "champion_version", "versions", "bins", "note",
    )  # fmt: skip
    return {key: estimate[key] for key in keys if key in estimate}


def labelled_summary(quality: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a run measured on the labelled days: realised and estimated on the same rows, per day too."""
    tracked = quality.get("estimate")
    if not tracked:
        return None
    return {**tracked, "by_day": dict(quality.get("by_day") or {})}


def realised_fields(realised: Mapping[str, Any] | None) -> dict[str, Any]:
    """The record's fields for the realised performance of the window's own rows (None before labels)."""
    realised = dict(realised) if realised else None
    return {
        "realised_roc_auc": realised.get("realised_roc_auc") if realised else None,
        "realised_accuracy": realised.get("realised_accuracy") if realised else None,
        "realised_days": list(realised.get("days") or []) if realised else [],
        "realised": realised,
    }


def record_realised(
    lake: Lake,
    reports_prefix: str,
    ds: str,
    tracked: Mapping[str, Any],
    *,
    champion_version: str | None,
    measured_by: str,
    measured_at: datetime,
) -> dict[str, Any] | None:
    """Write the realised performance of day ``ds``'s rows (measured once their labels arrived, on the
    rows ``champion_version`` served) into the record of the one-day window ``ds``, beside its
    estimate; returns the updated record. None, and nothing written, when there is no such record,
    its window is not that day, or another version was champion then (its estimate was of other
    predictions)."""
    record = read_decision(lake, reports_prefix, ds)
    window = (record or {}).get("window") or {}
    start, end = _parse_time(window.get("start")), _parse_time(window.get("end"))
    if record is None or start is None or end is None or end - start != timedelta(days=1) or start.date().isoformat() != ds:
        return None
    if champion_version is not None and record.get("champion_version") not in (None, champion_version):
        return None
    realised = {
        "days": [ds],
        **tracked,
        "measured_by": measured_by,
        "measured_at": measured_at.isoformat(timespec="seconds"),
    }
    updated = {**record, **realised_fields(realised)}
    lake.write_json_atomic(decision_path(lake, reports_prefix, ds), updated)
    return updated


def decide_window(
    findings: Mapping[str, Any],
    window: Window,
    *,
    monitor: MonitorSettings,
    settings: Settings,
    run_type: str | None = None,
    dag_run_id: str | None = None,
    backfill_rule_source: str = RULE_SETTING,
    lake: Lake | None = None,
    client: MlflowClient | None = None,
) -> dict[str, Any]:
    """Decide ``window`` and record it; returns the record (see :func:`decision_record`).

    Reads this window's own earlier record (a re-run keeps the retrain it triggered), the previous
    window's record (the drift episode) and the past retrains (the cooldown); writes
    ``decision.json`` beside the window's report and tags the window's MLflow monitoring run."""
    from mlops_pipeline.registry.client import mlflow_client
    from mlops_pipeline.storage import open_lake

    lake = lake or open_lake(settings)
    prefix = monitor.reports_prefix
    own = read_decision(lake, prefix, window.ds) or {}
    already = own.get("train_run_id") if own.get("triggered") else None
    previous = read_decision(lake, prefix, previous_window_ds(window))
    uses_mlflow = findings.get("status") != NO_CHAMPION and (monitor.cooldown_days > 0 or findings.get("mlflow_run_id"))
    if uses_mlflow and client is None:
        client = mlflow_client(settings)
    retrains = past_retrains(
        lake, monitor, window, client=client if findings.get("status") != NO_CHAMPION else None,
        experiment=settings.training_experiment,
    )
    decision = decide(
        findings,
        Thresholds.from_settings(monitor),
        window_start=window.start,
        window_end=window.end,
        run_type=run_type,
        last_retrain=latest_retrain(retrains, window.end),
        already_triggered=already,
        previous=previous,
        backfill_rule_source=backfill_rule_source,
    )
    decided_at = datetime.now(UTC)
    by_day = dict((findings.get("quality") or {}).get("by_day") or {})
    own_realised = own.get("realised")
    if window.ds in by_day:  # labels without delay: the window measures its own rows
        own_realised = {"days": [window.ds], **by_day.pop(window.ds), "measured_by": window.ds,
                        "measured_at": decided_at.isoformat(timespec="seconds")}  # fmt: skip
    record = decision_record(
        decision, window, findings=findings, run_type=run_type, dag_run_id=dag_run_id,
        already_triggered=already, previous=previous, decided_at=decided_at, previous_realised=own_realised,
    )
    lake.write_json_atomic(decision_path(lake, prefix, window.ds), record)
    measured_version = (findings.get("quality") or {}).get("champion_version")
    for ds, tracked in by_day.items():
        updated = record_realised(
            lake, prefix, ds, tracked, champion_version=measured_version, measured_by=window.ds, measured_at=decided_at
        )
        if updated is not None:
            log.info("decision record of %s: realised performance of its rows added (measured by %s)", ds, window.ds)
    if findings.get("mlflow_run_id") and client is not None:
        from mlops_pipeline.monitoring.tracking import tag_decision

        tag_decision(client, str(findings["mlflow_run_id"]), record)
    return record


def record_triggered(lake: Lake, reports_prefix: str, record: Mapping[str, Any], train_run_id: str) -> dict[str, Any]:
    """The window's record with the training run its trigger created, written back to ``decision.json``."""
    updated = {
        **record,
        "triggered": True,
        "train_run_id": train_run_id,
        "triggered_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    lake.write_json_atomic(decision_path(lake, reports_prefix, str(updated["window"]["ds"])), updated)
    return updated


def _json_object(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
