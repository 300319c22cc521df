"""Releases on the scheduler, on the Docker backend: what evidence each strategy needs to promote.

Run as a person runs them: ``make deploy`` (``mlops_dev.deploy``) triggers ``mlops_deploy`` through
the REST API and follows it; the scheduler (LocalExecutor) runs every task; the serving containers
and the HAProxy router container run on the Docker engine. One stack for the module: v1 is deployed
first (direct), then each release below runs in turn, in this order.

* **Blue-green, promoted and switched back,** under a steady client: a genuinely different good
  version (green, v2) is smoke-tested with requests the client really sent, takes all the traffic
  in one switch while blue stays warm, bakes, and is promoted; then a broken version (v3, its
  predictions far from the others) is switched to, fails its checks, and the run switches back to
  blue at once. The client sees no failed request.
* **A green killed just after the switch** (its container SIGKILLed): blue kept weight 1 of 257,
  so HAProxy retries each request green fails on it; the run switches back saying green is gone,
  and the client sees no failed request.
* **A canary with too little traffic is not promoted.** The client stopped, no step ever has the
  requests its checks need: with the production default (``insufficient_traffic=rollback``) the
  first step fails when its longest bake ends, the canary (v4) is rolled back with a reason naming
  the checks that lacked data, and the stable version keeps serving.
* **Shadow, then canary** (the default strategy: these runs name none), under a client whose rows' labels have arrived (they are in the lake's
  validated partitions, as ingestion puts them): a better version (v5, fitted on four times the
  rows) gets a copy of every request, passes the paired test on the labelled rows and goes on
  through the canary's steps to promotion; a worse version with the same prediction distribution
  (v6, fitted with ``monthly_charges`` mirrored, so high- and low-charge customers swap scores)
  passes the error and shift checks and fails the paired test: it is rolled back before any client
  got one of its answers. The labels of the canary's own traffic are there too, so each of v5's
  canary steps also checks its quality against stable's.
* **A/B picks the variant with the better outcome:** a person rolls back to v1 first, then v5
  (B) serves half of the client's customer groups (each always the same variant, by the
  ``X-Entity-Id`` the client sends) for 40 s, by then far more than the horizon's 2000 labelled
  rows a variant; v5's Brier score is better at the test's level, so it wins and becomes
  ``@champion``.
* **A B variant killed mid-test**: HAProxy's checks take it out and its customers go to A, with
  no failed request; the run rolls B back saying its server is gone.
* **A shadow killed mid-window** (its container SIGKILLed once it is up): the run rolls back saying
  the shadow is not running; clients see nothing.
* **A person approves one promotion and rejects the next** (``--approval before_promote``, the run's
  Param): each canary passes its steps and waits in ``awaiting_input``; the answer goes through the
  REST endpoint the UI's Required Actions page uses. Approve: v7 is promoted. Reject: v8 is rolled
  back saying who rejected it, and v7 keeps serving.

Settings that differ from production, and why:
- ``MLOPS_DEPLOY_STEPS=50,100``: two canary steps; the verdict falls at the first either way.
- ``MLOPS_DEPLOY_MAX_BAKE_SECONDS=30`` (production 900, the canary scenario 240): the longest wait
  for traffic. With the client, blue-green's windows get their 50 requests within seconds, so it is
  never what ends them; without a client no request can come however long a step waits, so it only
  sets when the verdict falls.
- ``MLOPS_DEPLOY_SHADOW_SECONDS=10`` (production 1800): the shortest shadow window, there so that a
  window sees more than a moment of a day's traffic mix. The client's mix is the same from its
  first request, so here the window ends when the evidence production asks for is in (50 mirrored
  requests, 200 labelled rows answered by both), which the client brings within seconds.
- ``MLOPS_DEPLOY_AB_SECONDS=40`` (production 3600): the A/B test's shortest run, which here sets its
  power. The client brings 1000 to 1600 labelled rows a second, so each variant has 20,000 or so
  after 40 s (production's horizon of 2000 a variant comes within seconds). At that many rows
  the test detects a Brier difference of about 0.006 with 80 % power; v5 beats v1 by 0.011 on the
  client's rows (0.169 against 0.180), which it finds with a power above 99 %.
- the canary scenario's short bake, pokes and retry delay (see ``tests/deploy/canary_scenario.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.canary_scenario import model_dirs  # noqa: F401 (fixture)

pytestmark = [pytest.mark.docker, pytest.mark.integration]

RELEASES = ("good_resampled", "bad", "good")  # v2 (blue-green, promoted), v3 (blue-green, broken), v4 (canary, no traffic)
APPROVALS = ("good", "good_resampled")  # v7 (approved), v8 (rejected); v5 and v6 are built in the fixture


@dataclass
class Releases:
    env: dict[str, str]
    client: Any
    name: str
    stack: Any
    steady: Any = None
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def release(self, version: str, *argv: str, during: Callable[[str], Any] | None = None) -> dict[str, Any]:
        """``@challenger`` := version, then ``make deploy deploy [argv]`` followed to its end;
        ``during(run_id)`` is called once the run is running."""
        from mlops_pipeline.registry.aliases import set_challenger
        from tests.deploy.canary_scenario import running_servers

        set_challenger(self.client, self.name, version)
        follower = self.stack.deploy_command("deploy", *argv)
        run_id = self.stack.wait_for_run()
        if during is not None:
            during(run_id)
        code = follower.wait(timeout=900)
        run = self.stack.api.dag_run("mlops_deploy", run_id)
        tasks = {t["task_id"]: t["state"] for t in self.stack.api.task_instances("mlops_deploy", run_id)}
        self.runs[version] = {"code": code, "run": run, "tasks": tasks, "output": follower.output(), "served": running_servers()}
        return self.runs[version]

    def release_killing(
        self, version: str, strategy: str, started: str, docker_client: Any, *, after: float = 0.0, record: Any, case: str, expected: str
    ) -> dict[str, Any]:
        """``release`` under a labelled steady client, the new version's container SIGKILLed once the
        task ``started`` succeeded and ``after`` seconds more passed. Adds ``killed`` (the run's task
        states then, and how many answers the client had got from the version) and the version's
        ``tags``; records the case's figures in the reliability report (``record``)."""
        from tests.deploy.canary_scenario import Client, router_url
        from tests.reliability.harness import docker_container

        killed: dict[str, Any] = {}

        def kill(run_id: str) -> None:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                states = {t["task_id"]: t["state"] for t in self.stack.api.task_instances("mlops_deploy", run_id)}
                if states.get(started) == "success":
                    time.sleep(after)
                    killed.update(states=states, answered=self.steady.versions[version])
                    docker_container(docker_client, self.env["MLOPS_DEPLOY_NAMESPACE"], "canary").kill()
                    return
                assert states.get(started) not in ("failed", "upstream_failed"), states
                time.sleep(0.3)
            raise AssertionError(f"{started} never succeeded")

        self.steady = Client(router_url(), with_ids=True).start()
        run = self.release(version, "--strategy", strategy, during=kill)
        self.steady.finish()
        tags = self.client.get_model_version(self.name, version).tags
        record.record(
            "faults",
            case,
            expected,
            outcome=run["tasks"].get("rollback"),
            reason=tags.get("deploy_reason", "")[:160],
            requests=self.steady.requests,
            failed=len(self.steady.failures),
            answered_by=dict(sorted(self.steady.versions.items())),
        )
        return {**run, "killed": killed, "tags": tags}


@pytest.fixture(scope="module")
def releases(docker_client, airflow_stack, airflow_databases, mlflow_server, model_dirs, tmp_path_factory) -> Iterator[Releases]:  # noqa: F811
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.registry.aliases import set_challenger
    from mlops_pipeline.registry.client import mlflow_client
    from tests.deploy.canary_scenario import (
        build_better_model_dir,
        build_swapped_model_dir,
        client_labels,
        deployment_env,
        register,
    )
    from tests.deploy.test_mlops_deploy_dag import SchedulerStack
    from tests.monitoring.scenario import add_labelled_day

    base = tmp_path_factory.mktemp("release-strategies")
    scenario = {
        "MLOPS_DEPLOY_STEPS": "50,100",
        "MLOPS_DEPLOY_MAX_BAKE_SECONDS": "30",
        "MLOPS_DEPLOY_SHADOW_SECONDS": "10",
        "MLOPS_DEPLOY_AB_SECONDS": "40",
        "MLOPS_DEPLOY_EXTRA_LABELS": '{"org.mlops.e2e": "strategies"}',
        "MLOPS_DEPLOY_STRATEGY": None,  # the production default (shadow, then canary), not the canary scenario's
        # The scenario's 1 s suits `airflow dags test` (sensors poke inline); on the scheduler a sensor
        # rescheduled every second can be queued again before the executor's event for its last poke
        # arrives, and Airflow then fails that try ("finished with state success, but the task
        # instance's state attribute is queued"). 5 s, as the demo and the production loop use.
        "MLOPS_DEPLOY_POKE_SECONDS": "5",
    }
    with deployment_env("docker", base, mlflow_server.uri, **scenario) as env:
        assert "MLOPS_DEPLOY_INSUFFICIENT_TRAFFIC" not in env and "MLOPS_DEPLOY_STRATEGY" not in env  # production defaults
        stack = SchedulerStack.beside(airflow_stack, airflow_databases.create(), base / "airflow", env)
        client, name = mlflow_client(get_settings()), env["MLOPS_MODEL_NAME"]
        assert [register(client, name, model_dirs[kind]) for kind in ("good", *RELEASES)] == ["1", "2", "3", "4"]
        shadowed = (build_better_model_dir(base / "better"), build_swapped_model_dir(base / "swapped"))
        assert [register(client, name, path) for path in shadowed] == ["5", "6"]
        assert [register(client, name, model_dirs[kind]) for kind in APPROVALS] == ["7", "8"]
        for day, labels in client_labels().items():  # the labels of what the labelled client sends have arrived
            add_labelled_day(get_settings().lake_uri, datetime.fromisoformat(day).date(), labels)
        found = Releases(env, client, name, stack)
        try:
            stack.start("api-server")  # first: it writes the new home's airflow.cfg
            stack.start("scheduler", "dag-processor")
            set_challenger(client, name, "1")
            first = stack.deploy_command("deploy", "--unpause")
            assert first.wait(timeout=600) == 0, first.output() + stack.failed_task_logs()
            assert "success: deployed v1" in first.output()
            yield found
        finally:
            if found.steady is not None:
                found.steady.finish()
            stack.stop()


def test_blue_green_promotes_a_good_green_and_switches_back_from_a_broken_one(releases: Releases, reliability) -> None:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.audit import AuditLog
    from mlops_pipeline.registry.aliases import CHAMPION, version_for_alias
    from mlops_pipeline.storage import open_lake
    from tests.deploy.canary_scenario import Client, router_url

    releases.steady = Client(router_url()).start()
    promoted = releases.release("2", "--strategy", "blue_green")
    assert promoted["code"] == 0, promoted["output"] + releases.stack.failed_task_logs()
    switched_back = releases.release("3", "--strategy", "blue_green")
    assert switched_back["code"] == 1, switched_back["output"] + releases.stack.failed_task_logs()
    releases.steady.finish()

    path = ["blue_green.start_green", "blue_green.reference", "blue_green.switch", "blue_green.bake", "blue_green.analyse"]
    tasks = promoted["tasks"]
    assert [tasks[t] for t in path] == ["success"] * 5 and tasks["promote"] == "success", tasks
    assert tasks["start_canary"] == "skipped" and tasks["rollback"] == "skipped", tasks
    assert promoted["run"]["conf"]["strategy"] == "blue_green"
    assert "success: promoted v2 (previous v1)" in promoted["output"] and promoted["served"] == [("stable", "2")]
    tasks = switched_back["tasks"]
    assert tasks["blue_green.switch"] == "success" and tasks["blue_green.analyse"] == "failed", tasks
    assert tasks["rollback"] == "success" and tasks["promote"] == "upstream_failed", tasks
    assert str(version_for_alias(releases.client, releases.name, CHAMPION).version) == "2"
    tags = releases.client.get_model_version(releases.name, "3").tags
    assert tags["deploy_status"] == "rolled_back" and "green v3 after the switch: prediction shift PSI" in tags["deploy_reason"], tags
    assert switched_back["served"] == [("stable", "2")]

    events = [e for e in AuditLog(open_lake(get_settings())).events() if e.version in ("2", "3")]
    smoke = [e for e in events if e.event == "smoke_test_passed"]
    assert [e.version for e in smoke] == ["2", "3"]
    assert "recorded request(s) to v1" in smoke[0].reason, smoke[0].reason  # what the client sent blue
    assert [e.version for e in events if e.event == "switched"] == ["2", "3"]
    steady = releases.steady
    reliability.record(
        "load",
        "blue-green on the scheduler under a steady client (docker): a good green promoted, a broken one switched back",
        "0 failed requests",
        requests=steady.requests,
        failed=len(steady.failures),
        answered_by=dict(sorted(steady.versions.items())),
    )
    assert steady.failures == [], steady.failures[:5]
    assert steady.versions["1"] > 0 and steady.versions["2"] > 0 and steady.versions["3"] > 0, steady.versions


def test_a_green_killed_after_the_switch_is_switched_back_and_clients_see_nothing(
    releases: Releases, docker_client, reliability
) -> None:
    """Green's container SIGKILLed just after the switch, while it takes all but blue's trace of the
    traffic: each request green fails is retried on blue (warm, and at weight 1 still eligible), the
    bake ends at once and the run switches back saying green is gone."""
    from mlops_pipeline.registry.aliases import CHAMPION, version_for_alias

    champion = str(version_for_alias(releases.client, releases.name, CHAMPION).version)
    run = releases.release_killing(
        "4", "blue_green", "blue_green.switch", docker_client, after=0.5,
        record=reliability,
        case="green container SIGKILLed just after the blue-green switch (docker, on the scheduler)",
        expected="switched back with the reason, champion unchanged, no client error",
    )
    steady, tasks, tags = releases.steady, run["tasks"], run["tags"]
    assert run["code"] == 1, run["output"] + releases.stack.failed_task_logs()
    assert run["killed"]["states"].get("blue_green.analyse") in (None, "scheduled", "queued"), run["killed"]  # mid-bake
    assert run["killed"]["answered"] > 0  # green served clients before it was killed
    assert tasks["blue_green.analyse"] == "failed" and tasks["rollback"] == "success", tasks
    assert tasks["promote"] == "upstream_failed", tasks
    reason = tags["deploy_reason"]
    assert tags["deploy_status"] == "rolled_back" and "green v4 after the switch" in reason and "not running any more" in reason, tags
    assert str(version_for_alias(releases.client, releases.name, CHAMPION).version) == champion
    assert run["served"] == [("stable", champion)]
    assert steady.failures == [], steady.failures[:5]


def test_a_canary_with_too_little_traffic_is_not_promoted(releases: Releases) -> None:
    from mlops_pipeline.registry.aliases import CHALLENGER, CHAMPION, version_for_alias

    champion = str(version_for_alias(releases.client, releases.name, CHAMPION).version)
    assert releases.steady is None or releases.steady.stop.is_set()  # no client sends requests now
    canary = releases.release("4", "--strategy", "canary")
    assert canary["code"] == 1, canary["output"] + releases.stack.failed_task_logs()

    run, tasks = canary["run"], canary["tasks"]
    assert run["run_type"] == "manual" and run["state"] == "failed"
    assert tasks["blue_green.start_green"] == "skipped", tasks
    assert tasks["step_50pct.bake"] == "success" and tasks["step_50pct.analyse"] == "failed", tasks
    assert tasks["rollback"] == "success" and tasks["promote"] == "upstream_failed", tasks
    assert tasks["step_100pct.shift"] == "upstream_failed", tasks
    assert str(version_for_alias(releases.client, releases.name, CHAMPION).version) == champion
    assert version_for_alias(releases.client, releases.name, CHALLENGER) is None
    tags = releases.client.get_model_version(releases.name, "4").tags
    assert tags["deploy_status"] == "rolled_back", tags
    reason = tags["deploy_reason"]
    assert "canary v4 at 50%: not enough traffic to judge" in reason, reason
    assert "fewer than 50 requests" in reason or "the canary answered no requests" in reason, reason
    assert canary["served"] == [("stable", champion)]


def test_shadow_passes_a_better_model_on_to_the_canary_and_rejects_a_worse_one_with_the_same_predictions(
    releases: Releases, reliability
) -> None:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.audit import AuditLog
    from mlops_pipeline.registry.aliases import CHAMPION, version_for_alias
    from mlops_pipeline.storage import open_lake
    from tests.deploy.canary_scenario import Client, router_url

    settings = get_settings()
    champion = str(version_for_alias(releases.client, releases.name, CHAMPION).version)
    releases.steady = Client(router_url(), with_ids=True).start()
    better = releases.release("5")  # the default strategy: shadow, then canary
    assert better["code"] == 0, better["output"] + releases.stack.failed_task_logs()
    worse = releases.release("6")
    assert worse["code"] == 1, worse["output"] + releases.stack.failed_task_logs()
    releases.steady.finish()

    shadow = ["shadow.start_shadow", "shadow.mirror", "shadow.compare"]
    tasks = better["tasks"]
    assert [tasks[t] for t in shadow] == ["success"] * 3, tasks
    assert better["run"]["conf"].get("strategy") is None  # no Param: the default took this path
    assert tasks["start_canary"] == tasks["step_100pct.analyse"] == tasks["promote"] == "success", tasks
    assert tasks["blue_green.start_green"] == "skipped" and tasks["rollback"] == "skipped", tasks
    assert f"success: promoted v5 (previous v{champion})" in better["output"] and better["served"] == [("stable", "5")]
    tasks = worse["tasks"]
    assert tasks["shadow.compare"] == "failed" and tasks["start_canary"] == "upstream_failed", tasks
    assert tasks["rollback"] == "success" and tasks["promote"] == "upstream_failed", tasks
    assert str(version_for_alias(releases.client, releases.name, CHAMPION).version) == "5"
    assert worse["served"] == [("stable", "5")]

    tags = {v: releases.client.get_model_version(releases.name, v).tags for v in ("5", "6")}
    assert tags["5"]["shadow_passed"] == "true" and tags["6"]["shadow_passed"] == "false", tags
    assert tags["6"]["deploy_status"] == "rolled_back" and "shadow v6: quality failed" in tags["6"]["deploy_reason"], tags["6"]
    assert float(tags["6"]["shadow_p_value"]) < 0.05 <= float(tags["5"]["shadow_p_value"]), tags
    verdicts = {
        e.version: e for e in AuditLog(open_lake(settings)).events() if e.version in ("5", "6") and e.details.get("stage") == "shadow"
    }
    checks = {v: {c["name"]: c["status"] for c in e.details["checks"]} for v, e in verdicts.items()}
    assert checks["5"] == {"errors": "passed", "prediction_shift": "passed", "quality": "passed"}, verdicts["5"].reason
    # the worse model predicts the same distribution: only the labelled rows show what it is
    assert checks["6"] == {"errors": "passed", "prediction_shift": "passed", "quality": "failed"}, verdicts["6"].reason
    for verdict in verdicts.values():
        quality = verdict.details["quality"]
        assert quality["rows"] >= 200 and verdict.details["mirrored"]["failed"] == 0, verdict.details
    # Labels of the canary's own traffic arrived before its last step: a quality check joined its checks.
    canary_checks = {
        (e.details["percent"], c["name"]): c["status"]
        for e in AuditLog(open_lake(settings)).events()
        if e.version == "5" and e.event == "analysis_passed" and e.details.get("stage") != "shadow"
        for c in e.details["checks"]
    }
    assert canary_checks[(50, "quality")] == canary_checks[(100, "quality")] == "passed", canary_checks

    # Clients only ever got stable's answers: the shadow's went to its log, under stable's request ids.
    steady = releases.steady
    reliability.record(
        "load",
        "shadow then canary on the scheduler under a steady client (docker): a better version promoted, a worse one "
        "with the same prediction distribution rejected on labelled rows",
        "0 failed requests; no client gets a shadow's answer",
        requests=steady.requests,
        failed=len(steady.failures),
        answered_by=dict(sorted(steady.versions.items())),
        rejected=verdicts["6"].reason.split(": ", 1)[1][:160],
    )
    assert steady.failures == [], steady.failures[:5]
    assert steady.versions["6"] == 0 and steady.versions["5"] > 0 and steady.versions[champion] > 0, steady.versions
    logged = [json.loads(line) for path in sorted(settings.prediction_log_dir.glob("ds=*/*.requests.jsonl")) for line in path.read_text().splitlines()]
    copies = {r["request_id"] for r in logged if r["model_version"] == "6" and r["traffic_source"] == "shadow"}
    served = {r["request_id"] for r in logged if r["model_version"] == "5" and r["traffic_source"] == "e2e-client"}
    assert len(copies) >= 50 and copies <= served, (len(copies), len(copies - served))


def test_a_shadow_killed_mid_window_is_rolled_back_and_clients_see_nothing(releases: Releases, docker_client, reliability) -> None:
    from mlops_pipeline.registry.aliases import CHAMPION, version_for_alias

    champion = str(version_for_alias(releases.client, releases.name, CHAMPION).version)
    # SIGKILLed as soon as it is up: its window is open (at least 10 s)
    run = releases.release_killing(
        "4", "shadow", "shadow.start_shadow", docker_client,
        record=reliability,
        case="shadow container SIGKILLed mid-window (docker, on the scheduler)",
        expected="rolled back with the reason, champion unchanged, no client error",
    )
    steady, tasks, tags = releases.steady, run["tasks"], run["tags"]
    assert run["code"] == 1, run["output"] + releases.stack.failed_task_logs()
    mirror = run["killed"]["states"].get("shadow.mirror")
    assert mirror in (None, "scheduled", "queued", "running", "up_for_reschedule"), mirror  # mid-window
    assert tasks["shadow.compare"] == "failed" and tasks["start_canary"] == "upstream_failed", tasks
    assert tasks["rollback"] == "success" and tasks["promote"] == "upstream_failed", tasks
    assert tags["deploy_status"] == "rolled_back" and "shadow v4" in tags["deploy_reason"], tags
    assert "not running" in tags["deploy_reason"], tags["deploy_reason"]
    assert str(version_for_alias(releases.client, releases.name, CHAMPION).version) == champion
    assert run["served"] == [("stable", champion)]
    assert steady.failures == [], steady.failures[:5]
    assert steady.versions["4"] == 0 and steady.versions[champion] > 0, steady.versions


def test_ab_gives_each_customer_one_variant_and_promotes_the_better_one(releases: Releases, reliability) -> None:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.deploy.audit import AuditLog
    from mlops_pipeline.registry.aliases import CHAMPION, version_for_alias
    from mlops_pipeline.storage import open_lake
    from tests.deploy.canary_scenario import Client, router_url

    # A person rolls back to v1 (fitted on 1500 rows), so that v5 (6000 rows) has a champion to beat.
    back = releases.stack.deploy_command("rollback", "--version", "1")
    assert back.wait(timeout=600) == 0, back.output() + releases.stack.failed_task_logs()
    assert str(version_for_alias(releases.client, releases.name, CHAMPION).version) == "1"
    releases.steady = Client(router_url(), with_ids=True).start()
    run = releases.release("5", "--strategy", "ab")
    releases.steady.finish()
    assert run["code"] == 0, run["output"] + releases.stack.failed_task_logs()

    tasks = run["tasks"]
    assert [tasks[f"ab.{t}"] for t in ("start_ab", "collect", "analyse")] == ["success"] * 3, tasks
    assert tasks["start_canary"] == "skipped" and tasks["shadow.start_shadow"] == "skipped" and tasks["promote"] == "success", tasks
    assert str(version_for_alias(releases.client, releases.name, CHAMPION).version) == "5" and run["served"] == [("stable", "5")]
    assert releases.client.get_model_version(releases.name, "5").tags["ab_winner"] == "B"
    events = [e for e in AuditLog(open_lake(get_settings())).events() if e.version == "5"]  # ab_started and stage ab: this run only
    started = [e for e in events if e.event == "ab_started"][-1]
    verdict = [e for e in events if e.details.get("stage") == "ab"][-1]
    outcome = verdict.details["outcome"]
    assert verdict.event == "analysis_passed" and outcome["winner"] == "B", verdict.reason
    assert outcome["brier_b"] < outcome["brier_a"] and outcome["p_value"] < 0.05 and min(outcome["rows_a"], outcome["rows_b"]) >= 2000, outcome

    # Sticky: while the test ran, each customer group was served by one variant only, half of them by B.
    begin, end = (datetime.fromisoformat(e.ts).timestamp() for e in (started, verdict))
    seen: dict[str, set[str]] = {}
    for at, entity, version in releases.steady.answers:
        if begin + 1 <= at <= end:  # a second for the weights to take hold
            seen.setdefault(entity, set()).add(version)
    assert len(seen) >= 400 and all(len(versions) == 1 for versions in seen.values()), {e: v for e, v in seen.items() if len(v) > 1}
    share_b = sum(versions == {"5"} for versions in seen.values()) / len(seen)
    reliability.record(
        "load",
        "A/B by customer on the scheduler under a steady client (docker): the better variant wins and is promoted",
        "0 failed requests; each customer one variant",
        requests=releases.steady.requests,
        failed=len(releases.steady.failures),
        customers=len(seen),
        share_b=round(share_b, 2),
        verdict=verdict.reason.split(": ", 1)[1][:160],
    )
    # The 50 % split of the groups seen: HAProxy's consistent hashing put 45.9 % of 1000 entities on one of two
    # equal servers; 15 points either way is about three times that spread, sampling included.
    assert 0.35 <= share_b <= 0.65, share_b
    assert releases.steady.failures == [], releases.steady.failures[:5]


def test_a_b_variant_killed_mid_test_is_rolled_back_and_clients_see_nothing(releases: Releases, docker_client, reliability) -> None:
    """B's container SIGKILLed while it serves its half of the customers: HAProxy's checks take it out
    and its customers' requests go to A (retried there, and hashed there from then on); the run rolls
    B back saying its server is gone."""
    from mlops_pipeline.registry.aliases import CHAMPION, version_for_alias

    champion = str(version_for_alias(releases.client, releases.name, CHAMPION).version)
    # SIGKILLed once it has served for a few seconds (the test runs at least 40 s)
    run = releases.release_killing(
        "4", "ab", "ab.start_ab", docker_client, after=5.0,
        record=reliability,
        case="B variant container SIGKILLed mid-A/B test (docker, on the scheduler)",
        expected="rolled back with the reason, A serves every customer, no client error",
    )
    steady, tasks, tags = releases.steady, run["tasks"], run["tags"]
    assert run["code"] == 1, run["output"] + releases.stack.failed_task_logs()
    assert run["killed"]["answered"] > 0  # B served its customers before it was killed
    assert tasks["ab.analyse"] == "failed" and tasks["rollback"] == "success" and tasks["promote"] == "upstream_failed", tasks
    assert tags["deploy_status"] == "rolled_back" and "B's server (v4) is not running any more" in tags["deploy_reason"], tags
    assert str(version_for_alias(releases.client, releases.name, CHAMPION).version) == champion
    assert run["served"] == [("stable", champion)]
    assert steady.failures == [], steady.failures[:5]


def wait_until_parked(stack: Any, run_id: str, timeout: float = 60.0) -> None:
    """Until the scheduler has handled the executor's report of the process that parked the request.

    An answer within that moment (about a second) races it on Airflow 3.3.2: the answer resumes the
    task (queued), then the report of the parked process finishing meets a queued task, and the
    scheduler marks the try up_for_retry, which asks again. A person reading the request is slower;
    a test must wait for the scheduler's "TaskInstance Finished ... state=awaiting_input" line."""
    log = Path(stack.env["MLOPS_RUN_DIR"]) / "logs" / "scheduler.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "TaskInstance Finished" in line and "task_id=approval.request" in line and run_id in line and (
                "state=awaiting_input" in line
            ):
                return
        time.sleep(0.5)
    raise AssertionError(f"the scheduler never saw approval.request of {run_id} parked (see {log})")


def test_a_person_approves_one_promotion_and_rejects_the_next(releases: Releases) -> None:
    """Each canary passes its steps under a steady client, then its run waits for a person: the
    request (its body the evidence) is read and answered over the REST API, as the UI's Required
    Actions page does. Approve: v7 is promoted. Reject: v8 is rolled back with who rejected it."""
    from mlops_pipeline.registry.aliases import CHAMPION, version_for_alias
    from tests.deploy.canary_scenario import Client, router_url

    stack, name = releases.stack, releases.name
    answers: dict[str, dict[str, Any]] = {}

    def answer_with(version: str, answer: str) -> Callable[[str], None]:
        def respond(run_id: str) -> None:
            stack.wait_for_task(run_id, "approval.request", "awaiting_input", timeout=900)
            wait_until_parked(stack, run_id)
            request = stack.api.required_action("mlops_deploy", run_id, "approval.request")
            waiting = stack.api.dag_run("mlops_deploy", run_id)["state"]  # the run waits for the answer
            response = stack.api.answer_required_action("mlops_deploy", run_id, "approval.request", [answer])
            answers[version] = {"request": request, "response": response, "waiting": waiting, "run_id": run_id}

        return respond

    releases.steady = Client(router_url()).start()
    for version, answer in (("7", "Approve"), ("8", "Reject")):
        run = releases.release(version, "--strategy", "canary", "--approval", "before_promote", during=answer_with(version, answer))
        instances = stack.api.task_instances("mlops_deploy", answers[version]["run_id"])
        answers[version].update(run, asked=[t["try_number"] for t in instances if t["task_id"] == "approval.request"])
    releases.steady.finish()

    approved, rejected = answers["7"], answers["8"]
    assert approved["code"] == 0, approved["output"] + stack.failed_task_logs()
    assert rejected["code"] == 1, rejected["output"] + stack.failed_task_logs()
    assert approved["waiting"] == rejected["waiting"] == "running" and approved["asked"] == rejected["asked"] == [1]
    assert approved["run"]["conf"]["approval"] == "before_promote"
    # What the person saw: the subject, every step's checks, the options and the timeout's answer.
    assert approved["request"]["subject"] == f"Promote {name} v7 to @champion?"
    body = approved["request"]["body"]
    assert "| 50 % | passed |" in body and "| 100 % | passed |" in body, body
    assert "### Gate against @champion" in body and "### Why this version was trained" in body
    assert f"{releases.env['MLFLOW_TRACKING_URI']}/#/experiments/" in body and "artifactPath/model_card.md" in body
    assert approved["request"]["options"] == ["Approve", "Reject"] and approved["request"]["defaults"] == ["Reject"]
    assert approved["response"]["chosen_options"] == ["Approve"]

    tasks = approved["tasks"]
    assert tasks["approval.decide"] == "success" and tasks["approval.not_required"] == "skipped", tasks
    assert tasks["approval.request"] == "success" and tasks["approval.approved"] == "success", tasks
    assert tasks["promote"] == "success" and tasks["rollback"] == "skipped", tasks
    assert "success: promoted v7" in approved["output"]

    tasks = rejected["tasks"]
    assert tasks["approval.request"] == "failed" and tasks["rollback"] == "success", tasks
    assert tasks["promote"] == "upstream_failed", tasks
    who = rejected["response"]["responded_by"]["name"]
    assert str(version_for_alias(releases.client, name, CHAMPION).version) == "7"
    tags = releases.client.get_model_version(name, "8").tags
    assert tags["deploy_status"] == "rolled_back" and tags["deploy_reason"].startswith(f"promotion rejected by {who} at "), tags
    assert rejected["served"] == [("stable", "7")]
    assert releases.steady.failures == [], releases.steady.failures[:5]
