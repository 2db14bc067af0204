"""Replay the quarantine: take in quarantined reports again after a fix (to a mapping, a
limit or the connector).

The payload kept encrypted at quarantine is parsed again by the source's connector; what
parses now goes through ingest's own ``take_in``, as if it had just arrived. Items of other
feeds (ratings, document changes) are left to their feed's next pull, which reads them again.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from paht_bridge.canonical import vietnam_now
from paht_bridge.ledger.db import decrypt
from paht_bridge.ledger.models import QuarantineRow, ReportRow
from paht_bridge.ledger.store import record_event
from paht_bridge.steps.context import StepContext, StepResult
from paht_bridge.steps.ingest import take_in


def replay_quarantine(ctx: StepContext, ids: list[int] | None = None) -> StepResult:
    """Replay the deployment's unresolved quarantined reports (or only ``ids``): what parses now is
    taken in and its row resolved, what does not keeps its (new) reason. Commits."""
    result = StepResult(deployment=ctx.mapping.deployment, step="replay_quarantine")
    sources = [s.name for s in ctx.mapping.sources]
    with ctx.sessions() as session:
        query = select(QuarantineRow).where(
            QuarantineRow.deployment == ctx.mapping.deployment, QuarantineRow.resolved_at.is_(None),
            QuarantineRow.raw_enc.is_not(None), QuarantineRow.source.in_(sources),
        )
        if ids:
            query = query.where(QuarantineRow.id.in_(ids))
        for row in session.scalars(query):
            if row.reason.startswith(("ratings:", "changes:")):
                continue  # feeds other than reports are replayed by their own next pull
            reports, still_bad = ctx.connectors.source(row.source).parse_reports([json.loads(decrypt(row.raw_enc))])
            if reports:
                outcome = take_in(session, ctx, reports[0])
                row.resolved_at = vietnam_now()
                taken = session.scalar(select(ReportRow.id).where(ReportRow.source == row.source, ReportRow.source_id == reports[0].source_id))
                record_event(session, "replayed_from_quarantine", report_id=taken, run_id=ctx.run_id, quarantine_id=row.id, outcome=outcome)
                result.add("taken_in")
            else:
                row.reason = still_bad[0].reason if still_bad else row.reason
                record_event(session, "still_quarantined", report_id=None, run_id=ctx.run_id, quarantine_id=row.id,
                             source=row.source, source_id=row.source_id, reason=row.reason)
                result.add("still_quarantined")
        session.commit()
    return result
