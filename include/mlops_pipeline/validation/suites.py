"""A dataset's two suite files, read and checked against its dataset file before any batch runs.

The gate suite is generated from the dataset file (``validation/profile.py``), so the two must agree:
a declared domain the gate does not check as declared, or a column set that differs, means one of
them was edited without the other, and validating with it would quarantine (or pass) batches for
reasons nobody declared. That is refused with a message naming both files and the key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.datasets import DatasetSpec

log = logging.getLogger(__name__)


class SuiteError(ValueError):
    """A suite file is missing, unreadable, or contradicts its dataset file."""


@dataclass(frozen=True)
class DatasetSuites:
    gate: dict[str, Any]
    watch: dict[str, Any] | None
    watch_note: str | None = None  # why there is no watch suite, when there is none


def read_suite_file(path: Path) -> dict[str, Any]:
    try:
        suite = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SuiteError(f"expectation suite {path} does not exist (see `mlops suite --help` to create one)") from exc
    except json.JSONDecodeError as exc:
        raise SuiteError(f"expectation suite {path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list) or "name" not in suite:
        raise SuiteError(f"expectation suite {path} must be a GX suite object with 'name' and a list 'expectations'")
    for index, expectation in enumerate(suite["expectations"]):
        if not isinstance(expectation, dict) or not isinstance(expectation.get("type"), str) or not isinstance(expectation.get("kwargs"), dict):
            raise SuiteError(f"expectation suite {path}: expectations[{index}] needs a 'type' string and a 'kwargs' object")
    return suite


def load_dataset_suites(spec: DatasetSpec) -> DatasetSuites:
    """The gate suite (required, checked against the dataset file) and the watch suite.

    A watch suite named in the dataset file must exist; the default one beside the gate may be
    absent (a dataset bootstrapped before watch suites existed), which is logged and recorded."""
    gate = read_suite_file(spec.suite_path)
    check_gate_against_spec(spec, gate, spec.suite_path)
    watch_path = spec.watch_suite_path
    if spec.watch_suite is None and not watch_path.exists():
        note = f"no watch suite at {watch_path}: only the gate ran (`make suite` writes both)"
        log.warning("dataset %s: %s", spec.name, note)
        return DatasetSuites(gate=gate, watch=None, watch_note=note)
    return DatasetSuites(gate=gate, watch=read_suite_file(watch_path))


def _by_column(suite: dict[str, Any], type_: str, column: str) -> list[dict[str, Any]]:
    return [e["kwargs"] for e in suite["expectations"] if e["type"] == type_ and e["kwargs"].get("column") == column]


def _same_number(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return False


def check_gate_against_spec(spec: DatasetSpec, suite: dict[str, Any], path: Path) -> None:
    """Raise :class:`SuiteError` where the gate suite at ``path`` contradicts the dataset file."""
    where = f"dataset file {spec.spec_path or spec.name}"
    fix = "regenerate the suites with `make suite` or fix the declaration"
    problems: list[str] = []

    column_sets = [e["kwargs"] for e in suite["expectations"] if e["type"] == "expect_table_columns_to_match_set"]
    if not column_sets:
        problems.append(f"columns: the gate suite {path} has no expect_table_columns_to_match_set")
    for kwargs in column_sets:
        declared, checked = set(spec.columns), set(kwargs.get("column_set") or [])
        if declared != checked:
            problems.append(
                f"columns (id_column, time_column, numeric_features, categorical_features, target): the file lists "
                f"{sorted(declared - checked)} that the gate suite {path} lacks and the suite has {sorted(checked - declared)} the file does not"
            )
        if bool(kwargs.get("exact_match", True)) != (spec.extra_columns == "refuse"):
            problems.append(f"extra_columns is {spec.extra_columns!r} but the gate suite {path} has exact_match={kwargs.get('exact_match', True)}")

    for column, domain in spec.domains.items():
        key = f"domains.{column}"
        not_null = [k for k in _by_column(suite, "expect_column_values_to_not_be_null", column) if k.get("mostly", 1) == 1]
        if domain.nullable is False and not not_null:
            problems.append(f"{key}.nullable is false but the gate suite {path} does not check {column} for nulls")
        if domain.nullable is True and not_null:
            problems.append(f"{key}.nullable is true but the gate suite {path} refuses nulls in {column}")

        ranges = _by_column(suite, "expect_column_values_to_be_between", column)
        declares_range = domain.min is not None or domain.max is not None
        if declares_range and not ranges:
            problems.append(f"{key}.min/max is declared but the gate suite {path} has no range check on {column}")
        for kwargs in ranges if declares_range else []:
            for bound in ("min", "max"):
                declared_value, checked_value = getattr(domain, bound), kwargs.get(f"{bound}_value")
                if not _same_number(declared_value, checked_value):
                    problems.append(f"{key}.{bound} is {declared_value} but the gate suite {path} checks {bound}_value {checked_value}")

        sets = _by_column(suite, "expect_column_values_to_be_in_set", column)
        if domain.categories is not None and not domain.allow_new and not sets:
            problems.append(f"{key}.categories is declared with allow_new false but the gate suite {path} has no set check on {column}")
        for kwargs in sets if domain.categories is not None else []:
            checked_set = {str(v) for v in kwargs.get("value_set") or []}
            if domain.allow_new:
                problems.append(f"{key}.allow_new is true but the gate suite {path} refuses values outside {sorted(checked_set)}")
            elif domain.categories is not None and checked_set != {str(v) for v in domain.categories}:
                problems.append(f"{key}.categories is {list(domain.categories)} but the gate suite {path} allows {sorted(checked_set)}")
    if problems:
        raise SuiteError(f"{where} contradicts its gate suite {path}: " + "; ".join(problems) + f" ({fix})")
