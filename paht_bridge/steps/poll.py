"""Poll: read each document system's change feed and apply the changes to the ledger.

Changes are mapped to canonical statuses by the target's status table; an unknown code
is recorded for the IOC and never guessed. An older or repeated change never overwrites a
newer one. A refusal sends the report back to the IOC, which re-routes it once to the
deployment's ``on_refusal`` agency.

A back end without a change feed (``change_feed: false``) is asked for open documents'
statuses one by one, within the target's ``poll_budget`` requests per run, nearest deadlines first.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from paht_bridge.connectors.base import DocumentSystem
from paht_bridge.connectors.errors import ConnectorError, PermanentError
from paht_bridge.config.deployment import Target

from paht_bridge.ledger.models import DeliveryRow
from paht_bridge.steps.context import StepContext, StepResult, log, report_from_row
from paht_bridge.steps.status import refresh_status
from paht_bridge.steps.feed import consume_feed, one_by_one
from paht_bridge.ledger.store import get_cursor, quarantine, record_event, set_cursor
from paht_bridge.canonical import DOCUMENT_PROGRESS, CanonicalStatus, Quarantined, RawStatusChange, StatusChange, vietnam_now
from paht_bridge.normalise.transforms import UnknownStatus, external_ref, map_status, reroute


def poll(ctx: StepContext) -> StepResult:
    result = StepResult(deployment=ctx.mapping.deployment, step="poll")
    for target in ctx.mapping.targets:
        client = ctx.connectors.target(target.name)
        if not target.change_feed:
            _poll_statuses(ctx, target, client, result)
            continue
        consume_feed(ctx, f"{target.name}:changes", client.changes_since,
                     one_by_one(lambda session, raw, name=target.name: _apply_isolated(session, ctx, name, raw)), result,
                     feed="changes")
    return result


#: Document states that no longer change at the agency: never spent budget on.
_SETTLED = (CanonicalStatus.ANSWERED, CanonicalStatus.REFUSED_BY_AGENCY, CanonicalStatus.RECALLED,
            CanonicalStatus.REJECTED_INVALID, CanonicalStatus.PUBLISHED, CanonicalStatus.RATED, CanonicalStatus.CLOSED)
#: A back end failing this many status requests in a row is left for the next run.
_FAILURES_IN_A_ROW = 5
#: Status answers applied per transaction.
_APPLY_BATCH = 100


def _poll_statuses(ctx: StepContext, spec: Target, client: DocumentSystem, result: StepResult) -> None:
    """Ask open documents for their status one at a time, at most ``spec.poll_budget`` requests.

    Half the budget goes to the open documents nearest their deadline (overdue ones first);
    the rest continues a rotation over all open documents from where the previous run
    stopped (its position is a cursor), so the ones polled longest ago come next and every
    open document is asked in turn, however many there are.
    """
    rotation_stream = f"{spec.name}:status-rotation"
    open_documents = select(DeliveryRow.id, DeliveryRow.document_id).where(
        DeliveryRow.deployment == ctx.mapping.deployment, DeliveryRow.target == spec.name, DeliveryRow.state == "delivered",
        DeliveryRow.document_id.is_not(None), or_(DeliveryRow.doc_status.is_(None), DeliveryRow.doc_status.not_in(_SETTLED)))
    with ctx.sessions() as session:
        urgent = session.execute(open_documents.order_by(DeliveryRow.deadline, DeliveryRow.id).limit((spec.poll_budget + 1) // 2)).all()
        taken = {row.id for row in urgent}
        after = int(get_cursor(session, rotation_stream) or 0)
        rotation = session.execute(open_documents.where(DeliveryRow.id > after, DeliveryRow.id.not_in(taken))
                                   .order_by(DeliveryRow.id).limit(spec.poll_budget - len(urgent))).all()
        if len(urgent) + len(rotation) < spec.poll_budget:  # the end of the rotation: wrap around
            taken |= {row.id for row in rotation}
            rotation += session.execute(open_documents.where(DeliveryRow.id <= after, DeliveryRow.id.not_in(taken))
                                        .order_by(DeliveryRow.id).limit(spec.poll_budget - len(urgent) - len(rotation))).all()
    answers: list[RawStatusChange] = []
    failures_in_a_row = 0
    for row in [*urgent, *rotation]:
        try:
            answers.append(client.get_status(row.document_id))
            failures_in_a_row = 0
        except ConnectorError as error:
            result.add("status_poll_failed")
            log.warning("status poll failed target=%s document=%s error=%s", spec.name, row.document_id, error)
            if not isinstance(error, PermanentError):
                failures_in_a_row += 1
                if failures_in_a_row >= _FAILURES_IN_A_ROW:
                    result.errors.append(f"{spec.name}: status polling stopped after {failures_in_a_row} failures in a row: {error}")
                    break
        result.add("status_requests")
        if len(answers) >= _APPLY_BATCH:
            _apply_answers(ctx, spec.name, answers, result)
            answers = []
    _apply_answers(ctx, spec.name, answers, result)
    if rotation:
        with ctx.sessions.begin() as session:
            set_cursor(session, rotation_stream, str(rotation[-1].id))


def _apply_answers(ctx: StepContext, target: str, answers: list[RawStatusChange], result: StepResult) -> None:
    if not answers:
        return
    with ctx.sessions.begin() as session:
        for raw in answers:
            result.add(_apply_isolated(session, ctx, target, raw))


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
    refresh_status(session, delivery.report, ctx.run_id)  # the run goes on its duplicates' events
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
    report = report_from_row(report_row, ctx.mapping.privacy)
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
