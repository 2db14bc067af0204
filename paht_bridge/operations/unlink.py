"""Unlink a duplicate: undo a link IOC staff found wrong, so the report gets a document of its own.

Ingest links a new report to an earlier one of the same problem (``steps.ingest``); when the
two turn out to be different problems, the report is routed as if it had just arrived, with
the same delivery rows and ``routed`` events ingest writes for a new report.
"""

from __future__ import annotations

from sqlalchemy import update

from paht_bridge.ledger.models import ReportRow
from paht_bridge.ledger.store import EventBatch
from paht_bridge.normalise.admin_units import resolve_units
from paht_bridge.normalise.transforms import MappingProblem, routes
from paht_bridge.privacy import mask_phones
from paht_bridge.steps.context import StepContext, log, report_from_row
# Ingest's own rows and events for a newly routed report: one definition of a first delivery.
from paht_bridge.steps.ingest import Fresh, first_deliveries, insert_deliveries
from paht_bridge.steps.status import refresh_status

_REPORTS = ReportRow.__table__


class UnlinkRefused(ValueError):
    """Why a report cannot be unlinked (the ledger is left as it was); ``code`` for a translated label."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def unlink_duplicate(ctx: StepContext, report_id: int, reason: str) -> list[str]:
    """Undo a duplicate link that IOC staff found wrong: the report is routed as if it had just
    arrived and gets deliveries of its own (sent by the next deliver run); both traces say why.

    Only before the report's citizen has been answered with the earlier report's outcome: after
    that, the citizen has heard back about another problem, and the IOC takes it up anew.
    Returns the new deliveries' external references. Commits."""
    with ctx.sessions() as session:
        row = session.get(ReportRow, report_id)
        if row is None or row.deployment != ctx.mapping.deployment:
            raise UnlinkRefused("missing", f"no report {report_id} in {ctx.mapping.deployment}")
        key = f"{row.source}:{row.source_id}"
        if row.duplicate_of is None:
            raise UnlinkRefused("not_linked", f"{key} is not linked to another report")
        if row.published_at is not None:
            raise UnlinkRefused("answered", f"{key} was already answered with the linked report's outcome "
                                            f"({row.published_at:%Y-%m-%d %H:%M}): take it up as a new report")
        report = report_from_row(row, ctx.mapping.privacy)
        units = resolve_units(report.location.unit)
        try:
            routings = routes(report, units, ctx.mapping)
        except MappingProblem as problem:
            raise UnlinkRefused("unroutable", f"{key} cannot be routed: {problem}") from None
        primary = session.get(ReportRow, row.duplicate_of)
        assert primary is not None  # a foreign key
        # Conditional, so two people undoing the same link at once cannot both route it.
        taken = session.execute(update(_REPORTS).where(_REPORTS.c.id == row.id, _REPORTS.c.duplicate_of.is_not(None),
                                                       _REPORTS.c.published_at.is_(None)).values(duplicate_of=None))
        if taken.rowcount != 1:
            session.rollback()
            raise UnlinkRefused("not_linked", f"{key} is not linked to another report (any more)")
        session.expire(row, ["duplicate_of", "deliveries"])  # changed above without the ORM
        primary.duplicate_count = ReportRow.duplicate_count - 1  # in SQL, as ingest's ``_link`` adds
        session.flush()
        reason = mask_phones(reason)  # typed by IOC staff: shown on traces and the IOC page
        events = EventBatch(ctx.run_id)
        primary_key = f"{primary.source}:{primary.source_id}"
        events.add("unlinked_duplicate", report_id=row.id, primary=primary_key, primary_id=primary.id, reason=reason)
        events.add("duplicate_unlinked", report_id=primary.id, duplicate=key, duplicate_id=row.id, reason=reason)
        fresh = Fresh(index=0, report=report, units=units, row={}, routings=routings, id=row.id)
        rows = first_deliveries(ctx, row.id, report, routings)
        insert_deliveries(session, ctx, [(fresh, delivery) for delivery in rows], events)
        events.write(session)
        refresh_status(session, row, ctx.run_id)
        session.commit()
    log.info("duplicate link undone report=%s primary=%s deliveries=%s", key, primary_key, len(rows))
    return [delivery["external_ref"] for delivery in rows]
