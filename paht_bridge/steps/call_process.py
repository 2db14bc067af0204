"""The deliver step's calls in a process of their own, so its ledger work runs beside them.

On a fast back end the bridge's own work per report (claiming, marking *sending*, writing
outcomes) is a third of a create's time; on one core it adds to it. A thread cannot hide it
(CPython's GIL: the answer waits for the step's thread, ``bench/NOTES.md``); a forked child
on the other core can. The child only calls: every decision about the ledger, the lease and
the circuit stays with the step, which hands it a chunk at a time and reads back what
happened, in order. Where the connector can (``PreparesCreates``), the step also builds each
request while the child sends the chunk before: the child only posts it and reads the answer.

What keeps exactly-once across the boundary:
- the child is handed only deliveries already recorded *sending* under a live lease;
- it makes no call past ``stop_by`` (half the lease, on the shared monotonic clock), nor
  once the step has gone (its pipe closed): a rival can take a delivery over only after
  its lease has run out;
- at the first failed call, or a stop for the lease, it stops and answers every chunk
  queued behind as *halted*, untouched, until the step, having written the outcomes in
  order, says ``resume``;
- whatever it sent and the step never read back stays *sending*, and is looked up by
  reference before any further attempt (DESIGN §4), as after any crash.

The child is forked after the step's clients are built (``steps.forked``: what it inherits
and what it must not do).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from paht_bridge.connectors.base import PreparedSend
from paht_bridge.connectors.spool import spooled_attachments
from paht_bridge.steps import forked
from paht_bridge.canonical import DocumentReceipt, DocumentRecord, Report

log = logging.getLogger("paht_bridge.steps")

#: A chunk's answer ends early for one of these (``None``: every call was made).
FAILED, LEASE, HALTED = "failed", "lease", "halted"
_RESUME = "resume"


class CallProcessDied(RuntimeError):
    """The call process ended mid-chunk: what it sent stays *sending*, looked up next time."""


@dataclass(frozen=True)
class Call:
    """One create, as the child needs it: its request built by the step (``prepared``), or
    the record to build it from, with ``report`` only when attachments are to be fetched."""

    target: str
    record: DocumentRecord | None
    report: Report | None = None
    prepared: PreparedSend | None = None


@dataclass
class Answer:
    """What became of a chunk: ``receipts`` for its first calls, in order; then, if ``stopped``,
    the call at ``len(receipts)`` failed with ``error`` (FAILED) or was never made."""

    receipts: list[DocumentReceipt]
    stopped: str | None = None
    error: BaseException | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)


class CallProcess:
    """A forked child making one deployment's creates, a chunk at a time, in the order given."""

    def __init__(self, connectors: Any) -> None:
        parent = os.getpid()
        self.pid, self._ours = forked.start(lambda conn, records: _serve(conn, records, connectors, parent))
        log.info("calls go through a process of their own pid=%s", self.pid)

    def submit(self, calls: Sequence[Call], stop_by: float) -> None:
        """Queue a chunk: made in order after those queued before, none after ``stop_by`` (``time.monotonic``)."""
        self._send((list(calls), stop_by))

    def resume(self) -> None:
        """After a stop: the chunks submitted from now on are made again."""
        self._send(_RESUME)

    def collect(self) -> Answer:
        """The answer to the oldest queued chunk (waits for it); its log records are logged here."""
        try:
            answer: Answer = self._ours.recv()
        except (EOFError, OSError) as error:
            raise CallProcessDied(f"the call process (pid {self.pid}) ended mid-chunk: {error.__class__.__name__}") from error
        forked.relog(answer.logs)
        answer.logs = []
        return answer

    def close(self, wait: float = 30.0) -> None:
        """Stop the child once it has finished what it is making; killed if it takes longer than ``wait``."""
        if not self._ours.closed:
            forked.stop(self.pid, self._ours, wait)

    def kill(self) -> None:
        """Stop the child now, mid-call if need be (the step failed): as after a crash, what it
        sent stays *sending* and is looked up by reference before any further attempt."""
        self.close(wait=0.0)

    def _send(self, message: Any) -> None:
        try:
            self._ours.send(message)
        except OSError as error:
            raise CallProcessDied(f"the call process (pid {self.pid}) is gone: {error.__class__.__name__}") from error


def _serve(conn: Connection, records: list[dict[str, Any]], connectors: Any, parent: int) -> None:
    """The child's loop: one answer per chunk, in order; halted after a failure or a stop until resumed."""
    halted = False
    while (message := conn.recv()) is not None:
        if message == _RESUME:
            halted = False
            continue
        calls, stop_by = message
        answer = Answer(receipts=[], stopped=HALTED) if halted else _make(calls, stop_by, connectors, parent)
        halted = answer.stopped is not None
        answer.logs = forked.taken(records)
        conn.send(answer)


def _make(calls: list[Call], stop_by: float, connectors: Any, parent: int) -> Answer:
    answer = Answer(receipts=[])
    for call in calls:
        if time.monotonic() >= stop_by or os.getppid() != parent:  # past half the lease, or the step is gone
            answer.stopped = LEASE
            return answer
        try:
            if call.prepared is not None:
                answer.receipts.append(connectors.target(call.target).send_prepared(call.prepared))
                continue
            source = connectors.source(call.report.source) if call.report is not None else None
            with spooled_attachments(source, call.report) if source is not None else nullcontext([]) as attachments:
                if attachments and time.monotonic() >= stop_by:  # a long download: checked again right before the call
                    answer.stopped = LEASE
                    return answer
                answer.receipts.append(connectors.target(call.target).create_document(call.record, attachments))
        except Exception as error:  # noqa: BLE001 - the step decides by its type, as for a call of its own
            answer.stopped, answer.error = FAILED, forked.sendable(error)
            return answer
    return answer
