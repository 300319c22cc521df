"""Traffic through the router's two slots, ``stable`` and ``canary``, without dropping a request.

The rules every change follows:

- a slot is pointed at another server only while it carries no traffic (weight 0 or not up), and
  only at a server that already answers ``/ready``; it takes traffic once HAProxy's own health
  check passes;
- weights change over the runtime API, both in one command (no reload, no dropped connection);
- a server leaves a slot by draining: weight 0, then ``drain`` until its sessions end, then
  ``maint``; only then is it stopped (gracefully);
- after each change the slots are written to the router's config file, so a restarted router comes
  back as it was.

Weights are percentages: ``stable = 100 - p``, ``canary = p`` (HAProxy weights are relative). One
exception, a rollout at 100 % (a canary's last step, blue-green's switch: :meth:`switch`): the
canary slot gets ``MAX_WEIGHT`` and the stable slot ``STANDBY_WEIGHT``, so stable keeps a trace of
the requests. A server of weight 0 is never chosen, not even when every other one is down, so a
stable at 0 could not take a request whose canary had died: HAProxy's retry (``option
redispatch``, which avoids the server that failed) sends it to stable, and the client never sees
the canary go. Promotion moves the trace to the canary first (``split(100)``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from mlops_pipeline.deploy.backends import CANARY, ROUTER_BACKEND, STABLE, Backend, BackendError, Server
from mlops_pipeline.deploy.haproxy import MAX_WEIGHT, HAProxyRuntime, HAProxyRuntimeError

if TYPE_CHECKING:
    from mlops_pipeline.deploy.backends import RouterEndpoint

log = logging.getLogger(__name__)

UP_TIMEOUT_S = 60.0
STANDBY_WEIGHT = 1  # stable's weight in a rollout at 100 %: 1 request in MAX_WEIGHT + 1 (0.4 %)
DRAIN_TIMEOUT_S = 30.0


class Router:
    def __init__(self, backend: Backend, endpoint: RouterEndpoint) -> None:
        self.backend = backend
        self.endpoint = endpoint
        self.runtime = HAProxyRuntime(endpoint.runtime_address)

    @classmethod
    def ensure(cls, backend: Backend) -> Router:
        """The running router, or a new one whose stable slot points at the running stable (if any)."""
        endpoint = backend.router()
        if endpoint is None:
            running = [s for s in backend.servers() if s.running and s.role == STABLE]
            slots: dict[str, dict[str, object] | None] = {STABLE: None, CANARY: None}
            if running:
                newest = running[-1]
                slots[STABLE] = {"address": newest.address, "port": newest.port, "weight": 100, "enabled": True}
            endpoint = backend.ensure_router(slots)
        return cls(backend, endpoint)

    # -- reading ---------------------------------------------------------------------------
    def slots(self) -> dict[str, dict[str, object]]:
        return self.runtime.server_state(ROUTER_BACKEND)

    def slot_of(self, server: Server) -> str | None:
        """Which slot points at ``server`` (None when none does)."""
        for name, slot in self.slots().items():
            if slot["address"] == server.address and slot["port"] == server.port and slot["admin"] != "maint":
                return name
        return None

    def weights(self) -> dict[str, int]:
        return {name: int(str(slot["weight"])) for name, slot in self.slots().items()}

    # -- changing --------------------------------------------------------------------------
    def point(self, slot: str, server: Server, timeout: float = UP_TIMEOUT_S) -> None:
        """Point ``slot`` at ``server`` (which must answer /ready) and wait until HAProxy's own health
        checks of it pass. A re-pointed slot comes back with weight 0: :meth:`split` gives it traffic."""
        state = self.slots()[slot]
        if state["address"] == server.address and state["port"] == server.port and state["up"]:
            return
        if int(str(state["weight"])) > 0 and state["up"] and self._others_carry_nothing(slot):
            raise BackendError(f"refusing to re-point the {slot} slot: it carries all the traffic")
        self.runtime.set_weight(ROUTER_BACKEND, slot, 0)
        self.runtime.set_state(ROUTER_BACKEND, slot, "maint")
        self.runtime.set_server_address(ROUTER_BACKEND, slot, server.address, server.port)
        self.runtime.ready_after_checks(ROUTER_BACKEND, slot)
        try:
            self.runtime.wait_until(ROUTER_BACKEND, [slot], timeout=timeout, healthy=True)
        except HAProxyRuntimeError as exc:
            raise BackendError(f"{server.name} did not pass the router's health check in the {slot} slot: {exc}") from exc
        self.persist()

    def _others_carry_nothing(self, slot: str) -> bool:
        return all(
            int(str(state["weight"])) == 0 or not state["up"] for name, state in self.slots().items() if name != slot
        )

    def split(self, canary_percent: int) -> None:
        """Send ``canary_percent`` % of the requests to the canary slot, the rest to stable."""
        if not 0 <= canary_percent <= 100:
            raise ValueError(f"canary_percent must be within 0..100, got {canary_percent}")
        self.runtime.set_weights(ROUTER_BACKEND, {STABLE: 100 - canary_percent, CANARY: canary_percent})
        self.persist()

    def switch(self) -> None:
        """A rollout at 100 %: all but ``1 / (MAX_WEIGHT + 1)`` of the requests to the canary slot in
        one command; the stable slot keeps the rest, warm and eligible for the retry of a request
        the canary failed (see the module)."""
        self.runtime.set_weights(ROUTER_BACKEND, {STABLE: STANDBY_WEIGHT, CANARY: MAX_WEIGHT})
        self.persist()

    def empty(self, slot: str, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Take ``slot`` out of rotation: weight 0, finish its requests, then maintenance."""
        state = self.slots().get(slot)
        if state is None or state["admin"] == "maint":
            return
        self.runtime.set_weight(ROUTER_BACKEND, slot, 0)
        self.runtime.set_state(ROUTER_BACKEND, slot, "drain")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.runtime.stats(ROUTER_BACKEND).get(slot, {})
            if not row.get("scur") and not row.get("qcur"):
                break
            time.sleep(0.1)
        self.runtime.set_state(ROUTER_BACKEND, slot, "maint")
        self.persist()

    def drop_orphans(self, servers: list[Server]) -> list[str]:
        """Put in maintenance every slot that points at none of the running ``servers`` (its server
        died or was removed): HAProxy would otherwise keep sending it requests until its health
        checks notice, each one waiting out a connect timeout. Nothing is drained: a server that
        does not run has no request left to finish. The slots dropped."""
        live = {(s.address, s.port) for s in servers if s.running}
        dropped = []
        for name, state in self.slots().items():
            if state["admin"] != "maint" and (state["address"], state["port"]) not in live:
                self.runtime.set_weight(ROUTER_BACKEND, name, 0)
                self.runtime.set_state(ROUTER_BACKEND, name, "maint")
                dropped.append(name)
        if dropped:
            log.info("router slots %s pointed at no running server: put in maintenance", ", ".join(dropped))
            self.persist()
        return dropped

    def hand_over_stable(self, server: Server) -> None:
        """Make ``server`` the stable slot's server with all the traffic, the canary slot empty.

        When the stable slot carries traffic to another server, the canary slot bridges: it takes
        ``server`` and all the traffic while the stable slot is re-pointed.
        """
        slots = self.slots()
        stable = slots[STABLE]
        same = stable["address"] == server.address and stable["port"] == server.port
        if not same and stable["up"] and int(str(stable["weight"])) > 0:
            canary = slots[CANARY]
            if canary["up"] and int(str(canary["weight"])) > 0 and not (
                canary["address"] == server.address and canary["port"] == server.port
            ):
                raise BackendError("both slots carry traffic to other servers; empty the canary slot first")
            self.point(CANARY, server)
            self.split(100)
        self.point(STABLE, server)
        self.split(0)
        self.empty(CANARY)

    def persist(self) -> None:
        """Write the slots as they are now into the router's config file."""
        slots = {
            name: {
                "address": state["address"],
                "port": state["port"],
                "weight": state["weight"],
                "enabled": state["admin"] != "maint",
            }
            for name, state in self.slots().items()
        }
        self.backend.write_router_config(slots)
