"""Monitored windows in a lake, written by the monitor's own decision functions (no Evidently run).

Each window's ``decision.json`` comes from :func:`~mlops_pipeline.monitoring.decision.decide` and
:func:`~mlops_pipeline.monitoring.decision.decision_record` on findings with the given drift share
and estimated ROC AUC; a realised ROC AUC is written back by
:func:`~mlops_pipeline.monitoring.decision.record_realised`, the way a later window does when the
labels arrive. So the view is tested on the files the monitor really writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FEATURES = [f"feature_{index}" for index in range(10)]


@dataclass(frozen=True)
class WindowNumbers:
    ds: str
    drifted: int  # of len(FEATURES): the drift share is drifted / 10
    estimated_roc_auc: float | None = None
    realised_roc_auc: float | None = None


def findings(numbers: WindowNumbers, rows: int = 1000) -> dict[str, Any]:
    features = {name: {"value": 0.4 if index < numbers.drifted else 0.02} for index, name in enumerate(FEATURES)}
    found: dict[str, Any] = {"status": "ok", "rows": rows, "drift": {"rows": rows, "features": features, "prediction": {"value": 0.03}}}
    if numbers.estimated_roc_auc is not None:
        found["estimate"] = {"rows": rows, "roc_auc": numbers.estimated_roc_auc, "days": [numbers.ds], "calibration": "isotonic"}
    return found


def write_windows(lake: Any, reports_prefix: str, windows: list[WindowNumbers], drift_share_threshold: float = 0.3) -> list[dict[str, Any]]:
    """Decide and record each window in order (oldest first); returns the final records."""
    from mlops_pipeline.ingest import Window
    from mlops_pipeline.monitoring.decision import (
        Thresholds,
        decide,
        decision_path,
        decision_record,
        read_decision,
        record_realised,
    )

    thresholds = Thresholds(drift_share=drift_share_threshold, min_rows=500, cooldown_days=0)
    previous = None
    for numbers in windows:
        start = datetime.fromisoformat(numbers.ds).replace(tzinfo=UTC)
        window = Window(start, start + timedelta(days=1))
        found = findings(numbers)
        decision = decide(found, thresholds, window_start=window.start, window_end=window.end, previous=previous)
        record = decision_record(
            decision, window, findings=found, run_type="scheduled", dag_run_id=f"scheduled__{numbers.ds}",
            already_triggered=None, previous=previous, decided_at=window.end,
        )  # fmt: skip
        lake.write_json_atomic(decision_path(lake, reports_prefix, numbers.ds), record)
        previous = record
    last = windows[-1].ds if windows else None
    for numbers in windows:
        if numbers.realised_roc_auc is not None:
            tracked = {"realised_roc_auc": numbers.realised_roc_auc, "rows": 400}
            written = record_realised(
                lake, reports_prefix, numbers.ds, tracked, champion_version=None, measured_by=str(last), measured_at=datetime.now(UTC)
            )
            assert written is not None, f"realised ROC AUC of {numbers.ds} not recorded"
    return [read_decision(lake, reports_prefix, numbers.ds) or {} for numbers in windows]
