"""One report as IOC staff read it: every event from receipt to rating, its deliveries and
document references, its duplicate links; and finding a report by the id its app gave it.

No reporter's name or phone: the encrypted columns are never read, and every free text that
came from outside (titles, problems, errors, event details) has its phone numbers masked on
the way out. Times are in Vietnam time (UTC+7).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paht_bridge.canonical import in_vietnam, vietnam_now
from paht_bridge.ledger.figures import overdue
from paht_bridge.ledger.models import DeliveryRow, EventRow, RatingRow, ReportRow
from paht_bridge.privacy import mask_phones, mask_phones_in
from paht_bridge.steps.status import duplicates_of


class DeliveryView(BaseModel):
    attempt: int
    agency_code: str
    agency_name: str
    target: str
    external_ref: str  # the document reference the agency's system knows it by
    document_id: str | None
    state: str
    doc_status: str | None
    deadline: datetime
    delivered_at: datetime | None
    answered_at: datetime | None
    published_at: datetime | None
    overdue: bool
    last_error: str | None


class EventView(BaseModel):
    at: datetime
    kind: str
    status: str | None
    run_id: str | None
    document_ref: str | None  # external reference or document id, when the event names one
    detail: dict


class ReportRef(BaseModel):
    source: str
    source_id: str


class ReportDetail(BaseModel):
    source: str
    source_id: str
    deployment: str
    title: str
    category: str
    channel: str
    locality: str | None
    status: str
    created_at: datetime
    received_at: datetime
    problem: str | None
    rating: str | None
    deliveries: list[DeliveryView]
    events: list[EventView]
    #: A duplicate (the same problem reported earlier by someone else): the report whose document it follows.
    linked_to: ReportRef | None = None
    #: A primary: the reports linked to it, which follow its document.
    duplicates: list[ReportRef] = []
    #: A duplicate whose citizen was answered with the outcome of the report it is linked to:
    #: its link can no longer be undone.
    duplicate_answered_at: datetime | None = None


def matching_reports(session: Session, source_id: str, source: str | None = None) -> list[ReportRow]:
    """By the id the citizen app gave it (case and surrounding spaces do not matter); two apps may share an id."""
    wanted = source_id.strip()
    query = select(ReportRow).where(func.upper(ReportRow.source_id) == wanted.upper())
    if source:
        query = query.where(ReportRow.source == source)
    return list(session.scalars(query.order_by(ReportRow.source, ReportRow.id)))


def similar_report_ids(session: Session, text: str, limit: int = 10) -> list[str]:
    """Ids containing ``text``, for a search that found nothing exact."""
    needle = text.strip().upper()
    if not needle:
        return []
    return list(session.scalars(select(ReportRow.source_id).where(func.upper(ReportRow.source_id).contains(needle, autoescape=True))
                                .order_by(ReportRow.source_id).limit(limit)))


def report_detail(session: Session, source_id: str, source: str | None = None, now: datetime | None = None) -> ReportDetail | None:
    """Every event of one report (oldest first), its deliveries and document references. No personal data.

    When two citizen apps share the id and no ``source`` is given, the first app's report
    (by name); ``matching_reports`` tells the caller there is a choice.
    """
    found = matching_reports(session, source_id, source)
    if not found:
        return None
    report = found[0]
    now = now or vietnam_now()
    events = session.scalars(select(EventRow).where(EventRow.report_id == report.id).order_by(EventRow.at, EventRow.id))
    refs = {d.id: d.external_ref for d in report.deliveries}
    rating = session.scalar(select(RatingRow.level).where(RatingRow.report_id == report.id))
    return ReportDetail(
        source=report.source, source_id=report.source_id, deployment=report.deployment, title=mask_phones(report.title),
        category=report.category, channel=report.channel, locality=report.locality, status=report.status,
        created_at=in_vietnam(report.created_at), received_at=in_vietnam(report.received_at),
        problem=mask_phones(report.problem) if report.problem else None, rating=rating,
        deliveries=[_delivery_view(d, now) for d in report.deliveries],
        events=[EventView(at=in_vietnam(e.at), kind=e.kind, status=e.status, run_id=e.run_id,
                          document_ref=_document_ref(e, refs), detail=mask_phones_in(e.detail or {}))
                for e in events],
        **duplicate_links(session, report),
        duplicate_answered_at=in_vietnam(report.published_at) if report.duplicate_of is not None else None,
    )


def duplicate_links(session: Session, report: ReportRow) -> dict:
    """``linked_to`` and ``duplicates`` of a report, as ``ReportDetail`` has them."""
    primary = session.get(ReportRow, report.duplicate_of) if report.duplicate_of is not None else None
    return {"linked_to": ReportRef(source=primary.source, source_id=primary.source_id) if primary else None,
            "duplicates": [ReportRef(source=d.source, source_id=d.source_id) for d in duplicates_of(session, report)]}


def _document_ref(event: EventRow, refs: dict[int, str]) -> str | None:
    detail = event.detail or {}
    parts = [detail.get("external_ref") or (refs.get(event.delivery_id) if event.delivery_id else None), detail.get("document_id")]
    return " · ".join(str(p) for p in dict.fromkeys(parts) if p) or None


def _delivery_view(d: DeliveryRow, now: datetime) -> DeliveryView:
    return DeliveryView(
        attempt=d.attempt, agency_code=d.agency_code, agency_name=d.agency_name, target=d.target, external_ref=d.external_ref,
        document_id=d.document_id, state=d.state, doc_status=d.doc_status, deadline=in_vietnam(d.deadline),
        delivered_at=in_vietnam(d.delivered_at), answered_at=in_vietnam(d.answered_at), published_at=in_vietnam(d.published_at),
        overdue=overdue(d, now),
        last_error=mask_phones(d.last_error) if d.last_error else None,
    )
