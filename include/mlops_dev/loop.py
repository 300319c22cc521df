"""The closed loop on the scheduler: start it, then watch it through Airflow's REST API.

What ``make demo`` (the embedded stack) and ``tests/production/test_celery_loop.py`` (the production
shape) share. Nothing here runs a step of the
loop: the scheduler does, started by a backfill, the one first trigger of ``mlops_train``, asset
events and the monitor's ``TriggerDagRunOperator``. This module creates the backfills and the first
trigger, starts a client process standing in for the model's users, and then only observes:

1. unpause ``mlops_ingest``, ``mlops_train`` and ``mlops_deploy``; backfill ``mlops_ingest`` over the
   history and the days since the change (one of the history days is a bad batch: a quarantine);
2. trigger ``mlops_train`` as of the change day (it trains on the days before it) -> the gate ->
   ``@challenger`` -> the ``mlops_challenger`` asset event -> ``mlops_deploy`` (first deployment);
3. a client process stands in for the users: steady traffic stamped "now" from the moment a model
   serves, and each row of the post-change days once (their own event times) after the first
   deployment;
4. unpause ``mlops_monitor`` and backfill its windows over the post-change days, with
   ``retrain_on_backfill`` so the replayed history may trigger: drift, then a retrain that waits
   until ``min_post_change_days`` of post-change data exist, then the monitor's trigger of
   ``mlops_train`` -> gate -> ``@challenger`` -> asset event -> ``mlops_deploy`` through every canary
   step under the client's traffic -> promoted;
5. unpause ``mlops_score`` and backfill it over the post-change days: batch predictions of the new
   ``@champion`` for each validated day (``predictions/ds=...``), the same numbers the router serves.

Every wait names the DAG run and the task running now in its progress line. :class:`Observer` is
the REST side; :func:`run_loop` the scenario; :class:`Timeline` its dates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_dev.airflow_api import AirflowAPI

Progress = Callable[[str], None]
FINISHED = frozenset({"success", "failed"})
DAGS = ("mlops_ingest", "mlops_train", "mlops_deploy", "mlops_monitor", "mlops_score")


class LoopError(RuntimeError):
    """A step of the loop did not do what it must (the message says which run and why)."""


# --- the scenario's dates --------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    """History before the change day, then the post-change days up to yesterday (complete days)."""

    today: date
    change_day: date
    history: tuple[date, ...]
    post_change: tuple[date, ...]
    bad_batch_day: date | None

    @classmethod
    def ending(cls, today: date, *, history_days: int = 7, post_change_days: int = 3, bad_batch: bool = True) -> Timeline:
        change_day = today - timedelta(days=post_change_days)
        history = tuple(change_day - timedelta(days=offset) for offset in range(history_days, 0, -1))
        post = tuple(change_day + timedelta(days=offset) for offset in range(post_change_days))
        return cls(today, change_day, history, post, history[2] if bad_batch and len(history) > 3 else None)

    @property
    def days(self) -> tuple[date, ...]:
        return self.history + self.post_change

    @property
    def good_history(self) -> tuple[date, ...]:
        """The history without its bad batch (the days the lake validates)."""
        return tuple(d for d in self.history if d != self.bad_batch_day)

    def environment(self) -> dict[str, str]:
        """The synthetic source's schedule for these dates (covariate drift from the change day)."""
        env = {"MLOPS_COVARIATE_DRIFT_FROM": self.change_day.isoformat()}
        if self.bad_batch_day is not None:
            env["MLOPS_BAD_BATCH_DAYS"] = self.bad_batch_day.isoformat()
        return env


def midnight(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


# --- watching Airflow ------------------------------------------------------------------------------


@dataclass
class Observer:
    """Run states, task states and XComs through the REST API; progress lines while waiting."""

    api: AirflowAPI
    progress: Progress | None = None
    ui_base: str = ""
    poll_seconds: float = 2.0
    # (dag_id, run, tasks): after each poll of a run, and of a backfill's oldest unfinished run
    on_poll: Callable[[str, dict[str, Any], list[dict[str, Any]]], None] | None = None

    def get(self, path: str) -> Any:
        return self.api._request("GET", path)

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}")

    def runs(self, dag_id: str, **filters: Any) -> list[dict[str, Any]]:
        return self.api.dag_runs(dag_id, **filters)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances?limit=1000")["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        from mlops_dev.airflow_api import AirflowAPIError

        path = f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances/{task_id}/xcomEntries/{key}?deserialize=true"
        try:
            value = self.get(path)["value"]
        except AirflowAPIError as exc:
            if "404" in str(exc):
                return None
            raise
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def link(self, dag_id: str, run_id: str) -> str:
        return f"{self.ui_base}/dags/{dag_id}/runs/{_quote(run_id)}"

    def now_running(self, dag_id: str, run: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]) -> str:
        """``<dag> <run>: <task> (<state>)`` for the task(s) in flight."""
        active = [t for t in tasks if t.get("state") in ("running", "queued", "scheduled", "up_for_reschedule", "up_for_retry", "deferred")]
        done = sum(1 for t in tasks if t.get("state") in ("success", "skipped", "failed", "upstream_failed"))
        what = ", ".join(f"{t['task_id']} ({t['state']})" for t in active[:3]) or run.get("state", "?")
        return f"{dag_id} {run['dag_run_id']}: {what}; {done}/{len(tasks)} tasks done"

    def wait_run(self, dag_id: str, run_id: str, *, timeout: float, started: float | None = None) -> dict[str, Any]:
        """Wait until the run is finished; returns it with ``tasks`` (its task instances)."""
        started = started or time.monotonic()
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(dag_id, run_id)
            tasks = self.task_instances(dag_id, run_id)
            if self.on_poll is not None:
                self.on_poll(dag_id, run, tasks)
            if run["state"] in FINISHED:
                return {**run, "tasks": tasks}
            self._say(f"{self.now_running(dag_id, run, tasks)} ({time.monotonic() - started:.0f}s)")
            if time.monotonic() > deadline:
                raise LoopError(f"{dag_id} run {run_id} not finished after {timeout:.0f}s: {self.now_running(dag_id, run, tasks)}")
            time.sleep(self.poll_seconds)

    def wait_for_new_run(
        self, dag_id: str, *, run_type: str, after: str, timeout: float, what: str, run_id: str | None = None
    ) -> dict[str, Any]:
        """The first run of ``dag_id`` of ``run_type`` queued at or after ``after`` (ISO time), once it exists."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.runs(dag_id, run_type=run_type) if (r.get("queued_at") or r.get("run_after") or "") >= after]
            if run_id is not None:
                found = [r for r in self.runs(dag_id) if r["dag_run_id"] == run_id]
            if found:
                return sorted(found, key=lambda r: r.get("queued_at") or "")[0]
            self._say(f"waiting for {what}")
            if time.monotonic() > deadline:
                raise LoopError(f"no {run_type} run of {dag_id} ({what}) after {timeout:.0f}s")
            time.sleep(self.poll_seconds)

    def wait_backfill(self, dag_id: str, days: Sequence[date], *, timeout: float, started: float | None = None) -> list[dict[str, Any]]:
        """Wait until the backfill's runs of ``days`` are all finished; returns them (oldest first)."""
        started = started or time.monotonic()
        deadline = time.monotonic() + timeout
        first, last = midnight(min(days)), midnight(max(days))
        while True:
            runs = [r for r in self.runs(dag_id, logical_date_gte=first, logical_date_lte=last)]
            wanted = {d.isoformat() for d in days}
            runs = [r for r in runs if (r.get("logical_date") or "")[:10] in wanted]
            finished = [r for r in runs if r["state"] in FINISHED]
            if len(finished) >= len(days):
                return sorted(runs, key=lambda r: r["logical_date"])
            active = [r for r in runs if r["state"] not in FINISHED]
            now = ""
            if active:
                current = sorted(active, key=lambda r: r["logical_date"])[0]
                tasks = self.task_instances(dag_id, current["dag_run_id"])
                if self.on_poll is not None:
                    self.on_poll(dag_id, current, tasks)
                now = "; " + self.now_running(dag_id, current, tasks)
            self._say(f"{dag_id} backfill {min(days)}..{max(days)}: {len(finished)}/{len(days)} runs finished{now} "
                      f"({time.monotonic() - started:.0f}s)")
            if time.monotonic() > deadline:
                raise LoopError(f"backfill of {dag_id} not finished after {timeout:.0f}s: "
                                f"{ {r['dag_run_id']: r['state'] for r in runs} }")
            time.sleep(self.poll_seconds)

    def _say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)


def _quote(run_id: str) -> str:
    from urllib.parse import quote

    return quote(run_id, safe="")


# --- the client ------------------------------------------------------------------------------------


@dataclass
class ClientProcess:
    """``python -m mlops_dev.traffic client`` in a process of its own, and its status file."""

    days: Sequence[date]
    status_file: Path
    env: Mapping[str, str] = field(default_factory=dict)
    before_days: Sequence[date] = ()  # the steady stream's customers until :meth:`replay` (the days before the change)
    rate: float = 40.0
    rows: int = 10
    process: subprocess.Popen[bytes] | None = None

    @property
    def replay_signal(self) -> Path:
        return self.status_file.with_suffix(".replay")

    @property
    def own_times_signal(self) -> Path:
        return self.status_file.with_suffix(".own-times")

    def start(self) -> ClientProcess:
        """Steady traffic from the moment the router serves; the days' rows wait for :meth:`replay`."""
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        self.status_file.unlink(missing_ok=True)
        self.replay_signal.unlink(missing_ok=True)
        self.own_times_signal.unlink(missing_ok=True)
        log = open(self.status_file.with_suffix(".log"), "ab")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlops_dev.traffic", "client", "--days", ",".join(d.isoformat() for d in self.days),
             "--status", str(self.status_file), "--rate", str(self.rate), "--rows", str(self.rows),
             "--replay-when", str(self.replay_signal), "--before-days", ",".join(d.isoformat() for d in self.before_days),
             "--own-times-when", str(self.own_times_signal)],
            env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        return self

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def replay(self) -> None:
        """Let the client send the days' rows (once)."""
        self.replay_signal.touch()

    def labels_arrived(self) -> None:
        """From now on the steady stream sends the days' rows with their own event times, whose labels
        the lake holds: the labels of what the users send have arrived."""
        self.own_times_signal.touch()

    def wait_replayed(self, timeout: float, progress: Progress | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status.get("replay") == "done":
                return status
            if self.process is not None and self.process.poll() is not None:
                tail = self.status_file.with_suffix(".log").read_text(errors="replace")[-3000:]
                raise LoopError(f"the client process exited ({self.process.returncode}):\n{tail}")
            if progress is not None:
                replayed = status.get("replayed") or {}
                progress(f"client: sending the days' rows, {replayed.get('rows', 0)} served")
            if time.monotonic() > deadline:
                raise LoopError(f"the client did not finish sending the days' rows in {timeout:.0f}s: {status}")
            time.sleep(1)

    def stop(self) -> dict[str, Any]:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.status()


# --- the scenario ----------------------------------------------------------------------------------


@dataclass
class LoopResult:
    timeline: Timeline
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> the DAG run (with its tasks)
    decisions: list[dict[str, Any]] = field(default_factory=list)  # the monitor's decision per window
    ingested: dict[str, str] = field(default_factory=dict)  # ds -> run state
    first_version: str | None = None
    retrained_version: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)  # what the last deployment returned
    client: dict[str, Any] = field(default_factory=dict)
    scored: dict[str, dict[str, Any]] = field(default_factory=dict)  # ds -> what mlops_score's run wrote
    seconds: dict[str, float] = field(default_factory=dict)


def run_loop(
    observer: Observer,
    timeline: Timeline,
    client: ClientProcess,
    *,
    say: Callable[[str], None] = print,
    done: Callable[[], None] = lambda: None,
    timeout: float = 1800.0,
) -> LoopResult:
    """The whole loop on the scheduler; see the module docstring. ``done()`` ends a progress line."""
    api = observer.api
    result = LoopResult(timeline)
    for dag_id in DAGS:
        api.wait_for_dag(dag_id, timeout=300)

    # 1. history through mlops_ingest: a backfill on the scheduler
    started = time.monotonic()
    say(f"ingest: backfill of mlops_ingest {timeline.days[0]} .. {timeline.days[-1]}"
        + (f" (bad batch scheduled on {timeline.bad_batch_day})" if timeline.bad_batch_day else ""))
    backfill = api.create_backfill("mlops_ingest", midnight(timeline.days[0]), midnight(timeline.days[-1]), max_active_runs=4)
    for dag_id in ("mlops_ingest", "mlops_train", "mlops_deploy"):
        api.set_paused(dag_id, False)
    runs = observer.wait_backfill("mlops_ingest", timeline.days, timeout=timeout, started=started)
    done()
    result.ingested = {r["logical_date"][:10]: r["state"] for r in runs}
    result.seconds["ingest"] = round(time.monotonic() - started, 1)
    failed = sorted(day for day, state in result.ingested.items() if state != "success")
    say(f"    backfill {backfill.get('id')}: {len(result.ingested) - len(failed)} day(s) validated, "
        f"{len(failed)} quarantined {failed or ''} ({result.seconds['ingest']:.0f}s)")
    missing = [d.isoformat() for d in timeline.post_change if result.ingested.get(d.isoformat()) != "success"]
    if missing:
        raise LoopError(f"post-change days {missing} were not validated: {result.ingested}")

    # the model's users: steady traffic from the moment a model serves (a canary needs their requests)
    say("users: a client process sends steady traffic to the router as soon as a model serves")
    client.start()

    # 2. the first trigger: mlops_train as of the change day -> gate -> @challenger -> asset -> deploy
    started = time.monotonic()
    first = trigger_training(observer, timeline.change_day)
    say(f"train: mlops_train {first['dag_run_id']} (first trigger), on the validated days before {timeline.change_day}")
    train_run = observer.wait_run("mlops_train", first["dag_run_id"], timeout=timeout)
    done()
    result.runs["first_train"] = train_run
    result.first_version = _trained_version(observer, train_run)
    say(f"    {describe_training(observer, train_run)} ({time.monotonic() - started:.0f}s)")
    if train_run["state"] != "success" or not _passed_gate(train_run):
        # e.g. a second demo for the same days: the champion of the first was trained on the same data
        raise LoopError(
            f"the first training {train_run['dag_run_id']} did not produce a challenger, so no deployment "
            f"follows: {describe_training(observer, train_run)}. `make clean` replays the scenario from "
            "an empty installation (or MLOPS_DEMO_TODAY=YYYY-MM-DD on another day)"
        )
    deploy_run = _deploy_after(observer, train_run, "the first deployment", timeout)
    result.runs["first_deploy"] = deploy_run
    result.seconds["first_train_and_deploy"] = round(time.monotonic() - started, 1)
    outcome = _deploy_outcome(observer, deploy_run)
    say(f"    mlops_deploy {deploy_run['dag_run_id']} ({deploy_run['run_type']}): {outcome.get('outcome')} "
        f"v{outcome.get('version')} ({time.monotonic() - started:.0f}s)")

    # 3. the post-change days' traffic: each of their rows once, with its own event time
    started = time.monotonic()
    say(f"serve: the client sends every row of {', '.join(d.isoformat() for d in timeline.post_change)} through the router")
    client.replay()
    status = client.wait_replayed(timeout=600, progress=observer.progress)
    done()
    time.sleep(3)  # the servers flush their prediction logs every second
    replayed = status.get("replayed") or {}
    say(f"    {replayed.get('rows', 0)} rows served, {replayed.get('failed', 0)} failed requests, "
        f"versions {replayed.get('versions')} ({time.monotonic() - started:.0f}s)")
    if replayed.get("failed"):
        raise LoopError(f"the client's requests failed: {replayed}")

    # 4. the monitor's windows since the change, replayed as a backfill that may trigger a retrain
    started = time.monotonic()
    windows = list(timeline.post_change)
    say(f"monitor: backfill of mlops_monitor {windows[0]} .. {windows[-1]} (retrain_on_backfill)")
    monitor_after = _now_iso()
    api.create_backfill("mlops_monitor", midnight(windows[0]), midnight(windows[-1]), max_active_runs=1,
                        reprocess="completed", conf={"retrain_on_backfill": True})
    api.set_paused("mlops_monitor", False)
    monitor_runs = observer.wait_backfill("mlops_monitor", windows, timeout=timeout, started=started)
    done()
    for run in monitor_runs:
        decision = observer.xcom("mlops_monitor", run["dag_run_id"], "decide", "decision") or {}
        result.decisions.append({**decision, "dag_run_id": run["dag_run_id"], "state": run["state"]})
        say(f"    {run['logical_date'][:10]}: {decision.get('summary', run['state'])}")
    result.runs["monitor"] = monitor_runs[-1]
    result.seconds["monitor"] = round(time.monotonic() - started, 1)
    # The users' rows from now on are the post-change days' own, whose labels are in the lake: the
    # retrained version's shadow window (the default strategy) judges its quality on them. After the
    # monitor's windows, which count each of those rows once.
    client.labels_arrived()
    say("users: the steady stream now sends the post-change rows with their own event times (their labels are in the lake)")
    triggering = [d for d in result.decisions if d.get("trigger")]
    if not triggering:
        raise LoopError("no monitor window triggered a retrain: " + "; ".join(str(d.get("summary")) for d in result.decisions))

    # 5. the retrain the monitor triggered -> gate -> @challenger -> asset -> canary -> promote
    started = time.monotonic()
    ds = (triggering[-1].get("window") or {}).get("ds")
    retrain = observer.wait_for_new_run("mlops_train", run_type="manual", after=monitor_after, timeout=600,
                                        what="the mlops_train run the monitor triggered", run_id=f"mlops_monitor__{ds}")
    say(f"retrain: mlops_train {retrain['dag_run_id']} (triggered_by {retrain.get('triggered_by')}, "
        f"conf {json.dumps(retrain.get('conf') or {}, default=str)[:160]})")
    retrain_run = observer.wait_run("mlops_train", retrain["dag_run_id"], timeout=timeout)
    done()
    result.runs["retrain"] = retrain_run
    result.retrained_version = _trained_version(observer, retrain_run)
    say(f"    {describe_training(observer, retrain_run)} ({time.monotonic() - started:.0f}s)")
    if retrain_run["state"] != "success" or not _passed_gate(retrain_run):
        raise LoopError(f"the retrain {retrain_run['dag_run_id']} did not produce a challenger: {describe_training(observer, retrain_run)}")
    canary = _deploy_after(observer, retrain_run, "the canary of the retrained version", timeout)
    done()
    result.runs["canary"] = canary
    result.outcome = _deploy_outcome(observer, canary)
    result.seconds["retrain_and_canary"] = round(time.monotonic() - started, 1)
    steps = [t["task_id"].split(".")[0] for t in canary["tasks"] if t["task_id"].endswith(".analyse") and t["state"] == "success"]
    shadow = observer.xcom("mlops_deploy", canary["dag_run_id"], "shadow.compare") if any(
        t["task_id"] == "shadow.compare" and t["state"] == "success" for t in canary["tasks"]) else None
    if isinstance(shadow, dict):
        say(f"    shadow window: {shadow.get('reason')}")
    say(f"    mlops_deploy {canary['dag_run_id']} ({canary['run_type']}): {', '.join(steps) or 'no step'} passed -> "
        f"{result.outcome.get('outcome')} v{result.outcome.get('version')}")
    result.client = client.stop()

    # 6. batch scoring: mlops_score backfilled over the post-change days, with the new @champion
    started = time.monotonic()
    days = list(timeline.post_change)
    say(f"score: backfill of mlops_score {days[0]} .. {days[-1]} (batch predictions of @champion)")
    api.create_backfill("mlops_score", midnight(days[0]), midnight(days[-1]), max_active_runs=len(days))
    api.set_paused("mlops_score", False)
    score_runs = observer.wait_backfill("mlops_score", days, timeout=timeout, started=started)
    done()
    result.runs["score"] = score_runs[-1]
    for run in score_runs:
        scored = observer.xcom("mlops_score", run["dag_run_id"], "score") if run["state"] == "success" else None
        result.scored[run["logical_date"][:10]] = {"dag_run_id": run["dag_run_id"], "state": run["state"], **(scored or {})}
    result.seconds["score"] = round(time.monotonic() - started, 1)
    failed = sorted(ds for ds, scored in result.scored.items() if scored["state"] != "success")
    if failed:
        raise LoopError(f"mlops_score failed for {failed}: see the runs' score task logs")
    for ds, scored in sorted(result.scored.items()):
        say(f"    {ds}: {scored.get('rows')} rows scored by {scored.get('model_name')} v{scored.get('model_version')} "
            f"-> {scored.get('uri')}")
    return result


def trigger_training(observer: Observer, as_of: date) -> dict[str, Any]:
    """The one first trigger: ``mlops_train`` with logical date ``as_of`` (it trains on the days before).
    A demo run again on the same day takes the next free minute of that day as its logical date."""
    taken = {r.get("logical_date") for r in observer.runs("mlops_train", logical_date_gte=midnight(as_of),
                                                          logical_date_lte=f"{as_of.isoformat()}T23:59:59Z")}
    moment = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
    while any(t and t.startswith(moment.strftime("%Y-%m-%dT%H:%M:%S")) for t in taken):
        moment += timedelta(minutes=1)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return observer.api._request("POST", "/api/v2/dags/mlops_train/dagRuns", {
        "dag_run_id": f"first_training__{as_of.isoformat()}__{stamp}",
        "logical_date": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "conf": {"reason": "initial"},
    })  # fmt: skip


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _trained_version(observer: Observer, run: Mapping[str, Any]) -> str | None:
    trained = observer.xcom("mlops_train", run["dag_run_id"], "train") or {}
    version = trained.get("version") if isinstance(trained, dict) else None
    return None if version is None else str(version)


def _passed_gate(run: Mapping[str, Any]) -> bool:
    states = {t["task_id"]: t["state"] for t in run.get("tasks", [])}
    return states.get("announce_challenger") == "success"


def describe_training(observer: Observer, run: Mapping[str, Any]) -> str:
    trained = observer.xcom("mlops_train", run["dag_run_id"], "train") or {}
    gate = observer.xcom("mlops_train", run["dag_run_id"], "gate", "decision") or {}
    if not isinstance(trained, dict):
        return f"run {run['state']}"
    metric = holdout_score(trained)
    first_ds, last_ds = trained_days(trained)
    text = f"v{trained.get('version')} trained on {first_ds} .. {last_ds}"
    if metric is not None:
        text += f", holdout ROC AUC {metric:.4f}"
    if _passed_gate(run):
        text += ", gate passed -> @challenger"
    elif isinstance(gate, dict) and gate.get("reason"):
        text += f", gate: {gate.get('reason')}"
    else:
        text += f" (run {run['state']})"
    return text


def trained_days(trained: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The first and last day (ds) of the partitions the train task trained on."""
    partitions = (trained.get("window") or {}).get("partitions") or []
    return (partitions[0]["ds"], partitions[-1]["ds"]) if partitions else (None, None)


def holdout_score(trained: Mapping[str, Any], metric: str = "roc_auc") -> float | None:
    """The winning candidate's holdout score from the train task's result."""
    candidate = (trained.get("candidates") or {}).get(trained.get("winner")) or {}
    value = (candidate.get("holdout") or {}).get(metric)
    return None if value is None else float(value)


def _deploy_after(observer: Observer, train_run: Mapping[str, Any], what: str, timeout: float) -> dict[str, Any]:
    """The asset-triggered ``mlops_deploy`` run that the training run's ``@challenger`` asset event started."""
    ended = train_run.get("end_date") or _now_iso()
    after = (datetime.fromisoformat(ended.replace("Z", "+00:00")) - timedelta(seconds=30)).isoformat()
    found = observer.wait_for_new_run("mlops_deploy", run_type="asset_triggered", after=after, timeout=300, what=what)
    run = observer.wait_run("mlops_deploy", found["dag_run_id"], timeout=timeout)
    if run["state"] != "success":
        failed = [t["task_id"] for t in run["tasks"] if t["state"] == "failed"]
        raise LoopError(f"mlops_deploy {run['dag_run_id']} ({what}) ended {run['state']}; failed tasks {failed}")
    return run


def _deploy_outcome(observer: Observer, run: Mapping[str, Any]) -> dict[str, Any]:
    """What the deploy run's last effective task returned (promote, deploy_direct or rollback)."""
    for task_id in ("promote", "deploy_direct", "rollback"):
        value = observer.xcom("mlops_deploy", run["dag_run_id"], task_id)
        if isinstance(value, dict) and value.get("outcome"):
            return value
    return {}
