"""Circuit breaker per document system, kept in the ledger so every worker sees it.

After ``circuit_failures`` (default 10) transient or ambiguous failures in a row the circuit opens and
no delivery is sent to that system until the cool-down ends; then one delivery is let
through (half-open): success closes the circuit, failure opens it again. A back end that is
down for an hour gets a handful of calls, not thousands, and nothing is dead-lettered
because of the outage itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from paht_bridge.ledger.models import CircuitRow
from paht_bridge.mappings.config import Target


def _row(session: Session, target: str, now: datetime) -> CircuitRow:
    row = session.get(CircuitRow, target)
    if row is None:
        row = CircuitRow(target=target, failures=0, open_until=None, updated_at=now)
        session.add(row)
    return row


def is_open(session: Session, target: str, now: datetime) -> bool:
    row = session.get(CircuitRow, target)
    return bool(row and row.open_until and row.open_until > now)


def is_half_open(session: Session, target: str, now: datetime) -> bool:
    """The cool-down has passed but the circuit has not yet seen a success."""
    row = session.get(CircuitRow, target)
    return bool(row and row.open_until and row.open_until <= now)


def record_success(session: Session, target: str, now: datetime) -> None:
    row = session.get(CircuitRow, target)
    if row is not None and (row.failures or row.open_until):
        row.failures, row.open_until, row.updated_at = 0, None, now


def record_failure(session: Session, spec: Target, error: str, now: datetime) -> bool:
    """Count a failure; returns True when this failure opened (or re-opened) the circuit."""
    row = _row(session, spec.name, now)
    row.failures += 1
    row.last_error, row.updated_at = error[:500], now
    if row.failures >= spec.circuit_failures:
        row.open_until = now + timedelta(seconds=spec.circuit_cooldown_seconds)
        return True
    return False
