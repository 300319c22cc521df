"""mlops_serving: the model server of the MLOps pipeline (FastAPI + native xgboost/sklearn)."""

__version__ = "0.1.0"
