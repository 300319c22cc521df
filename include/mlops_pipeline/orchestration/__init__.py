"""The orchestration layer: one adapter module per DAG, the only place (with ``dags/`` and ``plugins/``)
that imports Airflow.

Each adapter turns an Airflow task context into calls of the domain packages (``data``,
``validation``, ``training``, ``registry``, ``deploy``, ``monitoring``) and their results into
XCom-able dicts; it maps domain errors to Airflow's terms (bad input fails at once, without
retries; infrastructure errors are raised as they are, so retries apply). DAG files import only
``airflow.sdk`` and this package at parse time, and this package imports nothing heavy at module level.

* :mod:`.ingest`  -> ``dags/mlops_ingest.py``
* :mod:`.train`   -> ``dags/mlops_train.py``
* :mod:`.deploy`  -> ``dags/mlops_deploy.py``
* :mod:`.monitor` -> ``dags/mlops_monitor.py``
* :mod:`.score`   -> ``dags/mlops_score.py``
* :mod:`.context` the helpers they share; :mod:`.notifier` alerts; :mod:`.timetables` the windowed
  timetable; :mod:`.airflow_settings` applies ``airflow_settings.yaml``.
"""

from __future__ import annotations

from mlops_pipeline.orchestration.context import airflow_aws_options
from mlops_pipeline.storage import set_credentials_provider

# Inside Airflow, s3:// credentials come from the AWS connection first (a registration, no I/O).
set_credentials_provider(airflow_aws_options)
