"""What the IOC page shows, read from the ledger: pure queries returning pydantic models.

Kept apart from the Airflow plugin so the figures can be tested on a plain session and
reused by a CLI. Nothing here decrypts a reporter's name or phone, and every free text that
came from outside (titles, errors, reasons, raw payloads) passes ``mask_phones`` on its way
out. Times are in Vietnam time (UTC+7).

A report counts for the agency that holds it now (its newest delivery), as in
``stats.agency_stats``; figures per locality use the report's 2025 ward.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from paht_bridge.ledger.models import DeliveryRow, EventRow, QuarantineRow, RatingRow, ReportRow, RunRow
from paht_bridge.steps.status import active_delivery, duplicates_of
from paht_bridge.canonical import VIETNAM_TZ, CanonicalStatus, RatingLevel, vietnam_now
from paht_bridge.privacy import mask_phones

#: Document statuses of a report at its agency and not answered yet ("đang xử lý").
IN_PROGRESS = frozenset({CanonicalStatus.DELIVERED, CanonicalStatus.ACCEPTED, CanonicalStatus.ASSIGNED, CanonicalStatus.IN_PROGRESS})
NO_AGENCY = ("-", "(chờ IOC xem xét)")
NO_LOCALITY = "(chưa xác định địa bàn)"
MAX_RAW = 2000


def _vn(value: datetime | None) -> datetime | None:
    return value.astimezone(VIETNAM_TZ) if value else None


def _masked(value: object) -> object:
    """Phone numbers out of any text in an event's detail (which holds outside text: reasons, errors)."""
    if isinstance(value, str):
        return mask_phones(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


# -- sync runs ----------------------------------------------------------------------------


class SyncRun(BaseModel):
    run_id: str
    dag_id: str | None
    step: str
    deployment: str
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None
    state: str
    counts: dict[str, int]
    errors: list[str]


class DagRuns(BaseModel):
    dag_id: str
    last_state: str
    last_started_at: datetime
    last_success_at: datetime | None
    failed_recently: int  # runs that failed or partly failed among those shown
    runs: list[SyncRun]


def recent_runs(session: Session, per_dag: int = 10) -> list[DagRuns]:
    """The newest step runs of every DAG, newest first."""
    ranked = (select(RunRow.id, func.row_number().over(partition_by=RunRow.dag_id, order_by=(RunRow.started_at.desc(), RunRow.id.desc()))
                     .label("rank")).subquery())
    rows = session.scalars(select(RunRow).join(ranked, ranked.c.id == RunRow.id).where(ranked.c.rank <= per_dag)
                           .order_by(RunRow.dag_id, RunRow.started_at.desc(), RunRow.id.desc()))
    by_dag: dict[str, list[SyncRun]] = defaultdict(list)
    for row in rows:
        seconds = (row.finished_at - row.started_at).total_seconds() if row.finished_at else None
        by_dag[row.dag_id or "(không rõ DAG)"].append(SyncRun(
            run_id=row.run_id, dag_id=row.dag_id, step=row.step, deployment=row.deployment, started_at=_vn(row.started_at),
            finished_at=_vn(row.finished_at), seconds=seconds, state=row.state,
            counts={str(k): int(v) for k, v in (row.counts or {}).items()}, errors=[mask_phones(str(e)) for e in row.errors or []]))
    last_success = dict(session.execute(select(RunRow.dag_id, func.max(RunRow.started_at)).where(RunRow.state == "success")
                                        .group_by(RunRow.dag_id)).all())
    return [DagRuns(dag_id=dag_id, last_state=runs[0].state, last_started_at=runs[0].started_at,
                    last_success_at=_vn(last_success.get(runs[0].dag_id)),
                    failed_recently=sum(r.state in ("failed", "partial") for r in runs), runs=runs)
            for dag_id, runs in sorted(by_dag.items())]


# -- figures per agency and per locality ----------------------------------------------------


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
        answered = delivery.answered_at is not None and delivery.doc_status == CanonicalStatus.ANSWERED
        f.delivered += delivery.state == "delivered"
        f.in_progress += delivery.state == "delivered" and not answered and delivery.doc_status in IN_PROGRESS
        f.dead_lettered += delivery.state == "dead"
        f.overdue += not answered and delivery.deadline < now
        if answered:
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


# -- backlog, overdue and satisfaction by day -------------------------------------------------


class DayPoint(BaseModel):
    day: date
    backlog_end: int  # reports received and not answered at the end of the day
    backlog_peak: int  # the most at any moment of the day
    overdue_end: int  # of those, past their deadline
    overdue_peak: int
    rated_that_day: int
    satisfied_that_day: int
    satisfaction_rate: float | None  # all ratings up to the end of the day


_Interval = tuple[datetime, datetime | None]  # [start, end); end None = still open


def _open_intervals(events: list[EventRow], deadlines: dict[int, datetime]) -> tuple[list[_Interval], list[_Interval]]:
    """One report's time in the backlog and past its deadline, replayed from its events.

    Received opens it, an answer closes it, a re-route after a refusal opens it again with
    the new delivery's deadline.
    """
    backlog: list[_Interval] = []
    overdue: list[_Interval] = []
    start: datetime | None = None
    deadline: datetime | None = None

    def close(at: datetime) -> None:
        nonlocal start
        if start is not None:
            backlog.append((start, at))
            if deadline is not None and max(start, deadline) < at:
                overdue.append((max(start, deadline), at))
        start = None

    for event in events:
        if event.kind == "received" and start is None:
            start = event.at
        elif event.kind in ("routed", "rerouted") and event.delivery_id in deadlines:
            if event.kind == "rerouted":
                close(event.at)
                start = event.at
            deadline = deadlines[event.delivery_id]
        elif event.kind == "status" and event.status == CanonicalStatus.ANSWERED:
            close(event.at)
    if start is not None:
        backlog.append((start, None))
        if deadline is not None:
            overdue.append((max(start, deadline), None))
    return backlog, overdue


def _per_day(intervals: Iterable[_Interval], days: list[date]) -> list[tuple[int, int]]:
    """(count at the end of the day, peak during the day) for each day, by a sweep over change points."""
    changes: list[tuple[datetime, int]] = []
    for start, end in intervals:
        changes.append((start, 1))
        if end is not None:
            changes.append((end, -1))
    changes.sort(key=lambda c: (c[0], c[1]))  # a close before an open at the same instant
    out, count, i = [], 0, 0
    for day in days:
        day_start = datetime.combine(day, time(), VIETNAM_TZ)
        day_end = day_start + timedelta(days=1)
        while i < len(changes) and changes[i][0] < day_start:
            count += changes[i][1]
            i += 1
        peak = count
        while i < len(changes) and changes[i][0] < day_end:
            count += changes[i][1]
            peak = max(peak, count)
            i += 1
        out.append((count, peak))
    return out


def timeline(session: Session, days: int = 30, now: datetime | None = None) -> list[DayPoint]:
    """Backlog, overdue and satisfaction per day (Vietnam time), from the event log.

    Covers the days from the first event (at most ``days`` back) to today, empty days
    included so the chart's time axis is honest.
    """
    now = (now or vietnam_now()).astimezone(VIETNAM_TZ)
    kinds = ("received", "routed", "rerouted", "status", "rated")
    events = session.scalars(select(EventRow).where(EventRow.kind.in_(kinds), EventRow.report_id.is_not(None))
                             .order_by(EventRow.report_id, EventRow.at, EventRow.id)).all()
    if not events:
        return []
    first_day = min(e.at for e in events).astimezone(VIETNAM_TZ).date()
    today = now.date()
    first_day = max(first_day, today - timedelta(days=days - 1))
    day_list = [first_day + timedelta(days=n) for n in range((today - first_day).days + 1)]
    deadlines = dict(session.execute(select(DeliveryRow.id, DeliveryRow.deadline)).all())
    backlog: list[_Interval] = []
    overdue: list[_Interval] = []
    by_report: dict[int, list[EventRow]] = defaultdict(list)
    for event in events:
        by_report[event.report_id].append(event)
    for report_events in by_report.values():
        b, o = _open_intervals(report_events, deadlines)
        backlog += b
        overdue += o
    ratings = defaultdict(lambda: [0, 0])  # day -> [rated, satisfied]
    for event in events:
        if event.kind == "rated":
            tally = ratings[event.at.astimezone(VIETNAM_TZ).date()]
            tally[0] += 1
            tally[1] += (event.detail or {}).get("level") == RatingLevel.SATISFIED
    rated_before = sum(v[0] for d, v in ratings.items() if d < first_day)
    satisfied_before = sum(v[1] for d, v in ratings.items() if d < first_day)
    points = []
    for day, (b_end, b_peak), (o_end, o_peak) in zip(day_list, _per_day(backlog, day_list), _per_day(overdue, day_list)):
        rated, satisfied = ratings.get(day, (0, 0))
        rated_before += rated
        satisfied_before += satisfied
        points.append(DayPoint(day=day, backlog_end=b_end, backlog_peak=b_peak, overdue_end=o_end, overdue_peak=o_peak,
                               rated_that_day=rated, satisfied_that_day=satisfied,
                               satisfaction_rate=satisfied_before / rated_before if rated_before else None))
    return points


# -- one report's whole trace ----------------------------------------------------------------


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
        created_at=_vn(report.created_at), received_at=_vn(report.received_at),
        problem=mask_phones(report.problem) if report.problem else None, rating=rating,
        deliveries=[_delivery_view(d, now) for d in report.deliveries],
        events=[EventView(at=_vn(e.at), kind=e.kind, status=e.status, run_id=e.run_id,
                          document_ref=_document_ref(e, refs), detail=_masked(e.detail or {}))
                for e in events],
        **duplicate_links(session, report),
        duplicate_answered_at=_vn(report.published_at) if report.duplicate_of is not None else None,
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
    answered = d.answered_at is not None and d.doc_status == CanonicalStatus.ANSWERED
    return DeliveryView(
        attempt=d.attempt, agency_code=d.agency_code, agency_name=d.agency_name, target=d.target, external_ref=d.external_ref,
        document_id=d.document_id, state=d.state, doc_status=d.doc_status, deadline=_vn(d.deadline),
        delivered_at=_vn(d.delivered_at), answered_at=_vn(d.answered_at), published_at=_vn(d.published_at),
        overdue=not answered and d.rerouted_at is None and d.deadline < now,
        last_error=mask_phones(d.last_error) if d.last_error else None,
    )


# -- dead letters and quarantine --------------------------------------------------------------


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
    rows = session.execute(select(DeliveryRow, ReportRow.source, ReportRow.source_id).join(ReportRow)
                           .where(DeliveryRow.state == "dead").order_by(DeliveryRow.id).limit(limit)).all()
    since = _last_event_at(session, "dead_letter", [d.id for d, _, _ in rows])
    return [DeadLetter(delivery_id=d.id, deployment=d.deployment, source=source, source_id=source_id, agency_code=d.agency_code,
                       agency_name=d.agency_name, target=d.target, external_ref=d.external_ref, tries=d.tries,
                       reason=mask_phones(d.last_error) if d.last_error else None, since=_vn(since.get(d.id)))
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
                           raw=_clip(mask_phones(q.raw)), at=_vn(q.at), run_id=q.run_id, resolved_at=_vn(q.resolved_at))
            for q in session.scalars(query)]


def _clip(text: str, limit: int = MAX_RAW) -> str:
    return text if len(text) <= limit else text[:limit] + "…"

