"""The retrain rules: drift share, key features, performance floor and drop (realised and estimated),
minimum rows, missing data, post-change data, cooldown, backfill; and the decision record written
beside the report, with the estimated and realised performance of each window's rows."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from mlops_pipeline.data.lake import Lake
from mlops_pipeline.ingest import Window
from mlops_pipeline.monitoring.decision import (
    DRIFT,
    ESTIMATED_PERFORMANCE,
    NO_ACTION,
    NO_DATA,
    NOT_ENOUGH_DATA,
    PERFORMANCE,
    RETRAIN,
    RULE_PARAM,
    WAITING_FOR_POST_CHANGE_DATA,
    Retrain,
    Thresholds,
    change_start_for,
    decide,
    decision_path,
    lake_retrains,
    latest_retrain,
    post_change_days,
    previous_window_ds,
)

END = datetime(2026, 1, 12, tzinfo=UTC)
START = END - timedelta(days=1)
# Tests of the other rules let a drift retrain trigger on its first day.
AT_ONCE = {"min_post_change_days": 1}
FEATURES = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]


def findings(drifted=(), rows=2000, roc_auc=0.80, labelled=800, holdout=0.82, prediction=0.02, estimated=None, calibration="isotonic"):
    found = {
        "status": "ok",
        "rows": rows,
        "drift": {
            "rows": rows,
            "features": {name: {"value": 0.3 if name in drifted else 0.02} for name in FEATURES},
            "prediction": {"value": prediction},
        },
        "quality": {"rows": labelled, "metrics": {"roc_auc": roc_auc}, "champion_holdout_roc_auc": holdout},
    }
    if estimated is not None:
        found["estimate"] = estimate(estimated, rows=rows, holdout=holdout, calibration=calibration)
    return found


def estimate(roc_auc, *, rows=2000, holdout=0.82, calibration="isotonic", day="2026-01-11"):
    """What run_monitor reports as the window's estimated performance."""
    return {
        "days": [day], "rows": rows, "roc_auc": roc_auc, "roc_auc_error_bound": 1e-6, "accuracy": 0.81, "threshold": 0.4,
        "calibration": calibration, "champion_holdout_roc_auc": holdout, "champion_version": "3", "versions": "champion",
    }  # fmt: skip


def test_quiet_window_does_nothing_and_says_so():
    decision = decide(findings(drifted=["a"]), Thresholds(), window_end=END)
    assert decision.action == NO_ACTION and not decision.trigger and decision.reason is None
    assert decision.numbers["drift_share"] == pytest.approx(0.1) and decision.numbers["drifted_features"] == ["a"]
    assert decision.summary.startswith("no retrain")


def test_drift_share_at_the_threshold_triggers_drift():
    decision = decide(findings(drifted=["a", "b", "c"]), Thresholds(drift_share=0.3, **AT_ONCE), window_end=END)
    assert (decision.action, decision.reason, decision.trigger) == (RETRAIN, DRIFT, True)
    assert "3 of 10 features drifted (share 0.30 >= 0.30): a, b, c" in decision.summary


def test_a_drifted_key_feature_alone_triggers_drift():
    decision = decide(findings(drifted=["j"]), Thresholds(key_features=("j", "zz")), window_end=END)
    assert decision.reason == DRIFT and "key feature(s) drifted: j 0.300" in decision.summary
    assert any("['zz'] are not features" in note for note in decision.notes)


def test_too_few_rows_give_no_drift_verdict_and_say_not_enough_data():
    decision = decide(findings(drifted=FEATURES, rows=100), Thresholds(min_rows=500), window_end=END)
    assert (decision.action, decision.data_status, decision.trigger) == (NOT_ENOUGH_DATA, NOT_ENOUGH_DATA, False)
    assert (decision.rows, decision.min_rows) == (100, 500)
    assert decision.summary.startswith("not enough data: 100 prediction row(s) in the window, fewer than min_rows 500")
    assert not decision.drift_detected and decision.change_start is None
    assert any("no drift verdict" in n for n in decision.notes)


def test_a_window_without_rows_is_no_data_not_a_quiet_window():
    decision = decide(findings(rows=0, labelled=0), Thresholds(min_rows=500), window_end=END)
    assert (decision.action, decision.data_status, decision.rows, decision.trigger) == (NO_DATA, NO_DATA, 0, False)
    assert decision.summary.startswith("no data: 0 prediction rows in the window (min_rows 500)")
    assert "no drift and no performance loss" not in decision.summary


def test_labels_of_earlier_days_still_judge_performance_when_the_window_has_too_few_rows():
    decision = decide(findings(rows=100, roc_auc=0.5), Thresholds(min_rows=500), window_end=END)
    assert (decision.action, decision.reason, decision.trigger) == (RETRAIN, PERFORMANCE, True)
    assert decision.data_status == NOT_ENOUGH_DATA and "not enough data: 100 prediction row(s)" in decision.summary


@pytest.mark.parametrize(
    ("roc_auc", "holdout", "why"),
    [(0.65, None, "< floor 0.7000"), (0.76, 0.82, "< 0.7790 = champion holdout 0.8200 * (1 - 0.05)")],
)
def test_performance_below_the_floor_or_the_allowed_drop_triggers_performance(roc_auc, holdout, why):
    decision = decide(findings(roc_auc=roc_auc, holdout=holdout), Thresholds(), window_end=END)
    assert (decision.reason, decision.trigger) == (PERFORMANCE, True)  # does not wait for post-change days
    assert why in decision.summary
    assert decision.change_start is None and decision.post_change_days is None


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
    decision = decide(findings(drifted=FEATURES), Thresholds(cooldown_days=3, **AT_ONCE), window_end=END, last_retrain=last)
    assert decision.action == RETRAIN
    assert decision.trigger is not blocked
    assert (decision.blocked_by == "cooldown") is blocked
    if blocked:
        assert "cooldown: the last retrain (drift, window ending" in decision.summary


def test_backfill_records_but_does_not_trigger_unless_configured():
    recorded = decide(findings(drifted=FEATURES), Thresholds(**AT_ONCE), window_end=END, run_type="backfill")
    assert (recorded.action, recorded.trigger, recorded.blocked_by) == (RETRAIN, False, "backfill")
    assert recorded.backfill_rule == {"trigger_on_backfill": False, "source": "setting trigger_on_backfill"}
    assert "trigger_on_backfill is off: setting trigger_on_backfill" in recorded.summary
    allowed = decide(
        findings(drifted=FEATURES), Thresholds(trigger_on_backfill=True, **AT_ONCE), window_end=END, run_type="backfill",
        backfill_rule_source=RULE_PARAM,
    )
    assert allowed.trigger and allowed.backfill_rule == {"trigger_on_backfill": True, "source": RULE_PARAM}
    assert "backfill run allowed to trigger by the run Param retrain_on_backfill" in allowed.summary
    scheduled = decide(findings(drifted=FEATURES), Thresholds(**AT_ONCE), window_end=END, run_type="scheduled")
    assert scheduled.trigger and scheduled.backfill_rule is None


def test_a_window_that_already_triggered_does_not_trigger_again():
    decision = decide(
        findings(drifted=FEATURES), Thresholds(**AT_ONCE), window_end=END, already_triggered="mlops_monitor__2026-01-11"
    )
    assert decision.blocked_by == "already_triggered" and not decision.trigger


def test_no_champion_means_nothing_to_compare():
    decision = decide({"status": "no_champion", "message": "churn has no @champion"}, Thresholds(), window_end=END)
    assert decision.action == NO_ACTION and "no @champion" in decision.summary
    assert decision.summary.startswith("nothing to compare") and decision.data_status == "no_champion"


# --- a drift-triggered retrain waits for post-change data -----------------------------------------


def drift_record(ds: str, change_start: str | None = None, drift: bool = True) -> dict:
    """What an earlier window's decision.json holds, as far as the drift episode goes."""
    return {"window": {"ds": ds}, "drift_detected": drift, "change_start": change_start if drift else None}


def test_the_first_drifted_window_starts_the_episode_and_waits():
    decision = decide(findings(drifted=FEATURES), Thresholds(min_post_change_days=3), window_start=START, window_end=END)
    assert (decision.action, decision.reason, decision.trigger) == (RETRAIN, DRIFT, False)
    assert decision.blocked_by == WAITING_FOR_POST_CHANGE_DATA
    assert (decision.change_start, decision.post_change_days, decision.min_post_change_days) == ("2026-01-11", 1, 3)
    assert "drift since 2026-01-11: 1 of 3 post-change days; retrain when 3 days exist" in decision.summary


def test_later_drifted_windows_inherit_the_change_start_and_trigger_once_enough_days_exist():
    thresholds = Thresholds(min_post_change_days=3)
    second = decide(
        findings(drifted=FEATURES), thresholds, window_start=START, window_end=END,
        previous=drift_record("2026-01-10", "2026-01-10"),
    )
    assert (second.change_start, second.post_change_days, second.trigger) == ("2026-01-10", 2, False)
    assert "2 of 3 post-change days" in second.summary
    third = decide(
        findings(drifted=FEATURES), thresholds, window_start=START, window_end=END,
        previous=drift_record("2026-01-10", "2026-01-09"),
    )
    assert (third.change_start, third.post_change_days, third.trigger, third.blocked_by) == ("2026-01-09", 3, True, None)
    assert "drift since 2026-01-09: 3 post-change day(s)" in third.summary


def test_a_quiet_previous_window_ends_the_episode():
    decision = decide(
        findings(drifted=FEATURES), Thresholds(), window_start=START, window_end=END,
        previous=drift_record("2026-01-10", drift=False),
    )
    assert decision.change_start == "2026-01-11" and decision.post_change_days == 1


def test_a_quiet_window_has_no_change_start():
    decision = decide(findings(), Thresholds(), window_start=START, window_end=END, previous=drift_record("2026-01-10", "2026-01-08"))
    assert not decision.drift_detected and decision.change_start is None and decision.post_change_days is None


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        (None, "2026-01-11"),
        ({"reason": "drift", "window": {"ds": "2026-01-10"}}, "2026-01-10"),  # a record written before change_start existed
        ({"signals": [{"kind": "drift"}], "window": {"ds": "2026-01-10"}}, "2026-01-10"),
        ({"reason": "performance", "window": {"ds": "2026-01-10"}}, "2026-01-11"),
        (drift_record("2026-01-10", "2025-12-30"), "2025-12-30"),
    ],
)
def test_change_start_for(previous, expected):
    assert change_start_for(previous, START).isoformat() == expected


def test_post_change_days_count_the_window_itself():
    assert post_change_days(date(2026, 1, 11), END) == 1
    assert post_change_days(date(2026, 1, 1), END) == 11
    assert previous_window_ds(Window(START, END)) == "2026-01-10"


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


# --- the record: decide_window reads the earlier windows' records and writes its own --------------


class NoRuns:
    """An MLflow client without a training experiment: no retrain found there."""

    def get_experiment_by_name(self, name):
        return None


def test_decide_window_records_the_episode_and_the_conf_across_windows(tmp_path):
    from mlops_pipeline.config import MonitorSettings, Settings
    from mlops_pipeline.monitoring.decision import decide_window, read_decision, record_triggered

    settings = Settings(lake_uri=(tmp_path / "lake").as_uri(), model_name="churn-test")
    monitor = MonitorSettings(min_post_change_days=3)
    lake = Lake(settings.lake_uri)
    records = {}
    for day in (9, 10, 11):
        window = Window(datetime(2026, 1, day, tzinfo=UTC), datetime(2026, 1, day + 1, tzinfo=UTC))
        found = {**findings(drifted=FEATURES), "report": f"file:///reports/ds={window.ds}/report.html"}
        records[day] = decide_window(
            found, window, monitor=monitor, settings=settings, run_type="scheduled", dag_run_id=f"scheduled__{window.ds}",
            lake=lake, client=NoRuns(),
        )
        assert read_decision(lake, monitor.reports_prefix, window.ds) == records[day]
    assert [records[d]["post_change_days"] for d in (9, 10, 11)] == [1, 2, 3]
    assert {records[d]["change_start"] for d in (9, 10, 11)} == {"2026-01-09"}
    assert [records[d]["blocked_by"] for d in (9, 10)] == [WAITING_FOR_POST_CHANGE_DATA] * 2
    assert records[9]["conf"] is None and records[9]["previous_window"] == {"ds": "2026-01-08", "recorded": False}
    third = records[11]
    assert third["trigger"] and third["previous_window"] == {"ds": "2026-01-10", "recorded": True}
    assert third["conf"] == {
        "reason": "drift",
        "report": "file:///reports/ds=2026-01-11/report.html",
        "window": {"ds": "2026-01-11", "start": "2026-01-11T00:00:00+00:00", "end": "2026-01-12T00:00:00+00:00"},
        "change_start": "2026-01-09",
    }
    assert (third["min_post_change_days"], third["data_status"], third["rows"], third["min_rows"]) == (3, "ok", 2000, 500)

    triggered = record_triggered(lake, monitor.reports_prefix, third, "mlops_monitor__2026-01-11")
    assert read_decision(lake, monitor.reports_prefix, "2026-01-11")["train_run_id"] == "mlops_monitor__2026-01-11"
    # A re-run of the window keeps what it triggered; the next window is in the cooldown of that retrain.
    window = Window(datetime(2026, 1, 11, tzinfo=UTC), datetime(2026, 1, 12, tzinfo=UTC))
    again = decide_window(findings(drifted=FEATURES), window, monitor=monitor, settings=settings, lake=lake, client=NoRuns())
    assert again["blocked_by"] == "already_triggered" and again["triggered"] and again["train_run_id"] == triggered["train_run_id"]
    window = Window(datetime(2026, 1, 12, tzinfo=UTC), datetime(2026, 1, 13, tzinfo=UTC))
    after = decide_window(findings(drifted=FEATURES), window, monitor=monitor, settings=settings, lake=lake, client=NoRuns())
    assert after["blocked_by"] == "cooldown" and after["post_change_days"] == 4
    assert after["last_retrain"]["window_ds"] == "2026-01-11"


# --- estimated performance (before labels) --------------------------------------------------------


@pytest.mark.parametrize(
    ("estimated", "holdout", "why"),
    [
        (0.65, None, "estimated ROC AUC 0.6500 on 2000 unlabelled rows of 2026-01-11 < floor 0.7000"),
        (0.76, 0.82, "estimated ROC AUC 0.7600 on 2000 unlabelled rows of 2026-01-11 < 0.7790 = champion holdout 0.8200 * (1 - 0.05)"),
    ],
)
def test_an_estimate_below_the_floor_or_the_allowed_drop_triggers_estimated_performance(estimated, holdout, why):
    decision = decide(findings(estimated=estimated, holdout=holdout), Thresholds(), window_start=START, window_end=END)
    assert (decision.action, decision.reason, decision.trigger, decision.blocked_by) == (RETRAIN, ESTIMATED_PERFORMANCE, True, None)
    assert decision.summary == f"retrain (estimated_performance): {why}"
    assert decision.change_start is None and decision.post_change_days is None  # it does not wait for post-change data
    assert decision.numbers["estimated_roc_auc"] == estimated and decision.numbers["estimated_days"] == ["2026-01-11"]


def test_an_estimate_above_the_bars_is_quiet():
    decision = decide(findings(estimated=0.80), Thresholds(), window_end=END)
    assert decision.action == NO_ACTION and decision.signals == [] and decision.numbers["estimated_rows"] == 2000


def test_realised_performance_wins_over_the_estimate_and_drift_over_both():
    both = decide(findings(roc_auc=0.6, estimated=0.6), Thresholds(), window_end=END)
    assert both.reason == PERFORMANCE and {s["kind"] for s in both.signals} == {PERFORMANCE, ESTIMATED_PERFORMANCE}
    assert "estimated" not in both.summary
    drifted = decide(findings(drifted=FEATURES, estimated=0.6), Thresholds(min_post_change_days=3), window_start=START, window_end=END)
    assert drifted.reason == DRIFT and drifted.blocked_by == WAITING_FOR_POST_CHANGE_DATA


@pytest.mark.parametrize(
    ("found", "thresholds", "note"),
    [
        (findings(rows=100, estimated=0.5), Thresholds(min_rows=500), "100 window row(s) for the estimate (min_rows 500)"),
        (findings(estimated=0.5, calibration=None), Thresholds(), "the champion serves uncalibrated scores"),
        (findings(estimated=0.5), Thresholds(retrain_on_estimate=False), "retrain_on_estimate is off"),
    ],
)
def test_no_estimated_verdict_on_too_few_rows_uncalibrated_scores_or_when_switched_off(found, thresholds, note):
    decision = decide(found, thresholds, window_end=END)
    assert ESTIMATED_PERFORMANCE not in {s["kind"] for s in decision.signals} and decision.reason is None
    assert any(note in n for n in decision.notes), decision.notes


@pytest.mark.parametrize(
    ("kwargs", "blocked_by"),
    [
        ({"last_retrain": Retrain(END - timedelta(days=1), ESTIMATED_PERFORMANCE, "lake")}, "cooldown"),
        ({"run_type": "backfill"}, "backfill"),
        ({"already_triggered": "mlops_monitor__2026-01-11"}, "already_triggered"),
    ],
)
def test_an_estimated_retrain_follows_the_blocking_rules(kwargs, blocked_by):
    decision = decide(findings(estimated=0.6), Thresholds(), window_end=END, **kwargs)
    assert (decision.reason, decision.trigger, decision.blocked_by) == (ESTIMATED_PERFORMANCE, False, blocked_by)


def test_estimated_retrains_count_for_the_cooldown_in_the_training_experiment_by_default():
    from mlops_pipeline.config import MonitorSettings

    assert ESTIMATED_PERFORMANCE in MonitorSettings().cooldown_reasons


def labelled_findings(day: str, realised: float, estimated: float, **kwargs) -> dict:
    """Findings of a window whose run measured the labels of ``day`` (the estimate on the same rows beside them)."""
    tracked = {
        "rows": 800, "estimated_roc_auc": estimated, "estimated_accuracy": 0.8, "realised_roc_auc": realised,
        "realised_accuracy": 0.79, "roc_auc_error": estimated - realised, "accuracy_error": 0.01,
    }  # fmt: skip
    found = findings(**kwargs)
    found["quality"].update(days=[day], estimate={"days": [day], "calibration": "isotonic", **tracked}, by_day={day: tracked})
    return found


def test_the_record_says_which_days_each_number_covers_and_gets_the_realised_value_when_labels_arrive(tmp_path):
    from mlops_pipeline.config import MonitorSettings, Settings
    from mlops_pipeline.monitoring.decision import decide_window, read_decision

    settings = Settings(lake_uri=(tmp_path / "lake").as_uri(), model_name="churn-test")
    monitor = MonitorSettings()
    lake = Lake(settings.lake_uri)
    first = Window(datetime(2026, 1, 9, tzinfo=UTC), datetime(2026, 1, 10, tzinfo=UTC))
    found = findings(estimated=0.78, labelled=0)
    found["estimate"]["days"] = ["2026-01-09"]
    record = decide_window(found, first, monitor=monitor, settings=settings, lake=lake, client=NoRuns())
    assert (record["estimated_roc_auc"], record["estimated_accuracy"], record["estimated_days"]) == (0.78, 0.81, ["2026-01-09"])
    assert record["estimate"]["calibration"] == "isotonic" and record["estimate"]["roc_auc_error_bound"] == 1e-6
    assert (record["realised_roc_auc"], record["realised_days"], record["realised"], record["labelled"]) == (None, [], None, None)

    # Two nights later the labels of 2026-01-09 have arrived: that run measures them ...
    later = Window(datetime(2026, 1, 11, tzinfo=UTC), datetime(2026, 1, 12, tzinfo=UTC))
    found_later = {**labelled_findings("2026-01-09", realised=0.75, estimated=0.78), "estimate": estimate(0.77)}
    measuring = decide_window(found_later, later, monitor=monitor, settings=settings, lake=lake, client=NoRuns())
    assert measuring["labelled"]["days"] == ["2026-01-09"] and measuring["labelled"]["realised_roc_auc"] == 0.75
    assert measuring["labelled"]["estimated_roc_auc"] == 0.78 and measuring["estimated_roc_auc"] == 0.77
    assert measuring["realised_roc_auc"] is None  # its own rows have no labels yet
    # ... and writes them into the record of 2026-01-09, beside its estimate.
    updated = read_decision(lake, monitor.reports_prefix, "2026-01-09")
    assert (updated["estimated_roc_auc"], updated["realised_roc_auc"], updated["realised_accuracy"]) == (0.78, 0.75, 0.79)
    assert updated["realised_days"] == ["2026-01-09"] and updated["realised"]["measured_by"] == "2026-01-11"
    assert updated["realised"]["roc_auc_error"] == pytest.approx(0.03)
    assert {k: v for k, v in updated.items() if not k.startswith("realised")} == {k: v for k, v in record.items() if not k.startswith("realised")}

    # A re-run of 2026-01-09 keeps what the labels said.
    again = decide_window(found, first, monitor=monitor, settings=settings, lake=lake, client=NoRuns())
    assert again["realised_roc_auc"] == 0.75 and again["realised"]["measured_by"] == "2026-01-11"


def test_realised_values_go_only_to_a_one_day_window_of_that_day_and_that_champion(tmp_path):
    from mlops_pipeline.monitoring.decision import read_decision, record_realised

    lake = Lake((tmp_path / "lake").as_uri())
    two_days = {"window": {"ds": "2026-01-09", "start": "2026-01-09T00:00:00+00:00", "end": "2026-01-11T00:00:00+00:00"}}
    one_day = {"window": {"ds": "2026-01-10", "start": "2026-01-10T00:00:00+00:00", "end": "2026-01-11T00:00:00+00:00"},
               "champion_version": "3"}  # fmt: skip
    lake.write_json_atomic(decision_path(lake, "reports/drift", "2026-01-09"), two_days)
    lake.write_json_atomic(decision_path(lake, "reports/drift", "2026-01-10"), one_day)
    tracked = {"realised_roc_auc": 0.7}

    def write_back(ds: str, version: str) -> dict | None:
        return record_realised(lake, "reports/drift", ds, tracked, champion_version=version, measured_by="2026-01-12", measured_at=END)

    assert write_back("2026-01-09", "3") is None and write_back("2026-01-05", "3") is None
    assert write_back("2026-01-10", "4") is None  # version 3 was champion then: its estimate was of other predictions
    assert read_decision(lake, "reports/drift", "2026-01-09") == two_days
    assert read_decision(lake, "reports/drift", "2026-01-10") == one_day
    assert write_back("2026-01-10", "3")["realised_roc_auc"] == 0.7
