"""Deliver: create each routed report as an incoming document in its agency's system, once.

DESIGN §4: the ledger records *sending* before the remote call and the outcome after. A
timeout or dropped connection after sending leaves the delivery *unknown*; before any
further attempt it is looked up by its external reference. Work is claimed under a lease
so a zombie task beside its retry cannot send the same report twice.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Update, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from paht_bridge.connectors.base import DocumentSystem, PreparedSend
from paht_bridge.connectors.errors import AmbiguousError, ConnectorError, MalformedResponse, PermanentError, TransientError
from paht_bridge.connectors.spool import spooled_attachments
from paht_bridge.ledger import bulk, circuit
from paht_bridge.ledger.models import DeliveryRow, RatingRow, ReportRow
from paht_bridge.steps.call_process import FAILED, HALTED, LEASE, Answer, Call, CallProcess
from paht_bridge.steps.context import StepContext, StepResult, log, report_from_row
from paht_bridge.steps.status import derive_status, refresh_status
from paht_bridge.ledger.store import EventBatch, claim_deliveries, claimable, record_event, release
from paht_bridge.canonical import CanonicalStatus, DocumentReceipt, DocumentRecord, Report, Routing
from paht_bridge.normalise.transforms import build_document

_DELIVERIES = DeliveryRow.__table__
#: What a deliver step takes: never sent, in doubt (looked up first), or left mid-call by a dead worker.
_CLAIMED_STATES = ("pending", "unknown", "sending")
_REPORTS = ReportRow.__table__


def deliver(ctx: StepContext) -> StepResult:
    """Send every due delivery. A target with ``send_concurrency`` above 1 gets that many
    senders at once (threads, each claiming its own batches under its own lease), so a back
    end that answers slowly is not waited on one call at a time. Otherwise, with
    ``call_process``, the creates are made by a child process beside the ledger work."""
    if all(t.send_concurrency == 1 for t in ctx.mapping.targets):
        return _deliver_batches(ctx, StepResult(deployment=ctx.mapping.deployment, step="deliver"))
    names = [t.name for t in ctx.mapping.targets]
    senders = [(t.name, n) for t in ctx.mapping.targets for n in range(t.send_concurrency)]
    batch = _shares(ctx)
    # Threads that wait on a slow back end: no call process (one per thread would fork a threaded process).
    with ThreadPoolExecutor(max_workers=len(senders), thread_name_prefix="paht-deliver") as pool:
        parts = list(pool.map(lambda sender: _deliver_batches(
            replace(ctx, worker=f"{ctx.worker}-{sender[0]}-{sender[1]}", batch_size=batch[sender[0]], call_process=False),
            StepResult(deployment=ctx.mapping.deployment, step="deliver"),
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


def _shares(ctx: StepContext) -> dict[str, int]:
    """How many deliveries each sender of a target claims at a time: its share of what is due
    now, at most ``batch_size``. With 500 due and 16 senders, batches of 100 would keep 11 of
    them idle and the other 5 sending 100 calls each, one after another."""
    with ctx.sessions() as session:
        due = dict(session.execute(select(DeliveryRow.target, func.count()).where(*claimable(
            ctx.mapping.deployment, _CLAIMED_STATES, ctx.clock())).group_by(DeliveryRow.target)).all())
    return {t.name: max(1, min(ctx.batch_size, -(-due.get(t.name, 0) // t.send_concurrency))) for t in ctx.mapping.targets}


def _deliver_batches(ctx: StepContext, result: StepResult, others: frozenset[str] = frozenset()) -> StepResult:
    """Claim and send batches until nothing is due; ``others``: targets this sender leaves alone."""
    if ctx.forks:
        return _deliver_through_process(ctx, result)
    while True:
        with ctx.sessions() as session:
            batch, fresh, half_open = _claim_batch(session, ctx, others, result)
            if not batch:
                break
            opened: set[str] = set()
            _send_one_by_one(session, ctx, batch, fresh, half_open, opened, result)
            if fresh:
                _send_chunk(session, ctx, fresh, opened, result)
    return result


def _claim_batch(session: Session, ctx: StepContext, skip: frozenset[str],
                 result: StepResult) -> tuple[list[DeliveryRow], list[DeliveryRow], frozenset[str]]:
    """Claim the next batch (none for a target whose circuit is open, nor in ``skip``); also
    which of it are *fresh* (nothing at the target yet, no probe due: sent as a chunk) and
    which targets are half-open."""
    now = ctx.clock()
    circuits = circuit.read(session, (t.name for t in ctx.mapping.targets if t.name not in skip))
    blocked = frozenset(name for name, state in circuits.items() if state.is_open(now))
    batch = claim_deliveries(session, deployment=ctx.mapping.deployment, owner=ctx.worker, states=_CLAIMED_STATES,
                             limit=ctx.batch_size, lease=ctx.lease, now=now, skip_targets=blocked | skip)
    if not batch:
        if blocked:
            result.add("targets_with_open_circuit", len(blocked))
        return [], [], frozenset()
    # Read again once claimed (another worker may have opened or closed one meanwhile), in one query:
    # only a target half-open when the batch was claimed can need a probe (one read per batch, not
    # per delivery), and a success need not reset a circuit with no failures on record (nor this batch's).
    targets = {d.target for d in batch}
    circuits = circuit.read(session, targets)
    half_open = frozenset(t for t, state in circuits.items() if state.is_half_open(now))
    session.info[_HEALTHY] = {t for t in targets if t not in circuits or not circuits[t].troubled}
    # Nothing at the target (first sends, plain retries) and no probe due: marked 'sending'
    # together, outcomes written together (after the deliveries needing a lookup).
    return batch, [d for d in batch if d.state == "pending" and d.target not in half_open], half_open


def _send_one_by_one(session: Session, ctx: StepContext, batch: list[DeliveryRow], fresh: list[DeliveryRow],
                     half_open: frozenset[str], opened: set[str], result: StepResult) -> None:
    """The batch's deliveries that are not fresh: each looked up first, or sent as a probe."""
    for delivery in batch:
        if delivery in fresh:
            continue
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


def _prepare_chunk(session: Session, ctx: StepContext, deliveries: list[DeliveryRow], opened: set[str],
                   result: StepResult) -> list[tuple[DeliveryRow, Report, DocumentRecord]]:
    """Build each delivery's document; one whose target's circuit opened, or whose report
    cannot be built, is given back or dead-lettered here and not sent."""
    prepared: list[tuple[DeliveryRow, Report, DocumentRecord]] = []
    for delivery in deliveries:
        if delivery.target in opened:  # its circuit opened earlier in this step: not even marked
            release(delivery)
            session.commit()
            result.add("held_by_open_circuit")
            continue
        try:
            report = report_from_row(delivery.report, ctx.mapping.privacy)
            prepared.append((delivery, report, build_document(report, _routing_of(delivery), ctx.mapping, delivery.attempt)))
        except Exception as error:  # bad data in one report must not block the chunk
            log.exception("delivery failed inside the bridge ref=%s", delivery.external_ref)
            result.add(_dead(session, ctx, delivery, f"internal error: {error.__class__.__name__}: {error}"[:500]))
    return prepared


@dataclass
class _InFlight:
    """A chunk handed to the call process, with the session that claimed it (its outcomes are
    written there) and when the lease on it is due for renewal."""

    session: Session
    items: list[tuple[DeliveryRow, Report, DocumentRecord]]
    renew_at: datetime


def _deliver_through_process(ctx: StepContext, result: StepResult) -> StepResult:
    """``_deliver_batches`` with the creates made by a child process (``call_process``): while
    it sends one chunk, the step claims and marks the next and then writes the outcomes of the
    one before, on the other core. Lookups and probes are made here, in order, once nothing
    is in flight. After any failed call the step hands over one chunk at a time and waits for
    it, as the inline path sends one call at a time: an outage marks no more than it does."""
    calls: CallProcess | None = None
    queue: deque[_InFlight] = deque()
    opened: set[str] = set()
    careful = False  # a call has failed: no chunk ahead of the one in flight
    healthy: set[str] | None = None  # one for the step: a failure in chunk k is known to chunk k+1's session
    session: Session | None = None
    try:
        while True:
            session = ctx.sessions()
            batch, fresh, half_open = _claim_batch(session, ctx, frozenset(), result)
            if not batch:
                session.close()
                if not queue:
                    break
                careful |= _settle_all(ctx, calls, queue, opened, result)
                continue  # what a failure gave back may be due again
            healthy = session.info[_HEALTHY] if healthy is None else healthy
            session.info[_HEALTHY] = healthy
            if len(fresh) < len(batch):  # lookups and probes: after what is in flight, in order
                careful |= _settle_all(ctx, calls, queue, opened, result)
                _send_one_by_one(session, ctx, batch, fresh, half_open, opened, result)
            prepared = _prepare_chunk(session, ctx, fresh, opened, result)
            held = _mark_prepared(session, ctx, prepared, result)
            items = [item for item in prepared if item[0].id in held]
            if not items:
                session.close()
            else:
                if calls is None:
                    calls = _start_call_process(ctx)
                queue.append(_InFlight(session, items, ctx.clock() + ctx.lease / 2))
                calls.submit(_calls_of(ctx, items), _stop_by(ctx, queue[-1].renew_at))
            while len(queue) > (0 if careful else 1):
                careful |= _settle(ctx, calls, queue, opened, result)
    except BaseException as error:  # a timeout or a kill of the task too: the child is not left sending
        if isinstance(error, Exception):
            error.partial_result = result  # type: ignore[attr-defined]  # the run record keeps what went through
        if calls is not None and queue:
            log.warning("deliver failed with %d chunk(s) in flight: their calls are stopped; what was sent stays "
                        "'sending' and is looked up by reference next time", len(queue))
            calls.kill()
        raise
    finally:
        for chunk in queue:  # left *sending* if the step failed: looked up by reference next time
            chunk.session.close()
        if session is not None:  # closing twice is harmless
            session.close()
        if calls is not None:
            calls.close()  # nothing in flight by now: it ends at once (after ``kill``, already gone)
    return result


def _start_call_process(ctx: StepContext) -> CallProcess:
    """Every client is built first, so the child inherits the Connections read through Airflow."""
    for spec in ctx.mapping.targets:
        ctx.connectors.target(spec.name)
    for spec in ctx.mapping.sources:
        ctx.connectors.source(spec.name)
    return CallProcess(ctx.connectors)


def _calls_of(ctx: StepContext, items: list[tuple[DeliveryRow, Report, DocumentRecord]]) -> list[Call]:
    """A chunk's calls, each create without attachments built here (while the child sends the
    chunk before), so the child only sends it; with attachments the child fetches and builds."""
    calls = []
    for delivery, report, record in items:
        if report.attachments:
            calls.append(Call(delivery.target, record, report))
        elif (prepared := _prepared(ctx.connectors.target(delivery.target), record)) is not None:
            calls.append(Call(delivery.target, None, prepared=prepared))
        else:
            calls.append(Call(delivery.target, record))
    return calls


def _prepared(target: DocumentSystem, record: DocumentRecord) -> PreparedSend | None:
    """``target``'s request for ``record``, if its class can build one ahead (``PreparesCreates``:
    looked up on the class, so a wrapper that only forwards attributes is never bypassed).
    If building fails, None: the child builds it and fails as that call, typed, in order."""
    prepare = getattr(type(target), "prepare_create", None)
    if prepare is None:
        return None
    try:
        return prepare(target, record)
    except Exception:  # noqa: BLE001 - the same error comes from the child's own try, where it is handled
        return None


def _stop_by(ctx: StepContext, renew_at: datetime) -> float:
    """``renew_at`` (the step's clock) on the monotonic clock the child shares."""
    return time.monotonic() + max(0.0, (renew_at - ctx.clock()).total_seconds())


def _settle_all(ctx: StepContext, calls: CallProcess | None, queue: deque[_InFlight], opened: set[str], result: StepResult) -> bool:
    failed = False
    while queue:
        failed |= _settle(ctx, calls, queue, opened, result)
    return failed


def _settle(ctx: StepContext, calls: CallProcess | None, queue: deque[_InFlight], opened: set[str], result: StepResult) -> bool:
    """Write the outcomes of the oldest chunk in flight. If the child stopped in it (a failure,
    the lease), the chunks queued behind came back untouched: the rest of each is then sent
    here, one chunk at a time, in order. True if any call failed."""
    assert calls is not None  # nothing is queued without it
    chunk = queue.popleft()
    answer = calls.collect()
    failed = _record_answer(ctx, chunk, answer, opened, result)
    if answer.stopped is None:
        chunk.session.close()
        return failed
    behind = [(later, calls.collect()) for later in list(queue)]  # each answered 'halted', no call made
    queue.clear()
    chunk.items = chunk.items[len(answer.receipts) + (answer.stopped == FAILED):]
    for pending, stopped in [(chunk, answer.stopped), *((later, HALTED) for later, _ in behind)]:
        failed |= _send_rest(ctx, calls, pending, stopped, opened, result)
        pending.session.close()
    return failed


def _send_rest(ctx: StepContext, calls: CallProcess, chunk: _InFlight, stopped: str | None, opened: set[str],
               result: StepResult) -> bool:
    """Send what is left of a chunk, waiting for each answer; True if a call failed."""
    failed = False
    while chunk.items:
        keep = []
        for item in chunk.items:
            if item[0].target in opened:  # the circuit opened: never sent, given back
                result.add(_hold(chunk.session, ctx, item[0]))
            else:
                keep.append(item)
        chunk.items = keep
        if not keep:
            break
        if stopped == LEASE or ctx.clock() >= chunk.renew_at:
            kept = _renew_lease(chunk.session, ctx, [delivery for delivery, _, _ in keep], result)
            chunk.items = [item for item in keep if item[0].id in kept]
            chunk.renew_at = ctx.clock() + ctx.lease / 2
            log.info("lease renewed mid-chunk deliveries=%d", len(chunk.items))
            if not chunk.items:
                break
        calls.resume()
        calls.submit(_calls_of(ctx, chunk.items), _stop_by(ctx, chunk.renew_at))
        answer = calls.collect()
        failed |= _record_answer(ctx, chunk, answer, opened, result)
        chunk.items = chunk.items[len(answer.receipts) + (answer.stopped == FAILED):]
        stopped = answer.stopped
    return failed


def _record_answer(ctx: StepContext, chunk: _InFlight, answer: Answer, opened: set[str], result: StepResult) -> bool:
    """The successes of an answer, then its failure (the circuit counts in order); True if a call failed."""
    done = [(delivery, receipt, False) for (delivery, _, _), receipt in zip(chunk.items, answer.receipts)]
    for _, receipt, _ in done:
        result.add("delivered" if receipt.created else "already_there")
    _record_delivered(chunk.session, ctx, done)
    if answer.stopped != FAILED:
        return False
    delivery = chunk.items[len(answer.receipts)][0]
    error = answer.error if isinstance(answer.error, Exception) else RuntimeError(repr(answer.error))
    if not isinstance(error, ConnectorError):
        log.error("the call failed inside the bridge ref=%s\n%s", delivery.external_ref, getattr(error, "child_traceback", ""))
    outcome = _chunk_failure(chunk.session, ctx, delivery, error)
    result.add(outcome)
    if _circuit_update(chunk.session, ctx, delivery, outcome):
        opened.add(delivery.target)
    return True


def _send_chunk(session: Session, ctx: StepContext, deliveries: list[DeliveryRow], opened: set[str], result: StepResult) -> None:
    """Send deliveries with nothing at the target yet, writing the ledger per chunk, not per delivery.

    DESIGN §4 holds: all are recorded *sending* (one conditional UPDATE, one commit) before
    the first call, and none is sent without a live lease: right before each call, once half
    the lease has passed, the outcomes of what was sent are written and the lease on the
    rest is renewed (what was lost is left alone). So no delivery waits for its outcome
    longer than its lease: another worker cannot take a sent one over meanwhile. Outcomes
    are also written before any failure is recorded (the circuit breaker counts in order)
    and at the end. A crash in between leaves sent deliveries *sending*; those are looked up
    by reference before any further attempt: never a second document, at worst one lookup.
    A delivery whose lease is lost before its call keeps the try it was marked with."""
    prepared = _prepare_chunk(session, ctx, deliveries, opened, result)
    held = _mark_prepared(session, ctx, prepared, result)  # marked, not yet sent
    done: list[tuple[DeliveryRow, DocumentReceipt, bool]] = []
    renew_at = ctx.clock() + ctx.lease / 2

    def still_held(delivery: DeliveryRow) -> bool:
        nonlocal renew_at
        if ctx.clock() < renew_at:
            return True
        _record_delivered(session, ctx, done)  # what was sent is written before its lease can run out
        kept = _renew_lease(session, ctx, [d for d, _, _ in prepared if d.id in held or d is delivery], result)
        held.intersection_update(kept)
        renew_at = ctx.clock() + ctx.lease / 2
        return delivery.id in kept

    for delivery, report, record in prepared:
        if delivery.id not in held:
            continue
        held.discard(delivery.id)
        if not still_held(delivery):
            continue
        if delivery.target in opened:  # the circuit opened mid-chunk: this one was never sent
            result.add(_hold(session, ctx, delivery))
            continue
        try:
            with spooled_attachments(ctx.connectors.source(report.source), report) as attachments:
                if not still_held(delivery):  # a long download: the lease is checked again right before the call
                    continue
                receipt = ctx.connectors.target(delivery.target).create_document(record, attachments)
        except Exception as error:  # noqa: BLE001 - typed below; nothing in the session is half done
            _record_delivered(session, ctx, done)  # earlier successes first: the circuit counts in order
            outcome = _chunk_failure(session, ctx, delivery, error)
            result.add(outcome)
            if _circuit_update(session, ctx, delivery, outcome):
                opened.add(delivery.target)
            continue
        done.append((delivery, receipt, False))
        result.add("delivered" if receipt.created else "already_there")
    _record_delivered(session, ctx, done)


def _hold(session: Session, ctx: StepContext, delivery: DeliveryRow) -> str:
    """Give back a marked delivery that will not be sent now (its target's circuit opened)."""
    if not _unmark(session, ctx, delivery, "the target's circuit opened"):
        return "lease_lost"
    release(delivery)
    session.commit()
    return "held_by_open_circuit"


def _chunk_failure(session: Session, ctx: StepContext, delivery: DeliveryRow, error: Exception) -> str:
    """What ``_deliver_one`` does with a failed send, for a delivery the chunk marked *sending*."""
    if not isinstance(error, ConnectorError):  # a bug in a connector: the session itself is sound
        log.error("delivery failed inside the bridge ref=%s error=%r", delivery.external_ref, error, exc_info=error)
        return _dead(session, ctx, delivery, f"internal error: {error.__class__.__name__}: {error}"[:500])
    if error.system != delivery.target:  # the citizen app's attachment failed: the document was never asked for
        if not _unmark(session, ctx, delivery, "an attachment could not be fetched"):
            return "lease_lost"
        return _source_failed(session, ctx, delivery, error, doubtful=False)
    if isinstance(error, (AmbiguousError, MalformedResponse)):
        return _retry_later(session, ctx, delivery, error, state="unknown")
    if isinstance(error, TransientError):
        return _retry_later(session, ctx, delivery, error, state="pending")
    return _dead(session, ctx, delivery, str(error))


def _while_leased(ctx: StepContext, ids: list[int], now: datetime) -> Update:
    """An UPDATE of ``ids`` that touches only the rows this worker holds under a live lease
    (DESIGN §4: nothing is marked, renewed or given back without it)."""
    return (update(DeliveryRow)
            .where(DeliveryRow.id.in_(ids), DeliveryRow.lease_owner == ctx.worker, DeliveryRow.lease_until > now)
            .execution_options(synchronize_session=False))


def _mark_prepared(session: Session, ctx: StepContext, prepared: list[tuple[DeliveryRow, Report, DocumentRecord]],
                   result: StepResult) -> set[int]:
    """Mark a prepared chunk *sending*: the ids still under this worker's lease (the rest are
    counted as ``lease_lost``)."""
    held = _mark_chunk_sending(session, ctx, [delivery for delivery, _, _ in prepared])
    if len(held) < len(prepared):
        result.add("lease_lost", len(prepared) - len(held))
    return held


def _mark_chunk_sending(session: Session, ctx: StepContext, deliveries: list[DeliveryRow]) -> set[int]:
    """``_mark_sending`` for a chunk, in one statement and one commit: the ids still under this
    worker's lease, now *sending* with the lease renewed for the calls."""
    if not deliveries:
        return set()
    now = ctx.clock()
    tries = dict(session.execute(
        _while_leased(ctx, [d.id for d in deliveries], now)
        .values(state="sending", tries=DeliveryRow.tries + 1, lease_until=now + ctx.lease)
        .returning(DeliveryRow.id, DeliveryRow.tries)
    ).all())
    events = EventBatch(ctx.run_id)
    for delivery in deliveries:
        if delivery.id in tries:
            for key, value in (("state", "sending"), ("tries", tries[delivery.id]), ("lease_until", now + ctx.lease)):
                set_committed_value(delivery, key, value)
            events.add("sending", report_id=delivery.report_id, delivery_id=delivery.id, target=delivery.target,
                       external_ref=delivery.external_ref, try_number=delivery.tries)
    events.write(session)
    session.commit()
    return set(tries)


def _renew_lease(session: Session, ctx: StepContext, deliveries: list[DeliveryRow], result: StepResult) -> set[int]:
    """Extend this worker's live lease on ``deliveries``; the ids it still holds (the rest are
    counted as ``lease_lost``)."""
    if not deliveries:
        return set()
    now = ctx.clock()
    kept = set(session.scalars(_while_leased(ctx, [d.id for d in deliveries], now)
                               .values(lease_until=now + ctx.lease).returning(DeliveryRow.id)))
    for delivery in deliveries:
        if delivery.id in kept:
            set_committed_value(delivery, "lease_until", now + ctx.lease)
    session.commit()
    if len(kept) < len(deliveries):
        result.add("lease_lost", len(deliveries) - len(kept))
    return kept


def _unmark(session: Session, ctx: StepContext, delivery: DeliveryRow, why: str) -> bool:
    """Undo the chunk's *sending* mark on a delivery that was never sent, only while this
    worker's lease on it is live (else another worker may hold it now: False, left alone)."""
    now = ctx.clock()
    tries = session.execute(
        _while_leased(ctx, [delivery.id], now).where(DeliveryRow.state == "sending")
        .values(state="pending", tries=DeliveryRow.tries - 1)
        .returning(DeliveryRow.tries)
    ).scalar()
    if tries is None:
        return False
    set_committed_value(delivery, "state", "pending")
    set_committed_value(delivery, "tries", tries)
    record_event(session, "not_sent", report_id=delivery.report_id, delivery_id=delivery.id, run_id=ctx.run_id,
                 target=delivery.target, external_ref=delivery.external_ref, reason=why)
    return True


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
        report = report_from_row(delivery.report, ctx.mapping.privacy)
        # A delivery left 'sending' (the worker died mid-call) or 'unknown' may exist already.
        if doubtful:
            receipt = target.find_by_ref(delivery.external_ref)
            if receipt is not None:
                return _delivered(session, ctx, delivery, receipt.model_copy(update={"created": False}), recovered=True)
        source = ctx.connectors.source(report.source)
        record = build_document(report, _routing_of(delivery), ctx.mapping, delivery.attempt)
        with spooled_attachments(source, report) as attachments:
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
    return delivery.id in _mark_chunk_sending(session, ctx, [delivery])


def _delivered(session: Session, ctx: StepContext, delivery: DeliveryRow, receipt: DocumentReceipt, recovered: bool = False) -> str:
    _record_delivered(session, ctx, [(delivery, receipt, recovered)])
    return "delivered" if receipt.created else "already_there"


def _record_delivered(session: Session, ctx: StepContext, done: list[tuple[DeliveryRow, DocumentReceipt, bool]]) -> None:
    """Write the outcome of successful sends (``(delivery, receipt, recovered_by_lookup)``) in one
    transaction, and empty ``done``."""
    if not done:
        return
    now = ctx.clock()
    # Poll may have recorded a later status while the calls were under way: read it afresh.
    table = DeliveryRow.__table__
    fresh = {row.id: row for row in session.execute(
        select(table.c.id, table.c.state, table.c.doc_status, table.c.doc_status_at).where(table.c.id.in_([d.id for d, _, _ in done])))}
    # A call that outlived its lease may have been found by another worker's lookup, which wrote the outcome.
    taken = [d for d, _, _ in done if fresh[d.id].state == "delivered"]
    for delivery in taken:
        log.warning("outcome already written by another worker ref=%s", delivery.external_ref)
    done[:] = [item for item in done if item[0] not in taken]
    if not done:
        return
    rated = set(session.scalars(select(RatingRow.report_id).where(RatingRow.report_id.in_({d.report_id for d, _, _ in done}))))
    _refresh_other_lanes(session, done)
    healthy = session.info.get(_HEALTHY)
    events = EventBatch(ctx.run_id)
    outcomes: list[dict[str, object]] = []
    statuses: dict[int, str] = {}  # written with the outcomes, by primary key, like them
    for delivery, receipt, recovered in done:
        known = fresh[delivery.id]  # a status poll recorded meanwhile is kept
        doc_status, doc_status_at = (known.doc_status, known.doc_status_at) if known.doc_status is not None else (CanonicalStatus.DELIVERED, now)
        outcome = {"state": "delivered", "document_id": receipt.document_id, "delivered_at": now, "last_error": None,
                   "next_try_at": None, "doc_status": doc_status, "doc_status_at": doc_status_at, "lease_owner": None, "lease_until": None}
        for name, value in outcome.items():
            set_committed_value(delivery, name, value)
        outcomes.append({"delivery_id": delivery.id, **outcome})
        if healthy is None or delivery.target not in healthy:
            circuit.record_success(session, delivery.target, now)
            if healthy is not None:
                healthy.add(delivery.target)
        report = delivery.report
        if report.duplicate_count:  # its duplicates follow it, each with an event: the ORM's way
            refresh_status(session, report, ctx.run_id, rated=report.id in rated)
        else:
            status = derive_status(session, report, rated=report.id in rated)
            if status != report.status:
                statuses[report.id] = status
                set_committed_value(report, "status", status)
        events.add("delivered", report_id=delivery.report_id, delivery_id=delivery.id, status=CanonicalStatus.DELIVERED,
                   target=delivery.target, agency=delivery.agency_code, external_ref=delivery.external_ref,
                   document_id=receipt.document_id, created=receipt.created, recovered_by_lookup=recovered)
    # The chunk's outcomes and statuses by primary key, one statement each; the objects were told above.
    bulk.update_by_key(session.connection(), _DELIVERIES, outcomes, key="delivery_id")
    if statuses:
        bulk.update_by_key(session.connection(), _REPORTS, [{"report_id": key, "status": value} for key, value in statuses.items()],
                           key="report_id")
    events.write(session)
    session.commit()
    for delivery, receipt, _ in done:  # the connector logged the call itself at INFO
        log.debug("delivered report=%s ref=%s document=%s created=%s", delivery.report.source_id, delivery.external_ref,
                  receipt.document_id, receipt.created)
    done.clear()


def _refresh_other_lanes(session: Session, done: list[tuple[DeliveryRow, DocumentReceipt, bool]]) -> None:
    """Read afresh the other lanes of reports handled by several agencies: another worker may
    have delivered one since this batch was claimed, and the report's status depends on all."""
    ours = {d.id for d, _, _ in done}
    others = [sibling for d, _, _ in done for sibling in d.report.deliveries if sibling.id not in ours]
    if not others:
        return
    table = DeliveryRow.__table__
    now = {row.id: row for row in session.execute(select(table.c.id, table.c.state, table.c.doc_status, table.c.published_at)
                                                  .where(table.c.id.in_({d.id for d in others})))}
    for sibling in others:
        for key in ("state", "doc_status", "published_at"):
            set_committed_value(sibling, key, getattr(now[sibling.id], key))


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
