"""``make demo``: the closed loop on embedded defaults, run by Airflow's scheduler and watched through its REST API.

1. Starts the local stack: PostgreSQL (Airflow's metadata DB), MLflow, and Airflow's api-server,
   scheduler, DAG processor and triggerer.
2. Unpauses the DAGs and backfills ``mlops_ingest`` over the history and the days since the change
   day D (covariate drift from D on; one history day is a scheduled bad batch, so a quarantine
   shows too).
3. Triggers ``mlops_train`` once, as of D: the gate makes the version ``@challenger``, whose asset
   event starts ``mlops_deploy``: the first version serves behind HAProxy.
4. Starts a client process standing in for the model's users: every row of the days since D once,
   then steady traffic.
5. Backfills ``mlops_monitor`` over the days since D: drift; the retrain waits until
   ``min_post_change_days`` of post-change data exist; then the monitor triggers ``mlops_train``,
   whose challenger goes through every canary step under the client's traffic and is promoted.
6. Backfills ``mlops_score`` over the days since D: the new champion's batch predictions in the lake.
7. Prints a summary: the champion and why, the decision, the drift report, each DAG run's UI link,
   every URL and login, and the demo's own time.

The scheduler does every step; this script only creates the backfills and the first trigger and then
observes (:mod:`mlops_dev.loop`). The DAGs stay unpaused, so the loop goes on by schedule; the
champion keeps serving; ``make stop`` stops everything. ``MLOPS_DEMO_TODAY=YYYY-MM-DD`` replays the
scenario as if that were today.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import UTC, date, datetime
from typing import Any

DEMO_DEFAULTS = {
    # Short canary steps and bakes, so the rollout takes minutes (real deployments bake longer). The
    # checks keep their production thresholds: at 10 % of the client's 40 requests/s the canary gets
    # 4 requests/s, so a 20 s bake sees about 80 of them, above the 50 that the checks need.
    "MLOPS_DEPLOY_STEPS": "10,50,100",
    "MLOPS_DEPLOY_BAKE_SECONDS": "20",
    "MLOPS_DEPLOY_MAX_BAKE_SECONDS": "180",
    "MLOPS_DEPLOY_POKE_SECONDS": "5",
    # The shadow window (the default strategy) is at least 20 s, not production's 30 min: the client's
    # rows carry labels from the moment the monitor has judged the days, so the evidence the window
    # waits for (50 mirrored requests, 200 labelled rows answered by both) comes within seconds.
    "MLOPS_DEPLOY_SHADOW_SECONDS": "20",
    "MLOPS_MONITOR_REPORT_SAMPLE_ROWS": "5000",
    # A smaller hyperparameter search (its trials still show as nested runs in MLflow).
    "MLOPS_TRAIN_TUNE_TRIALS": "8",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # the demo's own progress line says what runs
}
AIRFLOW_SERVICES = ["api-server", "scheduler", "dag-processor", "triggerer"]


class ProgressLine:
    """One line that rewrites itself while a long step runs (a plain line per update without a TTY)."""

    def __init__(self, every: float = 15.0) -> None:
        self.tty = sys.stdout.isatty()
        self.every = every  # without a TTY: one line at most this often
        self.width = 0
        self.printed_at = 0.0
        self.last = ""

    def __call__(self, message: str) -> None:
        text = f"  ... {message}"
        if self.tty:
            columns = shutil.get_terminal_size((120, 20)).columns - 1
            text = text[:columns]
            sys.stdout.write("\r" + text.ljust(self.width))
            self.width = len(text)
        elif time.monotonic() - self.printed_at >= self.every and text != self.last:
            sys.stdout.write(text + "\n")
            self.printed_at = time.monotonic()
            self.last = text
        sys.stdout.flush()

    def done(self) -> None:
        if self.tty and self.width:
            sys.stdout.write("\r" + " " * self.width + "\r")
            sys.stdout.flush()
        self.width = 0


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def demo_today() -> date:
    configured = os.environ.get("MLOPS_DEMO_TODAY", "").strip()
    return date.fromisoformat(configured) if configured else datetime.now(UTC).date()


def main() -> int:
    started = time.monotonic()
    from mlops_pipeline.config import get_settings

    today = demo_today()
    from mlops_dev.loop import ClientProcess, LoopError, Observer, Timeline, run_loop

    post_change_days = get_settings().monitor.min_post_change_days
    timeline = Timeline.ending(today, post_change_days=post_change_days)
    for key, value in {**timeline.environment(), **DEMO_DEFAULTS}.items():
        os.environ.setdefault(key, value)
    get_settings.cache_clear()
    settings = get_settings()

    from mlops_dev import services
    from mlops_dev.airflow_api import AirflowAPI

    say(f"today is {today}; the data changes on {timeline.change_day} (covariate drift), "
        f"{post_change_days} day(s) before it")
    say("starting PostgreSQL, MLflow and Airflow (api-server, scheduler, dag-processor, triggerer)")
    services.stop(AIRFLOW_SERVICES)  # so they run with this scenario's settings
    services.start(["postgres", "mlflow", *AIRFLOW_SERVICES], wait=300)
    api = AirflowAPI.local()
    progress = ProgressLine()
    observer = Observer(api, progress=progress, ui_base=f"http://127.0.0.1:{settings.airflow_port}")
    client = ClientProcess(timeline.post_change, settings.run_dir / "demo" / "client.json", before_days=timeline.good_history)
    try:
        result = run_loop(observer, timeline, client, say=say, done=progress.done)
    except LoopError as exc:
        progress.done()
        client.stop()
        say(f"the loop stopped: {exc}")
        print(f"\n  Airflow UI: http://127.0.0.1:{settings.airflow_port}   login: admin / {services.admin_password()}")
        print(f"  demo time:  {(time.monotonic() - started) / 60:.1f} min")
        return 1
    summary(settings, observer, result, time.monotonic() - started)
    return 0


def summary(settings: Any, observer: Any, result: Any, seconds: float) -> None:
    from mlops_dev import services

    outcome = result.outcome
    decision = next((d for d in reversed(result.decisions) if d.get("trigger")), result.decisions[-1] if result.decisions else {})
    client = result.client or {}
    steady = client.get("steady") or {}
    report_dir = (decision.get("report") or "").rsplit("/", 1)[0]
    router = f"http://127.0.0.1:{settings.router_port}"
    print()
    print("=" * 100)
    print(f"Closed loop done in {seconds / 60:.1f} min, every step run by Airflow's scheduler")
    print(f"  champion:        {settings.registered_model_name} v{outcome.get('version')}: {outcome.get('outcome')} through "
          f"every canary step, trained by the mlops_train run the monitor triggered (first version v{result.first_version})")
    print(f"  decision ({(decision.get('window') or {}).get('ds')}): {decision.get('summary')}")
    if report_dir:
        print(f"  drift report:    {_local(report_dir)}/report.html   (also in the Model ops view)")
    print(f"  client traffic:  {client.get('replayed', {}).get('rows', 0)} rows of the post-change days, then "
          f"{steady.get('sent', 0)} steady requests; {steady.get('failed', 0) + client.get('replayed', {}).get('failed', 0)} failed")
    scored = result.scored or {}
    if scored:
        versions = sorted({str(s.get("model_version")) for s in scored.values()})
        print(f"  batch scores:    {sum(int(s.get('rows') or 0) for s in scored.values())} rows of {min(scored)} .. {max(scored)} "
              f"scored by mlops_score with v{', v'.join(versions)}   ({_local(settings.lake_uri)}/predictions/)")
    print("  DAG runs:")
    for step, run in result.runs.items():
        print(f"    {step:14s} {run['dag_id']:14s} {run['state']:8s} {run.get('run_type', ''):18s} {observer.link(run['dag_id'], run['dag_run_id'])}")
    print()
    print(f"  Airflow UI:      http://127.0.0.1:{settings.airflow_port}   login: admin / {services.admin_password()}")
    print(f"  MLflow UI:       http://127.0.0.1:{settings.mlflow_port}   (model {settings.registered_model_name}: "
          f"aliases @champion, @challenger; experiment {settings.registered_model_name}-monitoring)")
    print(f"  serving router:  {router}   (HAProxy)")
    print(f"  try it:          curl -s {router}/predict -H 'Content-Type: application/json' -d @- <<< "
          f"'{{\"records\": [{example_record(result.timeline.post_change[-1])}]}}'")
    print(f"  lake:            {settings.lake_uri}   (Data Docs: {settings.lake_uri}/data_docs/index.html)")
    print("  the DAGs stay unpaused: ingest, monitor and score run nightly, train weekly; make stop stops everything")
    print("=" * 100)


def _local(uri: str) -> str:
    return uri.removeprefix("file://")


def example_record(day: date) -> str:
    from mlops_dev.traffic import day_records

    try:
        record = day_records([day])[0]
    except Exception:  # the example is a convenience; the summary must print anyway
        return "{...}"
    return json.dumps(record)


if __name__ == "__main__":
    sys.exit(main())
