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
