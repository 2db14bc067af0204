"""Publish: send each agency's answer back to the citizen app, once per answered delivery."""

from __future__ import annotations

from sqlalchemy import select

from paht_bridge.connectors.errors import ConnectorError, PermanentError
from paht_bridge.ledger.models import DeliveryRow, ReportRow
from paht_bridge.ledger.steps.context import StepContext, StepResult, log
from paht_bridge.ledger.steps.status import refresh_status
from paht_bridge.ledger.store import record_event
from paht_bridge.mappings.canonical import CanonicalStatus, vietnam_now
from paht_bridge.mappings.transforms import outcome_for


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
            outcome = outcome_for(report.source_id, CanonicalStatus.ANSWERED, delivery.answer or "",
                                  delivery.answered_by or delivery.agency_name, delivery.answered_at or vietnam_now())
            try:
                ctx.connectors.source(report.source).publish_outcome(outcome)
            except PermanentError as error:
                record_event(session, "publish_failed", report_id=report.id, delivery_id=delivery.id, run_id=ctx.run_id, error=str(error))
                session.commit()
                result.errors.append(str(error))
                result.add("failed")
                continue
            except ConnectorError as error:  # transient or ambiguous: publishing is idempotent, try next run
                log.warning("publish deferred report=%s error=%s", report.source_id, error)
                result.add("deferred")
                continue
            delivery.published_at = vietnam_now()
            refresh_status(session, report)
            record_event(session, "published", report_id=report.id, delivery_id=delivery.id, run_id=ctx.run_id,
                         status=CanonicalStatus.PUBLISHED, source=report.source, answered_by=outcome.answered_by)
            session.commit()
            result.add("published")
    return result
