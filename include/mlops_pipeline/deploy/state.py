"""Deployment state decisions: what a run must do, from the registry's aliases and what is running.

Pure functions over plain values (the I/O is in ``rollout.py``), so every case has a unit test.

The consistent state between deployments is: the router's stable slot serves ``@champion`` with
all the traffic, and no canary runs. :func:`plan_reconcile` says how to get there from whatever a
killed deployment left behind: a canary still running (removed: its rollout did not finish), a
promoted version whose stable server was not started yet (started), two stable servers (the one
of the champion is kept), servers that died (removed). :func:`plan_action` then says what the
run's own action needs: a canary rollout, a direct deployment (the first one, a manual promotion
or a rollback to the previous champion), or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from mlops_pipeline.deploy.backends import CANARY, STABLE, Server

Action = Literal["deploy", "promote", "rollback"]
Mode = Literal["canary", "direct", "noop"]
ACTIONS: tuple[str, ...] = ("deploy", "promote", "rollback")


@dataclass(frozen=True)
class Removal:
    server: Server
    why: str


@dataclass(frozen=True)
class ReconcilePlan:
    target_version: str | None  # what the stable slot must serve (None: nothing to serve)
    keep: Server | None  # the running stable server of target_version that stays
    start_stable: bool  # no such server runs: start one
    removals: list[Removal] = field(default_factory=list)
    interrupted_canaries: list[Server] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return self.start_stable or bool(self.removals)

    def describe(self) -> list[str]:
        steps = list(self.notes)
        if self.start_stable:
            steps.append(f"start a stable server of v{self.target_version}")
        steps += [f"remove {removal.server.name} (v{removal.server.version}): {removal.why}" for removal in self.removals]
        return steps


def plan_reconcile(champion: str | None, servers: Sequence[Server]) -> ReconcilePlan:
    """From ``servers`` (oldest first) and the ``@champion`` version to the consistent state."""
    removals = [Removal(s, "not running") for s in servers if not s.running]
    running = [s for s in servers if s.running]
    stables = [s for s in running if s.role == STABLE]
    canaries = [s for s in running if s.role == CANARY]
    notes: list[str] = []

    target = champion
    if target is None and stables:
        target = stables[-1].version
        notes.append(f"no @champion in the registry: the running stable v{target} stays as it is")
    keep = next((s for s in reversed(stables) if s.version == target), None)

    interrupted = []
    for canary in canaries:
        if canary.version == champion:
            why = f"v{canary.version} was promoted; a stable server takes over from its canary"
        else:
            why = f"canary of v{canary.version} left behind by an interrupted deployment"
            interrupted.append(canary)
        removals.append(Removal(canary, why))
    for stable in stables:
        if stable is keep:
            continue
        why = f"duplicate stable of v{stable.version}" if stable.version == target else f"v{stable.version} is not @champion v{target}"
        removals.append(Removal(stable, why))
    return ReconcilePlan(
        target_version=target,
        keep=keep,
        start_stable=target is not None and keep is None,
        removals=removals,
        interrupted_canaries=interrupted,
        notes=notes,
    )


@dataclass(frozen=True)
class ActionPlan:
    action: str
    mode: Mode
    version: str | None
    reason: str


def plan_action(
    action: str,
    requested: str | None,
    *,
    champion: str | None,
    challenger: str | None,
    previous_champion: str | None,
    stable: str | None = None,
) -> ActionPlan:
    """What a run does for ``action`` (deploy | promote | rollback) and an optional version.

    - ``deploy``: the requested version, else ``@challenger``, through a canary against the
      stable champion; directly (and promoted) when nothing serves yet (no champion, no
      ``stable`` server left running without one).
    - ``promote``: the requested version, else ``@challenger``, directly, no canary.
    - ``rollback``: the requested version, else the champion's ``previous_champion``, directly.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    requested = str(requested).strip() if requested not in (None, "") else None
    if action == "rollback":
        version = requested or previous_champion
        if version is None:
            raise ValueError(
                "nothing to roll back to: the champion records no previous champion; give the version to restore"
            )
        if version == champion:
            return ActionPlan(action, "noop", version, f"v{version} is the champion already")
        return ActionPlan(action, "direct", version, f"roll back from v{champion} to v{version}")

    version = requested or challenger
    if version is None:
        return ActionPlan(action, "noop", None, "no version given and no @challenger in the registry")
    if version == champion:
        return ActionPlan(action, "noop", version, f"v{version} is the champion already")
    if action == "promote":
        return ActionPlan(action, "direct", version, f"manual promotion of v{version} over v{champion}")
    if champion is None and stable is None:
        return ActionPlan(action, "direct", version, f"first deployment: v{version} becomes the stable champion")
    if champion is None:
        return ActionPlan(action, "canary", version, f"canary of v{version} against the running stable v{stable}")
    return ActionPlan(action, "canary", version, f"canary of v{version} against the champion v{champion}")
