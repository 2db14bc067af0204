"""A report's overall status, derived from its deliveries and ratings.

The newest delivery (a re-route supersedes the refused one) speaks for the report.
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


def active_delivery(report: ReportRow) -> DeliveryRow | None:
    return max(report.deliveries, key=lambda d: d.attempt, default=None)


def refresh_status(session: Session, report: ReportRow) -> str:
    """Recompute and store ``report.status``; returns it."""
    if session.scalar(select(exists().where(RatingRow.report_id == report.id))):
        report.status = CanonicalStatus.RATED
        return report.status
    delivery = active_delivery(report)
    if delivery is None:
        report.status = CanonicalStatus.RECEIVED
    elif delivery.published_at is not None:
        report.status = CanonicalStatus.PUBLISHED
    elif delivery.state == "delivered" and delivery.doc_status:
        report.status = delivery.doc_status
    else:
        report.status = _STATE_STATUS.get(delivery.state, CanonicalStatus.ROUTED)
    return report.status
