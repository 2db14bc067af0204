"""Small ledger operations the steps share: events, cursors, leases.

Everything here runs inside a caller's transaction; the caller decides when to commit,
which is how a cursor is committed together with (never before) the data it covers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, selectinload

from paht_bridge.ledger import bulk
from paht_bridge.ledger.db import encrypt
from paht_bridge.ledger.models import CursorRow, DeliveryRow, EventRow, QuarantineRow, ReportRow
from paht_bridge.canonical import Quarantined, vietnam_now


_EVENTS = EventRow.__table__


def record_event(
    session: Session,
    kind: str,
    *,
    report_id: int | None,
    run_id: str | None,
    status: str | None = None,
    delivery_id: int | None = None,
    at: datetime | None = None,
    **detail: Any,
) -> None:
    # A plain INSERT in the caller's transaction: events are append-only and never read back
    # through this session's objects, so the ORM's unit of work (the largest cost per report
    # in the profile) has nothing to add. Ids passed in are already flushed (they exist).
    session.connection().execute(_EVENTS.insert(), {
        "report_id": report_id, "delivery_id": delivery_id, "at": at or vietnam_now(), "kind": kind, "status": status,
        "run_id": run_id, "detail": detail})


class EventBatch:
    """Events gathered while a batch of reports is worked on, written in one multi-row INSERT
    (``write``) in the caller's transaction: one statement per page or chunk, not one per event."""

    def __init__(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.rows: list[dict[str, Any]] = []

    def add(self, kind: str, *, report_id: int | None, status: str | None = None, delivery_id: int | None = None,
            at: datetime | None = None, **detail: Any) -> None:
        self.rows.append({"report_id": report_id, "delivery_id": delivery_id, "at": at or vietnam_now(), "kind": kind,
                          "status": status, "run_id": self.run_id, "detail": detail})

    def write(self, session: Session) -> None:
        if self.rows:
            bulk.insert(session.connection(), _EVENTS, self.rows)
            self.rows = []


def quarantine(session: Session, deployment: str, bad: Quarantined, run_id: str | None, feed: str = "reports") -> None:
    """Keep an input we could not take in: its reason, a masked copy to show, and the payload
    as received (encrypted) to replay after a fix."""
    session.add(QuarantineRow(
        deployment=deployment, source=bad.source, source_id=bad.source_id, reason=f"{feed}: {bad.reason}" if feed != "reports" else bad.reason,
        raw=bad.raw, at=vietnam_now(), run_id=run_id,
        raw_enc=encrypt(bad.payload.get_secret_value()) if bad.payload else None,
    ))
    record_event(session, "quarantined", report_id=None, run_id=run_id, source=bad.source, source_id=bad.source_id,
                 feed=feed, reason=bad.reason)


def get_cursor(session: Session, stream: str) -> str | None:
    row = session.get(CursorRow, stream)
    return row.value if row else None


def set_cursor(session: Session, stream: str, value: str | None) -> None:
    row = session.get(CursorRow, stream)
    if row is None:
        session.add(CursorRow(stream=stream, value=value, updated_at=vietnam_now()))
    else:
        row.value = value
        row.updated_at = vietnam_now()


def _free(now: datetime) -> ColumnElement[bool]:
    return or_(DeliveryRow.lease_until.is_(None), DeliveryRow.lease_until < now)


def claimable(deployment: str, states: tuple[str, ...], now: datetime) -> tuple[ColumnElement[bool], ...]:
    """What ``claim_deliveries`` can take now: in ``states``, due, and under no live lease."""
    due = or_(DeliveryRow.next_try_at.is_(None), DeliveryRow.next_try_at <= now)
    return DeliveryRow.deployment == deployment, DeliveryRow.state.in_(states), due, _free(now)


def claim_deliveries(
    session: Session,
    *,
    deployment: str,
    owner: str,
    states: tuple[str, ...],
    limit: int,
    lease: timedelta,
    now: datetime,
    target: str | None = None,
) -> list[DeliveryRow]:
    """Take up to ``limit`` deliveries due now under a lease, so two workers never hold the same one.

    One statement picks and leases them: ``UPDATE … WHERE id IN (the first due, free ones)
    RETURNING id``. SQLite runs it under its write lock, so concurrent senders never pick the
    same rows (a separate SELECT let them, and the losers found nothing and stopped); on
    PostgreSQL the pick locks its rows ``FOR UPDATE SKIP LOCKED``, so each claimer takes the
    next free ones. The outer condition re-checks the lease, so a zombie worker and its retry
    cannot both win. Commits the claim; returns the deliveries in the order they are due
    (``target``: only that document system's).
    """
    order = (DeliveryRow.priority.desc(), DeliveryRow.deadline, DeliveryRow.id)
    pick = (
        select(DeliveryRow.id)
        .where(*claimable(deployment, states, now), *(() if target is None else (DeliveryRow.target == target,)))
        .order_by(*order)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = list(session.scalars(
        update(DeliveryRow)
        .where(DeliveryRow.id.in_(pick.scalar_subquery()), _free(now))
        .values(lease_owner=owner, lease_until=now + lease)
        .returning(DeliveryRow.id)
        .execution_options(synchronize_session=False)
    ))
    session.commit()
    if not ids:
        return []
    # Each delivery's report and its other deliveries are needed to send it and to derive the
    # report's status after: loaded for the whole batch in two queries, not two per delivery.
    claimed = select(DeliveryRow).where(bulk.among(session.connection(), DeliveryRow.id, ids), DeliveryRow.lease_owner == owner).order_by(*order).options(
        selectinload(DeliveryRow.report).selectinload(ReportRow.deliveries))
    return list(session.scalars(claimed))


def release(delivery: DeliveryRow) -> None:
    delivery.lease_owner = None
    delivery.lease_until = None
