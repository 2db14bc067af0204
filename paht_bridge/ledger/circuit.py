"""Circuit breaker per document system, kept in the ledger so every worker sees it.

After ``circuit_failures`` (default 10) transient or ambiguous failures in a row the circuit opens and
no delivery is sent to that system until the cool-down ends; then one delivery is let
through (half-open): success closes the circuit, failure opens it again. A back end that is
down for an hour gets a handful of calls, not thousands, and nothing is dead-lettered
because of the outage itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paht_bridge.config.deployment import Target
from paht_bridge.ledger.models import CircuitRow
from paht_bridge.ledger.store import record_event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Circuit:
    """One target's circuit as read at one moment."""

    failures: int
    open_until: datetime | None

    def is_open(self, now: datetime) -> bool:
        return self.open_until is not None and self.open_until > now

    def is_half_open(self, now: datetime) -> bool:
        return self.open_until is not None and self.open_until <= now

    @property
    def troubled(self) -> bool:
        """Failures on record or not yet closed: a success must reset it."""
        return self.failures > 0 or self.open_until is not None


def read(session: Session, targets: Iterable[str]) -> dict[str, Circuit]:
    """The circuits of ``targets`` in one query; a target that never failed has none (closed)."""
    table = CircuitRow.__table__
    wanted = sorted(set(targets))
    if not wanted:
        return {}
    rows = session.execute(select(table.c.target, table.c.failures, table.c.open_until).where(table.c.target.in_(wanted)))
    return {row.target: Circuit(row.failures or 0, row.open_until) for row in rows}


def record_success(session: Session, target: str, now: datetime) -> None:
    session.execute(update(CircuitRow).where(CircuitRow.target == target, (CircuitRow.failures > 0) | CircuitRow.open_until.is_not(None))
                    .values(failures=0, open_until=None, updated_at=now))


def record_failure(session: Session, spec: Target, error: str, now: datetime) -> bool:
    """Count a failure; returns True when this failure opened (or re-opened) the circuit.
    The count is one atomic UPDATE so concurrent workers do not lose each other's failures."""
    values = {"failures": CircuitRow.failures + 1, "last_error": error[:500], "updated_at": now}
    if not session.execute(update(CircuitRow).where(CircuitRow.target == spec.name).values(**values)).rowcount:
        try:
            with session.begin_nested():
                session.add(CircuitRow(target=spec.name, failures=1, open_until=None, last_error=error[:500], updated_at=now))
        except IntegrityError:  # another worker created it first
            session.execute(update(CircuitRow).where(CircuitRow.target == spec.name).values(**values))
    failures = session.scalar(select(CircuitRow.failures).where(CircuitRow.target == spec.name))
    if failures >= spec.circuit_failures:
        session.execute(update(CircuitRow).where(CircuitRow.target == spec.name)
                        .values(open_until=now + timedelta(seconds=spec.circuit_cooldown_seconds)))
        return True
    return False


class Breaker:
    """One target's circuit as one sender sees it: read when the sender claims work, then fed
    the outcome of every call it makes. A success writes nothing unless the circuit has
    failures on record; a failure is counted in the ledger, where every worker sees it."""

    def __init__(self, session: Session, spec: Target, now: datetime) -> None:
        self.spec = spec
        state = read(session, [spec.name]).get(spec.name, Circuit(0, None))
        self.blocked = state.is_open(now)
        #: The cool-down has passed but no success has closed it: the next call is a probe.
        self.probing = state.is_half_open(now)
        self.troubled = state.troubled
        #: It opened during this sender's batch: nothing more is sent to the target now.
        self.opened = False

    def success(self, session: Session, now: datetime) -> None:
        if self.troubled:
            record_success(session, self.spec.name, now)
            self.troubled = self.probing = False

    def failure(self, session: Session, error: str, now: datetime, run_id: str) -> None:
        self.troubled = True
        if record_failure(session, self.spec, error, now):
            self.opened = True
            until = now + timedelta(seconds=self.spec.circuit_cooldown_seconds)
            record_event(session, "circuit_opened", report_id=None, run_id=run_id, target=self.spec.name, until=until.isoformat(), error=error)
            log.error("circuit opened target=%s cooldown=%ss error=%s", self.spec.name, self.spec.circuit_cooldown_seconds, error)
