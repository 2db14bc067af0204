"""Publish: send each agency's answer back to the citizen app, once per answered delivery.

Once, though the task may die between the call and the ledger's record of it: every attempt
carries the same key (``Outcome.key``, from the delivery answered), sent as the request's
idempotency key, so the source keeps one outcome and answers a repeat as a repeat.

A duplicate report (linked to an earlier report of the same problem) has no delivery of its
own: when its primary's lead delivery is answered, the same answer is published to the
duplicate at its own source, once, so every citizen who reported the problem hears back.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from paht_bridge.connectors.errors import ConnectorError, PermanentError
from paht_bridge.ledger.models import DeliveryRow, ReportRow
from paht_bridge.steps.context import StepContext, StepResult, log
from paht_bridge.steps.status import active_delivery, refresh_status
from paht_bridge.ledger.store import record_event
from paht_bridge.canonical import CanonicalStatus, Outcome, vietnam_now
from paht_bridge.normalise.transforms import outcome_for


def publish(ctx: StepContext) -> StepResult:
    result = StepResult(deployment=ctx.mapping.deployment, step="publish")
    with ctx.sessions() as session:
        due = session.scalars(
            select(DeliveryRow).join(ReportRow)
            # The lead agency answers the citizen; co-handling agencies contribute to its answer.
            .where(DeliveryRow.deployment == ctx.mapping.deployment, DeliveryRow.doc_status == CanonicalStatus.ANSWERED,
                   DeliveryRow.published_at.is_(None), DeliveryRow.lane == 0)
            .order_by(DeliveryRow.answered_at)
        ).all()
        for delivery in due:
            report = delivery.report
            outcome = _outcome(report, delivery)
            if not _send(session, ctx, report, delivery, outcome, result):
                continue
            delivery.published_at = vietnam_now()
            refresh_status(session, report, ctx.run_id)
            record_event(session, "published", report_id=report.id, delivery_id=delivery.id, run_id=ctx.run_id,
                         status=CanonicalStatus.PUBLISHED, source=report.source, answered_by=outcome.answered_by)
            session.commit()
            result.add("published")
        _publish_duplicates(session, ctx, result)
    return result


def _publish_duplicates(session: Session, ctx: StepContext, result: StepResult) -> None:
    """Each unpublished duplicate whose primary's current lead delivery is answered."""
    due = session.execute(
        select(ReportRow, DeliveryRow).join(DeliveryRow, DeliveryRow.report_id == ReportRow.duplicate_of)
        .where(ReportRow.deployment == ctx.mapping.deployment, ReportRow.duplicate_of.is_not(None), ReportRow.published_at.is_(None),
               DeliveryRow.lane == 0, DeliveryRow.doc_status == CanonicalStatus.ANSWERED)
        .order_by(DeliveryRow.answered_at, ReportRow.id)
    ).all()
    for duplicate, delivery in due:
        if active_delivery(delivery.report) is not delivery:
            continue  # an answer of an attempt the primary has moved on from
        outcome = _outcome(duplicate, delivery)
        if not _send(session, ctx, duplicate, delivery, outcome, result):
            continue
        duplicate.published_at = vietnam_now()
        refresh_status(session, duplicate, ctx.run_id)
        record_event(session, "published", report_id=duplicate.id, run_id=ctx.run_id, status=CanonicalStatus.PUBLISHED,
                     source=duplicate.source, answered_by=outcome.answered_by,
                     followed=f"{delivery.report.source}:{delivery.report.source_id}", external_ref=delivery.external_ref,
                     document_id=delivery.document_id)
        session.commit()
        result.add("published_duplicate")


def _outcome(report: ReportRow, delivery: DeliveryRow) -> Outcome:
    """The answer for ``report``'s citizen, keyed by the delivery answered and the report told:
    every attempt to publish it is the same publication to the source."""
    return outcome_for(report.source_id, CanonicalStatus.ANSWERED, delivery.answer or "",
                       delivery.answered_by or delivery.agency_name, delivery.answered_at or vietnam_now(),
                       key=f"{delivery.external_ref}/{report.source_id}")


def _send(session: Session, ctx: StepContext, report: ReportRow, delivery: DeliveryRow, outcome: Outcome, result: StepResult) -> bool:
    """Publish ``outcome`` at the report's source; False when it did not go (recorded, retried next run)."""
    try:
        ctx.connectors.source(report.source).publish_outcome(outcome)
    except PermanentError as error:
        record_event(session, "publish_failed", report_id=report.id, delivery_id=delivery.id if delivery.report_id == report.id else None,
                     run_id=ctx.run_id, error=str(error))
        session.commit()
        result.errors.append(str(error))
        result.add("failed")
        return False
    except ConnectorError as error:  # transient or ambiguous: publishing is idempotent, try next run
        log.warning("publish deferred report=%s error=%s", report.source_id, error)
        result.add("deferred")
        return False
    return True
