"""Backlog, overdue and satisfaction by day, replayed from the event log: the IOC page's charts.

Each report's time in the backlog and past its deadline is rebuilt from its events, so a
day's figures are what the ledger knew that day, not today's state projected backwards.
Overdue here is the same rule as ``figures.overdue`` (past the deadline, no answer yet),
applied to each moment of the past. Times are in Vietnam time (UTC+7).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from paht_bridge.canonical import VIETNAM_TZ, CanonicalStatus, RatingLevel, vietnam_now
from paht_bridge.ledger.models import DeliveryRow, EventRow


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
