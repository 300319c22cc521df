"""The monitor's data-watch section: the watch suite's findings of a window, read from manifests."""

from mlops_pipeline.monitoring.data_watch import headline, read_window, summarise


def manifest(*findings, suite="churn_watch"):
    return {"status": "validated", "watch": {"suite": suite, "success": not findings, "findings": list(findings)}}


def test_findings_are_gathered_by_kind_and_column():
    section = summarise({
        "2026-04-01": manifest({"column": "temp_max", "kind": "out_of_range", "direction": "above"}),
        "2026-04-02": manifest(
            {"column": "temp_max", "kind": "out_of_range", "direction": "below"},
            {"column": "plan", "kind": "new_category", "values": ["platinum"]},
            {"column": "age", "kind": "null_share_up", "null_share": 0.04, "allowed_null_share": 0.01},
        ),
        "2026-04-03": manifest({"column": "(table)", "kind": "row_count", "rows": 3}),
        "2026-04-04": manifest(),
        "2026-04-05": None,
    })  # fmt: skip
    assert section["out_of_range"] == {"temp_max": {"days": 2, "above": 1, "below": 1}}
    assert section["new_categories"] == {"plan": ["platinum"]}
    assert section["null_share_up"] == {"age": {"days": 1, "worst": 0.04, "allowed": 0.01}}
    assert section["row_count_outside_band"] == ["2026-04-03"]
    assert section["days_with_findings"] == ["2026-04-01", "2026-04-02", "2026-04-03"]
    assert section["days_without_a_batch"] == ["2026-04-05"]
    line = headline(section)
    assert "new plan values ['platinum']" in line and "temp_max out of profile on 2 day(s) (1 above)" in line


def test_a_day_ingested_without_a_watch_suite_is_listed_and_a_quiet_window_says_so():
    section = summarise({"2026-04-01": {"status": "validated"}, "2026-04-02": manifest()})
    assert section["days_without_watch_results"] == ["2026-04-01"]
    assert headline(section) == "data watch: nothing noted"


def test_read_window_prefers_the_validated_manifest_and_falls_back_to_quarantine(lake):
    from mlops_pipeline.data.lake import DataFile

    lake.write_partition("quarantine", "2026-04-01", [DataFile("x", ".json", b"{}")],
                         manifest({"column": "plan", "kind": "new_category", "values": ["platinum"]}))  # fmt: skip
    lake.write_partition("validated", "2026-04-02", [DataFile("x", ".json", b"{}")], manifest())
    section = read_window(lake, ["2026-04-01", "2026-04-02", "2026-04-03"])
    assert section["new_categories"] == {"plan": ["platinum"]}
    assert section["days_without_a_batch"] == ["2026-04-03"]
