"""Monitoring: the prediction log vs the champion's training sample, the reports, and the retrain decision.

* :mod:`.predictions` reads the serving app's prediction log in bounded blocks;
* :mod:`.reference` finds the ``@champion``'s reference sample through the registry's lineage;
* :mod:`.labels` joins the labels that have arrived (the dataset's label delay);
* :mod:`.drift` computes the drift verdicts on every row (how, and the error bound, is there);
* :mod:`.estimate` estimates ROC AUC and accuracy from the served probabilities before labels
  arrive (confidence-based performance estimation; when to trust it is there);
* :mod:`.evidently_report` builds the Evidently 0.7 reports on bounded samples;
* :mod:`.pipeline` runs one window end to end (:func:`~.pipeline.run_monitor`);
* :mod:`.decision` holds the retrain rules and where past retrains are recorded;
* :mod:`.tracking` logs each window to the monitoring experiment in MLflow;
* :mod:`.alerting` turns a decision into alerts (delivered by :mod:`mlops_pipeline.orchestration.notifier`);
* the Airflow glue of the ``mlops_monitor`` DAG is :mod:`mlops_pipeline.orchestration.monitor`.

Light at import time: nothing heavy is imported by this package.
"""
