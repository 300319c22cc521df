"""Steady traffic through HAProxy while the real ``mlops_deploy`` DAG promotes a canary and rolls a bad
one back: no client request fails, and the p99 latency while traffic moves stays within 2x of
steady state.

The ``local`` backend (serving processes and Debian's HAProxy): the router and the rollout are what
is measured here, not containers. Each rollout is an ``airflow dags test`` run; its window is
measured from the moment its canary first takes traffic to the promotion or rollback (the audit
log's times of both), not to the end of the ``dags test`` process. Figures go to the reliability report.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from tests.deploy.canary_scenario import DagResult, DeployDag, register, router_url
from tests.reliability.harness import SteadyClient, deployment_env, latency_ms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

STEADY_SECONDS = 15.0
MAX_P99_RATIO = 2.0


def monotonic(iso: str) -> float:
    """An audit event's time on the monotonic clock the client's samples use. The two clocks' offset is
    read now, not once at import: the wall clock may be stepped in between (a VM's clock being synced),
    which would move every window off the samples it holds."""
    return datetime.fromisoformat(iso).timestamp() - (time.time() - time.monotonic())


def test_promotion_and_rollback_under_steady_traffic(airflow_stack, mlflow_server, model_dirs, tmp_path, reliability) -> None:  # noqa: F811
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.registry.aliases import set_challenger
    from mlops_pipeline.registry.client import mlflow_client

    # The Airflow process that runs the DAG shares this machine's two cores with the servers it measures
    # (in production the worker runs elsewhere), and every poke of a bake sensor costs it a few hundred
    # ms of CPU: a poke every 5 s instead of the scenario's 1 s (production: 30 s) keeps what is measured
    # the router's and the servers' doing, not the deployer's. For the same reason the deployer gets one
    # core, not both: an analysis reads the prediction logs with Arrow's thread pool, which otherwise
    # takes every core for a moment (a CI run of the rollback window had its slowest requests exactly
    # then, at the last poke and analysis). OMP_NUM_THREADS sizes Arrow's and the BLAS pools; the
    # servers the DAG starts inherit it, before and during the rollouts alike, and score one thread each
    # by default anyway (MLOPS_SERVING_PREDICT_THREADS=1).
    with deployment_env("local", tmp_path, mlflow_server.uri, MLOPS_DEPLOY_POKE_SECONDS="5", OMP_NUM_THREADS="1") as env:
        dag = DeployDag(airflow_stack.env, env, tmp_path / "dag-logs")
        client, name = mlflow_client(get_settings()), env["MLOPS_MODEL_NAME"]
        stable, canary, bad = (register(client, name, model_dirs[kind]) for kind in ("good", "good_resampled", "bad"))
        set_challenger(client, name, stable)
        first = dag.run()
        assert first.returncode == 0 and first.outcome == "deployed", first.describe()
        url = router_url()

        windows: dict[str, list[float]] = {}
        results: dict[str, DagResult] = {}

        def timed(label: str, version: str) -> None:
            """The rollout of ``version``; its window: from its first traffic shift to its last event."""
            set_challenger(client, name, version)
            result = results[label] = dag.run()
            shifted = result.of("traffic_shifted")
            assert shifted and result.final is not None, result.describe()
            windows[label] = [monotonic(shifted[0].ts), monotonic(result.final.ts)]

        steady = SteadyClient(url).start()
        try:
            time.sleep(3)  # warm-up: connections, caches
            steady_start = time.monotonic()
            time.sleep(STEADY_SECONDS)
            windows["steady"] = [steady_start, time.monotonic()]
            timed("promotion", canary)
            timed("rollback", bad)
            time.sleep(2)  # the removed canary's last requests drain
            after_start = time.monotonic()
            time.sleep(STEADY_SECONDS / 2)
            windows["steady_after"] = [after_start, time.monotonic()]
        finally:
            steady.finish()

    promoted, rolled_back = results["promotion"], results["rollback"]
    assert promoted.returncode == 0 and promoted.outcome == "promoted", promoted.describe()
    assert rolled_back.returncode != 0 and rolled_back.outcome == "rolled_back", rolled_back.describe()
    figures: dict[str, dict[str, Any]] = {}
    failures = steady.failures()
    assert failures == [], f"{len(failures)} of {len(steady.samples)} requests failed: {failures[:5]}"
    for label, (start, end) in windows.items():
        samples = steady.between(start, end)
        assert samples, f"no request in the {label} window: {steady.describe(start, end)}"
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
            f"canary {label} by the mlops_deploy DAG under steady traffic (local backend, "
            f"{1000 * steady.interval:.0f} ms pacing, 20 rows/request)",
            f"0 failed requests; p99 <= {MAX_P99_RATIO}x steady ({base_p99} ms)",
            **f,
        )
    reliability.record("load", "steady state (15 s before, 7.5 s after the rollouts)", "baseline", **figures["steady"])

    assert steady.versions(*windows["promotion"])[canary] > 0
    assert steady.versions(*windows["rollback"])[bad] > 0  # the bad canary got its share, and was caught
    for label in ("promotion", "rollback"):
        start, end = windows[label]
        slowest = sorted(steady.between(start, end), key=lambda sample: -sample.seconds)[:5]
        where = [f"{1000 * s.seconds:.0f} ms at +{s.at - start:.1f}s of {end - start:.1f}s" for s in slowest]
        assert figures[label]["p99_ratio"] <= MAX_P99_RATIO, (figures, label, where)
