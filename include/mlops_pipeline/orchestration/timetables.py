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

from airflow.timetables.base import DataInterval
from airflow.timetables.interval import CronDataIntervalTimetable


class DailyWindowTimetable(CronDataIntervalTimetable):
    description_suffix = " (a manual run for a boundary date processes the period starting then)"

    def infer_manual_data_interval(self, *, run_after):  # type: ignore[override]
        aligned = self._align_to_prev(run_after)
        if aligned == run_after:
            return DataInterval(start=aligned, end=self._get_next(aligned))
        return super().infer_manual_data_interval(run_after=run_after)
