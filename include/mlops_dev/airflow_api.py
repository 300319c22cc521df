"""A small client for Airflow 3's REST API (used by the demo, the tests and the benchmarks).

Authenticates against the api-server with the SimpleAuthManager's ``admin`` user, whose
password the api-server generates into ``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated``
(or ``MLOPS_AIRFLOW_PASSWORD``). Only the standard library: it runs anywhere.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class AirflowAPIError(RuntimeError):
    pass


class AirflowAPI:
    def __init__(self, base_url: str, username: str = "admin", password: str | None = None, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self._token: str | None = None

    @classmethod
    def local(cls) -> AirflowAPI:
        from mlops_dev.services import admin_password

        from mlops_pipeline.config import get_settings

        password = os.environ.get("MLOPS_AIRFLOW_PASSWORD") or admin_password()
        return cls(f"http://127.0.0.1:{get_settings().airflow_port}", password=password)

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise AirflowAPIError(f"{method} {path} -> HTTP {exc.code}: {detail}") from exc
        except urllib.error.URLError as exc:
            raise AirflowAPIError(f"{method} {path}: Airflow API at {self.base_url} unreachable ({exc.reason})") from exc
        return json.loads(raw) if raw else None

    def token(self) -> str:
        if self._token is None:
            if not self.password:
                raise AirflowAPIError("no password for the Airflow API: start the api-server first or set MLOPS_AIRFLOW_PASSWORD")
            answer = self._request("POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False)
            self._token = answer["access_token"]
        return self._token

    def health(self) -> dict[str, Any]:
        """The api-server's view of the metadata DB, scheduler, triggerer and DAG processor."""
        return self._request("GET", "/api/v2/monitor/health", auth=False)

    # --- DAGs and runs ---------------------------------------------------------------------
    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> dict[str, Any]:
        """Wait until the DAG processor has parsed ``dag_id`` into the metadata DB."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._request("GET", f"/api/v2/dags/{dag_id}")
            except AirflowAPIError as exc:
                if "404" not in str(exc) or time.monotonic() > deadline:
                    raise AirflowAPIError(f"DAG {dag_id} not available after {timeout:.0f}s: {exc}") from exc
            time.sleep(2)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}?update_mask=is_paused", {"is_paused": paused})

    def dag_runs(self, dag_id: str, **filters: Any) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"limit": 1000, "order_by": "logical_date", **filters}, doseq=True)
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?{query}")["dag_runs"]

    def create_backfill(
        self, dag_id: str, from_date: str, to_date: str, *, reprocess: str = "none", max_active_runs: int = 4,
        conf: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._request(
            "POST",
            "/api/v2/backfills",
            {
                "dag_id": dag_id,
                "from_date": from_date,
                "to_date": to_date,
                "reprocess_behavior": reprocess,
                "max_active_runs": max_active_runs,
                "dag_run_conf": conf or {},
                "run_backwards": False,
            },
        )

    def backfill(self, dag_id: str, from_date: str, to_date: str, **options: Any) -> dict[str, Any]:
        """Create a backfill of ``dag_id`` and make sure its runs can start: they only do while the DAG
        is unpaused, so a paused DAG is unpaused first. ``options``: those of :meth:`create_backfill`."""
        if self._request("GET", f"/api/v2/dags/{dag_id}").get("is_paused"):
            self.set_paused(dag_id, False)
        return self.create_backfill(dag_id, from_date, to_date, **options)

    def cancel_backfill(self, backfill_id: int) -> dict[str, Any]:
        return self._request("PUT", f"/api/v2/backfills/{backfill_id}/cancel")

    def backfills(self, dag_id: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"dag_id": dag_id, "limit": 100})
        return self._request("GET", f"/api/v2/backfills?{query}")["backfills"]

    def wait_for_backfills_completed(self, dag_id: str, timeout: float = 300.0) -> None:
        """The scheduler marks a backfill complete a little after its last run ends; only then can
        the next backfill of the same DAG be created."""
        deadline = time.monotonic() + timeout
        while any(b.get("completed_at") is None for b in self.backfills(dag_id)):
            if time.monotonic() > deadline:
                raise AirflowAPIError(f"a backfill of {dag_id} is still not complete after {timeout:.0f}s")
            time.sleep(2)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None) -> dict[str, Any]:
        return self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"conf": conf or {}, "logical_date": logical_date})

    def wait_for_runs(
        self, dag_id: str, run_ids: set[str] | None = None, *, run_type: str | None = None, expected: int | None = None,
        timeout: float = 600.0, progress=None, **filters: Any,
    ) -> list[dict[str, Any]]:
        """Wait until the selected runs are all finished (success or failed); returns them.

        ``filters`` are the REST API's dagRuns query parameters, e.g. ``logical_date_gte``."""
        deadline = time.monotonic() + timeout
        if run_type:
            filters["run_type"] = run_type
        while True:
            runs = [r for r in self.dag_runs(dag_id, **filters) if run_ids is None or r["dag_run_id"] in run_ids]
            finished = [r for r in runs if r["state"] in ("success", "failed")]
            if progress:
                progress(runs)
            if runs and len(finished) == len(runs) and (expected is None or len(runs) >= expected):
                return runs
            if time.monotonic() > deadline:
                states = {r["dag_run_id"]: r["state"] for r in runs}
                raise AirflowAPIError(f"runs of {dag_id} not finished after {timeout:.0f}s: {states}")
            time.sleep(3)

    # --- one run: its state, its task instances, their XComs --------------------------------
    def dag(self, dag_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v2/dags/{dag_id}")

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances?limit=1000"
        return self._request("GET", path)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value (deserialized), or None when it has none."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"
            f"/xcomEntries/{key}?deserialize=true"
        )
        try:
            value = self._request("GET", path)["value"]
        except AirflowAPIError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def _hitl_path(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}/{map_index}/hitlDetails"

    def required_action(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """A human-in-the-loop task's request (subject, body, options...), as the UI's Required Actions shows it."""
        return self._request("GET", self._hitl_path(dag_id, run_id, task_id, map_index))

    def answer_required_action(
        self, dag_id: str, run_id: str, task_id: str, options: list[str], map_index: int = -1
    ) -> dict[str, Any]:
        """Answer it, as a person does from Required Actions (e.g. ``["Approve"]``)."""
        return self._request("PATCH", self._hitl_path(dag_id, run_id, task_id, map_index), {"chosen_options": options})

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """One try's task log as text: one line per record (structured records as JSON)."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances/{task_id}"
            f"/logs/{try_number}?full_content=true"
        )
        content = self._request("GET", path).get("content") or []
        if isinstance(content, str):
            return content
        return "\n".join(json.dumps(record, default=str) if isinstance(record, dict) else str(record) for record in content)
