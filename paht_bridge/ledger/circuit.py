"""Circuit breaker per document system, kept in the ledger so every worker sees it.

After ``circuit_failures`` (default 10) transient or ambiguous failures in a row the circuit opens and
no delivery is sent to that system until the cool-down ends; then one delivery is let
through (half-open): success closes the circuit, failure opens it again. A back end that is
down for an hour gets a handful of calls, not thousands, and nothing is dead-lettered
because of the outage itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from paht_bridge.ledger.models import CircuitRow
from paht_bridge.config.deployment import Target


def _current(session: Session, target: str) -> CircuitRow | None:
    """Read fresh: other workers change circuits; the session's copy may be stale."""
    return session.scalars(select(CircuitRow).where(CircuitRow.target == target).execution_options(populate_existing=True)).first()


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


def is_open(session: Session, target: str, now: datetime) -> bool:
    row = _current(session, target)
    return bool(row and row.open_until and row.open_until > now)


def is_half_open(session: Session, target: str, now: datetime) -> bool:
    """The cool-down has passed but the circuit has not yet seen a success."""
    row = _current(session, target)
    return bool(row and row.open_until and row.open_until <= now)


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
