"""Poll: read each document system's change feed and apply the changes to the ledger.

Changes are mapped to canonical statuses by the target's status table; an unknown code
is recorded for the IOC and never guessed. An older or repeated change never overwrites a
newer one. A refusal sends the report back to the IOC, which re-routes it once to the
deployment's ``on_refusal`` agency.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from paht_bridge.ledger.models import DeliveryRow
from paht_bridge.ledger.steps.context import StepContext, StepResult, log, report_from_row
from paht_bridge.ledger.steps.status import refresh_status
from paht_bridge.ledger.steps.feed import consume_feed
from paht_bridge.ledger.store import quarantine, record_event
from paht_bridge.mappings.canonical import DOCUMENT_PROGRESS, CanonicalStatus, Quarantined, RawStatusChange, StatusChange, vietnam_now
from paht_bridge.mappings.transforms import UnknownStatus, external_ref, map_status, reroute


def poll(ctx: StepContext) -> StepResult:
    result = StepResult(deployment=ctx.mapping.deployment, step="poll")
    for target in ctx.mapping.targets:
        client = ctx.connectors.target(target.name)
        consume_feed(ctx, f"{target.name}:changes", client.changes_since,
                     lambda session, raw, name=target.name: _apply_isolated(session, ctx, name, raw), result, feed="changes")
    return result


def _apply_isolated(session: Session, ctx: StepContext, target: str, raw: RawStatusChange) -> str:
    """Apply one change in a savepoint: a change we cannot apply is quarantined with why,
    and the rest of the page (and its cursor) still commits."""
    try:
        with session.begin_nested():
            return _apply(session, ctx, target, raw)
    except Exception as error:  # noqa: BLE001 - one bad change must not stall the feed forever
        log.exception("status change not applied target=%s ref=%s", target, raw.external_ref)
        quarantine(session, ctx.mapping.deployment, Quarantined(
            source=target, source_id=raw.external_ref, reason=f"could not apply: {error.__class__.__name__}: {error}"[:500],
            raw=raw.model_dump_json(), payload=raw.model_dump_json()), ctx.run_id, feed="changes")
        return "quarantined"


def _apply(session: Session, ctx: StepContext, target: str, raw: RawStatusChange) -> str:
    delivery = session.scalar(select(DeliveryRow).where(DeliveryRow.external_ref == raw.external_ref))
    if delivery is None:
        # Not ours (another sender's document in a shared system), or not yet recorded.
        record_event(session, "foreign_change", report_id=None, run_id=ctx.run_id, target=target,
                     external_ref=raw.external_ref, raw_code=raw.raw_code)
        return "ignored"
    try:
        change = map_status(raw, target, ctx.mapping)
    except UnknownStatus as problem:
        record_event(session, "unknown_status", report_id=delivery.report_id, delivery_id=delivery.id,
                     run_id=ctx.run_id, target=target, raw_code=raw.raw_code, reason=str(problem))
        log.warning("unknown status report=%s ref=%s code=%s", delivery.report.source_id, raw.external_ref, raw.raw_code)
        return "unknown_status"
    if delivery.state != "delivered":
        # The target's own feed proves the document exists (e.g. created before a timeout).
        delivery.state, delivery.delivered_at, delivery.last_error = "delivered", vietnam_now(), None
        delivery.document_id = change.document_id
        delivery.lease_owner = delivery.lease_until = None
        record_event(session, "delivered", report_id=delivery.report_id, delivery_id=delivery.id, run_id=ctx.run_id,
                     status=CanonicalStatus.DELIVERED, target=target, external_ref=delivery.external_ref,
                     document_id=change.document_id, recovered_by_feed=True)
    if not _is_newer(delivery, change):
        return "already_known"
    delivery.doc_status, delivery.doc_raw_code, delivery.doc_status_at = change.status, change.raw_code, change.changed_at
    if delivery.document_id is None:
        delivery.document_id = change.document_id
    if change.status in (CanonicalStatus.ANSWERED, CanonicalStatus.REFUSED_BY_AGENCY):
        delivery.answer, delivery.answered_by, delivery.answered_at = change.answer, change.answered_by, change.changed_at
    record_event(session, "status", report_id=delivery.report_id, delivery_id=delivery.id, run_id=ctx.run_id,
                 status=change.status, raw_code=change.raw_code, document_id=change.document_id,
                 agency=delivery.agency_code, changed_at=change.changed_at.isoformat(),
                 answered_by=change.answered_by)
    if change.status is CanonicalStatus.REFUSED_BY_AGENCY:
        _reroute(session, ctx, delivery)
    refresh_status(session, delivery.report, ctx.run_id)
    return change.status.value


def _is_newer(delivery: DeliveryRow, change: StatusChange) -> bool:
    """Later progress wins; at equal progress the later time wins; a repeat is a no-op."""
    if delivery.doc_raw_code == change.raw_code and delivery.doc_status_at == change.changed_at:
        return False
    current = DOCUMENT_PROGRESS.get(CanonicalStatus(delivery.doc_status), 0) if delivery.doc_status else 0
    incoming = DOCUMENT_PROGRESS.get(change.status, 0)
    if incoming != current:
        return incoming > current or change.status is CanonicalStatus.RECALLED
    return delivery.doc_status_at is None or change.changed_at >= delivery.doc_status_at


def _reroute(session: Session, ctx: StepContext, refused: DeliveryRow) -> None:
    report_row = refused.report
    if refused.attempt > 1 or refused.rerouted_at is not None:
        record_event(session, "needs_review", report_id=report_row.id, delivery_id=refused.id, run_id=ctx.run_id,
                     reason="refused again after re-routing", status=CanonicalStatus.REFUSED_BY_AGENCY)
        report_row.problem = "refused by the agency it was re-routed to"
        return
    report = report_from_row(report_row)
    routing = reroute(report, ctx.mapping, ctx.clock())
    attempt = refused.attempt + 1
    delivery = DeliveryRow(
        report_id=report_row.id, deployment=ctx.mapping.deployment, attempt=attempt, lane=refused.lane,
        external_ref=external_ref(report, attempt, refused.lane), target=routing.target, agency_code=routing.agency_code,
        agency_name=routing.agency_name, target_category=routing.target_category, priority=routing.priority,
        deadline=routing.deadline, state="pending",
    )
    report_row.deliveries.append(delivery)
    refused.rerouted_at = vietnam_now()
    session.flush()
    record_event(session, "rerouted", report_id=report_row.id, delivery_id=delivery.id, run_id=ctx.run_id,
                 status=CanonicalStatus.ROUTED, agency=routing.agency_code, agency_name=routing.agency_name,
                 refused_by=refused.agency_code, reason=refused.answer)
