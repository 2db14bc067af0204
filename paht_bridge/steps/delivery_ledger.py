"""The deliver step's writes to the ledger: mark *sending*, renew the lease, give back, record.

Nothing here touches a delivery this worker no longer holds: every write of a delivery's
state is conditional on this worker's live lease (``_while_leased``), so a zombie worker
beside its retry cannot overwrite the other's work. A chunk's marks, outcomes and its
reports' statuses are one statement each, not one per delivery.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Update, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from paht_bridge.canonical import CanonicalStatus, DocumentReceipt
from paht_bridge.ledger import bulk
from paht_bridge.ledger.models import DeliveryRow, RatingRow, ReportRow
from paht_bridge.ledger.store import EventBatch, record_event
from paht_bridge.steps.context import StepContext, log
from paht_bridge.steps.outcome import Failure
from paht_bridge.steps.status import derive_status, refresh_status

_DELIVERIES, _REPORTS = DeliveryRow.__table__, ReportRow.__table__

#: A success to record: the delivery, the target's receipt, and whether a lookup found it.
Done = tuple[DeliveryRow, DocumentReceipt, bool]


def _while_leased(session: Session, ctx: StepContext, ids: list[int], now: datetime) -> Update:
    """An UPDATE of ``ids`` that touches only the rows this worker holds under a live lease."""
    return (update(DeliveryRow)
            .where(bulk.among(session.connection(), DeliveryRow.id, ids), DeliveryRow.lease_owner == ctx.worker,
                   DeliveryRow.lease_until > now)
            .execution_options(synchronize_session=False))


def mark_sending(session: Session, ctx: StepContext, deliveries: list[DeliveryRow]) -> set[int]:
    """Record *sending* durably before any call, in one statement and one commit, with a try
    counted and the lease renewed for the calls; the ids still held (the rest: lease lost)."""
    if not deliveries:
        return set()
    now = ctx.clock()
    tries = dict(session.execute(
        _while_leased(session, ctx, [d.id for d in deliveries], now)
        .values(state="sending", tries=DeliveryRow.tries + 1, lease_until=now + ctx.lease)
        .returning(DeliveryRow.id, DeliveryRow.tries)
    ).all())
    events = EventBatch(ctx.run_id)
    for delivery in deliveries:
        if delivery.id in tries:  # what the batch reads again: whether it was sent, and its tries
            set_committed_value(delivery, "state", "sending")
            set_committed_value(delivery, "tries", tries[delivery.id])
            events.add("sending", report_id=delivery.report_id, delivery_id=delivery.id, target=delivery.target,
                       external_ref=delivery.external_ref, try_number=delivery.tries)
    events.write(session)
    session.commit()
    return set(tries)


def renew_lease(session: Session, ctx: StepContext, deliveries: list[DeliveryRow]) -> set[int]:
    """Extend this worker's live lease on ``deliveries``; the ids it still holds."""
    if not deliveries:
        return set()
    now = ctx.clock()
    kept = set(session.scalars(_while_leased(session, ctx, [d.id for d in deliveries], now)
                               .values(lease_until=now + ctx.lease).returning(DeliveryRow.id)))
    for delivery in deliveries:
        if delivery.id in kept:
            set_committed_value(delivery, "lease_until", now + ctx.lease)
    session.commit()
    return kept


def give_back(session: Session, ctx: StepContext, delivery: DeliveryRow, state: str, why: str) -> bool:
    """Undo the *sending* mark of a delivery that was never sent (its target's circuit opened):
    back to ``state`` with its try returned, lease released. False if the lease was lost."""
    now = ctx.clock()
    tries = session.execute(
        _while_leased(session, ctx, [delivery.id], now).where(DeliveryRow.state == "sending")
        .values(state=state, tries=DeliveryRow.tries - 1, lease_owner=None, lease_until=None)
        .returning(DeliveryRow.tries)
    ).scalar()
    if tries is None:
        session.rollback()
        return False
    for key, value in (("state", state), ("tries", tries), ("lease_owner", None), ("lease_until", None)):
        set_committed_value(delivery, key, value)
    record_event(session, "not_sent", report_id=delivery.report_id, delivery_id=delivery.id, run_id=ctx.run_id,
                 target=delivery.target, external_ref=delivery.external_ref, reason=why)
    session.commit()
    return True


def let_go(session: Session, ctx: StepContext, deliveries: list[DeliveryRow]) -> None:
    """Release this worker's lease on claimed deliveries it will not work on now."""
    if deliveries:
        session.execute(_while_leased(session, ctx, [d.id for d in deliveries], ctx.clock()).values(lease_owner=None, lease_until=None))
        for delivery in deliveries:
            set_committed_value(delivery, "lease_owner", None)
            set_committed_value(delivery, "lease_until", None)
        session.commit()


def record_failure(session: Session, ctx: StepContext, delivery: DeliveryRow, verdict: Failure) -> bool:
    """Write where a failed attempt leaves the delivery (``steps.outcome.failure``) and release
    it; False, and nothing written, if this worker no longer holds it."""
    now = ctx.clock()
    values = {"state": verdict.state, "last_error": verdict.reason, "tries": verdict.tries, "lease_owner": None, "lease_until": None,
              "next_try_at": None if verdict.retry_in is None else now + timedelta(seconds=verdict.retry_in)}
    if verdict.retry_in is None:
        del values["next_try_at"]  # a dead letter keeps its last schedule; replay sets a new one
    if session.execute(_while_leased(session, ctx, [delivery.id], now).values(**values).returning(DeliveryRow.id)).scalar() is None:
        session.rollback()
        log.warning("lease lost before a failure could be recorded ref=%s error=%s", delivery.external_ref, verdict.reason)
        return False
    for key, value in values.items():
        set_committed_value(delivery, key, value)
    if verdict.state == "dead":
        record_event(session, "dead_letter", report_id=delivery.report_id, delivery_id=delivery.id, run_id=ctx.run_id,
                     reason=verdict.reason)
        log.error("dead letter report=%s ref=%s reason=%s", delivery.report.source_id, delivery.external_ref, verdict.reason)
    else:
        record_event(session, f"delivery_{'unknown' if verdict.state == 'unknown' else 'retry'}", report_id=delivery.report_id,
                     delivery_id=delivery.id, run_id=ctx.run_id, error=verdict.reason, next_try_at=values["next_try_at"].isoformat())
        log.warning("delivery %s report=%s ref=%s error=%s", verdict.state, delivery.report.source_id, delivery.external_ref,
                    verdict.reason)
    session.commit()
    return True


def record_not_found(session: Session, ctx: StepContext, delivery: DeliveryRow) -> None:
    """A lookup by reference found no document: the trace shows it was asked before sending again."""
    record_event(session, "looked_up_not_found", report_id=delivery.report_id, delivery_id=delivery.id, run_id=ctx.run_id,
                 target=delivery.target, external_ref=delivery.external_ref)
    session.commit()


def record_delivered(session: Session, ctx: StepContext, done: list[Done]) -> list[Done]:
    """Write the outcome of successful sends in one transaction; empties ``done`` and returns
    what it wrote (a success another worker's lookup had already written is left out)."""
    if not done:
        return []
    now = ctx.clock()
    # Poll may have recorded a later status while the calls were under way: read it afresh.
    fresh = {row.id: row for row in session.execute(
        select(_DELIVERIES.c.id, _DELIVERIES.c.state, _DELIVERIES.c.doc_status, _DELIVERIES.c.doc_status_at)
        .where(bulk.among(session.connection(), _DELIVERIES.c.id, [d.id for d, _, _ in done])))}
    # A call that outlived its lease may have been found by another worker's lookup, which wrote the outcome.
    for delivery, _, _ in done:
        if fresh[delivery.id].state == "delivered":
            log.warning("outcome already written by another worker ref=%s", delivery.external_ref)
    written = [item for item in done if fresh[item[0].id].state != "delivered"]
    done.clear()
    if not written:
        return []
    rated = set(session.scalars(select(RatingRow.report_id).where(
        bulk.among(session.connection(), RatingRow.report_id, list({d.report_id for d, _, _ in written})))))
    _refresh_other_lanes(session, written)
    events = EventBatch(ctx.run_id)
    outcomes: list[dict[str, object]] = []
    statuses: dict[int, str] = {}  # written with the outcomes, by primary key, like them
    for delivery, receipt, recovered in written:
        known = fresh[delivery.id]  # a status poll recorded meanwhile is kept
        doc_status, doc_status_at = (known.doc_status, known.doc_status_at) if known.doc_status is not None else (CanonicalStatus.DELIVERED, now)
        outcome = {"state": "delivered", "document_id": receipt.document_id, "delivered_at": now, "last_error": None,
                   "next_try_at": None, "doc_status": doc_status, "doc_status_at": doc_status_at, "lease_owner": None, "lease_until": None}
        # What the batch reads again (a report's status from its lanes, its duplicates' events); the session ends with it.
        for name in ("state", "doc_status", "document_id"):
            set_committed_value(delivery, name, outcome[name])
        outcomes.append({"delivery_id": delivery.id, **outcome})
        report = delivery.report
        if report.duplicate_count:  # its duplicates follow it, each with an event: the ORM's way
            refresh_status(session, report, ctx.run_id, rated=report.id in rated)
        else:
            status = derive_status(session, report, rated=report.id in rated)
            if status != report.status:
                statuses[report.id] = status
                set_committed_value(report, "status", status)
        events.add("delivered", report_id=delivery.report_id, delivery_id=delivery.id, status=CanonicalStatus.DELIVERED,
                   target=delivery.target, agency=delivery.agency_code, external_ref=delivery.external_ref,
                   document_id=receipt.document_id, created=receipt.created, recovered_by_lookup=recovered)
    bulk.update_by_key(session.connection(), _DELIVERIES, outcomes, key="delivery_id")
    if statuses:
        bulk.update_by_key(session.connection(), _REPORTS, [{"report_id": key, "status": value} for key, value in statuses.items()],
                           key="report_id")
    events.write(session)
    session.commit()
    return written


def _refresh_other_lanes(session: Session, done: list[Done]) -> None:
    """Read afresh the other lanes of reports handled by several agencies: another sender or
    worker may be recording one of them right now, and the report's status depends on all.
    The reports are locked first, so of two writers of one report's lanes the second waits for
    the first's commit and sees its lane as it is (else each could see the other's lane still
    *sending* and both store *routed*)."""
    ours = {d.id for d, _, _ in done}
    others = [sibling for d, _, _ in done for sibling in d.report.deliveries if sibling.id not in ours]
    if not others:
        return
    connection = session.connection()
    shared = sorted({sibling.report_id for sibling in others})
    if bulk.is_postgresql(connection):  # row locks, taken in id order so two writers cannot deadlock
        session.execute(select(_REPORTS.c.id).where(bulk.among(connection, _REPORTS.c.id, shared)).order_by(_REPORTS.c.id)
                        .with_for_update())
    else:  # SQLite locks the whole database for a write: a no-op UPDATE takes that lock now
        session.execute(update(_REPORTS).where(_REPORTS.c.id.in_(shared)).values(status=_REPORTS.c.status))
    now = {row.id: row for row in session.execute(
        select(_DELIVERIES.c.id, _DELIVERIES.c.state, _DELIVERIES.c.doc_status, _DELIVERIES.c.published_at)
        .where(bulk.among(connection, _DELIVERIES.c.id, list({d.id for d in others}))))}
    for sibling in others:
        for key in ("state", "doc_status", "published_at"):
            set_committed_value(sibling, key, getattr(now[sibling.id], key))
