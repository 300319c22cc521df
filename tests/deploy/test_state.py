"""Reconcile decisions and action plans: from aliases and running servers to what a run does."""

from __future__ import annotations

import pytest

from mlops_pipeline.deploy.backends import CANARY, STABLE, Server
from mlops_pipeline.deploy.state import plan_action, plan_reconcile


def server(role: str, version: str, *, started: float, running: bool = True) -> Server:
    return Server(
        id=f"{role}-{version}-{started}",
        name=f"mlops-{role}-v{version}-{int(started)}",
        role=role,
        model_name="churn",
        version=version,
        run_id="r",
        sha256="s",
        model_ref=f"mlops/model-churn:{version}",
        url="http://127.0.0.1:1",
        address="10.0.0.1",
        port=8080,
        running=running,
        started_at=started,
    )


def removed(plan) -> dict[str, str]:
    return {removal.server.name: removal.why for removal in plan.removals}


def test_a_consistent_deployment_needs_nothing() -> None:
    stable = server(STABLE, "2", started=1)

    plan = plan_reconcile("2", [stable])

    assert plan.keep is stable and not plan.start_stable and not plan.removals and not plan.changes


def test_nothing_deployed_and_no_champion_needs_nothing() -> None:
    plan = plan_reconcile(None, [])

    assert plan.target_version is None and not plan.changes


def test_a_canary_left_by_a_killed_deployment_is_removed() -> None:
    stable, canary = server(STABLE, "2", started=1), server(CANARY, "3", started=2)

    plan = plan_reconcile("2", [stable, canary])

    assert plan.keep is stable and not plan.start_stable
    assert removed(plan) == {canary.name: "canary of v3 left behind by an interrupted deployment"}
    assert plan.interrupted_canaries == [canary]


def test_a_promotion_cut_short_after_the_registry_moved_gets_its_stable_server() -> None:
    old, canary = server(STABLE, "2", started=1), server(CANARY, "3", started=2)

    plan = plan_reconcile("3", [old, canary])

    assert plan.target_version == "3" and plan.start_stable and plan.keep is None
    assert set(removed(plan)) == {old.name, canary.name}
    assert plan.interrupted_canaries == []  # promoted, not interrupted


def test_a_promotion_cut_short_after_the_new_stable_started_keeps_it() -> None:
    old, canary, new = server(STABLE, "2", started=1), server(CANARY, "3", started=2), server(STABLE, "3", started=3)

    plan = plan_reconcile("3", [old, canary, new])

    assert plan.keep is new and not plan.start_stable
    assert removed(plan)[old.name] == "v2 is not @champion v3"


def test_a_promotion_cut_short_before_the_registry_moved_is_undone() -> None:
    old, canary, new = server(STABLE, "2", started=1), server(CANARY, "3", started=2), server(STABLE, "3", started=3)

    plan = plan_reconcile("2", [old, canary, new])

    assert plan.keep is old
    assert set(removed(plan)) == {canary.name, new.name}


def test_of_two_stables_of_the_champion_the_newest_stays() -> None:
    first, second = server(STABLE, "2", started=1), server(STABLE, "2", started=2)

    plan = plan_reconcile("2", [first, second])

    assert plan.keep is second and removed(plan) == {first.name: "duplicate stable of v2"}


def test_dead_servers_are_removed_and_a_dead_stable_is_replaced() -> None:
    dead = server(STABLE, "2", started=1, running=False)

    plan = plan_reconcile("2", [dead])

    assert plan.start_stable and removed(plan) == {dead.name: "not running"}


def test_a_champion_with_nothing_running_is_started() -> None:
    plan = plan_reconcile("4", [])

    assert plan.start_stable and plan.target_version == "4"
    assert plan.describe() == ["start a stable server of v4"]


def test_without_a_champion_the_running_stable_stays() -> None:
    stable = server(STABLE, "5", started=1)

    plan = plan_reconcile(None, [stable])

    assert plan.keep is stable and plan.target_version == "5" and not plan.removals
    assert "no @champion" in plan.notes[0]


@pytest.mark.parametrize(
    ("action", "requested", "champion", "challenger", "previous", "stable", "mode", "version"),
    [
        ("deploy", None, None, "1", None, None, "direct", "1"),  # first deployment
        ("deploy", None, "1", "2", None, "1", "canary", "2"),
        ("deploy", "3", "1", "2", None, "1", "canary", "3"),  # an explicit version wins
        ("deploy", None, "2", None, None, "2", "noop", None),  # nothing to deploy
        ("deploy", None, "2", "2", None, "2", "noop", "2"),  # already champion
        ("deploy", None, None, "2", None, "1", "canary", "2"),  # a stable runs without a champion
        ("promote", None, "1", "2", None, "1", "direct", "2"),
        ("rollback", None, "3", None, "2", "3", "direct", "2"),
        ("rollback", "1", "3", None, "2", "3", "direct", "1"),
        ("rollback", None, "3", None, "3", "3", "noop", "3"),
    ],
)
def test_plan_action(action, requested, champion, challenger, previous, stable, mode, version) -> None:
    plan = plan_action(action, requested, champion=champion, challenger=challenger, previous_champion=previous, stable=stable)

    assert (plan.mode, plan.version) == (mode, version), plan.reason


def test_a_rollback_without_history_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="no previous champion"):
        plan_action("rollback", None, champion="3", challenger=None, previous_champion=None)


def test_an_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="action must be one of"):
        plan_action("canary", None, champion=None, challenger=None, previous_champion=None)
