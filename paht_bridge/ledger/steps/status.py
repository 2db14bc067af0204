"""A report's overall status, derived from its deliveries and ratings.

Deliveries run in lanes: lane 0 is the lead agency, others co-handle. In each lane the
newest attempt (a re-route supersedes the refused one) is the one that counts. The lead
lane speaks for the report, but a report is never shown as delivered while any lane is not.
"""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from paht_bridge.ledger.models import DeliveryRow, RatingRow, ReportRow
from paht_bridge.mappings.canonical import CanonicalStatus

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


def refresh_status(session: Session, report: ReportRow) -> str:
    """Recompute and store ``report.status``; returns it."""
    if session.scalar(select(exists().where(RatingRow.report_id == report.id))):
        report.status = CanonicalStatus.RATED
        return report.status
    heads = lane_heads(report)
    delivery = heads[0] if heads else None
    if delivery is None:
        report.status = CanonicalStatus.RECEIVED
    elif any(head.state != "delivered" for head in heads):
        report.status = CanonicalStatus.ROUTED  # partial delivery is not delivery
    elif delivery.published_at is not None:
        report.status = CanonicalStatus.PUBLISHED
    elif delivery.state == "delivered" and delivery.doc_status:
        report.status = delivery.doc_status
    else:
        report.status = _STATE_STATUS.get(delivery.state, CanonicalStatus.ROUTED)
    return report.status
