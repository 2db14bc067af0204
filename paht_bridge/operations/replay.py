"""Replay dead letters: give dead deliveries another round, safely.

A replayed delivery becomes *unknown*, not pending: the deliver step then looks it up by
its external reference before sending, so a dead letter that did reach the agency (a
timeout after commit, say) is never created a second time.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from paht_bridge.ledger.models import DeliveryRow, ReportRow
from paht_bridge.ledger.store import record_event


def replay_dead_letters(
    session: Session,
    *,
    source_id: str | None = None,
    agency_code: str | None = None,
    reason_contains: str | None = None,
    deployment: str | None = None,
    run_id: str = "replay",
) -> list[str]:
    """Put matching dead deliveries back in line; returns their external references. Commits."""
    query = select(DeliveryRow).join(ReportRow).where(DeliveryRow.state == "dead")
    if source_id:
        query = query.where(ReportRow.source_id == source_id)
    if agency_code:
        query = query.where(DeliveryRow.agency_code == agency_code)
    if reason_contains:
        query = query.where(DeliveryRow.last_error.contains(reason_contains))
    if deployment:
        query = query.where(DeliveryRow.deployment == deployment)
    replayed = []
    for delivery in session.scalars(query):
        record_event(session, "replayed", report_id=delivery.report_id, delivery_id=delivery.id, run_id=run_id,
                     previous_error=delivery.last_error)
        delivery.state, delivery.tries, delivery.next_try_at = "unknown", 0, None
        delivery.lease_owner = delivery.lease_until = None
        replayed.append(delivery.external_ref)
    session.commit()
    return replayed
