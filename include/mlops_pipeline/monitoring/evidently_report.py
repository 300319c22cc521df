"""The human-readable side: Evidently 0.7 reports on bounded samples.

* drift report: ``DataDriftPreset`` (per feature and dataset-level) on the reference vs a uniform
  sample of the window, each feature tested with the method the full-data verdict used (see
  :mod:`mlops_pipeline.monitoring.drift`), plus ``ValueDrift`` of the prediction;
* quality report: ``ClassificationPreset`` on the predictions whose labels have arrived, beside
  the champion's own scores on its reference sample.

The verdicts in ``report.json`` come from the full-data statistics; Evidently's numbers on the
sample are shown for reading and may differ from them by sampling error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from evidently.core.report import Snapshot

log = logging.getLogger(__name__)

PREDICTION = "prediction"
TARGET = "target"
IMPORT_SWITCH_SECONDS = 0.0002  # see import_in_background


def import_in_background() -> threading.Thread:
    """Start importing Evidently in a daemon thread; join it before the report is built.

    Importing Evidently 0.7 is seconds of module loading (thousands of pydantic classes, scipy,
    plotly), and the report cannot start before the stream has produced its sample. Started
    just before the stream, the import runs while the streaming statistics spend most of their
    time in Arrow's JSON parser and numpy, which release the GIL. Joining is for clarity: an
    ``import evidently`` still under way elsewhere would wait on Python's module lock anyway.
    Start it after the caller's own heavy imports (the model's libraries) and join it before
    any more, so that two threads never import one package tree at once. A failure is only
    logged here: the report's own import raises it where it is handled.

    While the import runs, the interpreter's switch interval is :data:`IMPORT_SWITCH_SECONDS`
    instead of its 5 ms: the import holds the GIL in long stretches of bytecode, and the stream,
    whose every numpy or Arrow call gives the GIL up and must take it back, would otherwise wait up
    to a whole interval each time. The interval is restored when the import ends.
    """
    import sys

    previous = sys.getswitchinterval()

    def run() -> None:
        try:
            import evidently  # noqa: F401  (the package imports its metrics, presets and report)
        except Exception:
            log.debug("importing Evidently in the background failed; the report's import will raise", exc_info=True)
        finally:
            sys.setswitchinterval(previous)

    sys.setswitchinterval(min(previous, IMPORT_SWITCH_SECONDS))
    thread = threading.Thread(target=run, name="evidently-import", daemon=True)
    try:
        thread.start()
    except BaseException:
        sys.setswitchinterval(previous)
        raise
    return thread


def drift_snapshot(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric_features: Sequence[str],
    categorical_features: Sequence[str],
    methods: Mapping[str, str],
    threshold: float,
    drift_share: float,
    with_prediction: bool,
) -> Snapshot:
    """Evidently's data drift (and prediction drift when both frames have ``prediction``)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    features = [*numeric_features, *categorical_features]
    numeric = [*numeric_features, *([PREDICTION] if with_prediction else [])]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=list(categorical_features))
    metrics: list[Any] = [
        DataDriftPreset(
            columns=features,
            drift_share=drift_share,
            per_column_method={name: methods[name] for name in features},
            threshold=threshold,
        )
    ]
    if with_prediction:
        metrics.append(ValueDrift(column=PREDICTION, method="wasserstein", threshold=threshold))
    columns = [*features, *([PREDICTION] if with_prediction else [])]
    return Report(metrics).run(
        Dataset.from_pandas(_typed(current[columns], categorical_features), data_definition=definition),
        Dataset.from_pandas(_typed(reference[columns], categorical_features), data_definition=definition),
    )


def quality_snapshot(reference: pd.DataFrame | None, current: pd.DataFrame, *, threshold: float) -> Snapshot:
    """Evidently's classification quality of ``current`` (``target``, ``prediction``), beside ``reference``."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    definition = DataDefinition(
        numerical_columns=[PREDICTION],
        classification=[BinaryClassification(target=TARGET, prediction_probas=PREDICTION, pos_label=1)],  # type: ignore[arg-type]
    )

    def dataset(frame: pd.DataFrame) -> Dataset:
        data = frame[[TARGET, PREDICTION]].astype({TARGET: "int64", PREDICTION: "float64"})
        return Dataset.from_pandas(data, data_definition=definition)

    report = Report([ClassificationPreset(probas_threshold=threshold)])
    return report.run(dataset(current), dataset(reference) if reference is not None and not reference.empty else None)


def _typed(frame: pd.DataFrame, categorical: Sequence[str]) -> pd.DataFrame:
    """Categorical columns as plain strings (missing stays missing), so Evidently sees one type per column."""
    frame = frame.copy()
    for name in categorical:
        column = frame[name]
        frame[name] = column.astype("object").where(column.notna(), None).map(lambda v: v if v is None else str(v))
    return frame


def render(snapshot: Snapshot) -> tuple[str, dict[str, Any]]:
    """The standalone HTML page and the metrics as a JSON-ready dict."""
    import json

    return snapshot.get_html_str(as_iframe=False), json.loads(snapshot.json())


def metric_values(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``{metric name: value}`` from :func:`render`'s dict (e.g. ``ValueDrift(column=age,...)`` -> 0.03)."""
    return {m.get("metric_name", m.get("id", "?")): m.get("value") for m in payload.get("metrics", [])}
