"""Contracts shared by training, the registry, deployment, monitoring and the model server.

Dependency-free apart from numpy, and importable without Airflow, MLflow, pandas or scikit-learn:
the serving image installs this package beside ``mlops_serving``. One implementation of each:

* :mod:`.features` — the ``metadata.mlops`` block (features, key columns, threshold) and the one
  encoding of features into the model matrix;
* :mod:`.calibration` — the ``metadata.mlops.calibration`` block: raw model score -> probability;
* :mod:`.psi` — the population stability index;
* :mod:`.tags` — the names of the MLflow tags the pipeline writes and reads.
"""
