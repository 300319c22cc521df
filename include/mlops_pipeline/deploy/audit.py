"""The deployment audit log: every deployment event, append-only, in the lake.

Object stores cannot append, so each event is its own JSON object under ``deployments/audit/``,
named ``<UTC time>-<sequence>-<event id>.json``: names sort in the order events were written (the
time has microseconds; the per-process sequence orders events of one process within the same
microsecond). An event is never rewritten: a name that exists already is an error. A reader
(:meth:`AuditLog.events`) lists them in order, optionally filtered.

Each event says who (``actor``: ``airflow:<dag>/<run id>``, ``cli:<user>``...), what (``event``,
``model_name``, ``version``, ``deployment_id``), when (``ts``) and why (``reason``), plus
``details`` (analysis numbers, images, previous versions).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlops_pipeline.data.lake import Lake

AUDIT_PREFIX = "deployments/audit"
_SEQUENCE = itertools.count()


@dataclass(frozen=True)
class AuditEvent:
    event: str
    actor: str
    reason: str
    model_name: str = ""
    version: str | None = None
    deployment_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ts: str = ""
    event_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEvent:
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


class AuditLog:
    def __init__(self, lake: Lake, prefix: str = AUDIT_PREFIX) -> None:
        self.lake = lake
        self.prefix = prefix.strip("/")

    def append(
        self,
        event: str,
        *,
        actor: str,
        reason: str,
        model_name: str = "",
        version: str | int | None = None,
        deployment_id: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """Write one event as a new object; returns it with its time and id filled in."""
        now = datetime.now(UTC)
        record = AuditEvent(
            event=event,
            actor=actor,
            reason=reason,
            model_name=model_name,
            version=None if version is None else str(version),
            deployment_id=deployment_id,
            details=json.loads(json.dumps(dict(details or {}), default=str)),
            ts=now.isoformat(timespec="microseconds"),
            event_id=uuid.uuid4().hex,
        )
        name = f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{next(_SEQUENCE) % 1_000_000:06d}-{record.event_id}.json"
        path = self.lake.path(self.prefix, name)
        if self.lake.exists(path):  # unique by construction; never overwrite an event
            raise FileExistsError(f"audit event {path} exists already")
        self.lake.write_bytes_atomic(path, (json.dumps(record.to_dict(), sort_keys=True) + "\n").encode())
        return record

    def events(
        self,
        *,
        model_name: str | None = None,
        deployment_id: str | None = None,
        since: str | None = None,
    ) -> list[AuditEvent]:
        """Every event in the order written; ``since`` is an ISO time (inclusive)."""
        return list(self.iter_events(model_name=model_name, deployment_id=deployment_id, since=since))

    def iter_events(
        self,
        *,
        model_name: str | None = None,
        deployment_id: str | None = None,
        since: str | None = None,
    ) -> Iterator[AuditEvent]:
        base = self.lake.path(self.prefix)
        if not self.lake.exists(base):
            return
        names = sorted(
            entry.rstrip("/").rsplit("/", 1)[-1]
            for entry in self.lake.fs.ls(base, detail=False)
            if entry.endswith(".json")
        )
        floor = _since_key(since) if since else ""
        for name in names:
            if floor and name < floor:
                continue
            event = AuditEvent.from_dict(json.loads(self.lake.read_bytes(f"{base}/{name}")))
            if model_name is not None and event.model_name != model_name:
                continue
            if deployment_id is not None and event.deployment_id != deployment_id:
                continue
            yield event


def _since_key(since: str) -> str:
    moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
