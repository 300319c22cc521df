"""Acceptance on real data: Seattle's daily weather 2012-2015 (``vega_datasets``' bundled
``seattle-weather``, read offline), one row a day.

A user exports it as one CSV file a day and describes it with a dataset file: the id is the date
as text, the time column the date, the features the day's weather, and the target the one a user
would pick, ``rain_next_day`` (the next day's precipitation above zero). They declare only what is
physically wrong (negative precipitation or wind, temperatures no Seattle day reaches, a weather
category outside the five known ones), bootstrap the suites from two winter weeks, then ingest the
next six months through the real extract and validate steps into a lake.

The gate must not quarantine spring for being warmer than January; the watch suite must notice it.
"""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import day_window

pytestmark = pytest.mark.timeout(600)

WEATHER = ["drizzle", "fog", "rain", "snow", "sun"]
REFERENCE_START, REFERENCE_DAYS = date(2012, 1, 1), 14
INGEST_START, INGEST_DAYS = date(2012, 1, 15), 182  # 2012-01-15 .. 2012-07-14

DATASET_YAML = """\
name: seattle_weather
description: Daily weather in Seattle (vega_datasets seattle-weather), one row a day.
source:
  kind: file
  path_template: {source}/{{ds}}.csv
id_column: day
time_column: date
target: rain_next_day
numeric_features: [precipitation, temp_max, temp_min, wind]
categorical_features: [weather]
suite: seattle_weather_suite.json
min_batch_rows: 1
domains:
  precipitation: {{min: 0, nullable: false}}
  wind: {{min: 0, nullable: false}}
  temp_max: {{min: -40, max: 50, nullable: false}}
  temp_min: {{min: -40, max: 50, nullable: false}}
  weather: {{categories: [{weather}], allow_new: false, nullable: false}}
  rain_next_day: {{categories: [0, 1], nullable: false}}
"""


def seattle_weather() -> pd.DataFrame:
    """The bundled table with the columns a user's export would have."""
    from vega_datasets import data

    frame = data.seattle_weather().sort_values("date").reset_index(drop=True)
    frame["rain_next_day"] = (frame["precipitation"].shift(-1) > 0).astype("int64")
    frame = frame.iloc[:-1]  # the last day has no next day to label it
    frame.insert(0, "day", frame["date"].dt.strftime("%Y-%m-%d"))
    return frame


def declared_defects(row: pd.Series) -> list[str]:
    """What is wrong with a day by the declaration, checked here without the suites."""
    defects = [f"{c} is null" for c in ("precipitation", "wind", "temp_max", "temp_min", "weather") if pd.isna(row[c])]
    if row["precipitation"] < 0:
        defects.append(f"negative precipitation {row['precipitation']}")
    if row["wind"] < 0:
        defects.append(f"negative wind {row['wind']}")
    for column in ("temp_max", "temp_min"):
        if not -40 <= row[column] <= 50:
            defects.append(f"{column} {row[column]} outside [-40, 50]")
    if row["weather"] not in WEATHER:
        defects.append(f"unknown weather {row['weather']!r}")
    return defects


@pytest.fixture
def seattle(tmp_path: Path, lake_uri: str):
    table = seattle_weather()
    source = tmp_path / "exports"
    source.mkdir()
    for day, rows in table.groupby("day"):
        rows.to_csv(source / f"{day}.csv", index=False)
    yaml_path = tmp_path / "seattle_weather.yaml"
    yaml_path.write_text(DATASET_YAML.format(source=source, weather=", ".join(WEATHER)))
    return table, source, yaml_path


def test_a_real_dataset_through_bootstrap_and_six_months_of_ingestion(seattle, tmp_path, capsys):
    from mlops_pipeline.cli import main
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.ingest import BatchRejected, extract, validate
    from mlops_pipeline.monitoring import data_watch
    from mlops_pipeline.storage import open_lake

    table, source, yaml_path = seattle
    assert main(["suite", "--dataset", str(yaml_path), "--start", REFERENCE_START.isoformat(), "--days", str(REFERENCE_DAYS)]) == 0
    for name in ("seattle_weather_suite.json", "seattle_weather_watch.json", "seattle_weather_suite_report.md"):
        assert (tmp_path / name).is_file(), name
    watch_suite = json.loads((tmp_path / "seattle_weather_watch.json").read_text())
    winter_temp_max = next(
        e["kwargs"]["max_value"] for e in watch_suite["expectations"]
        if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] == "temp_max"
    )  # fmt: skip

    spec = load_dataset_spec(str(yaml_path))
    settings = get_settings()
    lake = open_lake(settings)
    days = [INGEST_START + timedelta(days=i) for i in range(INGEST_DAYS)]
    quarantined: dict[str, list[str]] = {}
    started = time.monotonic()
    for day in days:
        window = day_window(day)
        extract(lake, spec, window, settings)
        try:
            validate(lake, spec, window, build_docs=day == days[-1])
        except BatchRejected as exc:
            quarantined[day.isoformat()] = exc.failures
    seconds = time.monotonic() - started

    by_day = table.set_index("day")
    defective = {ds: declared_defects(by_day.loc[ds]) for ds in (d.isoformat() for d in days)}
    defective = {ds: found for ds, found in defective.items() if found}
    section = data_watch.read_window(lake, [d.isoformat() for d in days])
    kinds: dict[str, int] = {}
    for ds in section["days_with_findings"]:
        manifest = lake.read_manifest("validated", ds) or lake.read_manifest("quarantine", ds)
        for finding in manifest["watch"]["findings"]:
            kinds[f"{finding['kind']}({finding['column']})"] = kinds.get(f"{finding['kind']}({finding['column']})", 0) + 1
    above = [
        ds for ds in section["days_with_findings"]
        if any(f["kind"] == "out_of_range" and f["column"] == "temp_max" and f["direction"] in ("above", "both")
               for f in lake.read_manifest("validated", ds)["watch"]["findings"])
    ]  # fmt: skip
    warm_table = [d.isoformat() for d in days if by_day.loc[d.isoformat(), "temp_max"] > winter_temp_max]

    with capsys.disabled():
        print(
            f"\nseattle-weather: {len(days)} days ingested ({days[0]} .. {days[-1]}) in {seconds:.1f} s "
            f"({seconds / len(days):.2f} s a day, extract + gate + watch); quarantined {len(quarantined)} "
            f"({len(quarantined) / len(days):.1%}): {quarantined or 'none'}; days breaking a declaration: {defective or 'none'}"
        )
        print(f"watch: {len(section['days_with_findings'])} day(s) with findings; by kind: {dict(sorted(kinds.items()))}")
        print(f"watch: temp_max above the winter profile (<= {winter_temp_max}) on {len(above)} day(s), first {above[:1]}, last {above[-1:]}")
        print(data_watch.headline(section))

    # The gate: at most 5 % of days stopped, and exactly the days with a declared defect.
    assert len(quarantined) <= 0.05 * len(days)
    assert set(quarantined) == set(defective), (quarantined, defective)
    # The watch suite: spring and summer are warmer than January, noted day by day and never stopped.
    # (the winter profile's top, 21.3 C from 4.4..12.8 daily, is passed on 26 days from 2012-04-22 on)
    assert above == warm_table and len(above) >= 20, (len(above), len(warm_table))
    assert all(date.fromisoformat(ds) >= date(2012, 4, 1) for ds in above)
    assert section["out_of_range"]["temp_max"]["above"] == len(above)
    assert section["days_without_watch_results"] == [] and section["days_without_a_batch"] == []
    # both suites' results are in the batch's Data Docs
    docs = lake.path("data_docs", f"ds={days[-1].isoformat()}", "validations")
    pages = [p for p in lake.fs.find(docs) if p.endswith(".html")]
    assert any("/seattle_weather_suite/" in p for p in pages) and any("/seattle_weather_watch/" in p for p in pages), pages


def test_the_gate_stops_a_real_day_with_a_physically_impossible_value(seattle, tmp_path):
    from mlops_pipeline.cli import main
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.ingest import BatchRejected, extract, validate
    from mlops_pipeline.storage import open_lake

    table, source, yaml_path = seattle
    assert main(["suite", "--dataset", str(yaml_path), "--start", REFERENCE_START.isoformat(), "--days", str(REFERENCE_DAYS)]) == 0
    day = date(2012, 7, 20)
    broken = table[table["day"] == day.isoformat()].assign(precipitation=-3.0)
    broken.to_csv(source / f"{day}.csv", index=False)
    spec, settings = load_dataset_spec(str(yaml_path)), get_settings()
    lake = open_lake(settings)
    extract(lake, spec, day_window(day), settings)
    with pytest.raises(BatchRejected, match=r"expect_column_values_to_be_between\(precipitation\).*-3\.0"):
        validate(lake, spec, day_window(day), build_docs=False)
