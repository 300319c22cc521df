"""Training: data window and time split, features and encoding, candidates, evaluation, SHAP, model card.

The DAG-facing steps are :func:`mlops_pipeline.training.pipeline.train_and_register` and
:func:`mlops_pipeline.training.pipeline.gate_candidate`. Nothing heavy is imported here.
"""
