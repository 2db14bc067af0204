"""Ratings: take citizens' ratings from each source and pass them on to the agency.

A rating is stored once (keyed by source and rating id) with its cursor in the same
transaction; pushing it to the document system is a separate, retryable step. A duplicate
report's rating goes to its primary's document (under its own rating id, so each citizen's
rating reaches the agency once).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from paht_bridge.connectors.errors import ConnectorError, PermanentError
from paht_bridge.ledger.models import RatingRow, ReportRow
from paht_bridge.steps.context import StepContext, StepResult, log
from paht_bridge.steps.status import active_delivery, refresh_status
from paht_bridge.steps.feed import consume_feed, one_by_one
from paht_bridge.ledger.store import quarantine, record_event
from paht_bridge.canonical import CanonicalStatus, Quarantined, Rating, RatingLevel, vietnam_now


def ratings(ctx: StepContext) -> StepResult:
    result = StepResult(deployment=ctx.mapping.deployment, step="ratings")
    for source in ctx.mapping.sources:
        client = ctx.connectors.source(source.name)
        consume_feed(ctx, f"{source.name}:ratings", lambda cursor, c=client, n=source.page_size: c.ratings_since(cursor, page_size=n),
                     one_by_one(lambda session, rating: _take_in(session, ctx, rating)), result, feed="ratings")
    _push(ctx, result)
    return result


def _take_in(session: Session, ctx: StepContext, rating: Rating) -> str:
    known = session.scalar(select(RatingRow.id).where(RatingRow.source == rating.source, RatingRow.rating_id == rating.rating_id))
    if known is not None:
        return "repeated"
    report = session.scalar(select(ReportRow).where(ReportRow.source == rating.source, ReportRow.source_id == rating.source_id))
    if report is None:
        # The report is not in the ledger (quarantined, or its ingest failed): keep the rating, not just a note.
        quarantine(session, ctx.mapping.deployment, Quarantined(
            source=rating.source, source_id=rating.source_id, reason="rating for a report the ledger does not hold",
            raw=rating.model_dump_json(exclude={"comment"}), payload=rating.model_dump_json()), ctx.run_id, feed="ratings")
        return "orphan_quarantined"
    session.add(RatingRow(source=rating.source, rating_id=rating.rating_id, report_id=report.id, level=rating.level,
                          comment=rating.comment, rated_at=rating.rated_at))
    session.flush()
    refresh_status(session, report, ctx.run_id)
    record_event(session, "rated", report_id=report.id, run_id=ctx.run_id, status=CanonicalStatus.RATED,
                 level=rating.level, rated_at=rating.rated_at.isoformat())
    return "rated"


def _push(ctx: StepContext, result: StepResult) -> None:
    with ctx.sessions() as session:
        waiting = session.scalars(
            select(RatingRow).join(ReportRow).where(ReportRow.deployment == ctx.mapping.deployment, RatingRow.pushed_at.is_(None))
        ).all()
        for row in waiting:
            report = session.get(ReportRow, row.report_id)
            # A duplicate has no document of its own: its rating is about its primary's.
            holder = session.get(ReportRow, report.duplicate_of) if report.duplicate_of is not None else report
            delivery = active_delivery(holder)
            if delivery is None or delivery.document_id is None:
                result.add("push_waiting")
                continue
            rating = Rating(rating_id=row.rating_id, source=row.source, source_id=report.source_id,
                            level=RatingLevel(row.level), comment=row.comment, rated_at=row.rated_at)
            try:
                ctx.connectors.target(delivery.target).post_rating(delivery.document_id, rating)
            except PermanentError as error:
                row.push_error = str(error)
                record_event(session, "rating_push_failed", report_id=report.id, delivery_id=delivery.id if holder is report else None,
                             run_id=ctx.run_id, error=str(error))
                session.commit()
                result.add("push_failed")
                continue
            except ConnectorError as error:
                log.warning("rating push deferred report=%s error=%s", report.source_id, error)
                result.add("push_deferred")
                continue
            row.pushed_at, row.push_error = vietnam_now(), None
            record_event(session, "rating_pushed", report_id=report.id, delivery_id=delivery.id if holder is report else None,
                         run_id=ctx.run_id, target=delivery.target, document_id=delivery.document_id, level=row.level,
                         **({} if holder is report else {"external_ref": delivery.external_ref,
                                                         "followed": f"{holder.source}:{holder.source_id}"}))
            session.commit()
            result.add("pushed")
