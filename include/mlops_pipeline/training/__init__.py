"""Training: the steps of a training, the one MLflow recorder, and what they are made of.

* :mod:`.steps` — resolve, prepare (data window and time split), tune, fit, calibrate, evaluate,
  select: plain functions on plain values, no MLflow;
* :mod:`.recorder` — logs a finished training to MLflow (nested candidate and trial runs, the
  model with its ``metadata.mlops`` contract, lineage, the model card) and registers the winner;
* :mod:`.pipeline` — the two functions the ``mlops_train`` DAG calls:
  :func:`~mlops_pipeline.training.pipeline.train_and_register` (wires the steps, then the recorder)
  and :func:`~mlops_pipeline.training.pipeline.gate_candidate`;
* building blocks: :mod:`.data`, :mod:`.features`, :mod:`.candidates`, :mod:`.tuning`,
  :mod:`.calibration`, :mod:`.evaluation`, :mod:`.explain`, :mod:`.model_card`,
  :mod:`.reproducibility`.

Nothing heavy is imported here.
"""
