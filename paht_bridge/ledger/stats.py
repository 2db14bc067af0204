"""A report's trace for the command line, and how many reports are in each status; read
from the ledger (never from Airflow). The per-agency figures are ``ledger.figures``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from paht_bridge.ledger.models import EventRow, QuarantineRow, ReportRow
from paht_bridge.canonical import VIETNAM_TZ


class TraceEvent(BaseModel):
    at: datetime
    kind: str
    status: str | None
    run_id: str | None
    detail: dict


class Trace(BaseModel):
    report_key: str
    deployment: str
    status: str
    title: str
    locality: str | None
    events: list[TraceEvent]


def trace(session: Session, source_id: str, source: str | None = None) -> Trace | None:
    """Every event of one report, oldest first, in Vietnam time. No personal data."""
    query = select(ReportRow).where(ReportRow.source_id == source_id)
    if source:
        query = query.where(ReportRow.source == source)
    report = session.scalars(query).first()
    if report is None:
        return _quarantine_trace(session, source_id, source)
    events = session.scalars(select(EventRow).where(EventRow.report_id == report.id).order_by(EventRow.at, EventRow.id))
    return Trace(
        report_key=f"{report.source}:{report.source_id}", deployment=report.deployment, status=report.status,
        title=report.title, locality=report.locality,
        events=[TraceEvent(at=e.at.astimezone(VIETNAM_TZ), kind=e.kind, status=e.status, run_id=e.run_id, detail=e.detail or {})
                for e in events],
    )


def status_counts(session: Session) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for deployment, status in session.execute(select(ReportRow.deployment, ReportRow.status)):
        counts[deployment][status] += 1
    return {k: dict(v) for k, v in counts.items()}


def _quarantine_trace(session: Session, source_id: str, source: str | None) -> Trace | None:
    """A report that never got in still has a trace: why it was quarantined, and any replay."""
    query = select(QuarantineRow).where(QuarantineRow.source_id == source_id).order_by(QuarantineRow.at)
    if source:
        query = query.where(QuarantineRow.source == source)
    rows = session.scalars(query).all()
    if not rows:
        return None
    events = [TraceEvent(at=row.at.astimezone(VIETNAM_TZ), kind="quarantined", status=None, run_id=row.run_id,
                         detail={"reason": row.reason, "quarantine_id": row.id,
                                 "replayed_at": row.resolved_at.isoformat() if row.resolved_at else None})
              for row in rows]
    last = rows[-1]
    return Trace(report_key=f"{last.source}:{source_id}", deployment=last.deployment,
                 status="replayed" if last.resolved_at else "quarantined", title="(không nhận được: dữ liệu lỗi)",
                 locality=None, events=events)
