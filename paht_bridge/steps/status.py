"""A report's overall status, derived from its deliveries and ratings.

Deliveries run in lanes: lane 0 is the lead agency, others co-handle. In each lane the
newest attempt (a re-route supersedes the refused one) is the one that counts. The lead
lane speaks for the report, but a report is never shown as delivered while any lane is not.

A duplicate (linked to an earlier report of the same problem) has no deliveries: it shows
its primary's document status until its own answer is published, then its own publication
and rating. Refreshing a primary refreshes its duplicates, so every step that moves a
primary (deliver, poll, a re-route) moves them too, each change an event on their trace.
"""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from paht_bridge.ledger.models import DeliveryRow, RatingRow, ReportRow
from paht_bridge.ledger.store import record_event
from paht_bridge.canonical import CanonicalStatus

_STATE_STATUS = {
    "pending": CanonicalStatus.ROUTED,
    "sending": CanonicalStatus.ROUTED,
    "unknown": CanonicalStatus.ROUTED,
    "dead": CanonicalStatus.ROUTED,
    "delivered": CanonicalStatus.DELIVERED,
}


def lane_heads(report: ReportRow) -> list[DeliveryRow]:
    """The newest delivery of each lane, lead lane first."""
    heads: dict[int, DeliveryRow] = {}
    for delivery in report.deliveries:
        if delivery.lane not in heads or delivery.attempt > heads[delivery.lane].attempt:
            heads[delivery.lane] = delivery
    return [heads[lane] for lane in sorted(heads)]


def active_delivery(report: ReportRow) -> DeliveryRow | None:
    """The lead agency's current delivery."""
    heads = lane_heads(report)
    return heads[0] if heads else None


def refresh_status(session: Session, report: ReportRow, run_id: str | None = None, rated: bool | None = None) -> str:
    """Recompute and store ``report.status`` (and its duplicates'); returns it.

    ``run_id`` goes on the events of duplicates whose status moves with this report; ``rated``:
    whether the report has a rating, when the caller has read it for a whole batch (else one query)."""
    report.status = derive_status(session, report, rated)
    if report.duplicate_count:
        _follow(session, report, run_id)
    return report.status


def derive_status(session: Session, report: ReportRow, rated: bool | None = None) -> str:
    """What ``refresh_status`` would store on ``report`` itself (its duplicates aside), without storing it."""
    if rated is None:
        rated = bool(session.scalar(select(exists().where(RatingRow.report_id == report.id))))
    if rated:
        return CanonicalStatus.RATED
    if report.duplicate_of is not None:
        primary = session.get(ReportRow, report.duplicate_of)
        return CanonicalStatus.PUBLISHED if report.published_at is not None else _document_status(primary, own=False)
    return _document_status(report, own=True)


def _document_status(report: ReportRow, own: bool) -> str:
    """The status the report's deliveries give; ``own=False``: as seen by a duplicate, for whom
    the primary's publication is not its own."""
    heads = lane_heads(report)
    delivery = heads[0] if heads else None
    if delivery is None:
        return CanonicalStatus.RECEIVED
    if any(head.state != "delivered" for head in heads):
        return CanonicalStatus.ROUTED  # partial delivery is not delivery
    if own and delivery.published_at is not None:
        return CanonicalStatus.PUBLISHED
    if delivery.state == "delivered" and delivery.doc_status:
        return delivery.doc_status
    return _STATE_STATUS.get(delivery.state, CanonicalStatus.ROUTED)


def duplicates_of(session: Session, primary: ReportRow) -> list[ReportRow]:
    """The reports linked to ``primary``, oldest first (no query when it has none)."""
    if not primary.duplicate_count:
        return []
    return list(session.scalars(select(ReportRow).where(ReportRow.duplicate_of == primary.id).order_by(ReportRow.id)))


def _follow(session: Session, primary: ReportRow, run_id: str | None) -> None:
    delivery = active_delivery(primary)
    for duplicate in duplicates_of(session, primary):
        before = duplicate.status
        if refresh_status(session, duplicate) != before:
            record_event(session, "status", report_id=duplicate.id, delivery_id=None, run_id=run_id, status=duplicate.status,
                         followed=f"{primary.source}:{primary.source_id}", agency=delivery.agency_code if delivery else None,
                         external_ref=delivery.external_ref if delivery else None,
                         document_id=delivery.document_id if delivery else None)
