"""``mlops summary``: validated days with their versions."""

from __future__ import annotations

import pandas as pd

from mlops_pipeline.cli import main
from mlops_pipeline.data.lake import DataFile, Lake, frame_to_parquet_bytes


def _write(lake: Lake, ds: str, rows: int) -> None:
    frame = pd.DataFrame({"id": [f"x{i}" for i in range(rows)]})
    lake.write_partition("validated", ds, [DataFile("part-00000", ".parquet", frame_to_parquet_bytes(frame), rows)], {})


def test_summary_shows_versions_per_day(tmp_path, monkeypatch, capsys):
    from mlops_pipeline.config import get_settings

    lake = Lake((tmp_path / "lake").as_uri())
    for ds, contents in {"2026-01-01": [3], "2026-01-02": [3, 4, 5], "2026-01-03": [3, 4]}.items():
        for rows in contents:
            _write(lake, ds, rows)
    _write(lake, "2026-01-03", 3)  # back to the first content: a third version, the head again
    monkeypatch.setenv("MLOPS_LAKE_URI", lake.uri)
    monkeypatch.setenv("MLOPS_LAKE_KEEP_VERSIONS", "7")
    get_settings.cache_clear()
    try:
        assert main(["summary"]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "validated partitions:   3  (2026-01-01 .. 2026-01-03)" in out
    assert "validated versions:     7 kept, 2 day(s) with history (keeping 7 per day)" in out
    assert "  ds=2026-01-02: 3 versions [1, 2, 3], head v3" in out
    assert "  ds=2026-01-03: 3 versions [1, 2, 3], head v3" in out
    assert "ds=2026-01-01:" not in out
