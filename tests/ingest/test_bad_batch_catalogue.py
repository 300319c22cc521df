"""The catalogue of bad batches: each kind ends in quarantine with its own clear message.

Batches come through the file source (the path users' own data takes), as parquet or CSV, and run
through the same extract -> validate steps the DAG runs. None may reach validated/.
"""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mlops_pipeline.data.synthetic import generate_day
from mlops_pipeline.datasets import DATASETS_DIR, load_dataset_spec
from tests.conftest import day_window

SUITE = (DATASETS_DIR.parent / "gx" / "churn_suite.json").resolve()


def good(day: date) -> pd.DataFrame:
    return generate_day(day, seed=11, rows=400)


def parquet(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.to_parquet(sink, index=False)
    return sink.getvalue()


def csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def with_nulls(f):
    f.loc[:9, "monthly_charges"] = None
    return f


def out_of_range(f):
    f.loc[:4, "age"] = 150.0
    return f


def unseen_category(f):
    f.loc[:2, "region"] = "atlantis"
    return f


def wrong_type_csv(f):
    f["tenure_months"] = f["tenure_months"].astype(object)
    f.loc[:3, "tenure_months"] = "twelve"
    return f


def duplicate_ids(f):
    f.loc[1, "customer_id"] = f.loc[0, "customer_id"]
    return f


def outside_window(f):
    f.loc[:4, "event_time"] = f.loc[:4, "event_time"] + pd.Timedelta(days=2)
    return f


def label_type_change(f):
    f["churned"] = f["churned"].map({0: "no", 1: "yes"})
    return f


def label_out_of_set(f):
    f.loc[:2, "churned"] = 2
    return f


def numeric_became_text(f):
    f["num_logins_30d"] = f["num_logins_30d"].astype(int).astype(str)
    return f


# (case id, format, how to build the file's bytes from a good frame, expected fragments of the message)
CASES = [
    ("nulls_in_required_column", "parquet", lambda f: parquet(with_nulls(f)), ["expect_column_values_to_not_be_null(monthly_charges)", "10 of 400"]),
    ("out_of_range_values", "parquet", lambda f: parquet(out_of_range(f)), ["expect_column_values_to_be_between(age)", "150.0"]),
    ("unseen_category", "parquet", lambda f: parquet(unseen_category(f)), ["expect_column_values_to_be_in_set(region)", "atlantis"]),
    ("missing_column", "parquet", lambda f: parquet(f.drop(columns=["age"])), ["missing columns ['age']"]),
    ("extra_column", "parquet", lambda f: parquet(f.assign(coupon_code="X")), ["unexpected columns ['coupon_code']"]),
    ("renamed_column", "parquet", lambda f: parquet(f.rename(columns={"plan": "plan_name"})), ["missing columns ['plan']", "unexpected columns ['plan_name']"]),
    ("wrong_type_in_csv", "csv", lambda f: csv(wrong_type_csv(f)), ["expect_column_values_to_be_in_type_list(tenure_months)"]),
    ("duplicate_ids", "parquet", lambda f: parquet(duplicate_ids(f)), ["expect_column_values_to_be_unique(customer_id)"]),
    ("empty_file", "parquet", lambda f: b"", ["the file is empty (0 bytes)"]),
    ("corrupt_parquet", "parquet", lambda f: parquet(f)[:-200], ["not a readable parquet file"]),
    ("timestamps_outside_window", "parquet", lambda f: parquet(outside_window(f)), ["expect_column_values_to_be_between(event_time)", "5 of 400"]),
    ("schema_type_change_label", "parquet", lambda f: parquet(label_type_change(f)), ["expect_column_values_to_be_in_type_list(churned)"]),
    ("numeric_column_became_text", "parquet", lambda f: parquet(numeric_became_text(f)), ["expect_column_values_to_be_in_type_list(num_logins_30d)"]),
    ("label_out_of_set", "parquet", lambda f: parquet(label_out_of_set(f)), ["expect_column_values_to_be_in_set(churned)"]),
    ("too_few_rows", "parquet", lambda f: parquet(f.head(10)), ["expect_table_row_count_to_be_between(table)", "10 rows"]),
    ("header_only_csv", "csv", lambda f: csv(f.head(0)), ["expect_table_row_count_to_be_between(table)", "0 rows"]),
    ("ragged_csv", "csv", lambda f: csv(f) + b"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u\n", ["not a readable CSV file"]),
]


@pytest.fixture
def file_datasets(tmp_path: Path, lake_uri: str, monkeypatch: pytest.MonkeyPatch):
    """Two file-source datasets (parquet and CSV) reading from tmp/src, validated by the churn suite."""
    source = tmp_path / "src"
    source.mkdir()
    specs = {}
    for fmt in ("parquet", "csv"):
        yaml_path = tmp_path / f"own_{fmt}.yaml"
        base = (DATASETS_DIR / "churn.yaml").read_text().split("source:")[0]
        spec_text = (DATASETS_DIR / "churn.yaml").read_text()
        spec_text = spec_text[spec_text.index("id_column:"):].replace("suite: ../gx/churn_suite.json", f"suite: {SUITE}")
        yaml_path.write_text(
            base.replace("name: churn", f"name: own_{fmt}")
            + f"source:\n  kind: file\n  path_template: {source}/{{ds}}.{fmt}\n"
            + spec_text
        )
        specs[fmt] = load_dataset_spec(str(yaml_path))
    return source, specs


def run_batch(specs, source: Path, fmt: str, day: date, data: bytes):
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.ingest import extract, validate
    from mlops_pipeline.storage import open_lake

    (source / f"{day.isoformat()}.{fmt}").write_bytes(data)
    settings = get_settings()
    lake = open_lake(settings)
    window = day_window(day)
    extract(lake, specs[fmt], window, settings)
    return lake, lambda: validate(lake, specs[fmt], window, build_docs=False)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_good_batch_passes_in_both_formats(file_datasets, fmt):
    source, specs = file_datasets
    day = date(2026, 3, 1)
    lake, run = run_batch(specs, source, fmt, day, (parquet if fmt == "parquet" else csv)(good(day)))
    result = run()
    assert result["status"] == "validated" and result["rows"] == 400
    assert lake.list_partitions("validated") == [day.isoformat()]


@pytest.mark.parametrize(("case", "fmt", "build", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_bad_batch_is_quarantined_with_a_clear_message(file_datasets, case, fmt, build, fragments, reliability):
    from mlops_pipeline.ingest import BatchRejected

    reliability.record("bad input: ingestion", case, "quarantined, message names " + "; ".join(fragments)[:80])
    source, specs = file_datasets
    day = date(2026, 3, 2) + timedelta(days=CASES.index(next(c for c in CASES if c[0] == case)))
    lake, run = run_batch(specs, source, fmt, day, build(good(day)))
    with pytest.raises(BatchRejected) as caught:
        run()
    message = str(caught.value)
    assert f"ds={day.isoformat()}" in message, message
    for fragment in fragments:
        assert fragment in message, f"{case}: {fragment!r} not in {message!r}"
    assert day.isoformat() not in lake.list_partitions("validated")
    manifest = lake.read_manifest("quarantine", day.isoformat())
    assert manifest is not None and manifest["status"] == "quarantined"
    result_entry = next(e for e in manifest["files"] if e["path"].startswith("validation_result"))
    result = json.loads(lake.read_partition_file("quarantine", day.isoformat(), result_entry))
    assert result["failures"] == caught.value.failures
    # the bad bytes are kept for inspection, byte for byte
    kept = next(e for e in manifest["files"] if not e["path"].startswith("validation_result"))
    assert lake.read_partition_file("quarantine", day.isoformat(), kept) == (source / f"{day.isoformat()}.{fmt}").read_bytes()


def test_catalogue_has_at_least_twelve_distinct_kinds():
    assert len({c[0] for c in CASES}) >= 12
