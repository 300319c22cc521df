"""The model card: a markdown page logged with every registered version (``model_card.md``).

It says what the model is for, which data it saw, how it scored, what the gate decided and where
it should not be trusted. Rendered from the run's recorded facts only, so it can be rebuilt.
"""

from __future__ import annotations

from typing import Any

METRIC_ROWS = [
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC"),
    ("log_loss", "log loss"),
    ("brier", "Brier score"),
    ("f1", "F1 at threshold"),
    ("precision", "precision at threshold"),
    ("recall", "recall at threshold"),
]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render_model_card(facts: dict[str, Any], decision: dict[str, Any] | None, importances: list[dict[str, Any]]) -> str:
    """``facts`` is the training result (see ``training.pipeline``); ``decision`` the gate's, if it ran."""
    window = facts["window"]
    partitions = window["partitions"]
    spec = facts["model_spec"]
    metrics = facts["candidates"]
    winner = facts["winner"]
    lines = [
        f"# Model card: {facts['model_name']} version {facts['version']}",
        "",
        "## Summary",
        "",
        f"- Model: `{winner}` ({facts['flavor']} flavor), run `{facts['run_id']}`",
        f"- Registered as `models:/{facts['model_name']}/{facts['version']}`",
        f"- Trained because: `{facts['trigger_reason']}` (Airflow run `{facts.get('dag_run_id') or '-'}`)",
        f"- Code: git commit `{facts['git_commit']}`"
        + (" (with uncommitted changes)" if facts.get("git_dirty") else "")
        + f"; seed {facts['seed']}",
        f"- Decision threshold: {spec['threshold']} (label = probability >= threshold; chosen on the valid split for F1)",
        "",
        "## Intended use",
        "",
        f"Scores each `{spec['id_column']}` event of dataset `{facts['dataset']}` with the probability that",
        f"`{spec['target']}` = 1, to rank cases for follow-up (e.g. retention outreach for churn). It is a",
        "decision aid for people, not an automatic action on an individual, and it is only meant for data",
        "shaped like its training window (same features, same population, recent behaviour).",
        "",
        "## Data",
        "",
        f"- Window: up to {window['days_requested']} validated day(s) before {window['as_of']}; used "
        f"ds={partitions[0]['ds']}..{partitions[-1]['ds']} ({len(partitions)} partition(s)) of `{window['lake_uri']}/validated`",
        "- Split by event time, never shuffled: train < "
        f"{facts['split']['valid_start']} <= valid < {facts['split']['holdout_start']} <= holdout",
        "",
        "| split | rows | positives | digest |",
        "| --- | ---: | ---: | --- |",
    ]
    for name, info in facts["splits"].items():
        lines.append(f"| {name} | {info['rows']} | {info['positives']} | `{info['digest']}` |")
    lines += [
        "",
        "Features, in model input order: "
        + ", ".join(
            f"`{f['name']}`" + (f" ({len(f['categories'])} categories)" if f["kind"] == "categorical" else "")
            for f in spec["features"]
        ),
        "",
        "## Metrics (holdout)",
        "",
        "| metric | " + " | ".join(f"{name}{' (selected)' if name == winner else ''}" for name in metrics) + " |",
        "| --- |" + " ---: |" * len(metrics),
    ]
    for key, label in METRIC_ROWS:
        lines.append(f"| {label} | " + " | ".join(_fmt(m["holdout"].get(key)) for m in metrics.values()) + " |")
    lines += [
        "",
        f"The winner was selected on the valid split's {facts['selection_metric']}; the holdout was not used to choose.",
        "",
        "## Gate",
        "",
    ]
    if decision is None:
        lines.append("The gate has not run for this version yet.")
    else:
        lines += [
            f"- Decision: **{decision['status']}**: {decision['reason']}",
            f"- Rule: {decision['metric']} >= floor {decision['floor']} and, with a champion, "
            + (
                f"the lower bound of the paired difference candidate - champion >= -{decision.get('margin')} (non-inferiority)"
                if decision.get("mode", "non_inferiority") == "non_inferiority"
                else "the lower bound of the paired difference candidate - champion > 0 (superiority)"
            )
            + " on the same holdout rows",
            f"- Candidate {decision['metric']}: {_fmt(decision['candidate_score'])}; champion: "
            + (
                f"version {decision['champion_version']}, {_fmt(decision['champion_score'])}"
                if decision.get("champion_version")
                else "none"
            ),
        ]
        if decision.get("interval"):
            low, high = decision["interval"]
            lines.append(
                f"- Evidence: difference {decision['difference']:+.4f}, {decision['confidence']:.0%} interval "
                f"[{low:+.4f}, {high:+.4f}] by {decision['method']} on n={decision['n']} rows"
            )
    if importances:
        lines += ["", "## Feature importance (mean |SHAP|, XGBoost candidate)", ""]
        lines += ["| rank | feature | mean abs SHAP |", "| ---: | --- | ---: |"]
        for row in importances[:10]:
            lines.append(f"| {row['rank']} | `{row['feature']}` | {row['mean_abs_shap']:.4f} |")
    lines += [
        "",
        "## Limitations",
        "",
        "- Trained on a short, recent window: seasonality and rare events outside it are not represented.",
        "- Categories not seen in training are treated as missing; new plans, regions or contracts need a retrain.",
        "- Scores degrade under drift; the nightly monitor compares live inputs with this window and triggers retraining.",
        "- Metrics come from one holdout period; the ROC AUC has a standard error of about "
        f"{_fmt(facts.get('holdout_roc_auc_se'))} (Hanley-McNeil) from sampling alone.",
        "- Probabilities are not recalibrated; use the threshold above or rank, not the raw value, for decisions.",
        "",
    ]
    return "\n".join(lines)
