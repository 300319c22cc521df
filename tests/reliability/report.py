"""The reliability and security suite: a report of every case, its asserted outcome and its figures.

Each test records what it checked with the ``reliability`` fixture::

    reliability.record("faults", "kill the canary mid-bake", "rolled back, stable served", seconds=41.2)

The fixture is a plugin of the whole test session (registered in ``tests/conftest.py``), so the
catalogues that live beside their code (``tests/ingest/test_bad_batch_catalogue.py``,
``tests/serving/test_http_errors.py``) record their cases into the same report instead of being run a
second time here. The session writes the table to ``tests/artifacts/reliability/reliability.{md,json}``
(not in git) as cases finish (a case whose assertion fails is recorded as failed) and prints it at the
end of the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

RESULTS_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "reliability"
SUITE_PREFIXES = (
    "tests/reliability/",
    "tests/ingest/test_bad_batch_catalogue.py::test_bad_batch_is_quarantined",
    "tests/serving/test_http_errors.py::test_bad_request_is_4xx",
    "tests/data/test_s3_outage.py::",
    "tests/production/test_celery_loop.py::test_a_worker_killed",
    "tests/production/test_celery_loop.py::test_a_scheduler_killed",
    "tests/production/test_celery_loop.py::test_a_redis_restart",
    "tests/production/test_celery_loop.py::test_a_postgres_restart",
)


@dataclass
class Case:
    area: str
    case: str
    expected: str
    outcome: str = "passed"
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Report:
    cases: list[Case] = field(default_factory=list)
    current: dict[str, Case] = field(default_factory=dict)
    seconds: float = 0.0  # the suite's own time: setup, call and teardown of its tests, summed

    def record(self, area: str, case: str, expected: str, **figures: Any) -> Case:
        """Record a case that is about to be asserted (or just was); figures are kept as given."""
        entry = Case(area, case, expected, figures={k: _rounded(v) for k, v in figures.items()})
        self.cases.append(entry)
        return entry

    def write(self) -> None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        payload = {
            "total_seconds": round(self.seconds, 1),
            "cases": [asdict(c) for c in self.cases],
        }
        (RESULTS_DIR / "reliability.json").write_text(json.dumps(payload, indent=2) + "\n")
        (RESULTS_DIR / "reliability.md").write_text(self.markdown())

    def markdown(self) -> str:
        lines = [
            "| area | case | expected outcome | result | figures |",
            "| --- | --- | --- | --- | --- |",
        ]
        for c in self.cases:
            figures = ", ".join(f"{k}={v}" for k, v in c.figures.items())
            lines.append(f"| {c.area} | {c.case} | {c.expected} | {c.outcome} | {figures} |")
        passed = sum(c.outcome == "passed" for c in self.cases)
        lines.append("")
        lines.append(f"{passed} of {len(self.cases)} cases passed; the suite ran for {self.seconds:.0f} s.")
        return "\n".join(lines) + "\n"


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


_REPORT = Report()


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Iterator[Report]:
    """The session's report; cases recorded by a test that then fails are marked failed."""
    before = len(_REPORT.cases)
    started = time.monotonic()
    yield _REPORT
    report = getattr(request.node, "rep_call", None)
    for entry in _REPORT.cases[before:]:
        entry.seconds = round(time.monotonic() - started, 1)
        if report is not None and report.failed:
            entry.outcome = "FAILED"
    _REPORT.write()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # The suite's own time: its folder's tests, and the catalogues' cases that recorded into it.
    if report.nodeid.startswith(SUITE_PREFIXES):
        _REPORT.seconds += report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _REPORT.cases:
        terminalreporter.write_sep("=", "reliability and security cases")
        terminalreporter.write(_REPORT.markdown())
