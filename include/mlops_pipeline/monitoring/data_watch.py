"""The monitor's "data watch" section: what the watch suite noted on the window's batches.

Ingestion runs the watch suite on every batch and writes its findings into the batch's manifest
(validated or quarantined); it never quarantines. Here they are gathered for a monitored window:
new category values, values outside the profiled ranges, null shares above the profile, row counts
outside the band. They are shown beside the drift findings and do not change the decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.data.lake import Lake


def summarise(manifests: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """The section from ``{ds: manifest or None}``; a day with no manifest or no watch block is listed."""
    new_categories: dict[str, set[str]] = {}
    out_of_range: dict[str, dict[str, int]] = {}
    null_share_up: dict[str, dict[str, Any]] = {}
    row_count: list[str] = []
    days_with_findings: list[str] = []
    missing = sorted(ds for ds, manifest in manifests.items() if manifest is None)
    unwatched = sorted(ds for ds, manifest in manifests.items() if manifest is not None and not (manifest.get("watch") or {}).get("suite"))
    for ds, manifest in sorted(manifests.items()):
        findings = ((manifest or {}).get("watch") or {}).get("findings") or []
        if findings:
            days_with_findings.append(ds)
        for finding in findings:
            column, kind = str(finding.get("column")), finding.get("kind")
            if kind == "new_category":
                new_categories.setdefault(column, set()).update(str(v) for v in finding.get("values") or [])
            elif kind == "out_of_range":
                counts = out_of_range.setdefault(column, {"days": 0, "above": 0, "below": 0})
                counts["days"] += 1
                direction = finding.get("direction")
                for side in ("above", "below"):
                    counts[side] += int(direction in (side, "both"))
            elif kind == "null_share_up":
                worst = null_share_up.setdefault(column, {"days": 0, "worst": 0.0, "allowed": finding.get("allowed_null_share")})
                worst["days"] += 1
                worst["worst"] = max(worst["worst"], float(finding.get("null_share") or 0.0))
            elif kind == "row_count":
                row_count.append(ds)
    return {
        "days": sorted(manifests),
        "days_with_findings": days_with_findings,
        "new_categories": {column: sorted(values) for column, values in sorted(new_categories.items())},
        "out_of_range": dict(sorted(out_of_range.items())),
        "null_share_up": dict(sorted(null_share_up.items())),
        "row_count_outside_band": row_count,
        "days_without_a_batch": missing,
        "days_without_watch_results": unwatched,
    }


def read_window(lake: Lake, days: Iterable[str]) -> dict[str, Any]:
    """The section for ``days``, read from their validated (else quarantined) manifests."""
    manifests = {ds: lake.read_manifest("validated", ds) or lake.read_manifest("quarantine", ds) for ds in days}
    return summarise(manifests)


def headline(section: Mapping[str, Any]) -> str:
    """One line: which columns changed how, or that nothing was noted."""
    parts = [f"new {column} values {values}" for column, values in (section.get("new_categories") or {}).items()]
    parts += [
        f"{column} out of profile on {counts['days']} day(s)" + (f" ({counts['above']} above)" if counts.get("above") else "")
        for column, counts in (section.get("out_of_range") or {}).items()
    ]
    parts += [f"{column} null share up to {v['worst']:.1%}" for column, v in (section.get("null_share_up") or {}).items()]
    if section.get("row_count_outside_band"):
        parts.append(f"row count outside the band on {len(section['row_count_outside_band'])} day(s)")
    return "data watch: " + ("; ".join(parts) if parts else "nothing noted")
