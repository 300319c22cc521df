"""``make deploy``: deploy, promote or roll back by triggering the ``mlops_deploy`` DAG, then follow the run.

    python -m mlops_dev.deploy deploy   [--version N] [--strategy shadow|canary|blue_green|ab] [--approval off|before_promote]
                                                      rollout of N (default @challenger; strategy: MLOPS_DEPLOY_STRATEGY)
    python -m mlops_dev.deploy promote  [--version N]   N (default @challenger) straight to stable, no canary
    python -m mlops_dev.deploy rollback [--version N]   back to N (default: the champion's previous champion)
    python -m mlops_dev.deploy status | audit | teardown   what ``python -m mlops_pipeline.deploy`` does (local)

Every command takes ``--dataset NAME``: that dataset's model and its DAG ``mlops_deploy__<name>``
(default: the primary dataset, ``mlops_deploy``).

The run is triggered through Airflow's REST API (the local api-server ``make demo`` starts; another
one with ``--url``) and followed until it ends: every task's state change is printed, then the
outcome. Exit code 0 when the run succeeded, 1 when it failed or rolled back, 2 when no run could be
started or followed (Airflow unreachable, the DAG paused or not there).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from mlops_dev.airflow_api import AirflowAPI, AirflowAPIError
from mlops_dev.dataset_scope import take_dataset

DAG_ID = "mlops_deploy"
ACTIONS = ("deploy", "promote", "rollback")
LOCAL_COMMANDS = ("status", "audit", "teardown")
OUTCOME_TASKS = ("promote", "deploy_direct", "rollback")  # the tasks whose XCom says how the run ended
FINISHED = ("success", "failed")
EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 2


class CannotStart(RuntimeError):
    """The DAG is paused or not there: a triggered run would never start."""


class RunLost(RuntimeError):
    """The run could not be followed (Airflow stopped answering for too long)."""


def dataset_dag_id(name: str | None) -> str:
    """The deploy DAG of dataset ``name`` (None: the primary one), with that dataset's settings in
    this process (see :func:`mlops_dev.dataset_scope.scope_to_dataset`); an unknown or broken
    dataset is a :class:`CannotStart` naming it and the known ones."""
    from mlops_dev.dataset_scope import UnknownDataset, scope_to_dataset

    try:
        return scope_to_dataset(name, DAG_ID)
    except UnknownDataset as exc:
        raise CannotStart(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> int:
    dataset, given = take_dataset(list(sys.argv[1:] if argv is None else argv))
    try:
        dag_id = dataset_dag_id(dataset)
    except CannotStart as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if given[:1] and given[0] in LOCAL_COMMANDS:
        from mlops_pipeline.deploy.__main__ import main as local

        return local(given)
    parser = argparse.ArgumentParser(prog="python -m mlops_dev.deploy", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("action", choices=[*ACTIONS, *LOCAL_COMMANDS])
    parser.add_argument("--version", default=None, help="model version (default: see above)")
    parser.add_argument("--strategy", choices=["shadow", "canary", "blue_green", "ab"], default=None,
                        help="how deploy replaces the serving version (default: MLOPS_DEPLOY_STRATEGY, shadow then canary)")
    parser.add_argument("--approval", choices=["off", "before_promote"], default=None,
                        help="before_promote: the run waits for a person to approve the promotion (default: MLOPS_DEPLOY_APPROVAL)")
    parser.add_argument("--url", default=None, help="Airflow's base URL (default: the local api-server)")
    parser.add_argument("--unpause", action="store_true", help="unpause mlops_deploy first if it is paused")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="stop following after this many seconds")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the run")
    parser.add_argument("--dataset", default=None, help="the dataset whose model to deploy (default: the primary one, "
                        "MLOPS_DATASET); its DAG is mlops_deploy__<name>")
    args = parser.parse_args(given)

    api = AirflowAPI.local()
    if args.url:
        api.base_url = args.url.rstrip("/")
    try:
        run_id = start(api, args.action, args.version, unpause=args.unpause, strategy=args.strategy, approval=args.approval,
                       dag_id=dag_id)
    except (AirflowAPIError, CannotStart) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        run = follow(api, run_id, poll=args.poll, timeout=args.timeout, dag_id=dag_id)
    except RunLost as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    return report(api, run)


def start(
    api: AirflowAPI,
    action: str,
    version: str | None,
    *,
    unpause: bool = False,
    strategy: str | None = None,
    approval: str | None = None,
    parse_timeout: float = 180.0,
    say: Callable[[str], None] = print,
    dag_id: str = DAG_ID,
) -> str:
    """Trigger ``mlops_deploy`` (or ``dag_id``: a dataset's own) with ``{action, version}`` (and ``strategy``, ``approval`` when given); its run id."""
    try:
        dag = api.dag(dag_id)
    except AirflowAPIError as exc:
        if "HTTP 404" not in str(exc):
            raise
        say(f"waiting for Airflow to parse {dag_id} (a dag-processor must be running)")
        try:
            dag = api.wait_for_dag(dag_id, timeout=parse_timeout)
        except AirflowAPIError as missing:
            raise CannotStart(f"Airflow at {api.base_url} has no DAG {dag_id}: {missing}") from missing
    if dag.get("is_paused"):
        if not unpause:
            raise CannotStart(f"{dag_id} is paused, so a run would wait forever: unpause it in the UI, or pass --unpause")
        api.set_paused(dag_id, False)
        say(f"unpaused {dag_id}")
    conf: dict[str, Any] = {"action": action, "version": version}
    if strategy:
        conf["strategy"] = strategy
    if approval:
        conf["approval"] = approval
    run = api.trigger(dag_id, conf=conf)
    say(f"triggered {dag_id} run {run['dag_run_id']} with {conf}")
    say(f"  {api.base_url}/dags/{dag_id}/runs/{run['dag_run_id']}")
    return str(run["dag_run_id"])


def follow(
    api: AirflowAPI,
    run_id: str,
    *,
    poll: float = 2.0,
    timeout: float = 4 * 3600,
    patience: float = 600.0,
    say: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    dag_id: str = DAG_ID,
) -> dict[str, Any]:
    """Print every task's state change until the run ends; the finished run.

    Airflow not answering for a while (an api-server restart) is waited out for ``patience`` seconds."""
    seen: dict[str, tuple[str | None, int]] = {}
    started = clock()
    last_answer = started
    while True:
        try:
            run = api.dag_run(dag_id, run_id)
            tasks = api.task_instances(dag_id, run_id)
            last_answer = clock()
        except AirflowAPIError as exc:
            if clock() - last_answer > patience:
                raise RunLost(f"lost the run {run_id}: Airflow has not answered for {patience:.0f}s ({exc})") from exc
            sleep(poll)
            continue
        for ti in sorted(tasks, key=lambda t: (t.get("start_date") or "", t["task_id"])):
            state, attempt = ti.get("state"), int(ti.get("try_number") or 0)
            if state is None or seen.get(ti["task_id"]) == (state, attempt):
                continue
            seen[ti["task_id"]] = (state, attempt)
            retry = f" (try {attempt})" if attempt > 1 else ""
            say(f"{_now()}  {ti['task_id']:<22} {state}{retry}")
        if run.get("state") in FINISHED:
            return {**run, "tasks": tasks}
        if clock() - started > timeout:
            raise RunLost(f"the run {run_id} has not ended after {timeout:.0f}s (state {run.get('state')}); it goes on in Airflow")
        sleep(poll)


def report(api: AirflowAPI, run: dict[str, Any], say: Callable[[str], None] = print) -> int:
    """The run's outcome in one line; the exit code."""
    outcome: dict[str, Any] = {}
    for task_id in OUTCOME_TASKS:
        value = _xcom(api, run, task_id)
        if isinstance(value, dict) and value.get("outcome"):
            outcome = value
            break
    failed = sorted(t["task_id"] for t in run.get("tasks", []) if t.get("state") == "failed")
    if outcome:
        detail = outcome.get("reason") or (f"previous v{outcome['previous']}" if outcome.get("previous") else "")
        say(f"{run['state']}: {outcome['outcome']} v{outcome.get('version')}" + (f" ({detail})" if detail else ""))
    elif run["state"] == "success":
        plan = _xcom(api, run, "reconcile") or {}
        say(f"success: nothing deployed ({plan.get('reason', 'no task reported an outcome')})")
    if failed:
        say(f"failed tasks: {', '.join(failed)} (their logs are in the Airflow UI)")
    if run["state"] != "success" or outcome.get("outcome") in ("rolled_back", "rollback_deferred"):
        return EXIT_FAILED
    return EXIT_OK


def _xcom(api: AirflowAPI, run: dict[str, Any], task_id: str) -> Any:
    try:
        return api.xcom(run.get("dag_id") or DAG_ID, run["dag_run_id"], task_id)
    except AirflowAPIError:
        return None


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")


if __name__ == "__main__":
    raise SystemExit(main())
