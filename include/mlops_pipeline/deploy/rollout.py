"""The deployment steps: what each task of the ``mlops_deploy`` DAG does. The DAG is their only sequence.

One :class:`Deployer` per task: it opens the registry, the backend and the audit log, does one step
and returns plain dicts (XCom-able). The steps:

1. :meth:`Deployer.reconcile`: heal what an interrupted run left behind (``state.plan_reconcile``),
   so the stable slot serves ``@champion`` and no canary runs.
2. :meth:`Deployer.plan`: what this run does (``state.plan_action``): canary, direct, or nothing.
3. :meth:`Deployer.prepare`: download ``models:/<name>/<version>``, verify its sha256 against the
   ``artifact_sha256`` tag, make it servable (an image labelled with name, version, run id, digest;
   or a local model directory).
4. Canary: :meth:`start_canary` (ready, in the canary slot at weight 0, a baseline sample), then
   per traffic step :meth:`shift` -> :meth:`bake_status` (until the bake window is over and enough
   traffic came, or a check fails early) -> :meth:`analyse` (raises :class:`CanaryCheckFailed`),
   then :meth:`promote`; on any failure :meth:`rollback`.
5. Direct: :meth:`deploy_direct` (first deployment, manual promotion, manual rollback).

Every step is safe to run again (a retry after an error, or after its process died with the worker
or scheduler): it looks at what runs and what the registry says first, then does only what is
missing. Commit points are registry writes: a version is the champion from the moment ``@champion``
moves; everything after that is convergence, which a retried step or the next run's
:meth:`reconcile` redoes if it was cut short. Every step writes audit events (``audit.AuditLog``)
and ``deploy_status`` tags on the version.
"""

from __future__ import annotations

import getpass
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_pipeline.contracts import tags as tag_names
from mlops_pipeline.deploy.backends import CANARY, STABLE, Backend, BackendError, Server, http_text
from mlops_pipeline.deploy.canary import (
    Sample,
    Thresholds,
    Verdict,
    delta,
    enough_traffic,
    router_counters,
    server_counters,
)
from mlops_pipeline.deploy.canary import analyse as analyse_window
from mlops_pipeline.deploy.router import Router
from mlops_pipeline.deploy.state import ActionPlan, ReconcilePlan, plan_action, plan_reconcile

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlops_pipeline.config import DeploySettings, Settings
    from mlops_pipeline.deploy.audit import AuditLog

log = logging.getLogger(__name__)

STATUS_TAG = tag_names.DEPLOY_STATUS
REASON_TAG = tag_names.DEPLOY_REASON
DEPLOYMENT_TAG = tag_names.DEPLOYMENT_ID
PREVIOUS_CHAMPION_TAG = tag_names.PREVIOUS_CHAMPION
CANARY_STRATEGY = "canary"
BLUE_GREEN = "blue_green"
SHADOW = "shadow"  # a shadow window first, then the canary's steps
AB = "ab"  # an A/B test decided by the outcome (deploy.ab)
STRATEGIES = (SHADOW, CANARY_STRATEGY, BLUE_GREEN, AB)
ROLLOUT_MODES = frozenset({"canary", BLUE_GREEN, AB})  # the modes that start a new server beside stable


class CanaryCheckFailed(RuntimeError):
    """A traffic step's checks failed: the canary must be rolled back (the message says why)."""


class DeploymentError(RuntimeError):
    """A deployment step cannot go on (no canary running, no such version...)."""


class StableLost(DeploymentError):
    """The stable server died mid-canary: nothing to compare the canary with, and the canary is the
    only server taking traffic, so it must not be removed before a stable server runs again."""


def default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name (a container without /etc/passwd entry)
        return "cli:unknown"


@dataclass
class Deployer:
    settings: Settings
    deploy: DeploySettings
    backend: Backend
    client: MlflowClient
    audit: AuditLog
    actor: str
    model_name: str
    _expected_shifts: dict[str, dict[str, Any] | None] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def open(
        cls,
        actor: str | None = None,
        *,
        settings: Settings | None = None,
        deploy: DeploySettings | None = None,
        backend: Backend | None = None,
    ) -> Deployer:
        from mlops_pipeline.config import get_settings
        from mlops_pipeline.deploy.audit import AuditLog
        from mlops_pipeline.deploy.backends import get_backend
        from mlops_pipeline.registry.client import mlflow_client
        from mlops_pipeline.storage import open_lake

        settings = settings or get_settings()
        deploy = deploy or get_settings().deploy
        return cls(
            settings=settings,
            deploy=deploy,
            backend=backend or get_backend(settings, deploy),
            client=mlflow_client(settings),
            audit=AuditLog(open_lake(settings)),
            actor=actor or default_actor(),
            model_name=settings.registered_model_name,
        )

    # -- small helpers ---------------------------------------------------------------------
    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.from_settings(self.deploy)

    def thresholds_for(self, version: str, stable_version: str | None) -> Thresholds:
        """The thresholds a canary of ``version`` is judged by against ``stable_version``: its
        prediction-shift limit is ``max_psi`` above the shift the training gate measured between the
        two on its holdout (a retrain is meant to predict differently, by about that much). Without
        that measurement (no champion at the gate, or another one than stable now) ``max_psi`` alone."""
        import dataclasses

        thresholds = self.thresholds
        expected = self._expected_shift(version)
        if expected is not None and stable_version is not None and str(expected.get("against")) == str(stable_version):
            return dataclasses.replace(thresholds, expected_psi=float(expected["psi"]))
        return thresholds

    def _expected_shift(self, version: str) -> dict[str, Any] | None:
        if version not in self._expected_shifts:
            raw = (self.client.get_model_version(self.model_name, version).tags or {}).get(tag_names.EXPECTED_SHIFT)
            try:
                self._expected_shifts[version] = json.loads(raw) if raw else None
            except ValueError:
                log.warning("v%s: tag %s is not JSON (%r): judged by max_psi alone", version, tag_names.EXPECTED_SHIFT, str(raw)[:200])
                self._expected_shifts[version] = None
        return self._expected_shifts[version]

    def _alias(self, alias: str) -> str | None:
        from mlops_pipeline.registry.aliases import version_for_alias

        found = version_for_alias(self.client, self.model_name, alias)
        return str(found.version) if found is not None else None

    def champion(self) -> str | None:
        from mlops_pipeline.registry.aliases import CHAMPION

        return self._alias(CHAMPION)

    def challenger(self) -> str | None:
        from mlops_pipeline.registry.aliases import CHALLENGER

        return self._alias(CHALLENGER)

    def _tags(self, version: str | None, **tags: str) -> None:
        if not version:
            return
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, version, key, value[:5000])

    def _event(self, event: str, reason: str, *, version: str | None = None, deployment_id: str | None = None, **details: Any) -> None:
        self.audit.append(
            event,
            actor=self.actor,
            reason=reason,
            model_name=self.model_name,
            version=version,
            deployment_id=deployment_id,
            details={"backend": self.backend.kind, "namespace": self.deploy.namespace, **details},
        )
        log.info("[audit] %s v%s: %s", event, version, reason)

    def record(self, event: str, reason: str, plan: Mapping[str, Any], **details: Any) -> None:
        """An event of ``plan``'s deployment that no step of this class makes (the approval's)."""
        self._event(event, reason, version=str(plan["version"]), deployment_id=plan["deployment_id"], **details)

    def _running(self, role: str, version: str | None = None) -> list[Server]:
        return [s for s in self.backend.servers() if s.running and s.role == role and (version is None or s.version == version)]

    def router(self) -> Router:
        return Router.ensure(self.backend)

    def _rollout_router(self) -> Router:
        """The router of a canary in progress. Never started anew here: a new router would know the
        stable slot only, and drop the canary's. One that is down (restarting) is an outage: the
        step fails, and its retry finds the router back with its persisted slots."""
        endpoint = self.backend.router()
        if endpoint is None:
            raise BackendError("the router is not running (restarting?); the canary's step is retried once it is back")
        return Router(self.backend, endpoint)

    def status(self) -> dict[str, Any]:
        """What serves now: aliases, servers, router slots."""
        endpoint = self.backend.router()
        slots: dict[str, Any] = {}
        if endpoint is not None:
            try:
                slots = Router(self.backend, endpoint).slots()
            except Exception as exc:  # a router that does not answer is part of the status
                slots = {"error": str(exc)}
        return {
            "backend": self.backend.kind,
            "namespace": self.deploy.namespace,
            "model_name": self.model_name,
            "champion": self.champion(),
            "challenger": self.challenger(),
            "servers": [s.to_dict() for s in self.backend.servers()],
            "router": None if endpoint is None else {"url": endpoint.url, "metrics_url": endpoint.metrics_url, "slots": slots},
        }

    # -- 1. reconcile ----------------------------------------------------------------------
    def reconcile(self) -> dict[str, Any]:
        """Converge to: the stable slot serves ``@champion`` with all the traffic, no canary runs."""
        champion = self.champion()
        plan = plan_reconcile(champion, self.backend.servers())
        if plan.changes:
            self._event("reconcile_started", "; ".join(plan.describe()), version=plan.target_version)
        self._converge(plan)
        for canary in plan.interrupted_canaries:
            reason = "the deployment was interrupted; its canary was removed when the next run reconciled"
            self._tags(canary.version, **{STATUS_TAG: "interrupted", REASON_TAG: reason})
            self._event("canary_removed", reason, version=canary.version, server=canary.name)
        summary: dict[str, Any] = {"champion": champion, "stable_version": plan.target_version, "actions": plan.describe()}
        if plan.changes:
            self._event("reconciled", "deployment state matches the registry again", version=plan.target_version, **summary)
        return summary

    def _drop_orphan_slots(self) -> None:
        """Take router slots that point at no running server out of rotation (see Router.drop_orphans)."""
        if self.backend.router() is not None:
            self.router().drop_orphans(self.backend.servers())

    def _converge(self, plan: ReconcilePlan) -> None:
        self._drop_orphan_slots()
        stable = plan.keep
        if plan.start_stable and plan.target_version is not None:
            stable = self._start_ready(STABLE, self._model_for(plan.target_version))
        if stable is not None:
            self.router().hand_over_stable(stable)
        elif plan.removals and self.backend.router() is not None:
            self.router().empty(CANARY)
        for removal in plan.removals:
            self.backend.stop_server(removal.server)

    def _model_for(self, version: str) -> dict[str, Any]:
        """A servable model of ``version``: one a server of it already uses, else prepared anew."""
        for server in self.backend.servers():
            if server.version == version and server.model_ref and self.backend.has_model(server.model_ref, server.sha256):
                return {"model_ref": server.model_ref, "labels": _labels_of(server)}
        return self._prepare_version(version)

    def _start_ready(self, role: str, prepared: Mapping[str, Any]) -> Server:
        server = self.backend.wait_ready(self.backend.start_server(role, prepared["model_ref"], prepared["labels"]))
        warm_up(server, self.deploy.warmup_requests, self.deploy.warmup_rows)
        return server

    # -- 2. plan ---------------------------------------------------------------------------
    def plan(
        self,
        action: str = "deploy",
        version: str | int | None = None,
        *,
        deployment_key: str | None = None,
        strategy: str | None = None,
    ) -> dict[str, Any]:
        """What this run does. ``deployment_key`` ends the deployment id: the orchestrator passes one
        derived from its run, so a retried plan names the same deployment (default: time + random).
        ``strategy`` (default ``MLOPS_DEPLOY_STRATEGY``) is how a new version replaces the running one:
        ``canary`` (traffic steps) or ``blue_green`` (one switch, blue kept warm for the bake window)."""
        champion = self.champion()
        previous = None
        if champion is not None:
            tags = self.client.get_model_version(self.model_name, champion).tags or {}
            previous = tags.get(PREVIOUS_CHAMPION_TAG) or None
        stables = self._running(STABLE)
        decision: ActionPlan = plan_action(
            action,
            None if version is None else str(version),
            champion=champion,
            challenger=self.challenger(),
            previous_champion=previous,
            stable=stables[-1].version if stables else None,
        )
        if decision.version is not None:
            self._check_version_exists(decision.version)
        key = deployment_key or f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:4]}"
        strategy = strategy or self.deploy.strategy
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown deployment strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
        mode: str = decision.mode
        reason = decision.reason
        if mode == "canary" and strategy == BLUE_GREEN:
            mode, reason = BLUE_GREEN, reason.replace("canary of", "blue-green release of", 1)
        elif mode == "canary" and strategy == SHADOW:
            reason = reason.replace("canary of", "shadow, then canary, of", 1)
        elif mode == "canary" and strategy == AB:
            mode, reason = AB, reason.replace("canary of", "A/B test of", 1)
        plan: dict[str, Any] = {
            "deployment_id": f"{self.model_name}-v{decision.version}-{key}",
            "action": decision.action,
            "mode": mode,
            "strategy": strategy if mode in ROLLOUT_MODES else None,
            "version": decision.version,
            "reason": reason,
            "champion": champion,
            "stable_version": stables[-1].version if stables else None,
            "model_name": self.model_name,
            "backend": self.backend.kind,
            "steps": [100] if mode == BLUE_GREEN else [self.deploy.ab_split] if mode == AB else list(self.deploy.steps),
            "actor": self.actor,
        }
        self._event(
            "deployment_planned" if mode != "noop" else "nothing_to_deploy",
            reason,
            version=decision.version,
            deployment_id=plan["deployment_id"],
            action=action,
            mode=mode,
            champion=champion,
        )
        return plan

    def _check_version_exists(self, version: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_model_version(self.model_name, version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise ValueError(f"registered model {self.model_name!r} has no version {version!r}") from exc
            raise

    # -- 3. prepare ------------------------------------------------------------------------
    def prepare(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        if plan["mode"] == "noop":
            return {}
        prepared = self._prepare_version(str(plan["version"]))
        self._event(
            "model_prepared",
            f"artifact verified (sha256 {prepared['labels']['sha256']}) and made servable as {prepared['model_ref']}",
            version=plan["version"],
            deployment_id=plan["deployment_id"],
            **prepared,
        )
        return prepared

    def _prepare_version(self, version: str) -> dict[str, Any]:
        from mlops_pipeline.deploy.artifacts import DIGEST_TAG, download_verified

        recorded = (self.client.get_model_version(self.model_name, version).tags or {}).get(DIGEST_TAG)
        scratch = Path(tempfile.mkdtemp(prefix="mlops-deploy-"))
        try:
            artifact = download_verified(
                self.client, self.model_name, version, scratch / "model", require_digest=self.deploy.require_artifact_digest
            )
            if not recorded:
                self._event(
                    "artifact_digest_recorded",
                    "the version had no artifact_sha256 tag; the digest of the stored artifact was recorded",
                    version=version,
                    sha256=artifact.sha256,
                )
            model_ref = self.backend.prepare_model(artifact)
            return {"model_ref": model_ref, "labels": artifact.labels()}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- 4. canary -------------------------------------------------------------------------
    def start_canary(self, plan: Mapping[str, Any], prepared: Mapping[str, Any]) -> dict[str, Any]:
        version, deployment_id = str(plan["version"]), plan["deployment_id"]
        if not self._running(STABLE):
            raise DeploymentError(f"no stable server runs to compare the canary of v{version} with")
        router = self.router()
        ours = [s for s in self._running(CANARY, version) if s.sha256 == prepared["labels"]["sha256"]]
        reused = ours[-1] if ours else None  # a retry: the first attempt's canary runs already
        for stale in self._running(CANARY):  # a canary of another run (reconcile removes them; belt and braces)
            if reused is None or stale.id != reused.id:
                if router.slot_of(stale) == CANARY:
                    router.empty(CANARY)
                self.backend.stop_server(stale)
        if reused is not None:
            canary = self.backend.wait_ready(reused)
            again = " (the shadow server, now the canary)" if plan.get("strategy") == SHADOW else " (started by an earlier attempt)"
        else:
            router.empty(CANARY)
            canary = self._start_ready(CANARY, prepared)
        try:
            router.point(CANARY, canary)
            router.split(0)
        except Exception:
            self.backend.stop_server(canary)
            raise
        self._tags(version, **{STATUS_TAG: "canary", DEPLOYMENT_TAG: deployment_id, REASON_TAG: ""})
        baseline = self.sample()
        self._event(
            "canary_started",
            f"canary server {canary.name} of v{version} is ready, at 0% of the traffic" + (again if reused else ""),
            version=version,
            deployment_id=deployment_id,
            server=canary.name,
            model_ref=canary.model_ref,
        )
        return {"baseline": {slot: s.to_dict() for slot, s in baseline.items()}, "canary": canary.name, "started_at": time.time()}

    # -- shadow --------------------------------------------------------------------------------
    def _mirror_state_path(self, plan: Mapping[str, Any]) -> Path:
        from mlops_pipeline.deploy.backends import state_dir

        return state_dir(self.deploy.namespace) / "shadow" / f"{plan['deployment_id']}.json"

    def start_shadow(self, plan: Mapping[str, Any], prepared: Mapping[str, Any]) -> dict[str, Any]:
        """The candidate started beside stable in the router's canary slot at 0 % (no client reaches
        it), and the mirror's start: stable's requests from now on are copied to it."""
        from mlops_pipeline.deploy.shadow import MirrorState

        version = str(plan["version"])
        started = self.start_canary(plan, prepared)
        path = self._mirror_state_path(plan)
        state = MirrorState.load(path)
        if state is None:  # a retry keeps the first attempt's start
            state = MirrorState.begin(self.backend.prediction_log_dir())
            state.save(path)
        self._event(
            "shadow_started",
            f"shadow server {started['canary']} of v{version} gets a copy of every request stable "
            f"v{plan.get('stable_version') or plan.get('champion')} answers; clients only get stable's answers",
            version=version,
            deployment_id=plan["deployment_id"],
            server=started["canary"],
        )
        return {"shadow": started["canary"], "started_at": state.started_at, "since": state.since}

    def mirror_status(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """One poke of the shadow window: copy stable's new requests to the shadow, then count the
        labelled rows both answered. Done after ``shadow_seconds`` with evidence for every check
        (``min_requests`` mirrored, ``min_rows`` paired, ``min_labelled`` labelled), at
        ``shadow_max_seconds``, or when the shadow or stable is gone."""
        from mlops_pipeline.deploy.shadow import MirrorState, mirror, window_status

        version, stable = str(plan["version"]), str(plan.get("stable_version") or plan.get("champion"))
        path = self._mirror_state_path(plan)
        state = MirrorState.load(path)
        if state is None:
            raise DeploymentError(f"the shadow window of v{version} has no mirror state ({path}): start_shadow did not run")
        servers = self._running(CANARY, version)
        if not servers or not self._running(STABLE):
            return {"done": True, "why": "the shadow or the stable server is not running", "mirrored": state.sent}
        # the copies spaced over half the poke interval: the shadow works steadily, not in bursts
        spread = self.deploy.poke_seconds / 2
        sent = mirror(state, self.backend.prediction_log_dir(), stable, servers[-1].url, path, spread=spread)
        pairs, labelled = self._shadow_pairs(plan, state)
        status = window_status(
            state,
            len(pairs),
            len(labelled),
            self.thresholds,
            min_seconds=self.deploy.shadow_seconds,
            max_seconds=self.deploy.shadow_max_seconds,
            min_labelled=self.deploy.min_labelled,
        )
        return {**status, "sent_this_poke": sent, "failed": state.failed}

    def _shadow_pairs(self, plan: Mapping[str, Any], state: Any) -> tuple[Any, Any]:
        from mlops_pipeline.datasets import load_dataset_spec
        from mlops_pipeline.deploy.shadow import paired_rows, with_labels
        from mlops_pipeline.storage import open_lake

        spec = load_dataset_spec(self.settings.dataset)
        stable = str(plan.get("stable_version") or plan.get("champion"))
        pairs = paired_rows(self.backend.prediction_log_dir(), state, stable, str(plan["version"]), spec)
        labelled, _ = with_labels(pairs, open_lake(self.settings), spec)
        return pairs, labelled

    def compare_shadow(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """The shadow against stable on the same requests (errors, prediction shift, quality on the
        labelled rows); audited and tagged on the version; raises :class:`CanaryCheckFailed` when
        it fails, so the rollback runs and the canary never starts."""
        from mlops_pipeline.deploy.shadow import MirrorState, compare

        version = str(plan["version"])
        label = f"shadow v{version}"
        state = MirrorState.load(self._mirror_state_path(plan))
        try:
            if not self._running(CANARY, version):
                raise CanaryCheckFailed(f"the shadow server of v{version} is not running any more")
            if state is None:
                raise CanaryCheckFailed("no mirror state: the shadow window did not run")
            if not self._running(STABLE):
                raise CanaryCheckFailed("the stable server is not running any more")
            pairs, labelled = self._shadow_pairs(plan, state)
            result = compare(
                pairs,
                labelled,
                state,
                self.thresholds_for(version, plan.get("champion")),
                min_labelled=self.deploy.min_labelled,
                alpha=self.deploy.quality_alpha,
                label=label,
            )
        except CanaryCheckFailed as exc:
            result = {"passed": False, "reason": f"{label}: {exc}", "checks": [], "quality": None}
        quality = result.get("quality") or {}
        self._tags(
            version,
            **{
                tag_names.SHADOW_PASSED: str(result["passed"]).lower(),
                tag_names.SHADOW_LABELLED_ROWS: str(result.get("labelled", 0)),
                tag_names.SHADOW_BRIER_DIFFERENCE: str(quality.get("mean_difference", "")),
                tag_names.SHADOW_P_VALUE: str(quality.get("p_value", "")),
            },
        )
        self._event(
            "analysis_passed" if result["passed"] else "analysis_failed",
            result["reason"],
            version=version,
            deployment_id=plan["deployment_id"],
            percent=0,
            stage="shadow",
            checks=result["checks"],
            quality=result.get("quality"),
            mirrored=result.get("mirrored"),
        )
        if not result["passed"]:
            raise CanaryCheckFailed(result["reason"])
        return {**{key: result[key] for key in ("passed", "reason", "checks")}, "percent": 0, "stage": "shadow", "quality": result["quality"]}

    # -- A/B -----------------------------------------------------------------------------------
    def start_ab(self, plan: Mapping[str, Any], prepared: Mapping[str, Any]) -> dict[str, Any]:
        """B (the new version) started beside A (stable) and given ``ab_split`` % of the weight: of
        the entities, for clients that send ``X-Entity-Id`` (the router hashes it)."""
        from mlops_pipeline.deploy.haproxy import ENTITY_HEADER

        version, split = str(plan["version"]), self.deploy.ab_split
        started = self.start_canary(plan, prepared)
        step = self.shift(plan, split)
        self._event(
            "ab_started",
            f"v{version} (B) serves {split}% of the entities, v{plan.get('stable_version') or plan.get('champion')} (A) the "
            f"rest, each entity always the same one (by {ENTITY_HEADER}); the outcome test waits for "
            f"{self.deploy.ab_samples} labelled rows a variant",
            version=version,
            deployment_id=plan["deployment_id"],
            split=split,
        )
        return {**started, "step": step}

    def _ab_rows(self, plan: Mapping[str, Any], started: Mapping[str, Any]) -> tuple[Any, Any]:
        """A's and B's labelled rows since the test started (with the ``ab_outcome`` column, if set)."""
        from mlops_pipeline.datasets import load_dataset_spec
        from mlops_pipeline.deploy.shadow import served_rows, with_labels
        from mlops_pipeline.storage import open_lake

        spec, lake, log_dir = load_dataset_spec(self.settings.dataset), open_lake(self.settings), self.backend.prediction_log_dir()
        since, extra = float(started["started_at"]), tuple(c for c in [self.deploy.ab_outcome] if c)
        a, b = (
            with_labels(served_rows(log_dir, since, str(v), spec), lake, spec, extra)[0]
            for v in (self._stable_of(plan), plan["version"])
        )
        return a, b

    @staticmethod
    def _stable_of(plan: Mapping[str, Any]) -> str:
        return str(plan.get("stable_version") or plan.get("champion"))

    def ab_status(self, plan: Mapping[str, Any], started: Mapping[str, Any]) -> dict[str, Any]:
        """One poke of the A/B test: over once each variant has ``ab_samples`` labelled rows (not
        before ``ab_seconds``), at ``ab_max_seconds``, or when a variant's server is gone."""
        elapsed = time.time() - float(started["started_at"])
        if not self._running(CANARY, str(plan["version"])) or not self._running(STABLE):
            return {"done": True, "why": "a variant's server is not running", "elapsed": round(elapsed, 1)}
        a, b = self._ab_rows(plan, started)
        enough = min(len(a), len(b)) >= self.deploy.ab_samples
        done = (elapsed >= self.deploy.ab_seconds and enough) or elapsed >= self.deploy.ab_max_seconds
        why = "the horizon's labelled rows are in" if done and enough else "longest test reached" if done else "collecting"
        return {"done": done, "why": why, "elapsed": round(elapsed, 1), "labelled_a": len(a), "labelled_b": len(b)}

    def analyse_ab(self, plan: Mapping[str, Any], started: Mapping[str, Any]) -> dict[str, Any]:
        """The A/B verdict: the canary's guardrails (5xx, p95 latency, prediction shift) on the test's
        traffic, then the outcome test. B goes on to promotion only when it wins; otherwise
        :class:`CanaryCheckFailed` (A stays, B is rolled back with the reason)."""
        from mlops_pipeline.deploy.ab import describe, outcome_test

        version, stable = str(plan["version"]), self._stable_of(plan)
        label = f"A/B of v{version} (B) against v{stable} (A)"
        outcome: dict[str, Any] | None = None
        lost: StableLost | None = None
        try:
            if not self._running(CANARY, version):
                raise CanaryCheckFailed(f"B's server (v{version}) is not running any more")
            if not self._running(STABLE):
                raise StableLost(f"{label}: A's server is not running any more; the router sends every request to B until the next deploy run reconciles")
            canary, stable_window = self._windows(started, started["step"])
            thresholds = self.thresholds_for(version, plan.get("champion"))
            guard = analyse_window(canary, stable_window, thresholds, label=label)
            a, b = self._ab_rows(plan, started)
            outcome = outcome_test(
                a,
                b,
                alpha=self.deploy.quality_alpha,
                min_labelled=self.deploy.min_labelled,
                metric=self.deploy.ab_outcome,
                goal=self.deploy.ab_outcome_goal,
            )
            said = describe(outcome, stable, version)
            checks = [*guard.to_dict()["checks"], {"name": "outcome", "status": outcome["status"], "detail": said}]
            if not guard.passed:
                passed, reason = False, guard.reason
            elif outcome["status"] == "insufficient" and thresholds.insufficient_traffic != "proceed":
                passed, reason = False, f"{label}: not enough evidence (insufficient_traffic={thresholds.insufficient_traffic}): {said}"
            else:
                passed, reason = outcome["winner"] == "B", f"{label}: {said}"
            result: dict[str, Any] = {"passed": passed, "reason": reason, "checks": checks}
        except CanaryCheckFailed as exc:
            result = {"passed": False, "reason": f"{label}: {exc}", "checks": []}
        except StableLost as exc:
            lost = exc
            result = {"passed": False, "reason": str(exc), "checks": []}
        if outcome is not None:
            self._tags(version, ab_winner=str(outcome.get("winner") or "none"), ab_p_value=str(outcome.get("p_value", "")))
        self._event(
            "analysis_passed" if result["passed"] else "analysis_failed",
            result["reason"],
            version=version,
            deployment_id=plan["deployment_id"],
            percent=int(started["step"]["percent"]),
            stage="ab",
            checks=result["checks"],
            outcome=outcome,
        )
        if lost is not None:
            raise lost
        if not result["passed"]:
            raise CanaryCheckFailed(result["reason"])
        return {**result, "percent": int(started["step"]["percent"]), "stage": "ab", "outcome": outcome}

    # -- blue-green ----------------------------------------------------------------------------
    def start_green(self, plan: Mapping[str, Any], prepared: Mapping[str, Any]) -> dict[str, Any]:
        """Green (the new version) started beside blue (stable) in the router's second slot at 0 %,
        then smoke-tested with recorded requests straight to it; blue keeps all the traffic. The
        baseline starts blue's reference window, which ends at the switch."""
        from mlops_pipeline.deploy.smoke import (
            SmokeTestFailed,
            example_request,
            recorded_requests,
            smoke_test,
        )

        version = str(plan["version"])
        started = self.start_canary(plan, prepared)
        green = self._canary_server(version)
        requests = recorded_requests(self.backend.prediction_log_dir(), plan.get("stable_version") or plan.get("champion"))
        source = f"{len(requests)} recorded request(s) to v{plan.get('stable_version') or plan.get('champion')}"
        if not requests:
            requests, source = [example_request(green)], "the server's example record (no recorded request yet)"
        try:
            result = smoke_test(green, requests)
        except SmokeTestFailed as exc:
            raise CanaryCheckFailed(f"green v{version} failed its smoke test: {exc}") from exc
        self._event(
            "smoke_test_passed",
            f"green server {green.name} of v{version} answered {source} ({result['rows']} rows)",
            version=version,
            deployment_id=plan["deployment_id"],
            **result,
        )
        return {**started, "reference": "before_switch", "smoke": {**result, "source": source}}

    def reference_status(self, plan: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
        """Has blue served enough since green started for the comparison after the switch? Done then,
        or at ``max_bake_seconds`` (the analysis then finds too little evidence), or when a server is gone."""
        elapsed = time.time() - float(baseline.get("started_at") or time.time())
        if not self._running(CANARY, str(plan["version"])) or not self._running(STABLE):
            return {"done": True, "elapsed": round(elapsed, 1), "why": "green or blue is not running"}
        stable = delta(self.sample()[STABLE], Sample.from_dict(baseline["baseline"][STABLE]))
        thresholds = self.thresholds
        enough = stable.request_count >= thresholds.min_requests and stable.rows >= thresholds.min_rows
        done = enough or elapsed >= self.deploy.max_bake_seconds
        why = "enough blue traffic to compare with" if enough else "longest wait reached" if done else "waiting for blue traffic"
        return {"done": done, "why": why, "elapsed": round(elapsed, 1), "stable_requests": stable.request_count, "stable_rows": stable.rows}

    def switch(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """All the traffic to green in one switch (HAProxy runtime weights); blue stays running and
        warm for the bake window, so a switch back is instant. Blue keeps 1 request in 257: a request
        green fails is retried on it, so clients do not see a green that dies (see ``router``)."""
        step = self.shift(plan, 100)
        self._event(
            "switched",
            f"100% of the traffic to green v{plan['version']}; blue v{plan.get('stable_version') or plan.get('champion')} "
            "stays warm for the bake window (1 request in 257, and every request green fails)",
            version=str(plan["version"]),
            deployment_id=plan["deployment_id"],
        )
        return step

    def sample(self) -> dict[str, Sample]:
        """Both slots' counters now: the router's per-server stats and each server's /metrics."""
        router = self._rollout_router()
        slots = router.slots()
        stats = router.runtime.stats()
        servers = [s for s in self.backend.servers() if s.running]
        samples = {}
        for slot in (STABLE, CANARY):
            state = slots.get(slot, {})
            server = next(
                (s for s in servers if s.address == state.get("address") and s.port == state.get("port") and s.role == slot),
                None,
            )
            counters: dict[str, Any] = dict(router_counters(stats.get(slot)))
            if server is not None:
                try:
                    counters.update(server_counters(http_text(f"{server.url}/metrics")))
                except OSError as exc:
                    log.warning("could not read %s/metrics: %s", server.url, exc)
            samples[slot] = Sample(
                server_id=server.id if server else "",
                version=server.version if server else "",
                taken_at=time.time(),
                **counters,
            )
        return samples

    def _canary_server(self, version: str) -> Server:
        running = self._running(CANARY, version)
        if not running:
            raise CanaryCheckFailed(f"the canary server of v{version} is not running any more")
        return running[-1]

    def shift(self, plan: Mapping[str, Any], percent: int) -> dict[str, Any]:
        """``percent`` % of the traffic to the canary. At 100 % (a canary's last step, blue-green's
        switch) stable keeps a trace of it (:meth:`Router.switch`), so a request a dying canary fails
        is retried on stable until the rollback, instead of finding no server."""
        version = str(plan["version"])
        canary = self._canary_server(version)
        router = self._rollout_router()
        if router.slot_of(canary) != CANARY:
            raise CanaryCheckFailed(f"the router's canary slot does not point at {canary.name} any more")
        if int(percent) == 100:
            router.switch()
        else:
            router.split(int(percent))
        snapshot = self.sample()
        self._event(
            "traffic_shifted",
            f"{percent}% of the traffic to the canary v{version}",
            version=version,
            deployment_id=plan["deployment_id"],
            percent=percent,
        )
        return {"percent": int(percent), "started_at": time.time(), "samples": {k: v.to_dict() for k, v in snapshot.items()}}

    def _windows(self, baseline: Mapping[str, Any], step: Mapping[str, Any]) -> tuple[Sample, Sample]:
        """The new version's window (since the step began) and stable's: since the canary started,
        on the same traffic; for blue-green, blue's last window before the switch (it has none after)."""
        now = self.sample()
        canary = delta(now[CANARY], Sample.from_dict(step["samples"][CANARY]))
        if baseline.get("reference") == "before_switch":
            stable = delta(Sample.from_dict(step["samples"][STABLE]), Sample.from_dict(baseline["baseline"][STABLE]))
        else:
            stable = delta(now[STABLE], Sample.from_dict(baseline["baseline"][STABLE]))
        return canary, stable

    def bake_status(self, plan: Mapping[str, Any], baseline: Mapping[str, Any], step: Mapping[str, Any]) -> dict[str, Any]:
        """Is the step's bake window over? Done when baked long enough with enough traffic, when a
        check already fails on enough data, when the canary is gone, or at ``max_bake_seconds``
        (with ``insufficient_traffic=hold`` and too little traffic: ``hold_seconds`` later)."""
        elapsed = time.time() - float(step["started_at"])
        if not self._running(CANARY, str(plan["version"])):
            return {"done": True, "elapsed": elapsed, "why": "the canary is not running"}
        if not self._running(STABLE):
            return {"done": True, "elapsed": elapsed, "why": "the stable server is not running"}
        canary, stable = self._windows(baseline, step)
        thresholds = self.thresholds_for(str(plan["version"]), plan.get("champion"))
        enough = enough_traffic(canary, stable, thresholds)
        early = any(check.status == "failed" for check in analyse_window(canary, stable, thresholds).checks)
        longest = self.deploy.max_bake_seconds
        if thresholds.insufficient_traffic == "hold" and not enough:
            longest += self.deploy.hold_seconds
        done = early or elapsed >= longest or (elapsed >= self.deploy.bake_seconds and enough)
        why = (
            "a check failed"
            if early
            else "baked"
            if done and enough
            else "longest bake window reached"
            if done
            else "holding for enough traffic"
            if elapsed >= self.deploy.max_bake_seconds
            else "baking"
        )
        return {
            "done": done,
            "why": why,
            "elapsed": round(elapsed, 1),
            "canary_requests": canary.request_count,
            "canary_rows": canary.rows,
            "stable_rows": stable.rows,
        }

    def analyse(self, plan: Mapping[str, Any], baseline: Mapping[str, Any], step: Mapping[str, Any]) -> dict[str, Any]:
        """The step's checks; audited; raises :class:`CanaryCheckFailed` when they fail, and
        :class:`StableLost` when there is no stable server left to compare the canary with."""
        version, percent = str(plan["version"]), int(step["percent"])
        label = f"green v{version} after the switch" if plan.get("mode") == BLUE_GREEN else f"canary v{version} at {percent}%"
        lost: StableLost | None = None
        try:
            self._canary_server(version)
            if not self._running(STABLE):
                raise StableLost(
                    f"{label}: the stable server is not running any more, so the canary cannot be compared with it; "
                    "the router sends every request to the canary until the next deploy run reconciles"
                )
            canary, stable = self._windows(baseline, step)
            verdict = analyse_window(canary, stable, self.thresholds_for(version, plan.get("champion")), label=label)
            if plan.get("mode") != BLUE_GREEN:
                verdict = self._with_quality(plan, baseline, verdict, label)
            result = {**verdict.to_dict(), "percent": percent, "canary": canary.to_dict(), "stable": stable.to_dict()}
        except CanaryCheckFailed as exc:
            result = {"passed": False, "reason": f"{label}: {exc}", "checks": [], "percent": percent}
        except StableLost as exc:
            lost = exc
            result = {"passed": False, "reason": str(exc), "checks": [], "percent": percent}
        self._event(
            "analysis_passed" if result["passed"] else "analysis_failed",
            result["reason"],
            version=version,
            deployment_id=plan["deployment_id"],
            percent=percent,
            checks=result["checks"],
        )
        if lost is not None:
            raise lost
        if not result["passed"]:
            raise CanaryCheckFailed(result["reason"])
        return {key: result[key] for key in ("passed", "reason", "checks", "percent")}

    def _with_quality(self, plan: Mapping[str, Any], baseline: Mapping[str, Any], verdict: Verdict, label: str) -> Verdict:
        """The verdict with a quality check on the labelled rows of the canary's and stable's traffic
        since the canary started, once enough labels have arrived (:func:`shadow.quality_check`)."""
        from mlops_pipeline.datasets import load_dataset_spec
        from mlops_pipeline.deploy.shadow import quality_check, served_rows, with_labels
        from mlops_pipeline.storage import open_lake

        started = float(baseline.get("started_at") or 0.0)
        stable_version = plan.get("stable_version") or plan.get("champion")
        if not started or stable_version is None:
            return verdict
        spec, lake, log_dir = load_dataset_spec(self.settings.dataset), open_lake(self.settings), self.backend.prediction_log_dir()
        canary_rows, stable_rows = (
            with_labels(served_rows(log_dir, started, str(v), spec), lake, spec)[0] for v in (plan["version"], stable_version)
        )
        check = quality_check(canary_rows, stable_rows, min_labelled=self.deploy.min_labelled, alpha=self.deploy.quality_alpha)
        if check is None:
            return verdict
        checks = [*verdict.checks, check]
        if check.status == "failed":
            failed = [c.detail for c in verdict.checks if c.status == "failed"] + [check.detail]
            return Verdict(False, f"{label}: " + "; ".join(failed), checks)
        return Verdict(verdict.passed, f"{verdict.reason}; {check.detail}", checks)

    def promote(self, plan: Mapping[str, Any]) -> dict[str, Any]:
        """The canary passed every step: it becomes ``@champion`` and the stable server; the old
        stable is retired. A new stable-labelled server of the canary's model takes the stable slot."""
        version, deployment_id = str(plan["version"]), plan["deployment_id"]
        won = plan.get("mode") == AB
        if plan.get("mode") in ROLLOUT_MODES and self.backend.router() is not None:
            # All the traffic to the new version first: B won at its share of the entities; a canary
            # or a green has all but stable's trace (only while its slot still holds it: a retry after
            # the hand-over finds it gone).
            router, canaries = self.router(), self._running(CANARY, version)
            if canaries and router.slot_of(canaries[-1]) == CANARY:
                router.split(100)
        started = self._running(STABLE, version)  # a retried promotion may have started it already
        if started:
            new_stable = started[-1]
        else:
            canaries = self._running(CANARY, version)
            if canaries:
                model = {"model_ref": canaries[-1].model_ref, "labels": _labels_of(canaries[-1])}
            elif self.champion() == version:  # committed by an earlier attempt, then cut short
                model = self._model_for(version)
            else:
                raise DeploymentError(f"no canary of v{version} is running: nothing to promote")
            new_stable = self._start_ready(STABLE, model)
        previous = self._commit_champion(
            version, deployment_id, "won its A/B test" if won else "passed every canary step", retire="retired", planned_previous=plan.get("champion")
        )
        self._converge(plan_reconcile(version, self.backend.servers()))
        self._event(
            "promoted",
            (f"v{version} won its A/B test and is @champion; " if won else
             f"v{version} passed every traffic step ({', '.join(f'{p}%' for p in plan.get('steps', []))}) and is @champion; ")
            + (f"v{previous} retired" if previous else "no previous champion"),
            version=version,
            deployment_id=deployment_id,
            previous=previous,
            server=new_stable.name,
        )
        return {"outcome": "promoted", "version": version, "previous": previous, "server": new_stable.name}

    def _commit_champion(
        self, version: str, deployment_id: str, reason: str, *, retire: str, planned_previous: str | None = None
    ) -> str | None:
        """``@champion`` := version (the commit point); tags on the new and the old champion.

        ``planned_previous`` is the champion when the run was planned: when an earlier attempt of the
        step moved the alias already, it is still the one to tag as replaced."""
        from mlops_pipeline.registry.aliases import promote

        previous = self.champion()
        if previous == version and planned_previous:
            previous = str(planned_previous)
        if previous is None:
            stables = self._running(STABLE)
            previous = stables[-1].version if stables and stables[-1].version != version else None
        if previous and previous != version and retire == "retired":
            self._tags(version, **{PREVIOUS_CHAMPION_TAG: previous})
        promote(version, model_name=self.model_name, client=self.client)
        self._tags(version, **{STATUS_TAG: "promoted", REASON_TAG: reason, DEPLOYMENT_TAG: deployment_id})
        if previous and previous != version:
            self._tags(previous, **{STATUS_TAG: retire, REASON_TAG: f"replaced by v{version}: {reason}"})
        return previous if previous != version else None

    def canary_was_started(self, plan: Mapping[str, Any]) -> bool:
        """Is there a canary of this deployment to undo (audited as started, or running)?"""
        if any(e.event == "canary_started" for e in self.audit.iter_events(deployment_id=plan["deployment_id"])):
            return True
        return plan.get("version") is not None and bool(self._running(CANARY, str(plan["version"])))

    def rollback(self, plan: Mapping[str, Any], reason: str | None = None) -> dict[str, Any]:
        """Weight 0, canary removed, version tagged ``rolled_back`` with the reason; @challenger
        cleared when it still names this version (so it is not deployed again by accident)."""
        from mlops_pipeline.registry.aliases import CHALLENGER

        version, deployment_id = str(plan["version"]), plan["deployment_id"]
        if reason is None:
            failed = [e for e in self.audit.events(deployment_id=deployment_id) if e.event == "analysis_failed"]
            reason = failed[-1].reason if failed else "the rollout did not complete (a deployment step failed)"
        if not self._running(STABLE) and self._running(CANARY, version):
            # Taking the canary out now would leave the router with no server: it keeps serving, and the
            # next run's reconcile starts a stable server of @champion before removing it.
            reason = f"{reason}; no stable server runs, so the canary keeps serving until the next deploy run reconciles"
            self._drop_orphan_slots()
            self._tags(version, **{STATUS_TAG: "interrupted", REASON_TAG: reason, DEPLOYMENT_TAG: deployment_id})
            self._event("rollback_deferred", reason, version=version, deployment_id=deployment_id)
            return {"outcome": "rollback_deferred", "version": version, "reason": reason, "stable_version": None}
        if self.backend.router() is not None:
            router = self.router()
            router.split(0)
            router.empty(CANARY)
        for canary in self._running(CANARY, version):
            self.backend.stop_server(canary)
        for dead in [s for s in self.backend.servers() if s.role == CANARY and not s.running]:
            self.backend.stop_server(dead)
        self._tags(version, **{STATUS_TAG: "rolled_back", REASON_TAG: reason, DEPLOYMENT_TAG: deployment_id})
        if self.challenger() == version:
            self.client.delete_registered_model_alias(self.model_name, CHALLENGER)
        stables = self._running(STABLE)
        serving = stables[-1].version if stables else None
        self._event(
            "rolled_back",
            reason,
            version=version,
            deployment_id=deployment_id,
            stable_version=serving,
        )
        return {"outcome": "rolled_back", "version": version, "reason": reason, "stable_version": serving}

    # -- 5. direct -------------------------------------------------------------------------
    def deploy_direct(self, plan: Mapping[str, Any], prepared: Mapping[str, Any]) -> dict[str, Any]:
        """Start ``version`` as the stable server, make it the champion, move the traffic over."""
        version, deployment_id, action = str(plan["version"]), plan["deployment_id"], plan["action"]
        started = [s for s in self._running(STABLE, version) if s.sha256 == prepared["labels"]["sha256"]]
        server = self.backend.wait_ready(started[-1]) if started else self._start_ready(STABLE, prepared)
        planned_previous = plan.get("champion")
        if action == "rollback":
            previous = self._commit_champion(
                version, deployment_id, f"manual rollback by {self.actor}", retire="rolled_back", planned_previous=planned_previous
            )
        else:
            previous = self._commit_champion(version, deployment_id, plan["reason"], retire="retired", planned_previous=planned_previous)
        self._converge(plan_reconcile(version, self.backend.servers()))
        event = {"rollback": "rolled_back_to", "promote": "promoted"}.get(action, "deployed")
        self._event(event, plan["reason"], version=version, deployment_id=deployment_id, previous=previous, server=server.name)
        return {"outcome": event, "version": version, "previous": previous, "server": server.name}


WARMUP_SOURCE = "warmup"  # the monitor's reader leaves these requests out (monitoring.predictions.NOT_TRAFFIC)


def warm_up(server: Server, requests: int, rows: int, timeout: float = 10.0) -> dict[str, Any]:
    """Predictions straight to a new server before it takes traffic.

    A new process answers its first requests slowly (code paths run for the first time, buffers and
    the log writer start): on a busy machine a canary's first few dozen requests can put its p95 far
    above the stable's, failing the latency check for a cost no client should see either. The
    records are the server's own example record (its OpenAPI schema), sent as ``X-Traffic-Source:
    warmup``; a failure here is the server's, so it is raised."""
    import json
    import os
    import urllib.request

    if requests <= 0:
        return {"requests": 0}
    schema = json.loads(http_text(f"{server.url}/openapi.json", timeout=timeout))
    example = ((schema.get("components") or {}).get("schemas") or {}).get("PredictRecord", {}).get("example")
    if not example:
        raise DeploymentError(f"server {server.name} publishes no example record to warm up with")
    body = json.dumps({"records": [example] * rows}).encode()
    headers = {"Content-Type": "application/json", "X-Traffic-Source": WARMUP_SOURCE}
    if os.environ.get("MLOPS_SERVING_API_KEY"):  # the key the servers were started with
        headers["X-API-Key"] = os.environ["MLOPS_SERVING_API_KEY"]
    started = time.monotonic()
    for _ in range(requests):
        request = urllib.request.Request(f"{server.url}/predict", data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    seconds = round(time.monotonic() - started, 2)
    log.info("warmed up %s with %d requests of %d rows in %.2fs", server.name, requests, rows, seconds)
    return {"requests": requests, "rows": rows, "seconds": seconds}


def _labels_of(server: Server) -> dict[str, str]:
    return {"name": server.model_name, "version": server.version, "run_id": server.run_id, "sha256": server.sha256}
