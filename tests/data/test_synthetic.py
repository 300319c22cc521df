from datetime import UTC, date, datetime

import numpy as np

from mlops_pipeline.data.synthetic import (
    Scenario,
    churn_logit,
    generate_day,
    generate_window,
    scenarios_for_day,
)
from mlops_pipeline.datasets import ScenarioSchedule, load_dataset_spec

DAY = date(2026, 1, 5)


def test_same_seed_and_day_give_identical_frames():
    assert generate_day(DAY, seed=7, rows=500).equals(generate_day(DAY, seed=7, rows=500))


def test_other_seed_or_day_give_other_frames():
    base = generate_day(DAY, seed=7, rows=500)
    assert not base.equals(generate_day(DAY, seed=8, rows=500))
    assert not base.equals(generate_day(date(2026, 1, 6), seed=7, rows=500))


def test_columns_match_the_dataset_spec():
    spec = load_dataset_spec("churn")
    assert list(generate_day(DAY, seed=1, rows=50).columns) == spec.columns


def test_events_fall_inside_the_day_and_ids_are_unique():
    frame = generate_window(
        datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 7, tzinfo=UTC), seed=3, rows_per_day=300, schedule=ScenarioSchedule()
    )
    assert len(frame) == 600
    assert frame["event_time"].min() >= datetime(2026, 1, 5, tzinfo=UTC)
    assert frame["event_time"].max() < datetime(2026, 1, 7, tzinfo=UTC)
    assert frame["customer_id"].is_unique


def test_schedule_puts_scenarios_on_their_days_and_a_forced_one_wins():
    schedule = ScenarioSchedule(covariate_drift_from=date(2026, 2, 1), bad_batch_days=[date(2026, 1, 10)])
    assert scenarios_for_day(date(2026, 1, 31), schedule) == set()
    assert scenarios_for_day(date(2026, 2, 3), schedule) == {Scenario.COVARIATE_DRIFT}
    assert scenarios_for_day(date(2026, 1, 10), schedule) == {Scenario.BAD_BATCH}
    assert scenarios_for_day(date(2026, 2, 3), schedule, forced=Scenario.NORMAL) == set()
    assert scenarios_for_day(date(2026, 1, 3), schedule, forced=Scenario.CONCEPT_DRIFT) == {Scenario.CONCEPT_DRIFT}


def test_covariate_drift_moves_features_not_the_mechanism():
    normal = generate_day(DAY, seed=1, rows=4000)
    drifted = generate_day(DAY, seed=1, rows=4000, scenarios={Scenario.COVARIATE_DRIFT})
    assert drifted["monthly_charges"].mean() > normal["monthly_charges"].mean() + 15
    assert (drifted["plan"] == "basic").mean() > (normal["plan"] == "basic").mean() + 0.1
    # Same features, same mechanism: the logit only depends on the frame.
    assert np.allclose(churn_logit(drifted), churn_logit(drifted.copy()))


def test_concept_drift_changes_the_mechanism_on_the_same_features():
    frame = generate_day(DAY, seed=1, rows=2000)
    assert not np.allclose(churn_logit(frame), churn_logit(frame, concept_drift=True))


def test_mechanism_is_monotone_in_tickets_and_tenure():
    frame = generate_day(DAY, seed=2, rows=2000)
    more_tickets = frame.assign(num_support_tickets=frame["num_support_tickets"] + 1)
    longer_tenure = frame.assign(tenure_months=frame["tenure_months"] + 6)
    assert (churn_logit(more_tickets) >= churn_logit(frame)).all()
    assert (churn_logit(longer_tenure) <= churn_logit(frame)).all()


def test_bad_batch_breaks_required_values():
    frame = generate_day(DAY, seed=1, rows=1000, scenarios={Scenario.BAD_BATCH})
    assert frame["monthly_charges"].isna().any()
    assert (frame["tenure_months"] < 0).any()
    assert (frame["plan"] == "platinum").any()
