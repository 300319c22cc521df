"""What the deploy cases share: the canary scenario's deployment environment, and a steady client that
keeps every request's latency and outcome (the canary harness's client keeps counts only)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import httpx

from tests.deploy.canary_scenario import deployment_env  # noqa: F401 (the deploy cases import it from here)
from tests.serving.model_fixture import make_records

ROWS_PER_REQUEST = 20


@dataclass
class Sample:
    at: float  # time.monotonic() when the request was sent
    seconds: float
    ok: bool
    version: str | None
    error: str | None = None


@dataclass
class SteadyClient:
    """Requests at a steady pace from a thread (one at a time, ``interval`` apart)."""

    url: str
    interval: float = 0.02
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> SteadyClient:
        self.thread = threading.Thread(target=self._run, name="reliability-client", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        seed = 0
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                seed += 1
                started = time.monotonic()
                try:
                    response = http.post(
                        f"{self.url}/predict",
                        json={"records": make_records(ROWS_PER_REQUEST, seed=seed % 500)},
                        headers={"X-Traffic-Source": "reliability"},
                    )
                    ok = response.status_code == 200
                    version = response.json().get("model_version") if ok else None
                    error = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                except Exception as exc:  # noqa: BLE001 - any error is a failed request, never a dead client
                    # (an answer that is not the JSON object expected, too: a thread that died of it would
                    # leave the windows after it without a sample, and the cause unsaid)
                    ok, version, error = False, None, f"{type(exc).__name__}: {exc}"
                self.samples.append(Sample(started, time.monotonic() - started, ok, version, error))
                time.sleep(self.interval)

    def finish(self) -> SteadyClient:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=60)
        return self

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at < end]

    def describe(self, start: float, end: float) -> str:
        """Where the window lies among the samples: for a window that has none."""
        if not self.samples:
            return f"the client sent no request at all (its thread alive: {self.thread is not None and self.thread.is_alive()})"
        first, last = self.samples[0].at, self.samples[-1].at
        gaps = sorted(((b.at - a.at, a.at) for a, b in pairwise(self.samples)), reverse=True)[:3]
        return (f"window [{start - first:.1f}s, {end - first:.1f}s] of the client's {len(self.samples)} requests sent "
                f"from 0s to {last - first:.1f}s; longest gaps between requests: "
                + ", ".join(f"{gap:.1f}s at {at - first:.1f}s" for gap, at in gaps))

    def failures(self, start: float = 0.0, end: float = float("inf")) -> list[str]:
        return [s.error or "failed" for s in self.between(start, end) if not s.ok]

    def versions(self, start: float = 0.0, end: float = float("inf")) -> Counter[str]:
        return Counter(s.version for s in self.between(start, end) if s.version)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def latency_ms(samples: list[Sample], q: float) -> float:
    return round(1000 * percentile([s.seconds for s in samples if s.ok], q), 1)


def docker_container(client: Any, namespace: str, role: str) -> Any:
    found = client.containers.list(filters={"label": [f"org.mlops.deployment={namespace}", f"org.mlops.role={role}"]})
    assert len(found) == 1, f"expected one running {role} container in {namespace}, found {[c.name for c in found]}"
    return found[0]
