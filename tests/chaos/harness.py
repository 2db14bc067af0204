"""Shared pieces of the chaos suite (and of bench/chaos_run.py): a stand-in stack with a
short client timeout, a movable clock, tuned mappings, and the exactly-once check."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import DeliveryRow, EventRow, ReportRow
from paht_bridge.ledger.steps import StepContext, deliver, ingest
from paht_bridge.mappings.canonical import vietnam_now
from paht_bridge.mappings.config import Deployment, deployment, deployment_names
from paht_bridge.sandbox.stack import SandboxStack
from tests.lifecycle_checks import documents

TARGETS = ("qoffice_quangtri", "tdoffice_dienbien")


@dataclass
class MovableClock:
    """The steps' clock; an hour of outage passes in a moment."""

    now: datetime = field(default_factory=vietnam_now)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def tuned(mapping: Deployment, **target_changes: object) -> Deployment:
    targets = tuple(t.model_copy(update=target_changes) for t in mapping.targets)
    return mapping.model_copy(update={"targets": targets})


def contexts(url: str, run_id: str, clock: MovableClock | None = None, lease_seconds: float = 600, batch_size: int = 100,
             **target_changes: object) -> list[StepContext]:
    out = []
    for name in deployment_names():
        mapping = tuned(deployment(name), **target_changes)
        ctx = StepContext(mapping=mapping, sessions=sessions(url), connectors=AirflowConnectors(mapping), run_id=run_id,
                          lease=timedelta(seconds=lease_seconds), batch_size=batch_size)
        if clock is not None:
            ctx.clock = clock
        out.append(ctx)
    return out


def ingest_all(url: str) -> None:
    for ctx in contexts(url, "ingest"):
        ingest(ctx)


def deliver_round(url: str, run_id: str, clock: MovableClock | None = None, **target_changes: object) -> dict[str, int]:
    totals: dict[str, int] = {}
    for ctx in contexts(url, run_id, clock, **target_changes):
        for key, value in deliver(ctx).counts.items():
            totals[key] = totals.get(key, 0) + value
    return totals


def undelivered(url: str) -> int:
    with sessions(url)() as session:
        return session.scalar(select(func.count(DeliveryRow.id)).where(DeliveryRow.state != "delivered"))


def exactly_once(stack: SandboxStack, url: str) -> dict[str, int]:
    """Every delivery in the ledger is one document in its target, created once; no extra documents."""
    with sessions(url)() as session:
        refs = dict(session.execute(select(DeliveryRow.external_ref, DeliveryRow.state)).all())
        reports = session.scalar(select(func.count(ReportRow.id)))
        sending_events = session.scalar(select(func.count(EventRow.id)).where(EventRow.kind == "sending"))
    docs = [d for target in TARGETS for d in documents(stack.urls.urls[target])]
    duplicated = [d["external_ref"] for d in docs if d["created_count"] != 1]
    by_ref = {d["external_ref"]: d for d in docs}
    missing = [ref for ref in refs if ref not in by_ref]
    extra = [ref for ref in by_ref if ref not in refs]
    return {
        "reports": reports,
        "deliveries": len(refs),
        "documents": len(docs),
        "duplicated": len(duplicated),
        "missing": len(missing),
        "extra": len(extra),
        "not_delivered_in_ledger": sum(1 for state in refs.values() if state != "delivered"),
        "create_requests_seen_by_targets": sum(d["send_calls"] or 0 for d in docs),
        "sending_events": sending_events,
    }
