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
    ("ece", "expected calibration error"),
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
    calibration = spec.get("calibration")
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
        "- Probabilities: "
        + (
            f"the raw score through a {calibration['method']} calibration map fitted on the valid split "
            "(`metadata.mlops.calibration`; the server applies the same map)"
            if calibration
            else "the model's raw score (no calibration map)"
        ),
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
        "All metrics are of calibrated probabilities, as served.",
        *_search_lines(facts),
        *_calibration_lines(facts),
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
        "- Probabilities are calibrated on the valid split, just before the holdout; under drift the calibration "
        "degrades with the ranking, and only a retrain refits it.",
        "",
    ]
    return "\n".join(lines)


def _search_lines(facts: dict[str, Any]) -> list[str]:
    tuning = facts.get("tuning") or {}
    if not tuning:
        return []
    lines = [
        "",
        "## Hyperparameter search",
        "",
        "Optuna's TPE sampler (seeded) on rolling-origin folds of the training split: each fold trains on the "
        "earlier rows and scores the next block, never shuffled across time. Trial 0 is the defaults.",
        "",
        "| candidate | trials (finished / budget) | stopped by | CV mean | CV std | best parameters |",
        "| --- | ---: | --- | ---: | ---: | --- |",
    ]
    for name, search in tuning.items():
        searched = search.get("searched") or []
        best = ", ".join(f"{key}={_fmt(search['best_params'].get(key))}" for key in searched) or "-"
        lines.append(
            f"| {name} | {search.get('trials_finished')} / {search.get('budget_trials')} | {search.get('stopped_by')} "
            f"| {_fmt(search.get('cv_mean'))} | {_fmt(search.get('cv_std'))} | {best} |"
        )
    fixed = {name: search.get("fixed") for name, search in tuning.items() if search.get("fixed")}
    if fixed:
        lines += ["", "Fixed by settings or the run's Params (not searched): " + "; ".join(
            f"{name} {values}" for name, values in fixed.items())]  # fmt: skip
    return lines


def _calibration_lines(facts: dict[str, Any]) -> list[str]:
    calibration = facts.get("calibration") or {}
    if not calibration:
        return []
    lines = [
        "",
        "## Calibration",
        "",
        "Isotonic and Platt maps were fitted on the valid split; the one with the lower Brier score over "
        "consecutive held-out blocks of valid (cross-validation) was kept and refitted on all of valid.",
        "",
        "| candidate | method | CV Brier isotonic | CV Brier Platt | holdout ECE before -> after | holdout Brier before -> after |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, report in calibration.items():
        cv = report.get("cv_brier") or {}
        before, after = report.get("holdout_before") or {}, report.get("holdout_after") or {}
        lines.append(
            f"| {name} | {report.get('method')} | {_fmt(cv.get('isotonic'))} | {_fmt(cv.get('platt'))} "
            f"| {_fmt(before.get('ece'))} -> {_fmt(after.get('ece'))} | {_fmt(before.get('brier'))} -> {_fmt(after.get('brier'))} |"
        )
    return lines
