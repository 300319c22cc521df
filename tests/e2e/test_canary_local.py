"""The canary scenario on the ``local`` backend: serving processes and Debian's HAProxy, no Docker.

See ``tests/deploy/canary_scenario.py`` for the scenario.
"""

from __future__ import annotations

import json

import pytest

from tests.deploy.canary_scenario import model_dirs, run_scenario, scenario_env  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("scenario_env", ["local"], indirect=True)
def test_canary_promotion_rollback_and_reconcile_on_local_processes(scenario_env, model_dirs) -> None:  # noqa: F811
    timings = run_scenario(scenario_env, model_dirs)

    print(json.dumps({"local": {k: round(v, 1) for k, v in timings.items()}}))
