"""Deliver: create each routed report as an incoming document in its agency's system, once.

One path: **claim** a batch under a lease, **mark** it *sending* (one statement, before any
call), **send** each in order, **record** the outcomes (one statement for the successes).
A delivery that may already exist at the target (left *sending* by a dead worker, or
*unknown* after a timeout or an unreadable answer) is looked up by its external reference
first; only if the target has no such document is it sent again. Work is claimed under a
lease so a zombie task beside its retry cannot send the same report twice, and no call is
made without a live lease: past half of it, what was sent is recorded and the lease on the
rest renewed.

Each target gets ``send_concurrency`` senders (threads, each claiming its own share under
its own lease), so a back end that answers slowly is not waited on one call at a time; its
circuit breaker (``ledger.circuit.Breaker``) stops a sender at the first sign of an outage.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paht_bridge.canonical import DocumentReceipt, DocumentRecord, Report, Routing
from paht_bridge.config.deployment import Target
from paht_bridge.connectors.base import DocumentSystem
from paht_bridge.connectors.errors import ConnectorError
from paht_bridge.connectors.spool import spooled_attachments
from paht_bridge.ledger.circuit import Breaker
from paht_bridge.ledger.models import DeliveryRow
from paht_bridge.ledger.store import claim_deliveries, claimable
from paht_bridge.normalise.transforms import build_document
from paht_bridge.steps.context import StepContext, StepResult, log, report_from_row, reraise_after_others
from paht_bridge.steps.delivery_ledger import (
    Done,
    give_back,
    let_go,
    mark_sending,
    record_delivered,
    record_failure,
    record_not_found,
    renew_lease,
)
from paht_bridge.steps.outcome import failure

#: What a deliver step takes: never sent, in doubt (looked up first), or left mid-call by a dead worker.
CLAIMED_STATES = ("pending", "unknown", "sending")


def deliver(ctx: StepContext) -> StepResult:
    """Send every due delivery of the deployment, each target by its own senders. A sender that
    fails (the ledger unreachable, a connection missing) does not stop the others; the step then
    fails with its error, carrying what every sender got through (the run record keeps it)."""
    shares = _shares(ctx)
    senders = [(replace(ctx, worker=f"{ctx.worker}-{spec.name}-{n}", batch_size=shares[spec.name]), spec, n == 0,
                StepResult(deployment=ctx.mapping.deployment, step="deliver"))
               for spec in ctx.mapping.targets for n in range(spec.send_concurrency)]
    stop = threading.Event()  # set when the step itself is stopped: senders end after their current call

    def run(sender: tuple[StepContext, Target, bool, StepResult]) -> Exception | None:
        try:
            _sender(*sender, stop)
        except Exception as error:  # noqa: BLE001 - raised below, once every sender is done
            log.exception("a sender stopped target=%s", sender[1].name)
            return error
        return None

    try:
        if len(senders) == 1:
            failures = [run(senders[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(senders), thread_name_prefix="paht-deliver") as pool:
                failures = list(pool.map(run, senders))
    except BaseException:
        stop.set()
        raise
    result = StepResult(deployment=ctx.mapping.deployment, step="deliver")
    for *_, part in senders:
        for key, value in part.counts.items():
            result.add(key, value)
        result.errors += part.errors
    if failed := [error for error in failures if error is not None]:
        reraise_after_others(failed, result)
    return result


def _shares(ctx: StepContext) -> dict[str, int]:
    """How many deliveries each sender of a target claims at a time: its share of what is due
    now, at most ``batch_size``. With 500 due and 16 senders, batches of 100 would keep 11 of
    them idle and the other 5 sending 100 calls each, one after another."""
    with ctx.sessions() as session:
        due = dict(session.execute(select(DeliveryRow.target, func.count()).where(*claimable(
            ctx.mapping.deployment, CLAIMED_STATES, ctx.clock())).group_by(DeliveryRow.target)).all())
    return {t.name: max(1, min(ctx.batch_size, -(-due.get(t.name, 0) // t.send_concurrency))) for t in ctx.mapping.targets}


def _sender(ctx: StepContext, spec: Target, first: bool, result: StepResult, stop: threading.Event) -> None:
    """Claim and send batches for one target until nothing is due, its circuit is open or the
    step stops, counting into ``result``; ``first``: this sender reports the target's open
    circuit (once per target)."""
    target = ctx.connectors.target(spec.name)  # a missing connection fails here, before anything is claimed
    while not stop.is_set():
        with ctx.sessions() as session:
            breaker = Breaker(session, spec, ctx.clock())
            if breaker.blocked:
                if first:
                    result.add("targets_with_open_circuit")
                break
            batch = claim_deliveries(session, deployment=ctx.mapping.deployment, owner=ctx.worker, states=CLAIMED_STATES,
                                     limit=ctx.batch_size, lease=ctx.lease, now=ctx.clock(), target=spec.name)
            if not batch:
                break
            _Batch(session, ctx, spec, target, breaker, result, stop).send(batch)


def send_claimed(session: Session, ctx: StepContext, spec: Target, batch: list[DeliveryRow]) -> StepResult:
    """Send a batch of ``spec``'s deliveries that ``ctx.worker`` has claimed (what each sender
    does with each claim; for an operator's tool or a test that claims by hand)."""
    result = StepResult(deployment=ctx.mapping.deployment, step="deliver")
    _Batch(session, ctx, spec, ctx.connectors.target(spec.name), Breaker(session, spec, ctx.clock()), result,
           threading.Event()).send(batch)
    return result


@dataclass
class _Item:
    """A claimed delivery and the document it becomes; ``claimed_as``: its state when claimed."""

    delivery: DeliveryRow
    report: Report
    record: DocumentRecord
    claimed_as: str

    @property
    def doubtful(self) -> bool:
        """It may already exist at the target: looked up before it is sent."""
        return self.claimed_as in ("unknown", "sending")


class _Batch:
    """One sender's claimed batch, worked through in order in one session."""

    def __init__(self, session: Session, ctx: StepContext, spec: Target, target: DocumentSystem, breaker: Breaker,
                 result: StepResult, stop: threading.Event) -> None:
        self.session, self.ctx, self.spec, self.target, self.breaker = session, ctx, spec, target, breaker
        self.result, self.stop = result, stop
        self.done: list[Done] = []  # successes not yet written
        self.to_send: list[_Item] = []  # marked *sending* together
        self.attempted: set[int] = set()  # of those, the ones whose call was made
        self.renew_at = ctx.clock() + ctx.lease / 2

    def send(self, batch: list[DeliveryRow]) -> None:
        items = [item for item in map(self._prepare, batch) if item is not None]
        # The cool-down is over: one call at a time until one tells whether the target is back.
        while self.breaker.probing and items and not self.breaker.opened:
            self._send(items[:1], probe=True)
            items = items[1:]
        if self.breaker.opened:  # the probe failed: the rest wait for the next cool-down, untouched
            self._let_go(items)
            return
        self._send(items)

    def _prepare(self, delivery: DeliveryRow) -> _Item | None:
        """Build the delivery's document; bad data in one report dead-letters it, without a call."""
        try:
            report = report_from_row(delivery.report, self.ctx.mapping.privacy)
            routing = Routing(agency_code=delivery.agency_code, agency_name=delivery.agency_name, target=delivery.target,
                              deadline=delivery.deadline, priority=delivery.priority, target_category=delivery.target_category)
            return _Item(delivery, report, build_document(report, routing, self.ctx.mapping, delivery.attempt), delivery.state)
        except Exception as error:  # noqa: BLE001 - typed by ``failure`` as an internal error
            self._failed(delivery, delivery.state, error, sent=False)
            return None

    def _send(self, items: list[_Item], probe: bool = False) -> None:
        """Look up those in doubt, mark the rest *sending* together, then send each in order."""
        to_send: list[_Item] = []
        for index, item in enumerate(items):
            if self._halted():
                self._let_go(items[index:])
                break
            if item.doubtful and self._found(item, probe):
                continue
            to_send.append(item)
        if self._halted():  # a lookup opened the circuit: nothing of this batch is marked
            self._let_go(to_send)
            return
        self.to_send, self.attempted = to_send, set()
        held = mark_sending(self.session, self.ctx, [item.delivery for item in to_send])
        self._count("lease_lost", len(to_send) - len(held))
        self.renew_at = self.ctx.clock() + self.ctx.lease / 2
        for index, item in enumerate(to_send):
            if item.delivery.id not in held:
                continue
            if self._halted():
                self._give_back([i for i in to_send[index:] if i.delivery.id in held])
                break
            self._create(item, held, probe)
        self._write()

    def _found(self, item: _Item, probe: bool) -> bool:
        """Whether the target already holds the delivery's document (a success, written with the
        chunk's), or the lookup failed (recorded); False: not there, to be sent."""
        try:
            receipt = self.target.find_by_ref(item.delivery.external_ref)
        except Exception as error:  # noqa: BLE001 - typed by ``failure``
            self._failed(item.delivery, item.claimed_as, error, sent=False, probe=probe)
            return True
        if receipt is None:
            record_not_found(self.session, self.ctx, item.delivery)
            return False
        self._succeeded(item, receipt.model_copy(update={"created": False}), recovered=True)
        return True

    def _create(self, item: _Item, held: set[int], probe: bool) -> None:
        if not self._still_held(item, held):
            return
        self.attempted.add(item.delivery.id)
        try:
            with spooled_attachments(self.ctx.connectors.source(item.report.source), item.report) as attachments:
                if not self._still_held(item, held):  # a long download: checked again right before the call
                    return
                receipt = self.target.create_document(item.record, attachments)
        except Exception as error:  # noqa: BLE001 - typed by ``failure``
            sent = not isinstance(error, ConnectorError) or error.system == self.spec.name
            self._failed(item.delivery, item.claimed_as, error, sent=sent, probe=probe)
            return
        self._succeeded(item, receipt, recovered=False)

    def _still_held(self, item: _Item, held: set[int]) -> bool:
        """Past half the lease, write what was sent and renew the lease on the rest (what was
        lost is left alone); whether ``item`` is still this worker's to send."""
        if self.ctx.clock() < self.renew_at:
            return item.delivery.id in held
        self._write()  # what was sent is written before its lease can run out
        waiting = [i.delivery for i in self.to_send if i.delivery.id in held and (i.delivery.id not in self.attempted or i is item)]
        kept = renew_lease(self.session, self.ctx, waiting)
        self._count("lease_lost", len(waiting) - len(kept))
        held.intersection_update(kept)
        self.renew_at = self.ctx.clock() + self.ctx.lease / 2
        log.info("lease renewed mid-batch target=%s deliveries=%d", self.spec.name, len(kept))
        return item.delivery.id in held

    def _succeeded(self, item: _Item, receipt: DocumentReceipt, recovered: bool) -> None:
        self.done.append((item.delivery, receipt, recovered))  # written with the chunk's other outcomes
        self.result.add("delivered" if receipt.created else "already_there")
        self.breaker.success(self.session, self.ctx.clock())

    def _failed(self, delivery: DeliveryRow, claimed_as: str, error: BaseException, *, sent: bool, probe: bool = False) -> None:
        if not isinstance(error, ConnectorError):
            log.error("delivery failed inside the bridge ref=%s error=%r", delivery.external_ref, error, exc_info=error)
        doubtful = claimed_as in ("unknown", "sending")
        verdict = failure(error, self.spec, tries=delivery.tries, doubtful=doubtful, sent=sent, probe=probe)
        self._write()  # earlier successes first: the circuit counts in order
        if not record_failure(self.session, self.ctx, delivery, verdict):
            self._count("lease_lost", 1)
            return
        self.result.add(verdict.counted_as)
        if verdict.against_target:
            self.breaker.failure(self.session, verdict.reason, self.ctx.clock(), self.ctx.run_id)
            self.session.commit()

    def _halted(self) -> bool:
        """The target's circuit opened during this batch, or the step is stopping: send no more."""
        return self.breaker.opened or self.stop.is_set()

    def _give_back(self, items: list[_Item]) -> None:
        """Marked *sending* but never sent: back to the state they were claimed in."""
        why, counted = ("the target's circuit opened", "held_by_open_circuit") if self.breaker.opened else ("the step stopped", "stopped")
        for item in items:
            returned = give_back(self.session, self.ctx, item.delivery, "pending" if item.claimed_as == "pending" else "unknown", why)
            self._count(counted if returned else "lease_lost", 1)

    def _let_go(self, items: list[_Item]) -> None:
        """Claimed but not marked: their leases released, nothing else changed."""
        let_go(self.session, self.ctx, [item.delivery for item in items])
        self._count("held_by_open_circuit" if self.breaker.opened else "stopped", len(items))

    def _write(self) -> None:
        record_delivered(self.session, self.ctx, self.done)

    def _count(self, key: str, n: int) -> None:
        if n:
            self.result.add(key, n)
