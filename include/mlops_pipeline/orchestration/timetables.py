"""Timetables for windowed DAGs (registered by the plugin in plugins/mlops_plugin.py).

Scheduled and backfill runs of a ``CronDataIntervalTimetable`` already own the interval
[start, end) that starts at their logical date. Manual runs are the exception: Airflow infers "the
last complete period before the logical date", so ``airflow dags test mlops_ingest 2026-01-05``
would process 2026-01-04. :class:`DailyWindowTimetable` keeps everything else and changes one rule:
a manual run whose logical date sits exactly on a period boundary processes the period that
*starts* there (the day you named); a manual run at any other moment ("trigger now" in the UI)
still gets the last complete period.

The DAGs that use it carry no Airflow ``start_date`` (with ``catchup=False`` their first scheduled run
is the last complete period), so a backfill or a manual run may name any date, however old; the
configured start date is enforced by each run's first task
(:func:`mlops_pipeline.orchestration.context.check_start`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.timetables.base import DataInterval
from airflow.timetables.interval import CronDataIntervalTimetable


class DailyWindowTimetable(CronDataIntervalTimetable):
    description_suffix = " (a manual run for a boundary date processes the period starting then)"

    def infer_manual_data_interval(self, *, run_after):  # type: ignore[override]
        aligned = self._align_to_prev(run_after)
        if aligned == run_after:
            return DataInterval(start=aligned, end=self._get_next(aligned))
        return super().infer_manual_data_interval(run_after=run_after)


def run_window(
    data_interval_start: Any, data_interval_end: Any, logical_date: Any, dag_run: Any
) -> tuple[Any, Any]:
    """The day a run processes: its data interval, except for a manual (or operator-triggered) run
    whose logical date is a midnight other than the interval's start.

    Airflow infers a manual run's interval from the moment it is created; the REST API and ``dags
    test`` pass the logical date as that moment, but ``airflow dags trigger -l`` and a
    ``TriggerDagRunOperator`` pass "now", so ``-l 2013-02-09`` would otherwise process yesterday.
    The day named is the day processed."""
    from mlops_pipeline.orchestration.context import TRIGGERED_RUN_TYPES, run_type_of

    if run_type_of(dag_run) not in TRIGGERED_RUN_TYPES or logical_date is None or data_interval_start == logical_date:
        return data_interval_start, data_interval_end
    if (logical_date.hour, logical_date.minute, logical_date.second, logical_date.microsecond) != (
        0,
        0,
        0,
        0,
    ):
        return data_interval_start, data_interval_end  # "trigger now": the last complete day
    return logical_date, logical_date + timedelta(days=1)
