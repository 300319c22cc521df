"""Batch scoring: a validated partition through a registered model into ``predictions/ds=...``.

See :mod:`mlops_pipeline.scoring.batch`; ``dags/mlops_score.py`` runs it per daily window.
"""
