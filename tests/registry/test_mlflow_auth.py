"""Who may change production, against a real ``mlflow server --app-name mlops-auth``.

Three identities as the production shape has them: ``train`` may register versions and set
``@challenger`` (EDIT on the model), ``deploy`` may move ``@champion`` (EDIT, and named in
``MLOPS_MLFLOW_CHAMPION_IDENTITIES``), ``reader`` may only read (READ, what the Model ops view uses).
Every refused request is followed by a read that shows nothing moved.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.mlflow_fixtures import quiet_mlflow_environment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MODEL = "churn-auth-test"
API = "/api/2.0/mlflow"


@dataclass
class AuthServer:
    url: str
    passwords: dict[str, str]

    def client(self, user: str, password: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(user, password or self.passwords[user]), timeout=30)

    def aliases(self) -> dict[str, str]:
        with self.client("reader") as http:
            answer = http.get(f"{API}/registered-models/get", params={"name": MODEL})
        answer.raise_for_status()
        return {a["alias"]: a["version"] for a in answer.json()["registered_model"].get("aliases", [])}


def _start(tmp: Path) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    admin_password = secrets.token_urlsafe(16)
    config = tmp / "auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{tmp / 'auth.db'}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
    )
    env = {
        **os.environ,
        **quiet_mlflow_environment(),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLOPS_MLFLOW_CHAMPION_IDENTITIES": "deploy",
    }
    log = (tmp / "server.log").open("ab")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "mlops-auth",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
            "--artifacts-destination", str(tmp / "artifacts"), "--serve-artifacts",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    return process, f"http://127.0.0.1:{port}", admin_password


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    tmp = tmp_path_factory.mktemp("mlflow-auth")
    process, url, admin_password = _start(tmp)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (tmp / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        server = AuthServer(url, {"admin": admin_password, **{u: secrets.token_urlsafe(12) for u in ("train", "deploy", "reader")}})
        with server.client("admin") as admin:
            for user in ("train", "deploy", "reader"):
                admin.post(f"{API}/users/create", json={"username": user, "password": server.passwords[user]}).raise_for_status()
            admin.post(f"{API}/registered-models/create", json={"name": MODEL}).raise_for_status()
            for user, permission in (("train", "EDIT"), ("deploy", "EDIT"), ("reader", "READ")):
                admin.post(
                    "/api/3.0/mlflow/users/permissions/grant",
                    json={"username": user, "resource_type": "registered_model", "resource_id": MODEL, "permission": permission},
                ).raise_for_status()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _set_alias(http: httpx.Client, alias: str, version: str) -> httpx.Response:
    return http.post(f"{API}/registered-models/alias", json={"name": MODEL, "alias": alias, "version": version})


def test_only_the_deploy_identity_moves_champion_and_a_refused_request_moves_nothing(auth_server: AuthServer) -> None:
    with auth_server.client("train") as train:
        experiment = train.post(f"{API}/experiments/create", json={"name": "auth-test-training"})
        assert experiment.status_code == 200, experiment.text
        run = train.post(f"{API}/runs/create", json={"experiment_id": experiment.json()["experiment_id"]})
        run_id = run.json()["run"]["info"]["run_id"]
        created = train.post(
            f"{API}/model-versions/create", json={"name": MODEL, "source": f"runs:/{run_id}/model", "run_id": run_id}
        )
        assert created.status_code == 200, created.text
        version = created.json()["model_version"]["version"]
        assert _set_alias(train, "challenger", version).status_code == 200
        refused = _set_alias(train, "champion", version)
    assert refused.status_code == 403, refused.text
    assert "'train' may not move @champion" in refused.json()["message"]
    assert auth_server.aliases() == {"challenger": version}

    with auth_server.client("reader") as reader:
        assert _set_alias(reader, "challenger", version).status_code == 403  # READ: basic-auth's own rule
        assert reader.post(f"{API}/model-versions/create", json={"name": MODEL, "source": "x"}).status_code == 403
    assert auth_server.aliases() == {"challenger": version}

    with auth_server.client("deploy") as deploy:
        assert _set_alias(deploy, "champion", version).status_code == 200
    assert auth_server.aliases() == {"challenger": version, "champion": version}

    with auth_server.client("train") as train:
        deleted = train.request("DELETE", f"{API}/registered-models/alias", json={"name": MODEL, "alias": "champion"})
    assert deleted.status_code == 403, deleted.text
    assert auth_server.aliases() == {"challenger": version, "champion": version}


def test_a_wrong_password_or_no_credentials_is_refused(auth_server: AuthServer) -> None:
    with auth_server.client("deploy", password="not-the-password") as impostor:
        answer = _set_alias(impostor, "champion", "1")
    assert answer.status_code == 401
    assert httpx.get(f"{auth_server.url}{API}/registered-models/get", params={"name": MODEL}, timeout=30).status_code == 401
    before = auth_server.aliases()
    assert before.get("champion") in (None, before.get("challenger"))


def test_an_administrator_is_not_exempt_from_the_champion_rule(auth_server: AuthServer) -> None:
    before = auth_server.aliases()
    with auth_server.client("admin") as admin:
        answer = _set_alias(admin, "champion", "1")
    assert answer.status_code == 403, answer.text
    assert auth_server.aliases() == before


def test_each_dag_talks_to_mlflow_as_the_identity_of_its_airflow_connection(
    auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The credentials come from the Airflow connections ``mlflow_train`` / ``mlflow_deploy`` (here
    defined the way Airflow reads them from the environment), through the callback the DAGs run before
    each task; MLflow's own client then sends them."""
    import json

    from mlflow import MlflowClient
    from mlflow.exceptions import RestException

    from mlops_pipeline.orchestration.context import MlflowIdentity, use_mlflow_identity

    for identity in ("train", "deploy"):
        monkeypatch.setenv(
            f"AIRFLOW_CONN_MLFLOW_{identity.upper()}",
            json.dumps({"conn_type": "http", "login": identity, "password": auth_server.passwords[identity]}),
        )
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    for key, value in quiet_mlflow_environment().items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(tracking_uri=auth_server.url, registry_uri=auth_server.url)
    before = auth_server.aliases()
    version = before["challenger"]

    MlflowIdentity("train")({})
    with pytest.raises(RestException, match="may not move @champion"):
        client.set_registered_model_alias(MODEL, "champion", version)
    client.set_registered_model_alias(MODEL, "challenger", version)  # its own alias: allowed
    assert auth_server.aliases() == before

    assert use_mlflow_identity("deploy") == "deploy"
    client.set_registered_model_alias(MODEL, "champion", version)
    assert auth_server.aliases() == before

    # No such connection: the environment's credentials (here: deploy's) stay.
    assert use_mlflow_identity("nobody") is None
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "deploy"


def test_every_dag_that_talks_to_mlflow_names_its_identity() -> None:
    """Each DAG file sets its adapter's ``MLFLOW_IDENTITY`` as the ``on_execute_callback`` of its tasks,
    after the callback that points the task at its dataset (``ds.callbacks(...)`` puts that first)."""
    import ast
    import importlib

    dags = Path(__file__).resolve().parents[2] / "dags"
    for dag_id in ("train", "deploy", "monitor", "score"):
        adapter = importlib.import_module(f"mlops_pipeline.orchestration.{dag_id}")
        assert adapter.MLFLOW_IDENTITY.identity == dag_id
        tree = ast.parse((dags / f"mlops_{dag_id}.py").read_text())
        callbacks = [
            ast.unparse(value)
            for node in ast.walk(tree) if isinstance(node, ast.Dict)
            for key, value in zip(node.keys, node.values, strict=True)
            if isinstance(key, ast.Constant) and key.value == "on_execute_callback"
        ]
        assert callbacks in (["ds.callbacks(MLFLOW_IDENTITY)"], [f"ds.callbacks({dag_id}.MLFLOW_IDENTITY)"]), (dag_id, callbacks)


def test_the_model_ops_view_reads_as_the_reader_identity_and_can_move_nothing(
    auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view's client (in the api-server) takes its credentials from the Airflow connection
    ``mlflow_reader``: it reads the model's aliases, and a write with it is refused."""
    import json

    from mlflow.exceptions import MlflowException

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.ui.versions import alias_versions, registry_client

    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_READER",
        json.dumps({"conn_type": "http", "login": "reader", "password": auth_server.passwords["reader"]}),
    )
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "deploy")  # the api-server's own: not what the view uses
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", auth_server.passwords["deploy"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server.url)
    for key, value in quiet_mlflow_environment().items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        before = auth_server.aliases()
        client = registry_client(get_settings())
        assert os.environ["MLFLOW_TRACKING_USERNAME"] == "reader"
        seen = alias_versions(client, MODEL, ("champion", "challenger"))
        assert {alias: (v.version if v else None) for alias, v in seen.items()} == {
            "champion": before.get("champion"), "challenger": before.get("challenger"),
        }
        with pytest.raises(MlflowException, match="403"):
            client.set_registered_model_alias(MODEL, "challenger", before["challenger"])
        assert auth_server.aliases() == before
    finally:
        get_settings.cache_clear()


def test_the_training_identity_gives_the_deploy_identity_its_own_model(
    auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model the training identity registers is its own (MLflow gives its creator MANAGE) and no one
    else's beyond the server's default. What mlops_train does after registering: grant the user of
    connection ``mlflow_deploy`` EDIT, so that it can move ``@champion``. Again: nothing changes; a
    user without MANAGE cannot grant; the reader still moves nothing."""
    import json
    import uuid

    from mlops_pipeline.config import get_settings
    from mlops_pipeline.orchestration.context import grant_model_permission, use_mlflow_identity

    model = f"own-{uuid.uuid4().hex[:8]}"
    for identity in ("train", "deploy", "reader"):
        monkeypatch.setenv(
            f"AIRFLOW_CONN_MLFLOW_{identity.upper()}",
            json.dumps({"conn_type": "http", "login": identity, "password": auth_server.passwords[identity]}),
        )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server.url)
    get_settings.cache_clear()
    with auth_server.client("train") as train:
        assert train.post(f"{API}/registered-models/create", json={"name": model}).status_code == 200
        experiment = train.post(f"{API}/experiments/create", json={"name": f"{model}-training"}).json()["experiment_id"]
        run_id = train.post(f"{API}/runs/create", json={"experiment_id": experiment}).json()["run"]["info"]["run_id"]
        version = train.post(f"{API}/model-versions/create",
                             json={"name": model, "source": f"runs:/{run_id}/model", "run_id": run_id}).json()["model_version"]["version"]

    def set_champion(user: str) -> int:
        with auth_server.client(user) as http:
            return http.post(f"{API}/registered-models/alias", json={"name": model, "alias": "champion", "version": version}).status_code

    try:
        assert set_champion("deploy") == 403  # not its model yet: the server's default permission only
        use_mlflow_identity("deploy")
        with pytest.raises(PermissionError, match=rf"'deploy'.*EDIT on model '{model}' to 'reader'.*needs MANAGE"):
            grant_model_permission("reader", model)  # deploy cannot hand out what it does not manage
        use_mlflow_identity("train")
        assert grant_model_permission("deploy", model) == "deploy"
        assert grant_model_permission("deploy", model) == "deploy"  # a retried task: the grant stays
        assert set_champion("reader") == 403
        assert set_champion("deploy") == 200
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
        assert grant_model_permission("deploy", model) is None  # no identity in use: MLflow without authentication
    finally:
        get_settings.cache_clear()


def test_the_compose_setup_serves_mlops_auth_and_keeps_the_dags_users_in_step_with_their_secrets(
    tmp_path: Path,
) -> None:
    """What docker-compose.yaml runs: ``auth_setup serve`` writes basic-auth's config (mode 0600) and
    becomes ``mlflow server --app-name mlops-auth``; ``auth_setup users`` creates each DAG's user with
    the password of its Airflow connection, and sets it again when the secret is rotated, after
    which only the new password is let in. A missing password is an error naming its variable."""
    from mlops_pipeline.registry import auth_setup

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    passwords = {identity: secrets.token_urlsafe(12) for identity in auth_setup.IDENTITIES}
    env = {
        **os.environ,
        **quiet_mlflow_environment(),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLOPS_MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{tmp_path / 'auth.db'}",
        "MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(16),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLFLOW_TRACKING_URI": url,
        "TMPDIR": str(tmp_path),
        **{f"MLOPS_MLFLOW_{identity.upper()}_PASSWORD": password for identity, password in passwords.items()},
    }
    for identity in auth_setup.IDENTITIES:
        env.pop(f"MLOPS_MLFLOW_{identity.upper()}_USER", None)
    missing = {key: value for key, value in env.items() if key != "MLOPS_MLFLOW_SCORE_PASSWORD"}
    with pytest.raises(auth_setup.AuthSetupError, match="MLOPS_MLFLOW_SCORE_PASSWORD"):
        auth_setup.users(missing, wait=1)

    log = (tmp_path / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlops_pipeline.registry.auth_setup", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        assert auth_setup.users(env, wait=180) == list(auth_setup.IDENTITIES), (tmp_path / "server.log").read_text()[-3000:]
        configs = list(tmp_path.glob("mlflow-auth-*/basic_auth.ini"))
        assert len(configs) == 1 and configs[0].stat().st_mode & 0o777 == 0o600
        assert httpx.get(f"{url}{API}/experiments/search", params={"max_results": 1}, timeout=30).status_code == 401
        with httpx.Client(base_url=url, auth=("reader", passwords["reader"]), timeout=30) as reader:
            assert reader.get(f"{API}/experiments/search", params={"max_results": 1}).status_code == 200
            with httpx.Client(base_url=url, auth=("train", passwords["train"]), timeout=30) as train:
                assert train.post(f"{API}/registered-models/create", json={"name": "auth-setup-test"}).status_code == 200
            # default_permission READ: what another user created, the reader may read, not change
            assert reader.get(f"{API}/registered-models/get", params={"name": "auth-setup-test"}).status_code == 200
            assert reader.patch(f"{API}/registered-models/update",
                                json={"name": "auth-setup-test", "description": "x"}).status_code == 403

        rotated = {**env, "MLOPS_MLFLOW_DEPLOY_PASSWORD": secrets.token_urlsafe(12)}
        assert auth_setup.users(rotated, wait=30) == []  # every user exists: none created, passwords set
        old = httpx.get(f"{url}{API}/experiments/search", params={"max_results": 1}, auth=("deploy", passwords["deploy"]), timeout=30)
        new = httpx.get(f"{url}{API}/experiments/search", params={"max_results": 1},
                        auth=("deploy", rotated["MLOPS_MLFLOW_DEPLOY_PASSWORD"]), timeout=30)
        assert (old.status_code, new.status_code) == (401, 200)
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
