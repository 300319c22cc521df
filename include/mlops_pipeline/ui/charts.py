"""The view's charts: pure functions from the gathered data to an inline SVG string.

Drawn on the server, with no script and nothing fetched: the page stays self-contained inside the
Airflow UI's frame. Each chart has a visible title, an accessible ``<title>``/``<desc>`` that says
what the data shows, labelled axes, and a ``<title>`` on every point (the hover text). Every point
of a series is one element with ``class="point"`` and ``data-series``, so a test (or a person with
the page source) can count what was drawn. Without data a chart is a sentence saying so, not an
empty frame; a single point is drawn in the middle of its axis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops_pipeline.ui.deployment import CanaryTimeline
    from mlops_pipeline.ui.reports import MonitoredWindow

WIDTH = 720
# Left: room for a check's name; right: for half a date label on the last tick.
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 110, 40, 52, 52
PLOT_HEIGHT = 200
LANE_HEIGHT = 18  # one row per canary check, below the traffic plot

BLUE, ORANGE, RED, GREEN, GREY = "#2563eb", "#d97706", "#b91c1c", "#15803d", "#6b7280"
STATUS_COLORS = {"passed": GREEN, "failed": RED}

# Tick steps of an elapsed-time axis, in seconds: round minutes and hours, not 1-2-5 multiples of 60.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _n(value: float) -> str:
    """A coordinate: two decimals are below a pixel, and keep the SVG short."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Box:
    """The plot area in SVG coordinates, and the data ranges mapped onto it."""

    left: float
    top: float
    right: float
    bottom: float
    x_min: float
    x_max: float
    y_min: float
    y_max: float

    def x(self, value: float) -> float:
        if self.x_max == self.x_min:  # one point: the middle of the axis
            return (self.left + self.right) / 2
        return self.left + (value - self.x_min) / (self.x_max - self.x_min) * (self.right - self.left)

    def y(self, value: float) -> float:
        clamped = min(max(value, self.y_min), self.y_max)  # a value off the scale sits on its edge
        if self.y_max == self.y_min:
            return (self.top + self.bottom) / 2
        return self.bottom - (clamped - self.y_min) / (self.y_max - self.y_min) * (self.bottom - self.top)


def nice_step(span: float, most: int = 6) -> float:
    """The smallest 1-2-5 step that cuts ``span`` into at most ``most`` intervals."""
    if span <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(span / most))
    return next(m * magnitude for m in (1, 2, 5, 10) if span / (m * magnitude) <= most)


def ticks(low: float, high: float, step: float) -> list[float]:
    first = math.ceil(low / step - 1e-9) * step
    count = int(math.floor((high - first) / step + 1e-9)) + 1
    return [round(first + i * step, 10) for i in range(max(count, 0))]


def quality_range(values: Iterable[float]) -> tuple[float, float]:
    """A y range around ROC AUC values, on 0.05 steps within [0, 1] (a flat line still gets height)."""
    values = list(values)
    low = max(0.0, math.floor((min(values) - 0.01) * 20) / 20)
    high = min(1.0, math.ceil((max(values) + 0.01) * 20) / 20)
    return (low, high) if high > low else (max(0.0, high - 0.05), min(1.0, low + 0.05))


def _svg_open(testid: str, height: float, title: str, desc: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-testid="{_e(testid)}" role="img" '
        f'viewBox="0 0 {WIDTH} {_n(height)}" width="{WIDTH}" height="{_n(height)}" '
        f'aria-labelledby="{_e(testid)}-title {_e(testid)}-desc" font-family="system-ui, sans-serif" font-size="11">'
        f'<title id="{_e(testid)}-title">{_e(title)}</title><desc id="{_e(testid)}-desc">{_e(desc)}</desc>'
        f'<text x="{MARGIN_LEFT}" y="18" font-size="14" font-weight="600" fill="currentColor">{_e(title)}</text>'
    )


def _legend(items: Sequence[tuple[str, str, str]]) -> str:
    """One row under the title: (colour, name, sample) with sample ``line``, ``dashed``, ``passed`` or ``failed``."""
    parts, x = [], float(MARGIN_LEFT)
    for color, name, sample in items:
        if sample in ("passed", "failed"):
            mark = (
                f'<circle cx="{_n(x + 9)}" cy="32" r="5" fill="{color}"/>'
                if sample == "passed"
                else f'<path d="M{_n(x + 5)},28L{_n(x + 13)},36M{_n(x + 13)},28L{_n(x + 5)},36" stroke="{color}" stroke-width="2.5"/>'
            )
        else:
            dash = ' stroke-dasharray="5 3"' if sample == "dashed" else ""
            mark = f'<line x1="{_n(x)}" y1="32" x2="{_n(x + 18)}" y2="32" stroke="{color}" stroke-width="2"{dash}/>'
        parts.append(f'{mark}<text x="{_n(x + 23)}" y="36" fill="currentColor">{_e(name)}</text>')
        x += 23 + 7 * len(name) + 20
    return f'<g class="legend">{"".join(parts)}</g>'


def _axes(box: Box, x_ticks: Sequence[tuple[float, str]], y_ticks: Sequence[tuple[float, str]], x_label: str, y_label: str) -> str:
    parts = ['<g class="axes">']
    for value, text in y_ticks:
        y = _n(box.y(value))
        parts.append(
            f'<line x1="{_n(box.left)}" y1="{y}" x2="{_n(box.right)}" y2="{y}" stroke="{GREY}" stroke-opacity="0.25"/>'
            f'<text x="{_n(box.left - 6)}" y="{y}" dy="0.32em" text-anchor="end" fill="currentColor">{_e(text)}</text>'
        )
    for value, text in x_ticks:
        x = _n(box.x(value))
        parts.append(
            f'<line x1="{x}" y1="{_n(box.bottom)}" x2="{x}" y2="{_n(box.bottom + 4)}" stroke="{GREY}"/>'
            f'<text x="{x}" y="{_n(box.bottom + 16)}" text-anchor="middle" fill="currentColor">{_e(text)}</text>'
        )
    parts.append(
        f'<line x1="{_n(box.left)}" y1="{_n(box.bottom)}" x2="{_n(box.right)}" y2="{_n(box.bottom)}" stroke="{GREY}"/>'
        f'<line x1="{_n(box.left)}" y1="{_n(box.top)}" x2="{_n(box.left)}" y2="{_n(box.bottom)}" stroke="{GREY}"/>'
        f'<text class="x-label" x="{_n((box.left + box.right) / 2)}" y="{_n(box.bottom + 36)}" text-anchor="middle" '
        f'fill="currentColor">{_e(x_label)}</text>'
        f'<text class="y-label" transform="translate(14 {_n((box.top + box.bottom) / 2)}) rotate(-90)" '
        f'text-anchor="middle" fill="currentColor">{_e(y_label)}</text></g>'
    )
    return "".join(parts)


def _line(points: Sequence[tuple[float, float] | None], color: str, dashed: bool = False, step: bool = False) -> str:
    """A polyline per run of points; None breaks the line (a window without that number)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if point is None:
            runs.append([])
        else:
            runs[-1].append(point)
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    lines = []
    for run in runs:
        if len(run) < 2:
            continue
        coordinates = []
        for index, (x, y) in enumerate(run):
            if step and index and run[index - 1][1] != y:  # the corner: the old value held until now
                coordinates.append(f"{_n(x)},{_n(run[index - 1][1])}")
            coordinates.append(f"{_n(x)},{_n(y)}")
        lines.append(f'<polyline points="{" ".join(coordinates)}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
    return "".join(lines)


def _marker(x: float, y: float, series: str, color: str, hover: str, *, status: str | None = None, hollow: bool = False) -> str:
    """One point: a circle, or for a check a tick (passed), a cross (failed) or a hollow circle (other)."""
    status_attr = f' data-status="{_e(status)}"' if status else ""
    common = f'class="point" data-series="{_e(series)}"{status_attr}'
    tip = f"<title>{_e(hover)}</title>"
    if status == "failed":
        path = f"M{_n(x - 5)},{_n(y - 5)}L{_n(x + 5)},{_n(y + 5)}M{_n(x + 5)},{_n(y - 5)}L{_n(x - 5)},{_n(y + 5)}"
        return f'<path {common} d="{path}" stroke="{RED}" stroke-width="3" stroke-linecap="round">{tip}</path>'
    if status == "passed":
        return (
            f'<g {common}><circle cx="{_n(x)}" cy="{_n(y)}" r="6" fill="{GREEN}"/>'
            f'<path d="M{_n(x - 3)},{_n(y)}l2,2.5l4,-5" stroke="#fff" stroke-width="1.6" fill="none"/>{tip}</g>'
        )
    fill = "none" if hollow or status else color
    return f'<circle {common} cx="{_n(x)}" cy="{_n(y)}" r="4" fill="{fill}" stroke="{color}" stroke-width="2">{tip}</circle>'


def _empty(testid: str, text: str) -> str:
    return f'<p class="muted chart-empty" data-testid="{_e(testid)}-empty">{_e(text)}</p>'


def _box() -> tuple[float, float, float, float]:
    """left, top, right, bottom of the plot area (the same in every chart, so they line up)."""
    return float(MARGIN_LEFT), float(MARGIN_TOP), float(WIDTH - MARGIN_RIGHT), float(MARGIN_TOP + PLOT_HEIGHT)


# --- windows (days on the x axis) -----------------------------------------------------------------


def _day(ds: str) -> int:
    return date.fromisoformat(ds).toordinal()


def _day_ticks(days: Sequence[int]) -> list[tuple[float, str]]:
    low, high = min(days), max(days)
    step = max(1, math.ceil((high - low) / 6))
    return [(float(day), date.fromordinal(day).isoformat()) for day in range(low, high + 1, step)]


def _window_box(windows: Sequence[MonitoredWindow], y_min: float, y_max: float) -> Box:
    days = [_day(window.ds) for window in windows]
    left, top, right, bottom = _box()
    return Box(left, top, right, bottom, float(min(days)), float(max(days)), y_min, y_max)


def _fraction_ticks(low: float, high: float) -> list[tuple[float, str]]:
    # Ranges are at least 0.05 wide, so steps are 0.01 or more: two decimals show every tick exactly.
    return [(value, f"{value:.2f}") for value in ticks(low, high, nice_step(high - low, 5))]


def _span(windows: Sequence[MonitoredWindow]) -> str:
    return windows[0].ds if len(windows) == 1 else f"{windows[0].ds} to {windows[-1].ds}"


def drift_share_chart(windows: Sequence[MonitoredWindow], threshold: float | None, testid: str = "drift-share-chart") -> str:
    """Drift share per monitored window (oldest first), with the drift-share threshold as a line."""
    drawn = [window for window in windows if window.drift_share is not None]
    if not drawn:
        return _empty(testid, "No monitored windows yet: the drift share chart appears after the first monitor run.")
    box = _window_box(drawn, 0.0, 1.0)
    above = [window for window in drawn if threshold is not None and window.drift_share is not None and window.drift_share >= threshold]
    latest = drawn[-1]
    desc = (
        f"Share of drifted features in {len(drawn)} monitored window(s), {_span(drawn)}; latest {latest.ds}: "
        f"{latest.drift_share:.2f}."
        + (f" Threshold {threshold:.2f}: {len(above)} window(s) at or above it." if threshold is not None else "")
    )
    parts = [
        _svg_open(testid, MARGIN_TOP + PLOT_HEIGHT + MARGIN_BOTTOM, "Drift share per monitored window", desc),
        _legend([(BLUE, "drift share", "line")] + ([(RED, f"threshold {threshold:.2f}", "dashed")] if threshold is not None else [])),
        _axes(box, _day_ticks([_day(w.ds) for w in drawn]), _fraction_ticks(0.0, 1.0), "monitored window (ds)", "share of drifted features"),
    ]
    if threshold is not None:
        y = _n(box.y(threshold))
        parts.append(
            f'<line class="threshold" data-value="{_e(threshold)}" x1="{_n(box.left)}" y1="{y}" x2="{_n(box.right)}" y2="{y}" '
            f'stroke="{RED}" stroke-width="1.5" stroke-dasharray="6 4"><title>drift-share threshold {threshold:.2f}</title></line>'
        )
    parts.append(_line([(box.x(_day(w.ds)), box.y(w.drift_share)) for w in drawn if w.drift_share is not None], BLUE))
    for window in drawn:
        share = window.drift_share if window.drift_share is not None else 0.0
        over = threshold is not None and share >= threshold
        hover = f"{window.ds}: drift share {share:.2f}" + (" (at or above the threshold)" if over else "")
        parts.append(_marker(box.x(_day(window.ds)), box.y(share), "drift_share", RED if over else BLUE, hover))
    return "".join(parts) + "</svg>"


def quality_chart(windows: Sequence[MonitoredWindow], testid: str = "quality-chart") -> str:
    """Estimated and realised ROC AUC per monitored window: two series, a gap where a window has no number."""
    drawn = [window for window in windows if window.estimated_roc_auc is not None or window.realised_roc_auc is not None]
    if not drawn:
        return _empty(testid, "No monitored windows with a quality number yet: no estimate and no labels so far.")
    values = [v for w in drawn for v in (w.estimated_roc_auc, w.realised_roc_auc) if v is not None]
    low, high = quality_range(values)
    box = _window_box(drawn, low, high)
    estimated = [w for w in drawn if w.estimated_roc_auc is not None]
    realised = [w for w in drawn if w.realised_roc_auc is not None]
    desc = (
        f"ROC AUC of {len(drawn)} monitored window(s), {_span(drawn)}: {len(estimated)} estimated before labels, "
        f"{len(realised)} realised once labels arrived."
        + (f" Latest estimate {estimated[-1].ds}: {estimated[-1].estimated_roc_auc:.4f}." if estimated else "")
        + (f" Latest realised {realised[-1].ds}: {realised[-1].realised_roc_auc:.4f}." if realised else "")
    )
    parts = [
        _svg_open(testid, MARGIN_TOP + PLOT_HEIGHT + MARGIN_BOTTOM, "Quality per monitored window: estimated and realised ROC AUC", desc),
        _legend([(ORANGE, "estimated (before labels)", "dashed"), (BLUE, "realised (labelled)", "line")]),
        _axes(box, _day_ticks([_day(w.ds) for w in drawn]), _fraction_ticks(low, high), "monitored window (ds)", "ROC AUC"),
    ]
    for key, name, color, dashed in (
        ("estimated_roc_auc", "estimated", ORANGE, True),
        ("realised_roc_auc", "realised", BLUE, False),
    ):
        points: list[tuple[float, float] | None] = []
        markers = []
        for window in drawn:
            value = getattr(window, key)
            if value is None:
                points.append(None)
                continue
            x, y = box.x(_day(window.ds)), box.y(value)
            points.append((x, y))
            markers.append(_marker(x, y, key.removesuffix("_roc_auc"), color, f"{window.ds}: {name} ROC AUC {value:.4f}", hollow=dashed))
        parts.append(_line(points, color, dashed=dashed))
        parts.extend(markers)
    return "".join(parts) + "</svg>"


# --- a canary deployment (elapsed time on the x axis) --------------------------------------------


def _time(ts: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(ts) if ts else None
    except ValueError:
        return None


def elapsed_label(seconds: float) -> str:
    """``+0.25 s``, ``+45 s``, ``+12 min``, ``+2 h 30 min``, ``+3 d``: time since the deployment's first step."""
    if seconds <= 0:
        return "0"
    if seconds < 1:
        return f"+{seconds:.3g} s"
    if seconds < 120:
        return f"+{seconds:.0f} s"
    if seconds < 7200:
        return f"+{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"+{hours} h" + (f" {minutes} min" if minutes else "")
    return f"+{seconds / 86400:.3g} d"


def time_step(span: float, most: int = 6) -> float:
    """A tick step for ``span`` seconds: 1-2-5 below a second, round minutes and hours above."""
    if span < 1:
        return nice_step(span, most)
    return next((step for step in TIME_STEPS if span / step <= most), math.ceil(span / most / 86400) * 86400.0)


def _check_names(timeline: CanaryTimeline) -> list[str]:
    names: list[str] = []
    for analysis in timeline.analyses:
        for check in analysis.checks:
            name = str(check.get("name", ""))
            if name and name not in names:
                names.append(name)
    return names


def canary_chart(timeline: CanaryTimeline, testid: str = "canary-chart") -> str:
    """The canary's traffic share per step over time (a step line), each step's analysis as a pass /
    fail marker on it, and one row per check below, with that check's result at each analysis."""
    shifts = [(t, shift.percent) for shift in timeline.shifts if (t := _time(shift.ts)) is not None]
    analyses = [(t, analysis) for analysis in timeline.analyses if (t := _time(analysis.ts)) is not None]
    ends = _time(timeline.outcome_ts)
    times = [t for t, _ in shifts] + [t for t, _ in analyses] + ([ends] if ends else [])
    label = f"v{timeline.version}" if timeline.version else "a version"
    if not shifts and not analyses:
        return _empty(testid, f"Deployment {timeline.deployment_id} of {label} has no traffic step in the events read.")
    start = min(times)
    span = max((t - start).total_seconds() for t in times)
    names = _check_names(timeline)
    left, top, right, bottom = _box()
    box = Box(left, top, right, bottom, 0.0, span, 0.0, 100.0)
    lanes_top = bottom + 66  # below the axis label
    height = lanes_top + LANE_HEIGHT * len(names) + (12 if names else 0)
    passed = sum(1 for _, analysis in analyses if analysis.passed)
    steps = ", ".join(f"{percent}%" for _, percent in shifts) or "none"
    title = f"Canary {label} ({timeline.deployment_id}): traffic share and checks per step"
    desc = (
        f"Deployment {timeline.deployment_id} of {label} from {start.isoformat(timespec='seconds')}: traffic steps {steps}; "
        f"{len(analyses)} analysis(es), {passed} passed, {len(analyses) - passed} failed"
        + (f"; outcome {timeline.outcome}." if timeline.outcome else "; in progress.")
    )
    step = time_step(span) if span > 0 else 1.0
    x_ticks = [(value, elapsed_label(value)) for value in ticks(0.0, span, step)] if span > 0 else [(0.0, "0")]
    parts = [
        _svg_open(testid, height, title, desc),
        _legend([(BLUE, "canary share of the traffic", "line"), (GREEN, "passed", "passed"), (RED, "failed", "failed")]),
        _axes(
            box, x_ticks, [(v, f"{v:.0f}%") for v in ticks(0.0, 100.0, 25.0)],
            f"time since the first step, {start.strftime('%Y-%m-%d %H:%M:%S')} UTC", "canary traffic (%)",
        ),  # fmt: skip
    ]

    def x_of(moment: datetime) -> float:
        return box.x((moment - start).total_seconds())

    # The share holds until the next step, and the last one until the deployment's end (or its latest analysis).
    line = [(x_of(t), box.y(percent)) for t, percent in shifts]
    last = max([t for t, _ in analyses] + ([ends] if ends else []), default=None)
    if shifts and last is not None and last > shifts[-1][0]:
        line.append((x_of(last), box.y(shifts[-1][1])))
    parts.append(_line(list(line), BLUE, step=True))
    for t, percent in shifts:
        parts.append(_marker(x_of(t), box.y(percent), "traffic", BLUE, f"{elapsed_label((t - start).total_seconds())}: {percent}% to the canary"))
    if ends is not None and timeline.outcome:
        x = _n(x_of(ends))
        parts.append(
            f'<g class="outcome"><line x1="{x}" y1="{_n(box.top)}" x2="{x}" y2="{_n(box.bottom)}" stroke="{GREY}" stroke-dasharray="3 3"/>'
            f'<text x="{x}" y="{_n(box.top - 4)}" text-anchor="end" fill="currentColor">{_e(timeline.outcome)}</text></g>'
        )
    for t, analysis in analyses:
        status = "passed" if analysis.passed else "failed"
        percent = analysis.percent if analysis.percent is not None else 0
        parts.append(_marker(x_of(t), box.y(percent), "analysis", STATUS_COLORS[status], f"{status} at {percent}%: {analysis.reason}", status=status))
    if names:
        parts.append(f'<text x="{_n(box.left)}" y="{_n(lanes_top - 8)}" fill="currentColor" font-weight="600">checks at each step</text>')
    for row, name in enumerate(names):
        y = lanes_top + LANE_HEIGHT * row + LANE_HEIGHT / 2
        parts.append(
            f'<text x="{_n(box.left - 6)}" y="{_n(y)}" dy="0.32em" text-anchor="end" fill="currentColor">{_e(name)}</text>'
            f'<line x1="{_n(box.left)}" y1="{_n(y)}" x2="{_n(box.right)}" y2="{_n(y)}" stroke="{GREY}" stroke-opacity="0.25"/>'
        )
        for t, analysis in analyses:
            check = next((c for c in analysis.checks if str(c.get("name", "")) == name), None)
            if check is None:
                continue
            status = str(check.get("status", ""))
            hover = f"{name} at {analysis.percent}%: {status}" + (f" ({check['detail']})" if check.get("detail") else "")
            parts.append(_marker(x_of(t), y, "check", STATUS_COLORS.get(status, GREY), hover, status=status or "unknown"))
    return "".join(parts) + "</svg>"
