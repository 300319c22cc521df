"""The project's Airflow plugin: the windowed timetable the DAGs use."""

from airflow.plugins_manager import AirflowPlugin

from mlops_pipeline.orchestration.timetables import DailyWindowTimetable


class MlopsPlugin(AirflowPlugin):
    name = "mlops"
    timetables = [DailyWindowTimetable]
