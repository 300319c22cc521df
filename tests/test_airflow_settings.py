import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_pipeline.orchestration.airflow_settings import (
    LiteralSecret,
    UnsetReference,
    expand,
    literal_secrets,
    load,
)
from tests.conftest import REPO, AirflowStack

SETTINGS_FILE = REPO / "airflow_settings.yaml"
CONNECTIONS = {
    "aws_default", "mlflow_default", "docker_default", "smtp_default", "mlops_alert_webhook",
    "mlflow_train", "mlflow_deploy", "mlflow_monitor", "mlflow_score", "mlflow_reader",
}


def test_references_expand_with_defaults_and_unset_ones_raise():
    env = {"A": "1", "EMPTY": ""}
    assert expand("x-${A}-${B:-two}-${EMPTY:-three}", env) == "x-1-two-three"
    with pytest.raises(UnsetReference):
        expand({"k": ["${MISSING}"]}, env)


def test_entries_with_unset_secrets_are_skipped_and_said(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "airflow:\n  connections:\n    - {conn_id: s3, conn_type: aws, conn_password: '${SECRET}'}\n"
        "  variables:\n    - {variable_name: v, variable_value: '${V:-x}'}\n"
    )
    resolved, skipped = load(path, environ={})
    assert resolved["connections"] == [] and resolved["variables"][0]["variable_value"] == "x"
    assert skipped == ["connection 's3': ${SECRET} is not set"]
    resolved, skipped = load(path, environ={"SECRET": "s3cr3t"})
    assert resolved["connections"][0]["conn_password"] == "s3cr3t" and skipped == []


@pytest.mark.parametrize(
    "entry",
    [
        "connections:\n    - {conn_id: c, conn_type: aws, conn_password: hunter2}",
        "connections:\n    - {conn_id: c, conn_type: aws, conn_password: '${PW:-hunter2}'}",
        "connections:\n    - {conn_id: c, conn_type: http, conn_extra: {api_key: abc123}}",
        "variables:\n    - {variable_name: slack_token, variable_value: xoxb-1}",
    ],
)
def test_a_literal_secret_is_refused(tmp_path, entry):
    path = tmp_path / "s.yaml"
    path.write_text(f"airflow:\n  {entry}\n")
    with pytest.raises(LiteralSecret, match="environment references"):
        load(path, environ={"PW": "x"})


def test_optional_secrets_may_default_to_empty(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("airflow:\n  connections:\n    - {conn_id: c, conn_type: smtp, conn_host: h, conn_password: '${PW:-}'}\n")
    resolved, _ = load(path, environ={})
    assert resolved["connections"][0]["conn_password"] == ""


def test_the_project_file_holds_no_secret_and_what_the_pipeline_reads():
    from mlops_pipeline.config import MONITOR_VARIABLES

    section = yaml.safe_load(SETTINGS_FILE.read_text())["airflow"]
    assert literal_secrets(section) == []
    assert {c["conn_id"] for c in section["connections"]} == CONNECTIONS
    assert {p["pool_name"]: p["pool_slot"] for p in section["pools"]} == {"training": 1}
    variables = {v["variable_name"] for v in section["variables"]}
    assert variables <= set(MONITOR_VARIABLES.values()), f"variables nothing reads: {variables - set(MONITOR_VARIABLES.values())}"
    assert "mlops_drift_share_threshold" in variables
    # The training tasks run in that pool.
    assert 'pool": "training"' in (REPO / "dags" / "mlops_train.py").read_text()


def cli_json(stack: AirflowStack, *argv: str):
    done = stack.airflow(*argv, "--output", "json")
    assert done.returncode == 0, f"airflow {' '.join(argv)} failed:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def export(stack: AirflowStack, folder: Path) -> dict:
    """Connections, pools and variables as the Airflow CLI exports them (every field, every value)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for kind in ("connections", "pools", "variables"):
        path = folder / f"{kind}.json"
        options = ["--file-format", "json"] if kind == "connections" else []
        done = stack.airflow(kind, "export", str(path), *options)
        assert done.returncode == 0, done.stderr[-3000:]
        state[kind] = json.loads(path.read_text())
    return state


@pytest.mark.integration
def test_make_setup_applies_the_file_visibly_and_idempotently(airflow_stack, airflow_databases, tmp_path):
    """`make setup`'s code path (services setup) on a real Airflow DB, checked through the Airflow CLI."""
    from mlops_pipeline.config import MONITOR_VARIABLES, MonitorSettings

    secrets = {
        "AWS_ACCESS_KEY_ID": "test-access-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret-key",
        "MLOPS_S3_ENDPOINT_URL": "http://minio:9000",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MLOPS_DOCKER_REGISTRY": "registry.example.com:5000",
        "MLOPS_DOCKER_REGISTRY_USER": "deployer",
        "MLOPS_DOCKER_REGISTRY_PASSWORD": "test-registry-password",
        "MLOPS_SMTP_HOST": "smtp.example.com",
        "MLOPS_SMTP_PASSWORD": "test-smtp-password",
        "MLOPS_ALERT_WEBHOOK_URL": "https://hooks.example.com/services/T0/B0/test",
        **{f"MLOPS_MLFLOW_{who}_PASSWORD": f"test-{who.lower()}-password" for who in ("TRAIN", "DEPLOY", "MONITOR", "SCORE", "READER")},
    }
    env = {k: v for k, v in airflow_stack.env.items() if not k.startswith("MLOPS_MONITOR_")}
    # Its own home and database (a copy of the migrated template): its connections stay its own.
    env.update(secrets, AIRFLOW_HOME=str(tmp_path / "home"), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=airflow_databases.create())
    stack = AirflowStack(env=env, base=tmp_path)

    applied = stack.run("setup", timeout=600)
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-3000:]

    aws = cli_json(stack, "connections", "get", "aws_default")[0]
    assert (aws["conn_type"], aws["login"], aws["password"]) == ("aws", "test-access-key", "test-secret-key")
    assert aws["extra_dejson"] == {"endpoint_url": "http://minio:9000", "region_name": "us-east-1"}
    assert [(p["pool"], int(p["slots"])) for p in cli_json(stack, "pools", "get", "training")] == [("training", 1)]
    threshold = stack.airflow("variables", "get", "mlops_drift_share_threshold")
    assert threshold.returncode == 0 and threshold.stdout.strip().splitlines()[-1] == "0.3", threshold.stderr[-2000:]

    state = export(stack, tmp_path / "first")
    connections = state["connections"]
    assert set(connections) == CONNECTIONS, sorted(connections)
    assert connections["mlflow_default"]["host"] == "http://mlflow:5000"
    assert (connections["mlflow_deploy"]["login"], connections["mlflow_deploy"]["password"]) == ("deploy", "test-deploy-password")
    assert (connections["docker_default"]["conn_type"], connections["docker_default"]["host"]) == ("docker", "registry.example.com:5000")
    smtp = connections["smtp_default"]
    assert (smtp["conn_type"], smtp["host"], int(smtp["port"]), smtp["password"]) == ("smtp", "smtp.example.com", 587, "test-smtp-password")
    assert connections["mlops_alert_webhook"]["host"] == secrets["MLOPS_ALERT_WEBHOOK_URL"]
    assert state["pools"]["training"]["slots"] == 1
    # Every threshold variable carries the monitor's default (nothing in the environment overrides it here).
    field_of = {variable: field for field, variable in MONITOR_VARIABLES.items()}
    file_variables = [v["variable_name"] for v in yaml.safe_load(SETTINGS_FILE.read_text())["airflow"]["variables"]]
    for name in file_variables:
        exported = state["variables"][name]  # {"value", "description"} when a description is set
        value = exported["value"] if isinstance(exported, dict) else exported
        assert float(value) == float(MonitorSettings.model_fields[field_of[name]].default), name

    # Applying again changes nothing.
    again = stack.run("setup", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert export(stack, tmp_path / "second") == state

    # A file with a literal secret is refused whole: nothing of it is applied.
    bad = tmp_path / "bad_settings.yaml"
    bad.write_text(
        "airflow:\n  pools:\n    - {pool_name: never_applied, pool_slot: 3}\n"
        "  connections:\n    - {conn_id: leaked, conn_type: aws, conn_password: hunter2}\n"
    )
    refused = subprocess.run(
        [sys.executable, "-m", "mlops_dev.services", "exec", "--", sys.executable, "-m", "mlops_pipeline.orchestration.airflow_settings", "apply", str(bad)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert refused.returncode != 0 and "conn_password" in refused.stderr, refused.stderr[-2000:]
    assert stack.airflow("pools", "get", "never_applied").returncode != 0
    assert stack.airflow("connections", "get", "leaked").returncode != 0
