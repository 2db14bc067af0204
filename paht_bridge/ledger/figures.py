"""Per-agency and per-locality figures: the one definition of each, read by the IOC page and ``paht stats``.

Every report counts once, for the agency holding it now: the agency of its lead lane's
newest delivery (a re-route after a refusal moves it to the new agency). A linked duplicate
has no delivery of its own: it counts for, and with the delivery of, the report it follows.
A report no agency holds (the rules could not route it) counts under ``NO_AGENCY``. Figures
per locality use the report's 2025 ward. Read from the ledger only, never from Airflow.

Each figure's docstring in ``Figures`` says exactly what it counts; ``answered`` and
``overdue`` below are also what a report's own page says of each delivery.
"""

from __future__ import annotations

import statistics
from datetime import datetime

from pydantic import BaseModel, ConfigDict
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
    """Counts of reports (each report at most once per figure), for one agency, locality or all."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    received: int = 0
    """Every report taken into the ledger, whatever became of it since (routed, waiting for review, linked as a duplicate)."""
    delivered: int = 0
    """A document was created for it in the agency's system (the holding delivery is sent), answered or not."""
    in_progress: int = 0
    """Delivered, and by what the agency's system last said neither answered, refused nor recalled yet (document status
    delivered, accepted, assigned or in progress)."""
    answered: int = 0
    """The agency answered it (the holding delivery's document status is answered)."""
    published: int = 0
    """The answer was published to the citizen in their app (a linked duplicate: its own publication, not its primary's)."""
    overdue: int = 0
    """Past the holding delivery's deadline without an answer, whatever holds it up: waiting to be sent, dead-lettered,
    at the agency, refused and waiting for review."""
    dead_lettered: int = 0
    """Sending the holding delivery was given up after its retries: it waits for an operator's replay."""
    needs_review: int = 0
    """Waits for a decision at the IOC review desk: the rules could not route it, or the agency it was re-routed to
    refused it too (the report carries the reason)."""
    rated: int = 0
    """The citizen rated the answer."""
    satisfied: int = 0
    """Of those rated, rated satisfied."""
    satisfaction_rate: float | None = None
    """satisfied / rated; none while nothing is rated."""
    median_days_to_answer: float | None = None
    """Median time from the citizen's report to the agency's answer, in days, over the answered ones."""


class AgencyFigures(Figures):
    deployment: str
    agency_code: str
    agency_name: str


class LocalityFigures(Figures):
    deployment: str
    locality: str


class FigureTables(BaseModel):
    agencies: list[AgencyFigures]  # waiting for review (``NO_AGENCY``) last in each deployment
    localities: list[LocalityFigures]
    total: Figures
    now: datetime  # what ``overdue`` was measured against, in Vietnam time


class _Tally:
    """Counts one group's reports; turned into a ``Figures`` at the end."""

    def __init__(self) -> None:
        self.figures = Figures()
        self.days: list[float] = []

    def add(self, report: ReportRow, delivery: DeliveryRow | None, level: str | None, now: datetime) -> None:
        f = self.figures
        f.received += 1
        f.needs_review += delivery is None or report.problem is not None
        if report.duplicate_of is not None:
            f.published += report.published_at is not None
        else:
            f.published += delivery is not None and delivery.published_at is not None
        if level is not None:
            f.rated += 1
            f.satisfied += level == RatingLevel.SATISFIED
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

    def done(self) -> Figures:
        f = self.figures
        f.satisfaction_rate = f.satisfied / f.rated if f.rated else None
        f.median_days_to_answer = round(statistics.median(self.days), 2) if self.days else None
        return f


def figures(session: Session, deployment: str | None = None, now: datetime | None = None) -> FigureTables:
    """Every figure per agency, per locality and in total, for one deployment or all."""
    now = now or vietnam_now()
    query = select(ReportRow).options(selectinload(ReportRow.deliveries)).order_by(ReportRow.id)
    if deployment:
        query = query.where(ReportRow.deployment == deployment)
    levels = dict(session.execute(select(RatingRow.report_id, RatingRow.level)).all())
    agencies: dict[tuple[str, str], tuple[str, _Tally]] = {}
    localities: dict[tuple[str, str], _Tally] = {}
    total = _Tally()
    for report in session.scalars(query):
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
