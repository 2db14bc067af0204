"""What an operator can replay, as the IOC page lists it: dead letters (deliveries whose
sending was given up) and quarantined input (items a source sent that could not be taken in).

The replays themselves are operations (``operations.replay``, ``operations.quarantine``).
Texts came from outside systems: phone numbers are masked on the way out, and the
encrypted original payload of a quarantined item is never read here.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paht_bridge.canonical import in_vietnam
from paht_bridge.ledger.models import DeliveryRow, EventRow, QuarantineRow, ReportRow
from paht_bridge.privacy import mask_phones

MAX_RAW = 2000


class DeadLetter(BaseModel):
    delivery_id: int
    deployment: str
    source: str
    source_id: str
    agency_code: str
    agency_name: str
    target: str
    external_ref: str
    tries: int
    reason: str | None
    since: datetime | None  # when it was dead-lettered


def dead_letters(session: Session, limit: int = 500) -> list[DeadLetter]:
    """Every dead delivery (the oldest first), with why and since when."""
    rows = session.execute(select(DeliveryRow, ReportRow.source, ReportRow.source_id).join(ReportRow)
                           .where(DeliveryRow.state == "dead").order_by(DeliveryRow.id).limit(limit)).all()
    since = _last_event_at(session, "dead_letter", [d.id for d, _, _ in rows])
    return [DeadLetter(delivery_id=d.id, deployment=d.deployment, source=source, source_id=source_id, agency_code=d.agency_code,
                       agency_name=d.agency_name, target=d.target, external_ref=d.external_ref, tries=d.tries,
                       reason=mask_phones(d.last_error) if d.last_error else None, since=in_vietnam(since.get(d.id)))
            for d, source, source_id in rows]


def _last_event_at(session: Session, kind: str, delivery_ids: list[int]) -> dict[int, datetime]:
    if not delivery_ids:
        return {}
    return dict(session.execute(select(EventRow.delivery_id, func.max(EventRow.at))
                                .where(EventRow.kind == kind, EventRow.delivery_id.in_(delivery_ids))
                                .group_by(EventRow.delivery_id)).all())


class QuarantineItem(BaseModel):
    id: int
    deployment: str
    source: str
    source_id: str | None
    reason: str
    raw: str  # personal data masked at intake; phone numbers masked again here
    at: datetime
    run_id: str | None
    resolved_at: datetime | None


def quarantine(session: Session, include_resolved: bool = False, limit: int = 500) -> list[QuarantineItem]:
    """Input that could not be taken in, newest first. Never the encrypted original payload."""
    query = select(QuarantineRow).order_by(QuarantineRow.at.desc(), QuarantineRow.id.desc()).limit(limit)
    if not include_resolved:
        query = query.where(QuarantineRow.resolved_at.is_(None))
    return [QuarantineItem(id=q.id, deployment=q.deployment, source=q.source, source_id=q.source_id, reason=mask_phones(q.reason),
                           raw=_clip(mask_phones(q.raw)), at=in_vietnam(q.at), run_id=q.run_id, resolved_at=in_vietnam(q.resolved_at))
            for q in session.scalars(query)]


def _clip(text: str, limit: int = MAX_RAW) -> str:
    return text if len(text) <= limit else text[:limit] + "…"

