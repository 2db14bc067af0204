"""Backfill: take in a date range of reports the ledger lacks, after an outage or a new deployment.

Each source of the deployment is read again from its beginning (no cursor), and every
report created in the range (Vietnam time, both days included) goes through ingest's own
``take_in``: a report already in the ledger is a repeat, a new one is received and routed
as if it had just arrived. The stored cursor is neither read nor moved, so the regular
ingest carries on where it was. Like ingest, each page commits in one transaction.

Bad items are quarantined as ingest does, unless the ledger already holds that report or
an unresolved quarantine row for it (a second backfill adds nothing). A bad item whose
creation date cannot be read is taken to be in the range, so IOC staff see it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from paht_bridge.connectors.errors import ConnectorError
from paht_bridge.ledger.models import QuarantineRow, ReportRow
from paht_bridge.steps.context import StepContext, StepResult, log, reraise_after_others
from paht_bridge.steps.ingest import take_in
from paht_bridge.ledger.store import quarantine
from paht_bridge.canonical import VIETNAM_TZ, Quarantined


class PageDone(BaseModel):
    """One source page handled: what a progress display is told."""

    source: str
    reports: int  # items on the page, in the range or not
    quarantined: int


Progress = Callable[[PageDone], None]


def backfill(ctx: StepContext, start: date, end: date, progress: Progress | None = None) -> StepResult:
    """Take in every report of ``ctx.mapping``'s sources created from ``start`` to ``end``.

    Counts: ``received`` / ``needs_review`` (taken in), ``repeated`` / ``updated`` (already
    there), ``quarantined``, ``already_quarantined``, ``outside_range``."""
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    result = StepResult(deployment=ctx.mapping.deployment, step="backfill")
    failures: list[ConnectorError] = []
    for source in ctx.mapping.sources:
        try:
            _backfill_source(ctx, source.name, source.page_size, start, end, result, progress)
        except ConnectorError as error:  # one broken app must not hold up the others
            failures.append(error)
            result.errors.append(str(error))
            log.error("backfill stopped for deployment=%s source=%s error=%s", ctx.mapping.deployment, source.name, error)
    if failures:
        reraise_after_others(failures, result)
    return result


def _backfill_source(ctx: StepContext, name: str, page_size: int, start: date, end: date,
                     result: StepResult, progress: Progress | None) -> None:
    client = ctx.connectors.source(name)
    for page in client.reports_since(None, page_size=page_size):
        with ctx.sessions.begin() as session:
            for bad in page.quarantined:
                result.add(_quarantine_once(session, ctx, bad, start, end))
            for report in page.items:
                if start <= report.created_at.astimezone(VIETNAM_TZ).date() <= end:
                    result.add(take_in(session, ctx, report))
                else:
                    result.add("outside_range")
        log.info("backfill page deployment=%s source=%s items=%d quarantined=%d",
                 ctx.mapping.deployment, name, len(page.items), len(page.quarantined))
        if progress is not None:
            progress(PageDone(source=name, reports=len(page.items), quarantined=len(page.quarantined)))


def _quarantine_once(session: Session, ctx: StepContext, bad: Quarantined, start: date, end: date) -> str:
    created = _created_day(bad.raw)
    if created is not None and not start <= created <= end:
        return "outside_range"
    if bad.source_id is not None:
        if session.scalar(select(ReportRow.id).where(ReportRow.source == bad.source, ReportRow.source_id == bad.source_id)):
            return "repeated"  # taken in before (e.g. replayed after a fix); the ledger's copy stands
        if session.scalar(select(QuarantineRow.id).where(
            QuarantineRow.source == bad.source, QuarantineRow.source_id == bad.source_id, QuarantineRow.resolved_at.is_(None),
        ).limit(1)):
            return "already_quarantined"
    quarantine(session, ctx.mapping.deployment, bad, ctx.run_id)
    return "quarantined"


def _created_day(raw: str) -> date | None:
    """The creation day (Vietnam time) of a bad item, read from its masked copy when it can be."""
    try:
        created = datetime.fromisoformat(json.loads(raw)["created_at"])
    except (ValueError, TypeError, KeyError):
        return None
    return created.astimezone(VIETNAM_TZ).date() if created.tzinfo else created.date()
