"""A canary is promoted on evidence only: too little traffic never passes by default, and the
prediction-shift limit of a version is what the training gate measured between it and stable on the
holdout, plus ``max_psi``. Steps against the in-memory backend and registry of ``test_retries``."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from mlops_pipeline.config import DeploySettings
from mlops_pipeline.contracts.tags import EXPECTED_SHIFT
from mlops_pipeline.deploy.canary import Sample
from mlops_pipeline.deploy.rollout import Deployer
from tests.deploy.test_retries import deployer, plan, prepared  # noqa: F401 (fixture)


def tag_expected_shift(deployer: Deployer, version: str, psi: float, against: str) -> None:  # noqa: F811
    record = {"psi": psi, "against": against, "bins": 10, "rows": 600}
    deployer.client.set_model_version_tag("churn", version, EXPECTED_SHIFT, json.dumps(record))


def test_the_shift_limit_adds_what_the_gate_measured_against_the_stable_version(deployer: Deployer) -> None:  # noqa: F811
    tag_expected_shift(deployer, "2", 0.35, against="1")

    informed = deployer.thresholds_for("2", "1")
    assert informed.expected_psi == 0.35 and informed.psi_limit == pytest.approx(0.2 + 0.35)
    # measured against another champion than the one serving now: max_psi alone
    assert deployer.thresholds_for("2", "3").expected_psi is None
    # no measurement (a first version, or one gated without a champion): max_psi alone
    assert deployer.thresholds_for("4", "1").psi_limit == pytest.approx(0.2)


def test_an_unreadable_measurement_is_ignored_with_a_warning(deployer: Deployer, caplog) -> None:  # noqa: F811
    deployer.client.set_model_version_tag("churn", "2", EXPECTED_SHIFT, "not json")

    assert deployer.thresholds_for("2", "1").expected_psi is None
    assert "is not JSON" in caplog.text


def _bake(deployer: Deployer, seconds_ago: float) -> dict:  # noqa: F811
    """bake_status of a canary step begun ``seconds_ago`` that has seen no traffic at all."""
    deployer.start_canary(plan("2"), prepared("2")) if not deployer._running("canary") else None
    deployer._windows = lambda baseline, step: (Sample(), Sample())  # type: ignore[method-assign]
    return deployer.bake_status(plan("2"), {}, {"percent": 5, "started_at": time.time() - seconds_ago})


def test_without_traffic_the_step_ends_at_the_longest_bake_by_default(deployer: Deployer) -> None:  # noqa: F811
    deployer.deploy = DeploySettings(warmup_requests=0, bake_seconds=10, max_bake_seconds=60)
    deployer.deploy_direct(plan("1", mode="direct", champion=None), prepared("1"))

    assert _bake(deployer, 30) | {"elapsed": 0} == {"done": False, "why": "baking", "elapsed": 0, "canary_requests": 0,
                                                    "canary_rows": 0, "stable_rows": 0}  # fmt: skip
    ended = _bake(deployer, 61)
    assert ended["done"] and ended["why"] == "longest bake window reached"


def test_hold_keeps_the_step_waiting_for_traffic_until_hold_seconds(deployer: Deployer) -> None:  # noqa: F811
    deployer.deploy = DeploySettings(warmup_requests=0, bake_seconds=10, max_bake_seconds=60, insufficient_traffic="hold",
                                     hold_seconds=600)  # fmt: skip
    deployer.deploy_direct(plan("1", mode="direct", champion=None), prepared("1"))

    held = _bake(deployer, 120)
    assert not held["done"] and held["why"] == "holding for enough traffic"
    ended = _bake(deployer, 661)
    assert ended["done"] and ended["why"] == "longest bake window reached"


def test_the_bake_sensor_timeout_covers_the_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_pipeline.config import get_settings
    from mlops_pipeline.orchestration.deploy import BAKE_OUTAGE_ALLOWANCE, dag_shape

    monkeypatch.setenv("MLOPS_DEPLOY_MAX_BAKE_SECONDS", "900")
    monkeypatch.setenv("MLOPS_DEPLOY_HOLD_SECONDS", "3600")
    get_settings.cache_clear()
    try:
        assert dag_shape().bake_timeout == timedelta(seconds=900) + BAKE_OUTAGE_ALLOWANCE  # rollback: no hold
        monkeypatch.setenv("MLOPS_DEPLOY_INSUFFICIENT_TRAFFIC", "hold")
        get_settings.cache_clear()
        assert dag_shape().bake_timeout == timedelta(seconds=900 + 3600) + BAKE_OUTAGE_ALLOWANCE
    finally:
        get_settings.cache_clear()
