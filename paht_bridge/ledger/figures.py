"""Per-agency and per-locality figures on the IOC page, read from the ledger.

A report counts for the agency that holds it now (its newest delivery), as in
``stats.agency_stats``; figures per locality use the report's 2025 ward.
"""

from __future__ import annotations

import statistics
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from paht_bridge.canonical import VIETNAM_TZ, CanonicalStatus, RatingLevel, vietnam_now
from paht_bridge.ledger.models import DeliveryRow, RatingRow, ReportRow
from paht_bridge.steps.status import active_delivery

#: Document statuses of a report at its agency and not answered yet ("đang xử lý").
IN_PROGRESS = frozenset({CanonicalStatus.DELIVERED, CanonicalStatus.ACCEPTED, CanonicalStatus.ASSIGNED, CanonicalStatus.IN_PROGRESS})
NO_AGENCY = ("-", "(chờ IOC xem xét)")
NO_LOCALITY = "(chưa xác định địa bàn)"


def answered(delivery: DeliveryRow) -> bool:
    """The agency answered the document (``answered_at`` alone is also set by a refusal)."""
    return delivery.answered_at is not None and delivery.doc_status == CanonicalStatus.ANSWERED


def overdue(delivery: DeliveryRow, now: datetime) -> bool:
    """Past its deadline without an answer, whatever holds it up; a delivery re-routed elsewhere no longer is."""
    return not answered(delivery) and delivery.rerouted_at is None and delivery.deadline < now


class Figures(BaseModel):
    received: int = 0
    delivered: int = 0
    in_progress: int = 0
    answered: int = 0
    overdue: int = 0
    dead_lettered: int = 0
    rated: int = 0
    satisfied: int = 0
    satisfaction_rate: float | None = None  # satisfied / rated
    median_days_to_answer: float | None = None  # from the citizen's report to the agency's answer


class AgencyFigures(Figures):
    deployment: str
    agency_code: str
    agency_name: str


class LocalityFigures(Figures):
    deployment: str
    locality: str


class FigureTables(BaseModel):
    agencies: list[AgencyFigures]
    localities: list[LocalityFigures]
    total: Figures
    now: datetime


class _Tally:
    """Counts one group's reports; turned into a ``Figures`` at the end."""

    def __init__(self) -> None:
        self.figures = Figures()
        self.days: list[float] = []

    def add(self, report: ReportRow, delivery: DeliveryRow | None, level: str | None, now: datetime) -> None:
        f = self.figures
        f.received += 1
        if delivery is None:
            return
        was_answered = answered(delivery)
        f.delivered += delivery.state == "delivered"
        f.in_progress += delivery.state == "delivered" and not was_answered and delivery.doc_status in IN_PROGRESS
        f.dead_lettered += delivery.state == "dead"
        f.overdue += overdue(delivery, now)
        if was_answered:
            f.answered += 1
            # From the citizen's report; a source clock ahead of ours cannot make it later than our receipt.
            reported = min(report.created_at, report.received_at)
            self.days.append((delivery.answered_at - reported).total_seconds() / 86400)
        if level is not None:
            f.rated += 1
            f.satisfied += level == RatingLevel.SATISFIED

    def done(self) -> Figures:
        f = self.figures
        f.satisfaction_rate = f.satisfied / f.rated if f.rated else None
        f.median_days_to_answer = round(statistics.median(self.days), 2) if self.days else None
        return f


def figures(session: Session, deployment: str | None = None, now: datetime | None = None) -> FigureTables:
    """Received, delivered, in progress, answered, overdue, dead-lettered and satisfaction, per agency and locality.

    Overdue: the report's active delivery is past its deadline and not answered (whatever
    its state: pending, dead and in-progress deliveries all keep the citizen waiting).
    In progress: delivered to the agency, not answered, not refused or recalled.
    """
    now = now or vietnam_now()
    query = select(ReportRow).options(selectinload(ReportRow.deliveries)).order_by(ReportRow.id)
    if deployment:
        query = query.where(ReportRow.deployment == deployment)
    levels = dict(session.execute(select(RatingRow.report_id, RatingRow.level)).all())
    agencies: dict[tuple[str, str], tuple[str, _Tally]] = {}
    localities: dict[tuple[str, str], _Tally] = {}
    total = _Tally()
    for report in session.scalars(query):
        # A linked duplicate has no delivery: it waits on (and counts for) its primary's agency.
        delivery = active_delivery(session.get(ReportRow, report.duplicate_of) if report.duplicate_of is not None else report)
        code, name = (delivery.agency_code, delivery.agency_name) if delivery else NO_AGENCY
        level = levels.get(report.id)
        agencies.setdefault((report.deployment, code), (name, _Tally()))[1].add(report, delivery, level, now)
        localities.setdefault((report.deployment, report.locality or NO_LOCALITY), _Tally()).add(report, delivery, level, now)
        total.add(report, delivery, level, now)
    return FigureTables(
        agencies=[AgencyFigures(deployment=dep, agency_code=code, agency_name=name, **tally.done().model_dump())
                  for (dep, code), (name, tally) in sorted(agencies.items(), key=lambda i: (i[0][0], i[0][1] == NO_AGENCY[0], i[0][1]))],
        localities=[LocalityFigures(deployment=dep, locality=loc, **tally.done().model_dump())
                    for (dep, loc), tally in sorted(localities.items())],
        total=total.done(), now=now.astimezone(VIETNAM_TZ),
    )
