"""Steady traffic through HAProxy while a canary is promoted and while a bad one is rolled back:
no client request fails, and the p99 latency while traffic moves stays within 2x of steady state.

The ``local`` backend (serving processes and Debian's HAProxy): the router and the rollout are what
is measured here, not containers. Figures go to the reliability report.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.reliability.harness import SteadyClient, deployment_env, latency_ms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

STEADY_SECONDS = 15.0
MAX_P99_RATIO = 2.0


@pytest.fixture(scope="module")
def local_deployment(mlflow_server, model_dirs, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp("load")
    with deployment_env("local", base, mlflow_server.uri) as env:
        yield env


def test_promotion_and_rollback_under_steady_traffic(local_deployment, model_dirs, reliability) -> None:  # noqa: F811
    from mlops_pipeline.deploy.rollout import Deployer, run_deployment
    from mlops_pipeline.registry.aliases import set_challenger
    from tests.deploy.canary_scenario import register

    deployer = Deployer.open("test:reliability-load")
    client, name = deployer.client, deployer.model_name
    good_1 = register(client, name, model_dirs["good"])
    good_2 = register(client, name, model_dirs["good"])
    bad = register(client, name, model_dirs["bad"])
    set_challenger(client, name, good_1)
    assert run_deployment("deploy", deployer=deployer)["outcome"] == "deployed"
    url = deployer.backend.router().url  # type: ignore[union-attr]

    windows: dict[str, list[float]] = {}

    def timed(label: str, version: str) -> dict[str, Any]:
        marks: dict[str, float] = {}

        def on_step(step: str, info: dict[str, Any]) -> None:
            if step == "shifted":
                marks.setdefault("first_shift", time.monotonic())

        set_challenger(client, name, version)
        started = time.monotonic()
        result = run_deployment("deploy", deployer=deployer, on_step=on_step)
        windows[label] = [marks.get("first_shift", started), time.monotonic()]
        return result

    steady = SteadyClient(url).start()
    try:
        time.sleep(3)  # warm-up: connections, caches
        steady_start = time.monotonic()
        time.sleep(STEADY_SECONDS)
        windows["steady"] = [steady_start, time.monotonic()]
        promoted = timed("promotion", good_2)
        rolled_back = timed("rollback", bad)
        time.sleep(2)  # the removed canary's last requests drain
        after_start = time.monotonic()
        time.sleep(STEADY_SECONDS / 2)
        windows["steady_after"] = [after_start, time.monotonic()]
    finally:
        steady.finish()

    assert promoted["outcome"] == "promoted", promoted
    assert rolled_back["outcome"] == "rolled_back", rolled_back
    figures = {}
    for label, (start, end) in windows.items():
        samples = steady.between(start, end)
        if label == "steady_after":
            continue
        figures[label] = {
            "requests": len(samples),
            "failed": len(steady.failures(start, end)),
            "p50_ms": latency_ms(samples, 50),
            "p99_ms": latency_ms(samples, 99),
            "seconds": round(end - start, 1),
        }
    # Steady state is measured before and after the rollouts: one baseline for the machine's noise.
    baseline = steady.between(*windows["steady"]) + steady.between(*windows["steady_after"])
    base_p99 = latency_ms(baseline, 99)
    figures["steady"]["p99_ms_before_and_after"] = base_p99
    for label in ("promotion", "rollback"):
        f = figures[label]
        f["p99_ratio"] = round(f["p99_ms"] / base_p99, 2)
        reliability.record(
            "load",
            f"canary {label} under steady traffic (local backend, {1000 * steady.interval:.0f} ms pacing, 20 rows/request)",
            f"0 failed requests; p99 <= {MAX_P99_RATIO}x steady ({base_p99} ms)",
            **f,
        )
    reliability.record("load", "steady state (15 s before, 7.5 s after the rollouts)", "baseline", **figures["steady"])

    failures = steady.failures()
    assert failures == [], f"{len(failures)} of {len(steady.samples)} requests failed: {failures[:5]}"
    assert steady.versions(*windows["promotion"])[good_2] > 0
    assert steady.versions(*windows["rollback"])[bad] > 0  # the bad canary got its share, and was caught
    for label in ("promotion", "rollback"):
        assert figures[label]["p99_ratio"] <= MAX_P99_RATIO, figures
