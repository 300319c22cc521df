import json

import pytest

from mlops_pipeline.airflow_settings import UnsetReference, expand, load


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


@pytest.mark.integration
def test_project_settings_are_visible_through_the_airflow_cli(airflow_stack):
    """`make setup` applied airflow_settings.yaml (the fixture ran it); applying again is idempotent."""
    again = airflow_stack.run("setup")
    assert again.returncode == 0, again.stderr[-2000:]
    pools = json.loads(airflow_stack.airflow("pools", "list", "--output", "json").stdout)
    assert {"pool": "training", "slots": 1} in [{"pool": p["pool"], "slots": int(p["slots"])} for p in pools]
    connection = airflow_stack.airflow("connections", "get", "mlflow_default", "--output", "json")
    assert connection.returncode == 0 and "mlflow_default" in connection.stdout
    variable = airflow_stack.airflow("variables", "get", "mlops_drift_share_threshold")
    assert variable.stdout.strip().splitlines()[-1] == "0.3"
