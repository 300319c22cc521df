"""What the Airflow UI's model-operations view shows, as plain functions on the lake, MLflow and the router.

The plugin (``plugins/mlops_ui.py``) only routes requests here. Each section is gathered on its
own with a time limit (:mod:`~mlops_pipeline.ui.overview`), so an unreachable MLflow or router
turns into a message in its section instead of a broken page. Light at import time: MLflow, the
lake's filesystem and the deployment backend are imported when a section is gathered.
"""
