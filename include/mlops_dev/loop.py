"""The closed loop, step by step: ingest -> train -> deploy -> serve -> monitor -> retrain -> canary -> promote.

Plain functions shared by ``make demo`` and the end-to-end test (``tests/e2e/test_closed_loop.py``).
Each drives the real pieces and returns a dict of what happened, so the demo can print it and the
test can assert it:

* :class:`AirflowRunner` runs the project's DAGs: ``airflow dags test <dag> <date> [--conf]`` (every
  task of one run, in one process, recorded in Airflow's metadata DB) or, for ingest when an
  :class:`~mlops_dev.airflow_api.AirflowAPI` is given, a backfill on the running scheduler.
* :func:`train` runs ``mlops_train`` for a date and finds the version it registered (and whether
  the gate made it ``@challenger``).
* :func:`deploy` runs the deployment (:func:`~mlops_pipeline.deploy.rollout.run_deployment`): the
  first version straight to stable, a challenger through the canary steps while demo traffic of
  the given days flows through the router.
* :func:`serve_days` sends the validated rows of some days through the router, with their own
  event times, so the monitor's window for those days sees them (the prediction log is judged by
  event time).
* :func:`monitor` runs ``mlops_monitor`` for a day and reads back its ``decision.json``.
* :func:`retrain_from_decision` runs the ``mlops_train`` run the monitor asked for, with the
  monitor's own conf (``reason``, ``report``, ``window``) and logical date.

Every step is idempotent: ingest replaces a window, training reuses nothing but registers a new
version, a deployment reconciles first, the monitor rewrites its window's report.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlops_dev.airflow_api import AirflowAPI

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
TRAFFIC_ROWS_PER_REQUEST = 50


class LoopError(RuntimeError):
    """A step of the loop did not do what it must (the message says which step and why)."""


def _iso(day: date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


# --- running DAGs ---------------------------------------------------------------------------------


@dataclass
class AirflowRunner:
    """Runs the project's DAGs with ``env`` on top of this process's environment.

    ``api``: a running scheduler's REST API; ingest then goes through a backfill (the way a person
    would backfill), everything else through ``airflow dags test``.
    """

    env: Mapping[str, str] = field(default_factory=dict)
    api: AirflowAPI | None = None
    timeout: float = 1200.0
    progress: Progress | None = None

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def airflow(self, *argv: str, label: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """``airflow <argv>`` in the project's environment; output captured, progress shown while it runs."""
        command = [sys.executable, "-m", "mlops_dev.services", "exec", "--", "airflow", *argv]
        started = time.monotonic()
        process = subprocess.Popen(
            command, env=self.environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
        )
        lines: list[str] = []

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = started + (timeout or self.timeout)
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise LoopError(f"`airflow {' '.join(argv)}` did not finish in {timeout or self.timeout:.0f}s")
            if self.progress and label:
                self.progress(f"{label}: {time.monotonic() - started:4.0f}s {_last_task_line(lines)}")
            time.sleep(1.0)
        reader.join(timeout=10)
        return subprocess.CompletedProcess(command, process.returncode, "".join(lines), "")

    def dags_test(self, dag_id: str, logical_date: date | str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One run of ``dag_id`` for ``logical_date`` with every task; raises with the log tail if it fails."""
        argv = ["dags", "test", dag_id, _iso(logical_date)]
        if conf:
            argv += ["--conf", json.dumps(dict(conf), default=str)]
        started = time.monotonic()
        done = self.airflow(*argv, label=f"{dag_id} {_iso(logical_date)}")
        seconds = round(time.monotonic() - started, 1)
        tasks = _tasks_run(done.stdout)
        if done.returncode != 0:  # `dags test` exits non-zero when the run failed
            raise LoopError(f"{dag_id} for {_iso(logical_date)} failed (tasks run: {tasks}):\n{done.stdout[-5000:]}")
        return {"dag_id": dag_id, "logical_date": _iso(logical_date), "seconds": seconds, "tasks": tasks, "log": done.stdout}

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The runs of ``dag_id`` in the metadata DB (``airflow dags list-runs``)."""
        done = self.airflow("dags", "list-runs", dag_id, "--output", "json", timeout=300)
        if done.returncode != 0:
            raise LoopError(f"listing the runs of {dag_id} failed:\n{done.stdout[-3000:]}")
        tables = [line for line in done.stdout.splitlines() if line.startswith(("[{", "[]"))]
        return json.loads(tables[-1]) if tables else []

    def ingest(self, days: Sequence[date], *, scenario: str | None = None) -> dict[str, Any]:
        """``mlops_ingest`` for each day: a backfill on the scheduler (with ``api``), else one
        ``dags test`` per day. A rejected batch is reported, not raised (its run fails by design)."""
        started = time.monotonic()
        if self.api is not None and scenario is None:
            return self._backfill(days, started)
        results: dict[str, str] = {}
        errors: dict[str, str] = {}
        for day in days:
            conf = {"scenario": scenario} if scenario else None
            try:
                self.dags_test("mlops_ingest", day, conf)
                results[day.isoformat()] = "success"
            except LoopError as exc:
                results[day.isoformat()] = "failed"
                errors[day.isoformat()] = _error_lines(str(exc))
                log.warning("ingest of %s failed: %s", day, errors[day.isoformat()])
        return {"days": results, "errors": errors, "seconds": round(time.monotonic() - started, 1), "via": "airflow dags test"}

    def _backfill(self, days: Sequence[date], started: float) -> dict[str, Any]:
        assert self.api is not None
        first, last = min(days).isoformat(), max(days).isoformat()
        self.api.wait_for_backfills_completed("mlops_ingest", timeout=600)
        self.api.backfill("mlops_ingest", first, last, reprocess="completed")

        def show(runs: list[dict]) -> None:
            if self.progress:
                states = [r["state"] for r in runs]
                self.progress(
                    f"mlops_ingest backfill {first}..{last}: {sum(s in ('success', 'failed') for s in states)}/{len(days)} "
                    f"runs finished, {time.monotonic() - started:4.0f}s"
                )

        runs = self.api.wait_for_runs(
            "mlops_ingest", run_type="backfill", expected=len(days), timeout=1800, progress=show,
            logical_date_gte=f"{first}T00:00:00Z", logical_date_lte=f"{last}T00:00:00Z",
        )
        results = {r["logical_date"][:10]: r["state"] for r in runs if first <= r["logical_date"][:10] <= last}
        return {"days": results, "seconds": round(time.monotonic() - started, 1), "via": "backfill on the scheduler"}


_TASK_STARTED = "[DAG TEST] starting task_id="


def _last_task_line(lines: Sequence[str]) -> str:
    """The task ``dags test`` runs now, for the progress line."""
    for line in reversed(lines[-500:]):
        if _TASK_STARTED in line:
            return "task " + line.split(_TASK_STARTED, 1)[1].split()[0]
    return ""


def _error_lines(output: str, limit: int = 2000) -> str:
    """What says why a run failed: its exception and error lines (the run's log is long)."""
    wanted = [line for line in output.splitlines() if "Error" in line or "Exception" in line or "failed" in line]
    return "\n".join(wanted)[-limit:] or output[-limit:]


def _tasks_run(output: str) -> list[str]:
    """The tasks ``dags test`` ran, in order (skipped ones never start)."""
    tasks: list[str] = []
    for line in output.splitlines():
        if _TASK_STARTED in line:
            task_id = line.split(_TASK_STARTED, 1)[1].split()[0]
            if task_id not in tasks:
                tasks.append(task_id)
    return tasks


# --- ingest without Airflow (the same steps the DAG's tasks call) ------------------------------------


def ingest_in_process(days: Iterable[date], *, scenario: str | None = None) -> dict[str, Any]:
    """extract + validate for each day in this process (history a scenario starts from)."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.ingest import Window, extract, validate
    from mlops_pipeline.storage import open_lake

    settings = get_settings()
    spec = load_dataset_spec(settings.dataset)
    lake = open_lake(settings)
    started = time.monotonic()
    done = {}
    for day in days:
        start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        window = Window(start, start + timedelta(days=1))
        extract(lake, spec, window, settings, scenario=scenario, dag_run_id="loop")
        result = validate(lake, spec, window, dag_run_id="loop", build_docs=False)
        done[window.ds] = int(result.get("rows", 0))
    return {"days": done, "seconds": round(time.monotonic() - started, 1), "via": "in process"}


# --- training -------------------------------------------------------------------------------------


def train(runner: AirflowRunner, as_of: date | str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``mlops_train`` for ``as_of`` (trains on the validated days before it); the version it registered."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.registry.aliases import CHALLENGER, version_for_alias
    from mlops_pipeline.registry.client import mlflow_client

    settings = get_settings()
    client = mlflow_client(settings)
    name = settings.registered_model_name
    before = {str(v.version) for v in client.search_model_versions(f"name='{name}'")}
    run = runner.dags_test("mlops_train", as_of, conf)
    new = sorted((v for v in client.search_model_versions(f"name='{name}'") if str(v.version) not in before), key=lambda v: int(v.version))
    if not new:
        raise LoopError(f"mlops_train for {_iso(as_of)} registered no version of {name} (tasks {run['tasks']})")
    version = new[-1]
    mlflow_run = client.get_run(str(version.run_id))
    challenger = version_for_alias(client, name, CHALLENGER)
    tags = dict(version.tags or {})
    return {
        "model_name": name,
        "version": str(version.version),
        "run_id": version.run_id,
        "model_uri": f"models:/{name}/{version.version}",
        "trigger_reason": mlflow_run.data.tags.get("trigger_reason"),
        "trigger_report": mlflow_run.data.tags.get("trigger_report"),
        "window": {k.removeprefix("window."): v for k, v in mlflow_run.data.params.items() if k.startswith("window.")},
        "holdout_roc_auc": mlflow_run.data.metrics.get("holdout_roc_auc"),
        "gate_status": tags.get("gate_status"),
        "rejection_reason": tags.get("rejection_reason"),
        "challenger": challenger is not None and str(challenger.version) == str(version.version),
        "tasks": run["tasks"],
        "seconds": run["seconds"],
    }


# --- serving --------------------------------------------------------------------------------------


def day_records(days: Iterable[date | str]) -> list[dict[str, Any]]:
    """The validated rows of ``days`` as request records: features, id and event time, never the label."""
    from mlops_dev.traffic import _json_value

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.storage import open_lake

    settings = get_settings()
    spec = load_dataset_spec(settings.dataset)
    lake = open_lake(settings)
    columns = [*spec.feature_columns, spec.id_column, spec.time_column]
    records: list[dict[str, Any]] = []
    for day in days:
        frame = lake.read_frame("validated", _iso(day))
        for row in frame[[c for c in columns if c in frame.columns]].to_dict(orient="records"):
            records.append({key: _json_value(value) for key, value in row.items()})
    return records


def router_url() -> str:
    from mlops_dev.traffic import router_url as configured

    return configured()


def serve_days(days: Sequence[date | str], *, url: str | None = None, rows_per_request: int = TRAFFIC_ROWS_PER_REQUEST,
               settle_seconds: float = 3.0, progress: Progress | None = None) -> dict[str, Any]:
    """Every validated row of ``days`` through the router once (their own event times); waits for the log."""
    import httpx
    from mlops_dev.traffic import DEMO_SOURCE, TRAFFIC_SOURCE_HEADER

    url = (url or router_url()).rstrip("/")
    records = day_records(days)
    started = time.monotonic()
    stats: dict[str, Any] = {"rows": len(records), "ok_rows": 0, "failed_requests": 0, "versions": {}, "errors": []}
    headers = {TRAFFIC_SOURCE_HEADER: DEMO_SOURCE}
    with httpx.Client(timeout=60, headers=headers) as http:
        for index in range(0, len(records), rows_per_request):
            batch = records[index : index + rows_per_request]
            try:
                response = http.post(f"{url}/predict", json={"records": batch})
            except httpx.HTTPError as exc:
                stats["failed_requests"] += 1
                stats["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            if response.status_code != 200:
                stats["failed_requests"] += 1
                stats["errors"].append(f"HTTP {response.status_code}: {response.text[:200]}")
                continue
            stats["ok_rows"] += len(batch)
            version = str(response.json().get("model_version"))
            stats["versions"][version] = stats["versions"].get(version, 0) + len(batch)
            if progress and (index // rows_per_request) % 10 == 0:
                progress(f"serving {', '.join(_iso(d) for d in days)}: {stats['ok_rows']}/{len(records)} rows")
    time.sleep(settle_seconds)  # the servers flush their prediction logs every second
    stats["errors"] = stats["errors"][:5]
    stats["seconds"] = round(time.monotonic() - started, 1)
    stats["days"] = [_iso(d) for d in days]
    stats["url"] = url
    return stats


class BackgroundTraffic:
    """Demo traffic of some days through the router from a thread, until stopped (for the canary's checks)."""

    def __init__(self, records: Sequence[dict[str, Any]], *, url: str | None = None, rate: float = 10.0, rows: int = 20) -> None:
        self.records, self.url, self.rate, self.rows = records, url, rate, rows
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats: dict[str, Any] = {}

    def __enter__(self) -> BackgroundTraffic:
        from mlops_dev.traffic import replay

        url = self.url or router_url()

        def run() -> None:
            result = replay(url, self.records, rate=self.rate, seconds=3600, rows=self.rows, until=self._stop.is_set)
            self.stats = result.to_dict()

        self._thread = threading.Thread(target=run, name="loop-traffic", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


# --- deploying ------------------------------------------------------------------------------------


def deploy(*, traffic_days: Sequence[date | str] = (), actor: str = "loop", progress: Progress | None = None) -> dict[str, Any]:
    """Deploy ``@challenger``: the first one straight to stable, later ones through the canary steps
    with demo traffic of ``traffic_days`` flowing (the canary's checks need requests)."""
    from mlops_pipeline.deploy.rollout import Deployer, run_deployment

    deployer = Deployer.open(actor)
    steps: list[dict[str, Any]] = []
    started = time.monotonic()

    def on_step(name: str, info: dict[str, Any]) -> None:
        entry = {"step": name, "at": round(time.monotonic() - started, 1)}
        if name == "shifted":
            entry["percent"] = info.get("percent")
        if name == "analysed":
            entry.update(percent=info.get("percent"), passed=info.get("passed"))
        steps.append(entry)
        if progress:
            detail = f" {entry.get('percent')}%" if entry.get("percent") is not None else ""
            progress(f"deploy: {name}{detail} ({entry['at']:.0f}s)")

    records = day_records(traffic_days) if traffic_days else []
    if records and deployer.backend.router() is not None and deployer.champion() is not None:
        with BackgroundTraffic(records) as traffic:
            result = run_deployment("deploy", deployer=deployer, on_step=on_step)
        traffic_stats = traffic.stats
    else:
        result = run_deployment("deploy", deployer=deployer, on_step=on_step)
        traffic_stats = {}
    endpoint = deployer.backend.router()
    return {
        "outcome": result["outcome"],
        "version": result.get("version"),
        "previous": result.get("previous"),
        "reason": result.get("reason"),
        "mode": (result.get("plan") or {}).get("mode"),
        "deployment_id": (result.get("plan") or {}).get("deployment_id"),
        "champion": deployer.champion(),
        "backend": deployer.backend.kind,
        "router_url": endpoint.url if endpoint else None,
        "steps": steps,
        "traffic": traffic_stats,
        "seconds": round(time.monotonic() - started, 1),
    }


# --- monitoring -----------------------------------------------------------------------------------


def monitor(runner: AirflowRunner, day: date | str) -> dict[str, Any]:
    """``mlops_monitor`` for the window of ``day``; its decision record and report paths."""
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.monitoring.decision import read_decision
    from mlops_pipeline.storage import open_lake

    run = runner.dags_test("mlops_monitor", day)
    monitor_settings = get_settings().monitor
    lake = open_lake(get_settings())
    decision = read_decision(lake, monitor_settings.reports_prefix, _iso(day))
    if decision is None:
        raise LoopError(f"mlops_monitor for {_iso(day)} wrote no decision.json under {lake.uri}/{monitor_settings.reports_prefix}")
    folder = lake.uri_of(monitor_settings.reports_prefix, f"ds={_iso(day)}")
    return {
        "ds": _iso(day),
        "action": decision.get("action"),
        "reason": decision.get("reason"),
        "trigger": decision.get("trigger"),
        "triggered": decision.get("triggered"),
        "train_run_id": decision.get("train_run_id"),
        "blocked_by": decision.get("blocked_by"),
        "summary": decision.get("summary"),
        "numbers": decision.get("numbers") or {},
        "conf": decision.get("conf"),
        "report": decision.get("report"),
        "report_html": _local_path(f"{folder}/report.html"),
        "quality_html": _local_path(f"{folder}/quality.html"),
        "decision_file": _local_path(f"{folder}/decision.json"),
        "tasks": run["tasks"],
        "seconds": run["seconds"],
    }


def _local_path(uri: str) -> str:
    """A ``file://`` URI as a path a person can open (other URIs as they are)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def retrain_from_decision(runner: AirflowRunner, decision: Mapping[str, Any]) -> dict[str, Any]:
    """Run the ``mlops_train`` run the monitor triggered: its conf and its logical date (the window's end).

    The monitor's trigger created the run in the metadata DB; ``dags test`` for the same logical date
    replaces it with a run that executes here, with the same conf."""
    conf = decision.get("conf")
    if not decision.get("triggered") or not conf:
        raise LoopError(f"the monitor for {decision.get('ds')} did not trigger a retrain: {decision.get('summary')}")
    logical = datetime.fromisoformat(conf["window"]["end"]).date()
    return {**train(runner, logical, conf), "logical_date": logical.isoformat(), "conf": conf}


def triggered_run(runner: AirflowRunner, run_id: str) -> dict[str, Any] | None:
    """The ``mlops_train`` run with ``run_id`` in the metadata DB (what the monitor's trigger created)."""
    return next((r for r in runner.dag_runs("mlops_train") if r.get("run_id") == run_id), None)


# --- quality --------------------------------------------------------------------------------------


def roc_auc_on(model_uri: str, frame: pd.DataFrame) -> float:
    """ROC AUC of a registered model on a labelled frame."""
    from sklearn.metrics import roc_auc_score

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.datasets import load_dataset_spec
    from mlops_pipeline.registry.models import load_model

    spec = load_dataset_spec(get_settings().dataset)
    model = load_model(model_uri)
    return float(roc_auc_score(frame[spec.target].astype(int), model.predict_proba(frame)))


def labelled_frame(days: Iterable[date | str]) -> pd.DataFrame:
    """The validated rows of ``days`` (with their labels)."""
    import pandas as pd

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.storage import open_lake

    lake = open_lake(get_settings())
    return pd.concat([lake.read_frame("validated", _iso(day)) for day in days], ignore_index=True)
