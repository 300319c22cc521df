"""The command lines: ``python -m mlops_pipeline.deploy`` (status, audit, teardown: local) and
``python -m mlops_dev.deploy`` (what ``make deploy`` runs: a run of the mlops_deploy DAG, followed).

An expected failure is one line naming it; exit code 2 when nothing could be started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from mlops_dev import deploy as make_deploy
from mlops_dev.airflow_api import AirflowAPIError


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_registry_is_a_one_line_error(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "MLOPS_HOME": str(tmp_path),
        "MLOPS_LAKE_URI": str(tmp_path / "lake"),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_closed_port()}",
        "MLOPS_REGISTRY_CONNECT_ATTEMPTS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "mlops_pipeline.deploy", "status"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: RegistryUnavailable: MLflow tracking server http://127.0.0.1:"), last


@pytest.mark.parametrize("command", ["deploy", "promote", "rollback", "reconcile"])
def test_deploying_is_not_a_local_command_and_the_error_says_where_it_runs(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlops_pipeline.deploy", command], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    assert f"'{command}' runs in Airflow, as the mlops_deploy DAG" in done.stderr, done.stderr


def test_make_deploy_without_airflow_exits_2_naming_it(tmp_path) -> None:
    port = _closed_port()
    env = {"PATH": "/usr/bin:/bin", "MLOPS_HOME": str(tmp_path), "MLOPS_AIRFLOW_PORT": str(port), "MLOPS_AIRFLOW_PASSWORD": "x"}
    done = subprocess.run(
        [sys.executable, "-m", "mlops_dev.deploy", "deploy", "--version", "3"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"Airflow API at http://127.0.0.1:{port} unreachable" in done.stderr.strip().splitlines()[-1]


class FakeAirflow:
    """The REST API as the deploy command sees it: a DAG, one run whose task states move on each look."""

    base_url = "http://airflow"

    def __init__(self, looks: list[tuple[str, dict[str, tuple[str, int]]]], xcoms: dict[str, Any] | None = None, paused: bool = False):
        self.looks = looks  # (run state, {task: (state, try)}) per look
        self.xcoms = xcoms or {}
        self.paused = paused
        self.triggered: list[dict[str, Any]] = []
        self.unreachable_looks = 0

    def dag(self, dag_id: str) -> dict[str, Any]:
        return {"dag_id": dag_id, "is_paused": self.paused}

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.paused = paused

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        self.triggered.append(conf or {})
        return {"dag_run_id": "manual__1"}

    def _look(self) -> tuple[str, dict[str, tuple[str, int]]]:
        return self.looks[0] if len(self.looks) == 1 else self.looks.pop(0)

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        if self.unreachable_looks:
            self.unreachable_looks -= 1
            raise AirflowAPIError("GET ...: Airflow API at http://airflow unreachable (connection refused)")
        self._state, self._tasks = self._look()
        return {"dag_run_id": run_id, "state": self._state}

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return [{"task_id": t, "state": s, "try_number": n} for t, (s, n) in self._tasks.items()]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        return self.xcoms.get(task_id)


def follow_and_report(api: FakeAirflow) -> tuple[int, list[str]]:
    said: list[str] = []
    run = make_deploy.follow(api, "manual__1", poll=0, say=said.append, sleep=lambda s: None)  # type: ignore[arg-type]
    return make_deploy.report(api, run, say=said.append), said  # type: ignore[arg-type]


def test_make_deploy_prints_each_state_change_and_succeeds_on_a_promotion() -> None:
    api = FakeAirflow(
        [
            ("running", {"reconcile": ("running", 1)}),
            ("running", {"reconcile": ("success", 1), "step_5pct.bake": ("up_for_reschedule", 1)}),
            ("running", {"reconcile": ("success", 1), "step_5pct.bake": ("up_for_reschedule", 1)}),  # nothing new
            ("running", {"reconcile": ("success", 1), "step_5pct.bake": ("running", 2)}),
            ("success", {"reconcile": ("success", 1), "step_5pct.bake": ("success", 2), "promote": ("success", 1)}),
        ],
        xcoms={"promote": {"outcome": "promoted", "version": "4", "previous": "3"}},
    )
    assert make_deploy.start(api, "deploy", "4", say=lambda line: None) == "manual__1"  # type: ignore[arg-type]
    code, said = follow_and_report(api)

    assert api.triggered == [{"action": "deploy", "version": "4"}]
    changes = [line.split(None, 1)[1] for line in said[:-1]]
    assert sorted(" ".join(c.split()) for c in changes) == sorted([
        "reconcile running", "reconcile success", "step_5pct.bake up_for_reschedule",
        "step_5pct.bake running (try 2)", "step_5pct.bake success (try 2)", "promote success",
    ])  # fmt: skip
    assert said[-1] == "success: promoted v4 (previous v3)" and code == 0


def test_make_deploy_exits_1_when_the_run_rolled_back() -> None:
    api = FakeAirflow(
        [("failed", {"step_5pct.analyse": ("failed", 1), "rollback": ("success", 1)})],
        xcoms={"rollback": {"outcome": "rolled_back", "version": "5", "reason": "canary v5 at 5%: prediction shift PSI 3.2"}},
    )
    code, said = follow_and_report(api)

    assert code == 1
    assert "failed: rolled_back v5 (canary v5 at 5%: prediction shift PSI 3.2)" in said
    assert said[-1].startswith("failed tasks: step_5pct.analyse")


def test_make_deploy_waits_out_an_api_server_restart_while_following() -> None:
    api = FakeAirflow([("success", {"deploy_direct": ("success", 1)})], xcoms={"deploy_direct": {"outcome": "deployed", "version": "1"}})
    api.unreachable_looks = 3
    code, said = follow_and_report(api)
    assert code == 0 and said[-1] == "success: deployed v1"


def test_make_deploy_refuses_a_paused_dag_unless_told_to_unpause() -> None:
    api = FakeAirflow([("success", {})], paused=True)
    with pytest.raises(make_deploy.CannotStart, match="paused"):
        make_deploy.start(api, "deploy", None, say=lambda line: None)  # type: ignore[arg-type]
    assert api.triggered == []
    make_deploy.start(api, "promote", None, unpause=True, say=lambda line: None)  # type: ignore[arg-type]
    assert api.paused is False and api.triggered == [{"action": "promote", "version": None}]
    make_deploy.start(api, "deploy", "5", strategy="blue_green", say=lambda line: None)  # type: ignore[arg-type]
    assert api.triggered[-1] == {"action": "deploy", "version": "5", "strategy": "blue_green"}


def test_dataset_option_names_the_datasets_deploy_dag_and_refuses_an_unknown_one(tmp_path, monkeypatch) -> None:
    """``--dataset NAME``: the primary dataset's DAG is mlops_deploy, another's mlops_deploy__<name>,
    whose settings the process then reads (for status, audit, teardown); an unknown name is refused
    naming the known ones."""
    import yaml

    from mlops_pipeline.config import SCOPE_ENV, get_settings
    from mlops_pipeline.datasets import DATASETS_DIR

    spec = yaml.safe_load((DATASETS_DIR / "churn.yaml").read_text())
    spec.update(name="leads", suite=str((DATASETS_DIR / spec["suite"]).resolve()))
    (tmp_path / "leads.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("MLOPS_DATASETS_DIR", str(tmp_path))
    monkeypatch.delenv("MLOPS_DATASET", raising=False)
    monkeypatch.delenv(SCOPE_ENV, raising=False)
    get_settings.cache_clear()
    try:
        assert make_deploy.take_dataset(["deploy", "--dataset", "leads", "--version", "3"]) == ("leads", ["deploy", "--version", "3"])
        assert make_deploy.dataset_dag_id(None) == "mlops_deploy"
        assert make_deploy.dataset_dag_id("churn") == "mlops_deploy"
        assert make_deploy.dataset_dag_id("leads") == "mlops_deploy__leads"
        assert get_settings().registered_model_name == "leads"
        with pytest.raises(make_deploy.CannotStart, match=r"--dataset nope: no such dataset; this installation has \['churn', 'leads'\]"):
            make_deploy.dataset_dag_id("nope")
    finally:
        os.environ.pop(SCOPE_ENV, None)  # set by the command itself, not by monkeypatch: it would restore it
        get_settings.cache_clear()
