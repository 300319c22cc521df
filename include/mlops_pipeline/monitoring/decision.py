"""Retrain or not: the rules, as a pure function of a window's findings and the thresholds.

A retrain is asked for when

* **drift** (checked first): the window has at least ``min_rows`` rows and either the share of
  drifted features reaches ``drift_share_threshold`` or one of the ``key_features`` drifted; or
* **performance**: at least ``min_labelled_rows`` predictions of the champion have arrived labels
  and their ROC AUC is below ``roc_auc_floor`` or below the champion's own holdout ROC AUC
  times ``1 - max_relative_drop``.

Prediction drift is reported and alerted on, but does not by itself ask for a retrain (the
features and the labels are what a new model would learn from). A requested retrain is then
*blocked*, and recorded as such, when this window already triggered one (a re-run), when the
last retrain's window ended less than ``cooldown_days`` before this one's (cooldown; time is data
time, so backfills behave like the nights they replay), or when the run is a backfill and
``trigger_on_backfill`` is off.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_pipeline.config import MonitorSettings
    from mlops_pipeline.data.lake import Lake

log = logging.getLogger(__name__)

RETRAIN = "retrain"
NO_ACTION = "none"
DRIFT = "drift"
PERFORMANCE = "performance"
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
    cooldown_days: int = 3
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
            cooldown_days=settings.cooldown_days,
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
    action: str  # retrain | none
    reason: str | None  # drift | performance: why a retrain is (or would be) asked for
    trigger: bool  # whether this run triggers the training DAG
    blocked_by: str | None  # already_triggered | cooldown | backfill
    summary: str
    signals: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    last_retrain: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    findings: Mapping[str, Any],
    thresholds: Thresholds,
    *,
    window_end: datetime,
    run_type: str | None = None,
    last_retrain: Retrain | None = None,
    already_triggered: str | None = None,
) -> Decision:
    """The decision for a window from the monitor's findings (the dict :func:`run_monitor` returns)."""
    signals: list[dict[str, str]] = []
    notes: list[str] = []
    numbers: dict[str, Any] = {"rows": findings.get("rows", 0)}

    if findings.get("status") == "no_champion":
        return Decision(
            action=NO_ACTION, reason=None, trigger=False, blocked_by=None,
            summary=f"nothing to compare: {findings.get('message') or 'no @champion'}",
            numbers=numbers, thresholds=thresholds.to_dict(),
        )

    drift = findings.get("drift") or {}
    _judge_drift(drift, thresholds, signals, notes, numbers)
    _judge_performance(findings.get("quality") or {}, thresholds, signals, notes, numbers)

    kinds = {s["kind"] for s in signals}
    reason = DRIFT if DRIFT in kinds else PERFORMANCE if PERFORMANCE in kinds else None
    last = None
    if last_retrain is not None:
        last = {**asdict(last_retrain), "window_end": last_retrain.window_end.isoformat()}
    if reason is None:
        findings_text = "; ".join(s["message"] for s in signals) or "no drift and no performance loss"
        return Decision(
            action=NO_ACTION, reason=None, trigger=False, blocked_by=None, summary=f"no retrain: {findings_text}",
            signals=signals, notes=notes, numbers=numbers, thresholds=thresholds.to_dict(), last_retrain=last,
        )

    why = "; ".join(s["message"] for s in signals if s["kind"] == reason)
    blocked_by, blocked_text = None, ""
    if already_triggered:
        blocked_by, blocked_text = "already_triggered", f"this window already triggered {already_triggered}"
    elif last_retrain is not None and _within_cooldown(last_retrain, window_end, thresholds.cooldown_days):
        blocked_by = "cooldown"
        blocked_text = (
            f"cooldown: the last retrain ({last_retrain.reason}, window ending {last_retrain.window_end.date()}, "
            f"{last_retrain.source}) is less than {thresholds.cooldown_days} day(s) before this window's end"
        )
    elif run_type == "backfill" and not thresholds.trigger_on_backfill:
        blocked_by, blocked_text = "backfill", "backfill runs record decisions without retraining (trigger_on_backfill is off)"
    summary = f"retrain ({reason}): {why}"
    if blocked_by:
        summary += f"; not triggered: {blocked_text}"
    return Decision(
        action=RETRAIN, reason=reason, trigger=blocked_by is None, blocked_by=blocked_by, summary=summary,
        signals=signals, notes=notes, numbers=numbers, thresholds=thresholds.to_dict(), last_retrain=last,
    )


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
