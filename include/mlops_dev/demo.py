"""``make demo``: the whole closed loop on embedded defaults, on a real scheduler, MLflow and serving.

1. Starts MLflow and the project-local Airflow (api-server, scheduler, DAG processor).
2. Backfills the history (``HISTORY_DAYS`` days before the drift day D) through ``mlops_ingest``;
   one of those days is a scheduled bad batch, so a quarantine shows too.
3. ``mlops_train`` -> the first version -> deployed straight to stable behind HAProxy.
4. Backfills the days from D (covariate drift from D on) and serves them through the router, with
   their event times, as demo traffic.
5. ``mlops_monitor`` for D: drift -> ``mlops_train`` triggered with reason ``drift`` -> the
   challenger (trained on data including D) -> canary under demo traffic -> promoted.
6. A summary: the champion, the drift report (HTML), the decision and why, every URL and login.

The champion keeps serving afterwards, and MLflow and Airflow keep running; ``make stop`` stops
them (and ``python -m mlops_pipeline.deploy teardown`` the serving containers or processes).
Each step is one of :mod:`mlops_dev.loop`'s, the ones the end-to-end test runs.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

HISTORY_DAYS = 7
DRIFT_DAYS_AGO = 2  # D: far enough back that the days from D are complete
DEMO_DEFAULTS = {
    # Short canary steps, so the rollout takes a couple of minutes (real deployments bake longer).
    "MLOPS_DEPLOY_STEPS": "10,50,100",
    "MLOPS_DEPLOY_BAKE_SECONDS": "10",
    "MLOPS_DEPLOY_MAX_BAKE_SECONDS": "120",
    "MLOPS_DEPLOY_POKE_SECONDS": "2",
    "MLOPS_DEPLOY_MIN_REQUESTS": "20",
    "MLOPS_DEPLOY_MIN_ROWS": "300",
    "MLOPS_MONITOR_REPORT_SAMPLE_ROWS": "5000",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # the demo's own progress line says what runs
}


class ProgressLine:
    """One line that rewrites itself while a long step runs (a plain line per update without a TTY)."""

    def __init__(self, every: float = 15.0) -> None:
        self.tty = sys.stdout.isatty()
        self.every = every  # without a TTY: one line at most this often
        self.width = 0
        self.printed_at = 0.0

    def __call__(self, message: str) -> None:
        text = f"  ... {message}"
        if self.tty:
            columns = shutil.get_terminal_size((120, 20)).columns - 1
            text = text[:columns]
            sys.stdout.write("\r" + text.ljust(self.width))
            self.width = len(text)
        elif time.monotonic() - self.printed_at >= self.every:
            sys.stdout.write(text + "\n")
            self.printed_at = time.monotonic()
        sys.stdout.flush()

    def done(self) -> None:
        if self.tty and self.width:
            sys.stdout.write("\r" + " " * self.width + "\r")
            sys.stdout.flush()
        self.width = 0


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def main() -> int:
    started = time.monotonic()
    today = datetime.now(UTC).date()
    drift_day = today - timedelta(days=DRIFT_DAYS_AGO)
    history = [drift_day - timedelta(days=offset) for offset in range(HISTORY_DAYS, 0, -1)]
    after_drift = [drift_day + timedelta(days=offset) for offset in range(DRIFT_DAYS_AGO)]
    os.environ.setdefault("MLOPS_COVARIATE_DRIFT_FROM", drift_day.isoformat())
    os.environ.setdefault("MLOPS_BAD_BATCH_DAYS", history[2].isoformat())
    for key, value in DEMO_DEFAULTS.items():
        os.environ.setdefault(key, value)

    from mlops_dev import loop, services
    from mlops_dev.airflow_api import AirflowAPI

    from mlops_pipeline.config import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    progress = ProgressLine()
    results: dict[str, Any] = {}

    say(f"starting MLflow (http://127.0.0.1:{settings.mlflow_port}) and Airflow (api-server, scheduler, dag-processor)")
    services.start(["mlflow", "api-server", "scheduler", "dag-processor"], wait=240)
    api = AirflowAPI.local()
    api.wait_for_dag("mlops_ingest", timeout=300)
    runner = loop.AirflowRunner(api=api, progress=progress)

    say(f"1/6 ingest: backfilling {history[0]} .. {history[-1]} through mlops_ingest "
        f"(bad batch scheduled on {os.environ['MLOPS_BAD_BATCH_DAYS']})")
    ingested = runner.ingest(history)
    progress.done()
    ok = sorted(day for day, state in ingested["days"].items() if state == "success")
    failed = sorted(day for day, state in ingested["days"].items() if state != "success")
    say(f"    {len(ok)} day(s) validated, {len(failed)} quarantined {failed or ''} ({ingested['seconds']:.0f}s)")

    say(f"2/6 train: mlops_train as of {drift_day} (the validated days before it)")
    first = runner_step(progress, loop.train, runner, drift_day, {"reason": "initial"})
    say(f"    v{first['version']} registered, holdout ROC AUC {first['holdout_roc_auc']:.4f}, "
        f"gate {first['gate_status']}{', @challenger' if first['challenger'] else ''} ({first['seconds']:.0f}s)")

    say("3/6 deploy: the challenger to serving behind HAProxy")
    deployed = runner_step(progress, loop.deploy, traffic_days=ok[-2:], actor="demo", progress=progress)
    say(f"    {deployed['outcome']} v{deployed['version']} on the {deployed['backend']} backend at {deployed['router_url']} "
        f"({deployed['seconds']:.0f}s)")
    results["first_deploy"] = deployed

    say(f"4/6 ingest and serve the days from {drift_day} (covariate drift starts on {drift_day})")
    ingested = runner.ingest(after_drift)
    progress.done()
    say(f"    ingested {ingested['days']} ({ingested['seconds']:.0f}s)")
    served = runner_step(progress, loop.serve_days, after_drift, progress=progress)
    say(f"    {served['ok_rows']} of {served['rows']} rows served ({served['versions']}) at {served['url']}")

    say(f"5/6 monitor: mlops_monitor for {drift_day}")
    decision = runner_step(progress, loop.monitor, runner, drift_day)
    say(f"    decision: {decision['summary']}")
    results["decision"] = decision

    retrained: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None
    if decision["triggered"] and decision["conf"]:
        say(f"6/6 retrain ({decision['conf']['reason']}) and canary: the mlops_train run the monitor triggered "
            f"({decision['train_run_id']})")
        retrained = runner_step(progress, loop.retrain_from_decision, runner, decision)
        say(f"    v{retrained['version']} trained on {retrained['window'].get('first_ds')} .. {retrained['window'].get('last_ds')} "
            f"(trigger_reason={retrained['trigger_reason']}), holdout ROC AUC {retrained['holdout_roc_auc']:.4f}, "
            f"gate {retrained['gate_status']}")
        if retrained["challenger"]:
            canary = runner_step(progress, loop.deploy, traffic_days=after_drift, actor="demo", progress=progress)
            steps = ", ".join(f"{s['percent']}% ok" for s in canary["steps"] if s["step"] == "analysed")
            say(f"    canary: {steps or '-'} -> {canary['outcome']} v{canary['version']} "
                f"{'(' + canary['reason'] + ')' if canary.get('reason') else ''}")
    else:
        say("6/6 no retrain was triggered for this window: " + (decision.get("blocked_by") or "no finding asked for one"))

    summary(settings, decision, first, retrained, canary, deployed, time.monotonic() - started)
    return 0


def runner_step(line: ProgressLine, function, *args, **kwargs):
    """``function(*args, **kwargs)``, then the progress line cleared (also on an error)."""
    try:
        return function(*args, **kwargs)
    finally:
        line.done()


def summary(settings, decision, first, retrained, canary, deployed, seconds: float) -> None:
    from mlops_dev import services

    from mlops_pipeline.deploy.rollout import Deployer

    status = Deployer.open("demo").status()
    router = (status.get("router") or {}).get("url") or deployed.get("router_url")
    champion = status.get("champion")
    if canary and canary["outcome"] == "promoted":
        why = f"promoted v{canary['version']} through every canary step (v{canary['previous']} retired)"
    elif canary:
        why = f"the canary of v{canary['version']} was rolled back: {canary.get('reason')}"
    elif retrained:
        why = f"v{retrained['version']} did not pass the gate: {retrained.get('rejection_reason')}"
    else:
        why = "nothing to deploy"
    password = services.admin_password()
    print()
    print("=" * 100)
    print(f"Closed loop done in {seconds / 60:.1f} min")
    print(f"  champion:        {settings.registered_model_name} v{champion} (first v{first['version']}; {why})")
    print(f"  decision ({decision['ds']}): {decision['action']}"
          + (f" for {decision['reason']}" if decision.get("reason") else "")
          + (" -> mlops_train triggered" if decision.get("triggered") else " (not triggered)"))
    print(f"  why:             {decision['summary']}")
    print(f"  drift report:    {decision['report_html']}   (open it in a browser)")
    if decision.get("quality_html") and os.path.exists(decision["quality_html"]):
        print(f"  quality report:  {decision['quality_html']}")
    print(f"  decision record: {decision['decision_file']}")
    print()
    print(f"  Airflow UI:      http://127.0.0.1:{settings.airflow_port}   login: admin / {password}")
    print(f"  MLflow UI:       http://127.0.0.1:{settings.mlflow_port}   (model {settings.registered_model_name}: "
          f"aliases @champion, @challenger; experiment {settings.registered_model_name}-monitoring)")
    print(f"  serving router:  {router}   (HAProxy; stats/metrics: {(status.get('router') or {}).get('metrics_url')})")
    print(f"  try it:          curl -s {router}/predict -H 'Content-Type: application/json' -d @- <<< "
          f"'{{\"records\": [{example_record()}]}}'")
    print(f"  lake:            {settings.lake_uri}   (Data Docs: {settings.lake_uri}/data_docs/index.html)")
    print("  stop:            make stop   (serving: .venv/bin/python -m mlops_pipeline.deploy teardown)")
    print("=" * 100)


def example_record() -> str:
    import json

    from mlops_dev import loop

    try:
        latest = loop.day_records([datetime.now(UTC).date() - timedelta(days=1)])[:1]
    except Exception:  # the example is a convenience; the summary must print anyway
        return "{...}"
    return json.dumps(latest[0]) if latest else "{...}"


if __name__ == "__main__":
    sys.exit(main())
