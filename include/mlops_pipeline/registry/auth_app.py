"""``mlflow server --app-name mlops-auth``: MLflow's ``basic-auth`` app plus one rule it cannot express.

MLflow's permissions are per registered model: whoever may EDIT a model may move every alias of it.
The training identity must EDIT the model (to register versions and set ``@challenger``), so under
``basic-auth`` alone it could also move ``@champion``, and with it what the next deploy serves. This app
keeps every ``basic-auth`` check and adds, after them, that only the identities named in
``MLOPS_MLFLOW_CHAMPION_IDENTITIES`` (comma-separated, default ``deploy``) may set or delete a
protected alias (``@champion``). Administrators are not exempt: a person moves ``@champion`` through
``mlops_deploy``, which runs as the deploy identity, so the move is audited.

Users, passwords and per-model permissions are ``basic-auth``'s own (``MLFLOW_AUTH_CONFIG_PATH``, its
REST API, ``mlflow.server.get_app_client("basic-auth", ...)``). Registered as an ``mlflow.app`` entry
point in pyproject.toml; imports nothing of Airflow.
"""

from __future__ import annotations

import os
from typing import Any

from mlops_pipeline.contracts.tags import CHAMPION

PROTECTED_ALIASES = frozenset({CHAMPION})
CHAMPION_IDENTITIES_VARIABLE = "MLOPS_MLFLOW_CHAMPION_IDENTITIES"
_ALIAS_PATH_SUFFIX = "/mlflow/registered-models/alias"


def champion_identities() -> frozenset[str]:
    names = os.environ.get(CHAMPION_IDENTITIES_VARIABLE, "deploy")
    return frozenset(name.strip() for name in names.split(",") if name.strip())


def _guard_protected_aliases() -> Any:
    """A Flask ``before_request`` hook that runs after ``basic-auth``'s: the caller is authenticated and
    may edit the model; here only the champion identities may move a protected alias."""
    from flask import jsonify, request
    from mlflow.server.auth import authenticate_request

    if request.method not in ("POST", "DELETE") or not request.path.endswith(_ALIAS_PATH_SUFFIX):
        return None
    body = request.get_json(silent=True)  # MLflow's client sends DELETE's parameters as a JSON body too
    body = body if isinstance(body, dict) else {}
    alias = body.get("alias") or request.args.get("alias")
    if alias not in PROTECTED_ALIASES:
        return None
    allowed = champion_identities()
    authorization = authenticate_request()
    user = getattr(authorization, "username", None)  # basic-auth answered a Response already if it is one
    if user in allowed:
        return None
    model = body.get("name") or request.args.get("name")
    response = jsonify(
        error_code="PERMISSION_DENIED",
        message=f"user {user!r} may not move @{alias} of model {model!r}: only {sorted(allowed)} may "
        f"({CHAMPION_IDENTITIES_VARIABLE}); deploy through mlops_deploy",
    )
    response.status_code = 403
    return response


def create_app(app: Any = None) -> Any:
    from mlflow.server import app as mlflow_flask_app
    from mlflow.server.auth import create_app as basic_auth_app

    flask_app = app if app is not None else mlflow_flask_app
    served = basic_auth_app(flask_app)  # registers basic-auth's before_request first: it runs first
    flask_app.before_request(_guard_protected_aliases)
    return served
