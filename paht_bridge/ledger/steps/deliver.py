"""Deliver: create each routed report as an incoming document in its agency's system, once.

DESIGN §4: the ledger records *sending* before the remote call and the outcome after. A
timeout or dropped connection after sending leaves the delivery *unknown*; before any
further attempt it is looked up by its external reference. Work is claimed under a lease
so a zombie task beside its retry cannot send the same report twice.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from paht_bridge.connectors.base import CitizenSource
from paht_bridge.connectors.errors import AmbiguousError, ConnectorError, MalformedResponse, PermanentError, TransientError
from paht_bridge.ledger import circuit
from paht_bridge.ledger.models import CircuitRow, DeliveryRow
from paht_bridge.ledger.steps.context import StepContext, StepResult, log, report_from_row
from paht_bridge.ledger.steps.status import refresh_status
from paht_bridge.ledger.store import claim_deliveries, record_event, release
from paht_bridge.mappings.canonical import CanonicalStatus, DocumentReceipt, LocalAttachment, Report, Routing
from paht_bridge.mappings.transforms import build_document


def deliver(ctx: StepContext) -> StepResult:
    """Send every due delivery. A target with ``send_concurrency`` above 1 gets that many
    senders at once (threads, each claiming its own batches under its own lease), so a back
    end that answers slowly is not waited on one call at a time."""
    if all(t.send_concurrency == 1 for t in ctx.mapping.targets):
        return _deliver_batches(ctx, StepResult(deployment=ctx.mapping.deployment, step="deliver"))
    names = [t.name for t in ctx.mapping.targets]
    senders = [(t.name, n) for t in ctx.mapping.targets for n in range(t.send_concurrency)]
    with ThreadPoolExecutor(max_workers=len(senders), thread_name_prefix="paht-deliver") as pool:
        parts = list(pool.map(lambda sender: _deliver_batches(
            replace(ctx, worker=f"{ctx.worker}-{sender[0]}-{sender[1]}"), StepResult(deployment=ctx.mapping.deployment, step="deliver"),
            others=frozenset(n for n in names if n != sender[0])), senders))
    result = StepResult(deployment=ctx.mapping.deployment, step="deliver")
    for part in parts:
        for key, value in part.counts.items():
            result.add(key, value)
        result.errors += part.errors
    if "targets_with_open_circuit" in result.counts:  # each sender of a blocked target counted it
        result.counts["targets_with_open_circuit"] = sum(1 for t in names if any(
            p.counts.get("targets_with_open_circuit") for (name, _), p in zip(senders, parts) if name == t))
    return result


def _deliver_batches(ctx: StepContext, result: StepResult, others: frozenset[str] = frozenset()) -> StepResult:
    """Claim and send batches until nothing is due; ``others``: targets this sender leaves alone."""
    while True:
        with ctx.sessions() as session:
            now = ctx.clock()
            blocked = frozenset(t.name for t in ctx.mapping.targets if t.name not in others and circuit.is_open(session, t.name, now))
            batch = claim_deliveries(session, deployment=ctx.mapping.deployment, owner=ctx.worker,
                                     states=("pending", "unknown", "sending"), limit=ctx.batch_size, lease=ctx.lease,
                                     now=now, skip_targets=blocked | others)
            if not batch:
                if blocked:
                    result.add("targets_with_open_circuit", len(blocked))
                break
            opened: set[str] = set()
            # Only a target half-open when the batch was claimed can need a probe: one read per batch, not per delivery.
            half_open = frozenset(t for t in {d.target for d in batch} if circuit.is_half_open(session, t, now))
            # A success need not reset a circuit that has no failures on record (nor this batch's).
            troubled = set(session.scalars(select(CircuitRow.target).where(
                CircuitRow.target.in_({d.target for d in batch}), (CircuitRow.failures > 0) | CircuitRow.open_until.is_not(None))))
            session.info[_HEALTHY] = {d.target for d in batch} - troubled
            for delivery in batch:
                if delivery.target in opened:  # the circuit opened mid-batch: leave the rest untouched
                    release(delivery)
                    session.commit()
                    result.add("held_by_open_circuit")
                    continue
                probe = delivery.target in half_open and circuit.is_half_open(session, delivery.target, ctx.clock())
                outcome = _deliver_one(session, ctx, delivery, probe)
                result.add(outcome)
                if _circuit_update(session, ctx, delivery, outcome):
                    opened.add(delivery.target)
    return result


#: ``session.info`` key: targets whose circuit has no failure on record in this batch.
_HEALTHY = "paht_healthy_circuits"


def _circuit_update(session: Session, ctx: StepContext, delivery: DeliveryRow, outcome: str) -> bool:
    """Feed the outcome to the target's circuit breaker; True when it just opened."""
    now = ctx.clock()
    if outcome in ("delivered", "already_there"):
        return False  # recorded in the same commit as the delivery (``_delivered``)
    if outcome not in ("retry", "unknown"):
        return False
    session.info.get(_HEALTHY, set()).discard(delivery.target)
    spec = ctx.mapping.target(delivery.target)
    opened = circuit.record_failure(session, spec, delivery.last_error or outcome, now)
    if opened:
        record_event(session, "circuit_opened", report_id=None, run_id=ctx.run_id, target=delivery.target,
                     until=(now + timedelta(seconds=spec.circuit_cooldown_seconds)).isoformat(), error=delivery.last_error)
        log.error("circuit opened target=%s cooldown=%ss error=%s", delivery.target, spec.circuit_cooldown_seconds, delivery.last_error)
    session.commit()
    return opened


def _deliver_one(session: Session, ctx: StepContext, delivery: DeliveryRow, probe: bool = False) -> str:
    target = ctx.connectors.target(delivery.target)
    # Until this attempt sends, a delivery that may exist remotely stays 'unknown' whatever fails.
    doubtful, sent = delivery.state in ("unknown", "sending"), False
    try:
        report = report_from_row(delivery.report)
        # A delivery left 'sending' (the worker died mid-call) or 'unknown' may exist already.
        if doubtful:
            receipt = target.find_by_ref(delivery.external_ref)
            if receipt is not None:
                return _delivered(session, ctx, delivery, receipt.model_copy(update={"created": False}), recovered=True)
        source = ctx.connectors.source(report.source)
        record = build_document(report, _routing_of(delivery), ctx.mapping, delivery.attempt)
        with _spooled_attachments(source, report) as attachments:
            if not _mark_sending(session, ctx, delivery):
                return "lease_lost"  # another worker holds it now: never send without the lease
            sent = True
            receipt = target.create_document(record, attachments)
        return _delivered(session, ctx, delivery, receipt)
    except ConnectorError as error:
        if error.system != delivery.target:
            return _source_failed(session, ctx, delivery, error, doubtful)
        if isinstance(error, (AmbiguousError, MalformedResponse)):
            # An unreadable answer to a create may come after the target committed: look up before retrying.
            return _retry_later(session, ctx, delivery, error, state="unknown", probe=probe and sent)
        if isinstance(error, TransientError):
            state = "unknown" if doubtful and not sent else "pending"  # a transient error means nothing happened
            return _retry_later(session, ctx, delivery, error, state=state, probe=probe and sent)
        return _dead(session, ctx, delivery, str(error))
    except Exception as error:  # a bug or bad data in this one delivery must not block the batch
        session.rollback()
        log.exception("delivery failed inside the bridge ref=%s", delivery.external_ref)
        return _dead(session, ctx, delivery, f"internal error: {error.__class__.__name__}: {error}"[:500])


def _source_failed(session: Session, ctx: StepContext, delivery: DeliveryRow, error: ConnectorError, doubtful: bool) -> str:
    """The citizen app failed to hand over an attachment: a try for the report (so it is bounded),
    nothing about the target's health (so no circuit)."""
    if isinstance(error, PermanentError) and not isinstance(error, MalformedResponse):
        return _dead(session, ctx, delivery, str(error))
    delivery.tries += 1
    return "source_" + _retry_later(session, ctx, delivery, error, state="unknown" if doubtful else "pending")


def _routing_of(delivery: DeliveryRow) -> Routing:
    return Routing(agency_code=delivery.agency_code, agency_name=delivery.agency_name, target=delivery.target,
                   deadline=delivery.deadline, priority=delivery.priority, target_category=delivery.target_category)


def _mark_sending(session: Session, ctx: StepContext, delivery: DeliveryRow) -> bool:
    """Record 'sending' durably before the remote call, only while this worker still holds the
    lease (a long batch can outlive it); renews the lease for the call. False: lease lost."""
    now = ctx.clock()
    tries = session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id == delivery.id, DeliveryRow.lease_owner == ctx.worker, DeliveryRow.lease_until > now)
        .values(state="sending", tries=DeliveryRow.tries + 1, lease_until=now + ctx.lease)
        .returning(DeliveryRow.tries)
        .execution_options(synchronize_session=False)
    ).scalar()
    if tries is None:
        session.rollback()
        return False
    # What the UPDATE wrote, without reading the row back.
    for key, value in (("state", "sending"), ("tries", tries), ("lease_until", now + ctx.lease)):
        set_committed_value(delivery, key, value)
    record_event(session, "sending", report_id=delivery.report_id, delivery_id=delivery.id, run_id=ctx.run_id,
                 target=delivery.target, external_ref=delivery.external_ref, try_number=delivery.tries)
    session.commit()
    return True


def _delivered(session: Session, ctx: StepContext, delivery: DeliveryRow, receipt: DocumentReceipt, recovered: bool = False) -> str:
    now = ctx.clock()
    # Poll may have recorded a later status while the call was under way: read it afresh.
    table = DeliveryRow.__table__
    status, status_at = session.execute(select(table.c.doc_status, table.c.doc_status_at).where(table.c.id == delivery.id)).one()
    set_committed_value(delivery, "doc_status", status)
    set_committed_value(delivery, "doc_status_at", status_at)
    delivery.state = "delivered"
    delivery.document_id = receipt.document_id
    delivery.delivered_at = now
    delivery.last_error = None
    delivery.next_try_at = None
    if delivery.doc_status is None:
        delivery.doc_status, delivery.doc_status_at = CanonicalStatus.DELIVERED, now
    release(delivery)
    healthy = session.info.get(_HEALTHY)
    if healthy is None or delivery.target not in healthy:
        circuit.record_success(session, delivery.target, now)
        if healthy is not None:
            healthy.add(delivery.target)
    refresh_status(session, delivery.report, ctx.run_id)  # the run goes on its duplicates' events
    record_event(session, "delivered", report_id=delivery.report_id, delivery_id=delivery.id, run_id=ctx.run_id,
                 status=CanonicalStatus.DELIVERED, target=delivery.target, agency=delivery.agency_code,
                 external_ref=delivery.external_ref, document_id=receipt.document_id,
                 created=receipt.created, recovered_by_lookup=recovered)
    session.commit()
    log.info("delivered report=%s ref=%s document=%s created=%s", delivery.report.source_id, delivery.external_ref,
             receipt.document_id, receipt.created)
    return "delivered" if receipt.created else "already_there"


def _retry_later(session: Session, ctx: StepContext, delivery: DeliveryRow, error: ConnectorError, state: str,
                 probe: bool = False) -> str:
    """Back off and try again later. A failed circuit probe does not count against the report:
    an outage of the back end must not dead-letter the reports waiting for it."""
    spec = ctx.mapping.target(delivery.target)
    if probe and delivery.tries:
        delivery.tries -= 1
    elif delivery.tries >= spec.max_tries:
        return _dead(session, ctx, delivery, f"gave up after {delivery.tries} tries: {error}")
    delivery.state = state
    delivery.last_error = str(error)
    backoff = min(spec.retry_base_seconds * 2 ** max(delivery.tries - 1, 0), spec.retry_cap_seconds)
    delivery.next_try_at = ctx.clock() + timedelta(seconds=backoff)
    release(delivery)
    record_event(session, "delivery_" + ("unknown" if state == "unknown" else "retry"), report_id=delivery.report_id,
                 delivery_id=delivery.id, run_id=ctx.run_id, error=str(error), next_try_at=delivery.next_try_at.isoformat())
    session.commit()
    log.warning("delivery %s report=%s ref=%s error=%s", state, delivery.report.source_id, delivery.external_ref, error)
    return "unknown" if state == "unknown" else "retry"


def _dead(session: Session, ctx: StepContext, delivery: DeliveryRow, reason: str) -> str:
    delivery.state = "dead"
    delivery.last_error = reason
    release(delivery)
    record_event(session, "dead_letter", report_id=delivery.report_id, delivery_id=delivery.id, run_id=ctx.run_id, reason=reason)
    session.commit()
    log.error("dead letter report=%s ref=%s reason=%s", delivery.report.source_id, delivery.external_ref, reason)
    return "dead"


@contextmanager
def _spooled_attachments(source: CitizenSource, report: Report) -> Iterator[list[LocalAttachment]]:
    """Fetch every attachment into a temporary file (streamed, hashed on the way) for the target."""
    if not report.attachments:  # most reports: no spool folder to make and remove
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="paht-att-") as folder:
        files: list[LocalAttachment] = []
        for index, attachment in enumerate(report.attachments):
            path = Path(folder) / f"{index:03d}"
            digest, size = hashlib.sha256(), 0
            with source.open_attachment(attachment) as chunks, open(path, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            if attachment.sha256 and attachment.sha256 != digest.hexdigest():
                raise TransientError(f"attachment {attachment.name!r} checksum mismatch", system=source.name,
                                     operation="open_attachment", ref=report.source_id)
            files.append(LocalAttachment(name=attachment.name, media_type=attachment.media_type, size=size,
                                         sha256=digest.hexdigest(), path=path))
        yield files
