"""What every adapter needs from an Airflow task context, and Airflow's terms for domain errors."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.config import Settings
    from mlops_pipeline.ingest import Window

log = logging.getLogger(__name__)


class WindowBeforeStart(ValueError):
    """A run for a window before the configured start date: nothing may be processed for it."""


def window_of(start: datetime, end: datetime) -> Window:
    from mlops_pipeline.ingest import Window

    return Window(start, end)


# Runs whose logical date someone chose: a person (the UI, the REST API, ``dags trigger -l``) or
# another DAG's TriggerDagRunOperator (``operator_triggered`` from Airflow 3.2). Airflow infers their
# data interval from when they were created, not from that date.
TRIGGERED_RUN_TYPES = frozenset({"manual", "operator_triggered"})


def run_type_of(dag_run: Any) -> str | None:
    """``scheduled``, ``manual``, ``backfill``, ``asset_triggered`` ... (the enum's value)."""
    if dag_run is None:
        return None
    value = getattr(dag_run, "run_type", None)
    return getattr(value, "value", value)


def actor_of(dag_run: Any) -> str:
    """Who acts, for audit logs: ``airflow:<dag>/<run>`` and the user who triggered it, if any."""
    user = getattr(dag_run, "triggering_user_name", None)
    return f"airflow:{dag_run.dag_id}/{dag_run.run_id}" + (f" by {user}" if user else "")


def scoped(dag_id: str) -> str:
    """``dag_id`` as the running task's dataset names it, for messages: the plain id for the primary
    dataset, ``<dag_id>__<name>`` in a task of another dataset's DAG (whose first callback pointed
    this process at that dataset, see :mod:`mlops_pipeline.orchestration.datasets`)."""
    from mlops_pipeline.config import SCOPE_ENV

    scope = os.environ.get(SCOPE_ENV)
    if not scope:
        return dag_id
    from mlops_pipeline.datasets import SCOPE_SEPARATOR, load_dataset_spec

    return f"{dag_id}{SCOPE_SEPARATOR}{load_dataset_spec(scope).name}"


def check_start(dag_id: str, day: datetime, settings: Settings | None = None) -> None:
    """Fail a run whose date is before the configured start date, naming both and where to change it.

    The DAGs carry no Airflow ``start_date`` on purpose: for a logical date before a DAG's start date,
    Airflow creates the run with no task instance and marks it successful, so a user's backfill over
    older data, or a monitor's trigger for such a date, would report success having done nothing.
    Every run gets its tasks instead, and this check fails the ones before ``settings.start_date``."""
    from mlops_pipeline.config import get_settings

    settings = settings or get_settings()
    if day.date() < settings.start_date:
        raise WindowBeforeStart(
            f"{dag_id} for {day.date().isoformat()} is before the configured start date "
            f"{settings.start_date.isoformat()} of dataset {settings.dataset!r}: nothing is processed before it. "
            "Set start_date in the dataset file (or MLOPS_START_DATE) to process earlier days."
        )


def refuse_before_start(dag_id: str, day: datetime, settings: Settings | None = None) -> None:
    """:func:`check_start` in Airflow's terms: a run before the start date fails at once, without retries
    (a retry would meet the same date)."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        check_start(dag_id, day, settings)
    except WindowBeforeStart as exc:
        raise AirflowFailException(str(exc)) from exc


@contextmanager
def bad_input_fails_at_once(what: str) -> Iterator[None]:
    """Bad input stays bad on a retry: a ``ValueError`` fails the task at once, without retries, with
    ``what`` and the reason in the message. Other errors (an unreachable server) keep Airflow's retries."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except ValueError as exc:
        raise AirflowFailException(f"{what}: {exc}") from exc


def airflow_aws_options(conn_id: str) -> dict[str, Any] | None:
    """Credentials and endpoint from an Airflow AWS connection, or None outside Airflow / without it."""
    try:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    except ImportError:
        return None
    try:
        hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
        credentials = hook.get_credentials()
        endpoint = hook.conn_config.endpoint_url
    except Exception as exc:  # a missing connection is normal on a laptop: fall back to the environment
        log.debug("AWS connection %r not usable (%s); using the environment's AWS credentials", conn_id, exc)
        return None
    options: dict[str, Any] = {"key": credentials.access_key, "secret": credentials.secret_key}
    if credentials.token:
        options["token"] = credentials.token
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return options


MLFLOW_IDENTITY_CONN_PREFIX = "mlflow_"


def use_mlflow_identity(identity: str) -> str | None:
    """Talk to MLflow, for the rest of this task's process, as the user of Airflow connection
    ``mlflow_<identity>`` (login and password; ``mlflow server --app-name mlops-auth`` checks them).

    Each DAG has its identity: ``train`` registers and sets ``@challenger``, ``deploy`` alone may move
    ``@champion``, ``monitor`` and ``score`` read. Without that connection (a laptop, an MLflow without
    authentication), or where connections cannot be read (``airflow dags test``, apache/airflow#51316),
    the environment's ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` stay as they are.
    Returns the user name taken from the connection, if one was."""
    conn_id = f"{MLFLOW_IDENTITY_CONN_PREFIX}{identity}"
    try:
        connection = _get_connection(conn_id)
    except Exception as exc:  # not found, or no connection access: the environment decides
        log.info("no Airflow connection %s (%s): MLflow credentials, if any, come from the environment", conn_id, exc)
        return None
    if not connection.login:
        log.warning("Airflow connection %s has no login: MLflow credentials, if any, come from the environment", conn_id)
        return None
    # MLflow's client reads these at every request: they hold for every client this task makes.
    os.environ["MLFLOW_TRACKING_USERNAME"] = connection.login
    os.environ["MLFLOW_TRACKING_PASSWORD"] = connection.password or ""
    log.info("MLflow requests of this task go as %r (connection %s)", connection.login, conn_id)
    return connection.login


def _get_connection(conn_id: str) -> Any:
    """A connection as a task reads it (the Task SDK: through the supervisor), else as a server process
    reads it (the api-server, where the Model ops view runs: the secrets backends and the metastore)."""
    try:
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(conn_id)
    except Exception as task_side:
        try:
            from airflow.models.connection import Connection

            return Connection.get_connection_from_secrets(conn_id)
        except Exception:
            raise task_side from None


def grant_model_permission(identity: str, model_name: str, permission: str = "EDIT") -> str | None:
    """Under ``mlops-auth``: give the user of Airflow connection ``mlflow_<identity>`` ``permission`` on
    registered model ``model_name``, as this task's own identity. The training identity does this for
    the deploy identity: it created the model, so MLflow gave it MANAGE, and the deploy identity needs
    EDIT to move ``@champion`` and MANAGE to clear ``@challenger`` (basic-auth counts deleting an alias
    as a deletion). Safe to call again (an existing grant is kept).

    Nothing to do, and None, when this task talks to MLflow as no user (a server without
    authentication) or the connection is missing; the user name otherwise. A refusal is an error
    naming both users and the model."""
    import httpx

    from mlops_pipeline.config import get_settings

    me = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if not me:
        return None
    try:
        login = _get_connection(f"{MLFLOW_IDENTITY_CONN_PREFIX}{identity}").login
    except Exception as exc:
        log.info("no Airflow connection %s%s (%s): no MLflow permission to grant", MLFLOW_IDENTITY_CONN_PREFIX, identity, exc)
        return None
    if not login or login == me:
        return login or None
    answer = httpx.post(
        f"{get_settings().mlflow_tracking_uri.rstrip('/')}/api/3.0/mlflow/users/permissions/grant",
        json={"username": login, "resource_type": "registered_model", "resource_id": model_name, "permission": permission},
        auth=(me, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")),
        timeout=30,
    )
    if answer.status_code == 404:
        log.info("MLflow has no permissions API (no authentication): nothing to grant %r", login)
        return None
    error_code = answer.json().get("error_code") if answer.headers.get("content-type", "").startswith("application/json") else None
    if answer.status_code == 400 and error_code == "RESOURCE_ALREADY_EXISTS":
        return login
    if answer.status_code != 200:
        raise PermissionError(
            f"MLflow refused {me!r} granting {permission} on model {model_name!r} to {login!r} "
            f"(HTTP {answer.status_code}: {answer.text[:300]}); {me!r} needs MANAGE on the model (its creator has it)"
        )
    log.info("MLflow user %r may now %s model %r (granted by %r)", login, permission, model_name, me)
    return login


class MlflowIdentity:
    """An ``on_execute_callback`` (it runs in the task's process, before the task): the task talks to
    MLflow as :func:`use_mlflow_identity` ``(identity)``. Set in a DAG's ``default_args``."""

    def __init__(self, identity: str) -> None:
        self.identity = identity

    def __call__(self, context: Any) -> None:
        use_mlflow_identity(self.identity)

    def __repr__(self) -> str:
        return f"MlflowIdentity({self.identity!r})"


@contextmanager
def fails_at_once(what: str, *errors: type[Exception]) -> Iterator[None]:
    """``errors`` raised inside describe a state a retry would meet again (a failed check, a missing
    server, bad input): each fails the task at once, without retries, with ``what`` and the reason in
    the message. Other errors (an unreachable server) keep Airflow's retries."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except errors as exc:
        raise AirflowFailException(f"{what}: {exc}") from exc


def serving_host_args() -> dict[str, Any]:
    """``default_args`` of the DAGs whose tasks must run on the serving host (``MLOPS_SERVING_QUEUE``):
    ``{"queue": ...}`` when that queue is set, else nothing (Airflow's default queue). Read when the DAG
    file is parsed, as the executor needs the queue when it sends the task."""
    from mlops_pipeline.config import get_settings

    queue = get_settings().serving_queue
    return {"queue": queue} if queue else {}
