"""The retrain rules: drift share, key features, performance floor and drop, minimum rows, cooldown, backfill."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from mlops_pipeline.data.lake import Lake
from mlops_pipeline.monitoring.decision import (
    DRIFT,
    NO_ACTION,
    PERFORMANCE,
    RETRAIN,
    Retrain,
    Thresholds,
    decide,
    decision_path,
    lake_retrains,
    latest_retrain,
)

END = datetime(2026, 1, 12, tzinfo=UTC)
FEATURES = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]


def findings(drifted=(), rows=2000, roc_auc=0.80, labelled=800, holdout=0.82, prediction=0.02):
    return {
        "status": "ok",
        "rows": rows,
        "drift": {
            "rows": rows,
            "features": {name: {"value": 0.3 if name in drifted else 0.02} for name in FEATURES},
            "prediction": {"value": prediction},
        },
        "quality": {"rows": labelled, "metrics": {"roc_auc": roc_auc}, "champion_holdout_roc_auc": holdout},
    }


def test_quiet_window_does_nothing_and_says_so():
    decision = decide(findings(drifted=["a"]), Thresholds(), window_end=END)
    assert decision.action == NO_ACTION and not decision.trigger and decision.reason is None
    assert decision.numbers["drift_share"] == pytest.approx(0.1) and decision.numbers["drifted_features"] == ["a"]
    assert decision.summary.startswith("no retrain")


def test_drift_share_at_the_threshold_triggers_drift():
    decision = decide(findings(drifted=["a", "b", "c"]), Thresholds(drift_share=0.3), window_end=END)
    assert (decision.action, decision.reason, decision.trigger) == (RETRAIN, DRIFT, True)
    assert "3 of 10 features drifted (share 0.30 >= 0.30): a, b, c" in decision.summary


def test_a_drifted_key_feature_alone_triggers_drift():
    decision = decide(findings(drifted=["j"]), Thresholds(key_features=("j", "zz")), window_end=END)
    assert decision.reason == DRIFT and "key feature(s) drifted: j 0.300" in decision.summary
    assert any("['zz'] are not features" in note for note in decision.notes)


def test_too_few_rows_give_no_drift_verdict():
    decision = decide(findings(drifted=FEATURES, rows=100), Thresholds(min_rows=500), window_end=END)
    assert decision.action == NO_ACTION and any("no drift verdict" in n for n in decision.notes)


@pytest.mark.parametrize(
    ("roc_auc", "holdout", "why"),
    [(0.65, None, "< floor 0.7000"), (0.76, 0.82, "< 0.7790 = champion holdout 0.8200 * (1 - 0.05)")],
)
def test_performance_below_the_floor_or_the_allowed_drop_triggers_performance(roc_auc, holdout, why):
    decision = decide(findings(roc_auc=roc_auc, holdout=holdout), Thresholds(), window_end=END)
    assert (decision.reason, decision.trigger) == (PERFORMANCE, True)
    assert why in decision.summary


def test_performance_needs_enough_labelled_rows():
    decision = decide(findings(roc_auc=0.5, labelled=50), Thresholds(min_labelled_rows=200), window_end=END)
    assert decision.action == NO_ACTION and any("no performance verdict" in n for n in decision.notes)


def test_drift_wins_over_performance_and_prediction_drift_alone_only_alerts():
    both = decide(findings(drifted=FEATURES, roc_auc=0.5), Thresholds(), window_end=END)
    assert both.reason == DRIFT and {s["kind"] for s in both.signals} == {DRIFT, PERFORMANCE, "prediction"} - {"prediction"}
    only_prediction = decide(findings(prediction=0.4), Thresholds(), window_end=END)
    assert only_prediction.action == NO_ACTION and [s["kind"] for s in only_prediction.signals] == ["prediction"]


@pytest.mark.parametrize(("days_before", "blocked"), [(0, True), (1, True), (2, True), (3, False), (10, False), (-1, False)])
def test_cooldown_blocks_a_second_retrain_within_k_days(days_before, blocked):
    last = Retrain(END - timedelta(days=days_before), DRIFT, "MLflow run r1")
    decision = decide(findings(drifted=FEATURES), Thresholds(cooldown_days=3), window_end=END, last_retrain=last)
    assert decision.action == RETRAIN
    assert decision.trigger is not blocked
    assert (decision.blocked_by == "cooldown") is blocked
    if blocked:
        assert "cooldown: the last retrain (drift, window ending" in decision.summary


def test_backfill_records_but_does_not_trigger_unless_configured():
    recorded = decide(findings(drifted=FEATURES), Thresholds(), window_end=END, run_type="backfill")
    assert (recorded.action, recorded.trigger, recorded.blocked_by) == (RETRAIN, False, "backfill")
    allowed = decide(findings(drifted=FEATURES), Thresholds(trigger_on_backfill=True), window_end=END, run_type="backfill")
    assert allowed.trigger
    scheduled = decide(findings(drifted=FEATURES), Thresholds(), window_end=END, run_type="scheduled")
    assert scheduled.trigger


def test_a_window_that_already_triggered_does_not_trigger_again():
    decision = decide(findings(drifted=FEATURES), Thresholds(), window_end=END, already_triggered="mlops_monitor__2026-01-11")
    assert decision.blocked_by == "already_triggered" and not decision.trigger


def test_no_champion_means_nothing_to_compare():
    decision = decide({"status": "no_champion", "message": "churn has no @champion"}, Thresholds(), window_end=END)
    assert decision.action == NO_ACTION and "no @champion" in decision.summary


def test_past_retrains_are_found_in_the_lake_decision_records(tmp_path):
    lake = Lake((tmp_path / "lake").as_uri())
    for ds, triggered in (("2026-01-05", True), ("2026-01-09", True), ("2026-01-10", False), ("2026-01-11", True)):
        end = datetime.fromisoformat(ds).replace(tzinfo=UTC) + timedelta(days=1)
        record = {"window": {"ds": ds, "end": end.isoformat()}, "reason": DRIFT, "triggered": triggered}
        lake.write_bytes_atomic(decision_path(lake, "reports/drift", ds), json.dumps(record).encode())
    found = lake_retrains(lake, "reports/drift", since=END - timedelta(days=3), exclude_ds="2026-01-11")
    assert [r.window_ds for r in found] == ["2026-01-09"]
    last = latest_retrain(found + [Retrain(END + timedelta(days=2), DRIFT, "later")], END)
    assert last is not None and last.window_ds == "2026-01-09"
    assert lake_retrains(Lake((tmp_path / "empty").as_uri()), "reports/drift", since=END) == []
