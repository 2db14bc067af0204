"""Small ledger operations the steps share: events, cursors, leases.

Everything here runs inside a caller's transaction; the caller decides when to commit,
which is how a cursor is committed together with (never before) the data it covers.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session, load_only
from sqlalchemy.orm.attributes import set_committed_value

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
    pick = (
        select(DeliveryRow.id)
        .where(*claimable(deployment, states, now), *(() if target is None else (DeliveryRow.target == target,)))
        .order_by(DeliveryRow.priority.desc(), DeliveryRow.deadline, DeliveryRow.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    # The claimed rows come back from the UPDATE itself, as the session's objects: no second read.
    batch = list(session.scalars(
        update(DeliveryRow)
        .where(DeliveryRow.id.in_(pick.scalar_subquery()), _free(now))
        .values(lease_owner=owner, lease_until=now + lease)
        .returning(DeliveryRow)
        .execution_options(synchronize_session=False, populate_existing=True)
    ))
    session.commit()
    if not batch:
        return []
    batch.sort(key=lambda d: (-d.priority, d.deadline, d.id))
    # Each delivery's report, and the report's other deliveries, are needed to send it and to
    # derive the report's status after: read for the whole batch in two queries, not per delivery.
    connection = session.connection()
    ids, lanes = [d.id for d in batch], {}
    for delivery in batch:
        lanes.setdefault(delivery.report_id, []).append(delivery)
    reports = {r.id: r for r in session.scalars(
        select(ReportRow).where(bulk.among(connection, ReportRow.id, list(lanes))).options(load_only(*_TO_SEND)))}
    for delivery in session.scalars(select(DeliveryRow).where(bulk.among(connection, DeliveryRow.report_id, list(lanes)),
                                                              ~bulk.among(connection, DeliveryRow.id, ids))):
        lanes[delivery.report_id].append(delivery)
    for delivery in batch:
        set_committed_value(delivery, "report", reports[delivery.report_id])
        set_committed_value(reports[delivery.report_id], "deliveries", sorted(lanes[delivery.report_id], key=lambda d: d.attempt))
    return batch


#: What sending a report reads of its row (the rest, never read by deliver, is not loaded):
#: the report itself, its reporter as encrypted, and what its status is derived from.
_TO_SEND = (ReportRow.source, ReportRow.source_id, ReportRow.deployment, ReportRow.status, ReportRow.payload,
            ReportRow.reporter_name_enc, ReportRow.reporter_phone_enc, ReportRow.duplicate_of, ReportRow.duplicate_count,
            ReportRow.published_at)


def release(delivery: DeliveryRow) -> None:
    delivery.lease_owner = None
    delivery.lease_until = None
