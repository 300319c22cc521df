"""The reliability and security suite (the report and its ``reliability`` fixture: report.py)."""

from __future__ import annotations

# The fixtures of the modules this suite reuses (the canary harness, Docker).
from tests.deploy.canary_scenario import model_dirs  # noqa: F401
from tests.e2e.conftest import docker_client  # noqa: F401
