"""The view's HTML: one self-contained page (no script, no external asset) from an :class:`Overview`.

Every value is escaped; links to report files are built from checked ``ds`` folders and file names.
Links are relative to the page (served at ``<mount>/``), so they work behind any URL prefix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any
from urllib.parse import quote

from mlops_pipeline.ui.overview import AUDIT, HISTORY, REPORTS, ROUTER, VERSIONS, Overview, Section

STYLE = """
:root { color-scheme: light dark; --muted: #6b7280; --line: #d1d5db; --ok: #15803d; --bad: #b91c1c; --warn: #b45309; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; padding: 16px 24px 48px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 14px; margin: 12px 0 6px; }
.muted, .meta { color: var(--muted); } .meta { font-size: 12px; }
.cards { display: flex; gap: 16px; flex-wrap: wrap; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 300px; flex: 1 1 340px; }
.big { font-size: 26px; font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; } td.num { font-variant-numeric: tabular-nums; }
.error { border: 1px solid var(--bad); color: var(--bad); border-radius: 6px; padding: 8px 12px; }
.pass { color: var(--ok); font-weight: 600; } .fail { color: var(--bad); font-weight: 600; } .warn { color: var(--warn); font-weight: 600; }
.bar { height: 10px; background: var(--line); border-radius: 5px; overflow: hidden; width: 240px; display: inline-block; vertical-align: middle; }
.bar > span { display: block; height: 100%; background: #2563eb; }
.charts { display: flex; flex-wrap: wrap; gap: 8px 32px; } .chart { display: block; max-width: 100%; height: auto; margin: 8px 0 20px; }
code { font-size: 12px; } details summary { cursor: pointer; color: var(--muted); }
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or "—"
    return str(value)


def _e(value: Any) -> str:
    return escape(_fmt(value))


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], testid: str | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    attr = f' data-testid="{escape(testid)}"' if testid else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _error(section: Section) -> str:
    return f'<div class="error" data-testid="{escape(section.name)}-error">{escape(section.error or "")}</div>'


def _status(ok: bool | None, text: str) -> str:
    css = "pass" if ok else "fail" if ok is False else "warn"
    return f'<span class="{css}">{escape(text)}</span>'


def _prefix(base: str) -> str:
    """Links are relative to the page (``<mount>/``) unless ``base`` names the mount point."""
    return base.rstrip("/") + "/" if base else ""


def _query(dataset: str | None) -> str:
    return f"?dataset={quote(dataset, safe='')}" if dataset else ""


def report_href(base: str, relative: str, dataset: str | None = None) -> str:
    return f"{_prefix(base)}reports/{quote(relative, safe='/=')}{_query(dataset)}"


def _picker(overview: Overview, base: str) -> str:
    """One link per dataset of the installation (its model), the shown one marked; nothing with one dataset."""
    if len(overview.choices) < 2:
        return ""
    shown = overview.dataset or next((c["dataset"] for c in overview.choices if c["primary"]), None)
    links = []
    for choice in overview.choices:
        name = choice["dataset"]
        if choice.get("error"):
            links.append(f'<span class="fail" title="{escape(choice["error"])}">{escape(name)} (broken file)</span>')
        elif name == shown:
            links.append(f'<b aria-current="page" data-testid="model-choice-current">{escape(name)}</b>')
        else:
            query = "" if choice["primary"] else _query(name)
            links.append(f'<a href="{escape((_prefix(base) or "./") + query)}" data-testid="model-choice">{escape(name)}</a>')
    return f'<nav class="meta" data-testid="model-picker">Models: {" · ".join(links)}</nav>'


# --- sections -------------------------------------------------------------------------------------


def _versions(section: Section, overview: Overview) -> str:
    if not section.ok:
        return _error(section)
    cards = []
    for alias, summary in (section.value or {}).items():
        if summary is None:
            cards.append(
                f'<div class="card" data-testid="{escape(alias)}"><h3>@{escape(alias)}</h3>'
                f'<p class="muted">no version of {escape(overview.model_name)} has the @{escape(alias)} alias</p></div>'
            )
            continue
        metrics = _table(["metric", "value"], ([escape(k), f'<span class="num">{_e(v)}</span>'] for k, v in summary.metrics.items()))
        tags = _table(["tag", "value"], ([escape(k), _e(v)] for k, v in summary.tags.items())) if summary.tags else ""
        cards.append(
            f'<div class="card" data-testid="{escape(alias)}">'
            f"<h3>@{escape(alias)}</h3>"
            f'<div class="big" data-testid="{escape(alias)}-version">version {_e(summary.version)}</div>'
            f'<p class="meta">run <code data-testid="{escape(alias)}-run">{_e(summary.run_id)}</code><br>'
            f"registered {_e(summary.created)} · aliases {escape(', '.join('@' + a for a in summary.aliases) or '—')}"
            f" · holdout ROC AUC <b>{_e(summary.roc_auc)}</b></p>"
            f"{metrics}{tags}"
            + (f'<p class="meta">{escape(summary.description)}</p>' if summary.description else "")
            + "</div>"
        )
    return f'<div class="cards">{"".join(cards)}</div>'


def _router(section: Section) -> str:
    if not section.ok:
        return _error(section)
    state = section.value
    if state is None:
        return '<p class="muted">The router state was not read.</p>'
    head = (
        f'<p class="meta">backend <b>{_e(state.backend)}</b> · namespace <b>{_e(state.namespace)}</b>'
        f" · router {_e(state.url) if state.running else 'not running'}</p>"
    )
    if state.error:
        return head + f'<div class="error">router at {_e(state.url)} did not answer: {_e(state.error)}</div>'
    if not state.running:
        return head + '<p class="muted" data-testid="router-state">No router is running: nothing is being served.</p>'
    share = state.canary_percent or 0.0
    rows = [
        [
            f"<b>{_e(name)}</b>",
            _e(slot.get("server")),
            _e(slot.get("version")),
            f"{_e(slot.get('address'))}:{_e(slot.get('port'))}",
            f'<span class="num">{_e(slot.get("weight"))}</span>',
            _e(slot.get("admin")),
            _status(bool(slot.get("up")), _fmt(slot.get("status"))),
        ]
        for name, slot in sorted(state.slots.items())
    ]
    return (
        head
        + f'<p data-testid="router-state">canary share of the traffic: <b>{share:.1f}%</b> '
        + f'<span class="bar"><span style="width:{max(min(share, 100.0), 0.0):.1f}%"></span></span></p>'
        + _table(["slot", "server", "version", "address", "weight", "admin", "health"], rows, "router-slots")
    )


def _canary_checks(section: Section) -> str:
    from mlops_pipeline.ui.deployment import latest_canary_checks

    if not section.ok:
        return ""
    checks = latest_canary_checks(section.value or [])
    if checks is None:
        return '<h3>Latest canary checks</h3><p class="muted">No canary analysis in the audit log yet.</p>'
    rows = [
        [
            escape(str(check.get("name", ""))),
            _status({"passed": True, "failed": False}.get(str(check.get("status"))), str(check.get("status", ""))),
            f'<span class="num">{_e(check.get("value"))}</span>',
            f'<span class="num">{_e(check.get("limit"))}</span>',
            _e(check.get("detail")),
        ]
        for check in checks.checks
    ]
    outcome = f" · outcome <b>{_e(checks.outcome)}</b>" if checks.outcome else " · in progress"
    return (
        "<h3>Latest canary checks</h3>"
        f'<p data-testid="canary-checks">{_status(checks.passed, "passed" if checks.passed else "failed")} '
        f"v{_e(checks.version)} at {_e(checks.percent)}% · {_e(checks.ts)}{outcome}<br>"
        f'<span class="meta">{_e(checks.deployment_id)} · {_e(checks.reason)}</span></p>'
        + (_table(["check", "status", "value", "limit", "detail"], rows) if rows else "")
    )


def _canary_charts(section: Section) -> str:
    from mlops_pipeline.ui.charts import canary_chart
    from mlops_pipeline.ui.deployment import canary_timelines

    if not section.ok:
        return ""
    timelines = canary_timelines(section.value or [])
    if not timelines:
        return '<p class="muted" data-testid="canary-chart-empty">No canary step in the audit log yet.</p>'
    charts = "".join(canary_chart(timeline, testid=f"canary-chart-{index}") for index, timeline in enumerate(timelines))
    return f'<div class="charts">{charts}</div>'


def _history(section: Section | None, threshold: float | None) -> str:
    from mlops_pipeline.ui.charts import drift_share_chart, quality_chart

    if section is None:
        return ""
    if not section.ok:
        return _error(section)
    windows = section.value or []
    return f'<div class="charts">{drift_share_chart(windows, threshold)}{quality_chart(windows)}</div>'


def _reports(section: Section, base: str, dataset: str | None = None) -> str:
    if not section.ok:
        return _error(section)
    reports = section.value or []
    if not reports:
        return '<p class="muted" data-testid="reports-empty">No drift report in the lake yet.</p>'
    rows = []
    for report in reports:
        links = " · ".join(
            # No target: the Airflow UI's iframe allows no pop-ups, so the report opens in the view's frame.
            f'<a href="{escape(report_href(base, report.relative_path(name), dataset))}" data-testid="report-link">{escape(name)}</a>'
            for name in report.files
        )
        numbers = report.numbers
        decision = _fmt(report.action) + (" (retrain triggered)" if report.triggered else "")
        rows.append(
            [
                f"<b>{escape(report.ds)}</b>",
                _e(report.status),
                escape(decision),
                f'<span class="num">{_e(numbers.get("drift_share"))}</span>',
                _e(len(numbers.get("drifted_features") or [])) if "drifted_features" in numbers else "—",
                f'<span class="num">{_e(numbers.get("prediction_drift"))}</span>',
                f'<span class="num">{_e(numbers.get("roc_auc"))}</span>',
                links or "—",
                f'<span class="meta">{_e(report.summary)}</span>',
            ]
        )
    return _table(
        ["ds", "status", "decision", "drift share", "drifted", "prediction drift", "ROC AUC", "files", "summary"],
        rows,
        "reports",
    )


def _audit(section: Section) -> str:
    if not section.ok:
        return _error(section)
    events = section.value or []
    if not events:
        return '<p class="muted">The audit log is empty.</p>'
    rows = [
        [
            f'<span class="meta">{_e(event.ts)}</span>',
            f"<b>{_e(event.event)}</b>",
            _e(event.version),
            _e(event.actor),
            f'<span class="meta">{_e(event.deployment_id)}</span>',
            _e(event.reason)
            + (
                f"<details><summary>details</summary><pre>{escape(json.dumps(event.details, indent=2, sort_keys=True, default=str))}</pre></details>"
                if event.details
                else ""
            ),
        ]
        for event in events
    ]
    return _table(["time (UTC)", "event", "version", "actor", "deployment", "reason"], rows, "audit-log")


def render_page(overview: Overview, base: str = "") -> str:
    """The whole page."""
    sections: Mapping[str, Section] = overview.sections
    took = ", ".join(f"{name} {s.seconds:.2f}s" for name, s in sections.items() if s.seconds is not None)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Model operations · {_e(overview.model_name)}</title><style>{STYLE}</style></head>
<body>
<h1>Model operations · <span data-testid="model-name">{_e(overview.model_name)}</span></h1>
{_picker(overview, base)}
<p class="meta">generated {_e(overview.generated_at)} · MLflow {_e(overview.tracking_uri)} · lake {_e(overview.lake_uri)}
 · <a href="{escape((_prefix(base) or './') + _query(overview.dataset))}">refresh</a> · <a href="{escape(_prefix(base) + 'api/overview' + _query(overview.dataset))}">JSON</a></p>
<section id="registry"><h2>Registry: @champion and @challenger</h2>{_versions(sections[VERSIONS], overview)}</section>
<section id="canary"><h2>Live traffic and canary</h2>{_router(sections[ROUTER])}{_canary_checks(sections[AUDIT])}{_canary_charts(sections[AUDIT])}</section>
<section id="trends"><h2>Drift and quality per monitored window</h2>{_history(sections.get(HISTORY), overview.drift_share_threshold)}</section>
<section id="drift"><h2>Latest drift reports</h2><p class="meta">{_e(overview.lake_uri)}/{_e(overview.reports_prefix)}</p>{_reports(sections[REPORTS], base, overview.dataset)}</section>
<section id="audit"><h2>Deployment audit log (newest first)</h2>{_audit(sections[AUDIT])}</section>
<p class="meta">{escape(took)}</p>
</body></html>
"""


def overview_json(overview: Overview) -> dict[str, Any]:
    """The same data as plain JSON (``/api/overview``)."""
    from dataclasses import asdict, is_dataclass

    def plain(value: Any) -> Any:
        if is_dataclass(value) and not isinstance(value, type):
            return {k: plain(v) for k, v in asdict(value).items()}
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    fields = ("model_name", "tracking_uri", "lake_uri", "reports_prefix", "generated_at", "dataset", "choices")
    data: dict[str, Any] = {name: getattr(overview, name) for name in fields}
    data["sections"] = {
        name: {"value": plain(section.value), "error": section.error, "seconds": section.seconds}
        for name, section in overview.sections.items()
    }
    return json.loads(json.dumps(data, default=str))

