"""The view's charts: data in, inline SVG out; parsed back as XML to check what was drawn and where."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from mlops_pipeline.ui.charts import (
    MARGIN_LEFT,
    MARGIN_RIGHT,
    MARGIN_TOP,
    PLOT_HEIGHT,
    WIDTH,
    Box,
    canary_chart,
    drift_share_chart,
    elapsed_label,
    quality_chart,
    quality_range,
    time_step,
)
from mlops_pipeline.ui.deployment import CanaryAnalysis, CanaryTimeline, TrafficShift
from mlops_pipeline.ui.reports import MonitoredWindow

SVG = "{http://www.w3.org/2000/svg}"
PLOT_TOP, PLOT_BOTTOM = MARGIN_TOP, MARGIN_TOP + PLOT_HEIGHT
PLOT_LEFT, PLOT_RIGHT = MARGIN_LEFT, WIDTH - MARGIN_RIGHT


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg"
    return root


def points(root: ET.Element, series: str) -> list[ET.Element]:
    return [element for element in root.iter() if element.get("class") == "point" and element.get("data-series") == series]


def centre(element: ET.Element) -> tuple[float, float]:
    if element.tag == f"{SVG}circle":
        return float(element.attrib["cx"]), float(element.attrib["cy"])
    if element.tag == f"{SVG}g":
        return centre(element.find(f"{SVG}circle"))  # type: ignore[arg-type]
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", element.attrib["d"])]
    return (numbers[0] + numbers[2]) / 2, (numbers[1] + numbers[3]) / 2  # a cross: the middle of its first stroke


def windows(shares: list[float | None], estimated: list[float | None] | None = None, realised: list[float | None] | None = None) -> list[MonitoredWindow]:
    estimated = estimated or [None] * len(shares)
    realised = realised or [None] * len(shares)
    return [
        MonitoredWindow(ds=f"2026-01-{day + 1:02d}", drift_share=share, estimated_roc_auc=est, realised_roc_auc=real)
        for day, (share, est, real) in enumerate(zip(shares, estimated, realised, strict=True))
    ]


def test_drift_share_chart_has_one_point_per_window_scaled_into_the_plot_box() -> None:
    data = windows([0.0, 0.25, 0.5, 1.0, 0.1])
    root = parse(drift_share_chart(data, threshold=0.3))

    drawn = points(root, "drift_share")
    assert len(drawn) == 5
    xs, ys = zip(*(centre(point) for point in drawn), strict=True)
    assert list(xs) == sorted(xs) and len(set(xs)) == 5, "one x per window, oldest left"
    assert all(PLOT_TOP <= y <= PLOT_BOTTOM for y in ys)
    assert ys[0] == PLOT_BOTTOM and ys[3] == PLOT_TOP, "share 0 on the x axis, share 1 at the top"
    assert ys[2] == pytest.approx((PLOT_TOP + PLOT_BOTTOM) / 2)
    threshold = next(element for element in root.iter() if element.get("class") == "threshold")
    assert float(threshold.attrib["y1"]) == pytest.approx(PLOT_BOTTOM - 0.3 * PLOT_HEIGHT)
    assert threshold.get("data-value") == "0.3"
    # Windows at or above the threshold are drawn red, the others blue; the hover text says which.
    assert [point.get("fill") for point in drawn] == ["#2563eb", "#2563eb", "#b91c1c", "#b91c1c", "#2563eb"]
    assert "at or above the threshold" in drawn[2].find(f"{SVG}title").text  # type: ignore[union-attr]
    assert root.find(f"{SVG}title").text == "Drift share per monitored window"  # type: ignore[union-attr]
    desc = root.find(f"{SVG}desc").text or ""
    assert "5 monitored window(s), 2026-01-01 to 2026-01-05" in desc and "2 window(s) at or above it" in desc
    assert root.get("role") == "img" and root.get("aria-labelledby") == "drift-share-chart-title drift-share-chart-desc"
    texts = [element.text for element in root.iter(f"{SVG}text")]
    assert "monitored window (ds)" in texts and "share of drifted features" in texts and "2026-01-01" in texts


def test_a_gap_in_the_days_keeps_its_width_on_the_axis() -> None:
    data = [MonitoredWindow("2026-01-01", 0.1), MonitoredWindow("2026-01-02", 0.2), MonitoredWindow("2026-01-11", 0.3)]
    xs = [centre(point)[0] for point in points(parse(drift_share_chart(data, 0.3)), "drift_share")]
    assert xs[2] - xs[1] == pytest.approx(9 * (xs[1] - xs[0]))


def test_no_window_is_a_sentence_not_a_chart() -> None:
    for html in (drift_share_chart([], 0.3), drift_share_chart(windows([None, None]), 0.3)):
        assert "<svg" not in html and "No monitored windows yet" in html and 'data-testid="drift-share-chart-empty"' in html
    assert "<svg" not in quality_chart(windows([0.2])) and "No monitored windows with a quality number yet" in quality_chart([])


def test_a_single_window_is_one_point_in_the_middle_of_the_x_axis() -> None:
    root = parse(drift_share_chart(windows([0.4]), threshold=0.3))
    (point,) = points(root, "drift_share")
    x, y = centre(point)
    box = Box(PLOT_LEFT, PLOT_TOP, PLOT_RIGHT, PLOT_BOTTOM, 0, 0, 0, 1)
    assert x == pytest.approx((box.left + box.right) / 2)
    assert y == pytest.approx(PLOT_BOTTOM - 0.4 * PLOT_HEIGHT)
    assert not list(root.iter(f"{SVG}polyline")), "one point makes no line"
    assert "latest 2026-01-01: 0.40" in (root.find(f"{SVG}desc").text or "")


def test_values_are_escaped() -> None:
    evil = '<script>alert("x")</script>'
    timeline = CanaryTimeline(
        deployment_id=evil, version=evil,
        shifts=[TrafficShift("2026-01-09T10:00:00+00:00", 5)],
        analyses=[CanaryAnalysis("2026-01-09T10:05:00+00:00", 5, False, evil, [{"name": evil, "status": "failed", "detail": evil}])],
        outcome="rolled_back", outcome_ts="2026-01-09T10:06:00+00:00",
    )  # fmt: skip
    svg = canary_chart(timeline)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = parse(svg)
    assert evil in (root.find(f"{SVG}desc").text or "")  # the parsed text is the original
    assert "<script>" not in canary_chart(CanaryTimeline(deployment_id=evil, version=None))


def test_quality_chart_has_two_series_with_gaps_where_a_number_is_missing() -> None:
    data = windows(
        [0.1] * 6,
        estimated=[0.80, 0.81, None, 0.78, 0.77, 0.76],
        realised=[0.82, 0.79, 0.80, None, None, None],
    )
    root = parse(quality_chart(data))
    estimated, realised = points(root, "estimated"), points(root, "realised")
    assert len(estimated) == 5 and len(realised) == 3
    low, high = quality_range([0.76, 0.82])
    assert (low, high) == (0.75, 0.85)
    for point, value in zip(estimated + realised, [0.80, 0.81, 0.78, 0.77, 0.76, 0.82, 0.79, 0.80], strict=True):
        assert centre(point)[1] == pytest.approx(PLOT_BOTTOM - (value - low) / (high - low) * PLOT_HEIGHT)
    polylines = list(root.iter(f"{SVG}polyline"))
    # estimated: [0, 1] and [3, 4, 5] (window 2 has no estimate); realised: [0, 1, 2]
    assert sorted(len(line.attrib["points"].split()) for line in polylines) == [2, 3, 3]
    desc = root.find(f"{SVG}desc").text or ""
    assert "5 estimated before labels, 3 realised" in desc and "Latest realised 2026-01-03: 0.8000" in desc


def test_quality_range_of_one_value_still_has_height() -> None:
    low, high = quality_range([1.0])
    assert 0 <= low < high <= 1
    root = parse(quality_chart(windows([None], estimated=[1.0])))
    (point,) = points(root, "estimated")
    assert PLOT_TOP <= centre(point)[1] <= PLOT_BOTTOM


def canary(outcome: str | None = None) -> CanaryTimeline:
    ok = [{"name": "errors", "status": "passed"}, {"name": "latency", "status": "passed"}]
    return CanaryTimeline(
        deployment_id="churn-v2-x",
        version="2",
        shifts=[TrafficShift("2026-01-09T10:00:00+00:00", 5), TrafficShift("2026-01-09T10:10:00+00:00", 25), TrafficShift("2026-01-09T10:20:00+00:00", 50)],
        analyses=[
            CanaryAnalysis("2026-01-09T10:09:00+00:00", 5, True, "ok", ok),
            CanaryAnalysis("2026-01-09T10:19:00+00:00", 25, True, "ok", ok),
            CanaryAnalysis("2026-01-09T10:29:00+00:00", 50, False, "latency", [{"name": "errors", "status": "insufficient"}, {"name": "latency", "status": "failed"}]),
        ],
        outcome=outcome,
        outcome_ts="2026-01-09T10:30:00+00:00" if outcome else None,
    )  # fmt: skip


def test_canary_chart_draws_the_steps_the_analyses_and_each_check() -> None:
    root = parse(canary_chart(canary("rolled_back")))

    traffic = points(root, "traffic")
    assert [centre(point)[1] for point in traffic] == pytest.approx([PLOT_BOTTOM - p / 100 * PLOT_HEIGHT for p in (5, 25, 50)])
    assert centre(traffic[0])[0] == PLOT_LEFT, "the first step is at the start of the time axis"
    analyses = points(root, "analysis")
    assert [point.get("data-status") for point in analyses] == ["passed", "passed", "failed"]
    assert analyses[2].tag == f"{SVG}path", "a failed step is a cross"
    assert centre(analyses[2])[1] == pytest.approx(PLOT_BOTTOM - 0.5 * PLOT_HEIGHT)
    checks = points(root, "check")
    assert [point.get("data-status") for point in checks] == ["passed", "passed", "insufficient", "passed", "passed", "failed"]
    errors_row, latency_row = {centre(p)[1] for p in checks[:3]}, {centre(p)[1] for p in checks[3:]}
    assert len(errors_row) == 1 and len(latency_row) == 1 and errors_row != latency_row, "one row per check"
    assert all(y > PLOT_BOTTOM for y in errors_row | latency_row), "the check rows are below the plot"
    # The share holds until the next step: the step line has a corner per step, and runs to the end.
    (line,) = root.iter(f"{SVG}polyline")
    corners = [tuple(map(float, pair.split(","))) for pair in line.attrib["points"].split()]
    assert len(corners) == 6 and corners[-1][0] == PLOT_RIGHT
    texts = [element.text for element in root.iter(f"{SVG}text")]
    assert "rolled_back" in texts and "+30 min" in texts and "canary traffic (%)" in texts and "latency" in texts
    desc = root.find(f"{SVG}desc").text or ""
    assert "traffic steps 5%, 25%, 50%; 3 analysis(es), 2 passed, 1 failed; outcome rolled_back." in desc


def test_canary_chart_with_one_step_and_no_analysis_yet() -> None:
    timeline = CanaryTimeline("churn-v3-y", "3", shifts=[TrafficShift("2026-01-09T10:00:00+00:00", 10)])
    root = parse(canary_chart(timeline))
    (point,) = points(root, "traffic")
    assert centre(point) == pytest.approx(((PLOT_LEFT + PLOT_RIGHT) / 2, PLOT_BOTTOM - 0.1 * PLOT_HEIGHT))
    assert "in progress" in (root.find(f"{SVG}desc").text or "")
    assert not points(root, "analysis") and not points(root, "check")


@pytest.mark.parametrize(
    ("seconds", "label"),
    [(0, "0"), (0.004, "+0.004 s"), (45, "+45 s"), (600, "+10 min"), (9000, "+2 h 30 min"), (3 * 86400, "+3 d")],
)
def test_elapsed_labels(seconds: float, label: str) -> None:
    assert elapsed_label(seconds) == label


def test_time_steps_are_round() -> None:
    assert time_step(1800) == 300 and time_step(3 * 3600) == 1800 and time_step(0.01) == pytest.approx(0.002)
