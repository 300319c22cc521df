"""The windowed timetable: manual runs on a boundary, runs without a start date, runs years back."""

import pendulum

from mlops_pipeline.orchestration.timetables import DailyWindowTimetable

TIMETABLE = DailyWindowTimetable("0 0 * * *", timezone="UTC")


def test_manual_run_on_a_day_boundary_processes_that_day():
    interval = TIMETABLE.infer_manual_data_interval(run_after=pendulum.datetime(2026, 1, 5, tz="UTC"))
    assert (interval.start, interval.end) == (pendulum.datetime(2026, 1, 5, tz="UTC"), pendulum.datetime(2026, 1, 6, tz="UTC"))


def test_manual_run_mid_day_processes_the_last_complete_day():
    interval = TIMETABLE.infer_manual_data_interval(run_after=pendulum.datetime(2026, 1, 5, 14, 30, tz="UTC"))
    assert (interval.start, interval.end) == (pendulum.datetime(2026, 1, 4, tz="UTC"), pendulum.datetime(2026, 1, 5, tz="UTC"))


def test_it_round_trips_through_serialization():
    restored = DailyWindowTimetable.deserialize(TIMETABLE.serialize())
    assert isinstance(restored, DailyWindowTimetable) and restored.summary == TIMETABLE.summary


def test_a_manual_run_for_a_day_years_back_processes_that_day():
    interval = TIMETABLE.infer_manual_data_interval(run_after=pendulum.datetime(2013, 2, 9, tz="UTC"))
    assert (interval.start, interval.end) == (pendulum.datetime(2013, 2, 9, tz="UTC"), pendulum.datetime(2013, 2, 10, tz="UTC"))


def test_without_a_start_date_the_scheduler_starts_with_the_last_complete_day():
    # The DAGs carry no start_date (catchup=False): the first scheduled run is yesterday's window.
    from airflow.timetables.base import TimeRestriction

    before = pendulum.now("UTC").start_of("day")
    info = TIMETABLE.next_dagrun_info(last_automated_data_interval=None, restriction=TimeRestriction(None, None, False))
    after = pendulum.now("UTC").start_of("day")  # the same day, unless the test ran across midnight
    assert info is not None
    assert (info.data_interval.start, info.data_interval.end) in {(d.subtract(days=1), d) for d in (before, after)}


def test_a_backfill_over_2013_gets_one_window_per_day():
    from airflow.timetables.base import TimeRestriction

    restriction = TimeRestriction(pendulum.datetime(2013, 1, 1, tz="UTC"), pendulum.datetime(2013, 1, 8, tz="UTC"), True)
    last, windows = None, []
    while (info := TIMETABLE.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)) is not None:
        windows.append(info.data_interval.start.date().isoformat())
        last = info.data_interval
    assert windows == [f"2013-01-0{d}" for d in range(1, 9)]


def test_a_manual_run_processes_the_midnight_it_names_whatever_interval_airflow_inferred():
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from mlops_pipeline.orchestration.timetables import run_window

    named = datetime(2013, 2, 9, tzinfo=UTC)
    inferred = (datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))  # "now" on the CLI
    manual, scheduled = SimpleNamespace(run_type="manual"), SimpleNamespace(run_type="scheduled")
    assert run_window(*inferred, named, manual) == (named, datetime(2013, 2, 10, tzinfo=UTC))
    triggered = SimpleNamespace(run_type="operator_triggered")
    assert run_window(*inferred, named, triggered) == (named, datetime(2013, 2, 10, tzinfo=UTC))
    assert run_window(*inferred, named, scheduled) == inferred
    trigger_now = datetime(2026, 12, 1, 18, 40, tzinfo=UTC)  # not a midnight: the last complete day
    assert run_window(*inferred, trigger_now, manual) == inferred
    assert run_window(*inferred, inferred[0], manual) == inferred
