"""Reconcile: compare the ledger with each source and each target, and report drift.

It repairs nothing by itself (the other steps own every transition); it says what differs
so a person or a replay can act: reports a source has that the ledger lacks, documents a
target holds that the ledger does not know as delivered, deliveries the ledger calls
delivered that the target does not have, and statuses that disagree. Each finding is an
event on the report's trace (``drift``) and the counts go to the sync run.

A linked duplicate (the same problem reported again) is a report at its source but has no
document of its own by design: it is counted apart (``<source>.linked_duplicates``, so the
ledger's reports and the targets' documents add up) and never reported as drift.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paht_bridge.ledger.models import DeliveryRow, QuarantineRow, ReportRow
from paht_bridge.steps.context import StepContext, StepResult, log
from paht_bridge.ledger.store import record_event

OUR_PREFIX = "PAHT-"


def reconcile(ctx: StepContext) -> StepResult:
    result = StepResult(deployment=ctx.mapping.deployment, step="reconcile")
    # Each system is read whole before the ledger is written, and each write is short: a
    # write transaction must not stay open across a full network scan (SQLite has one writer).
    for source in ctx.mapping.sources:
        remote = _source_ids(ctx, source.name)
        with ctx.sessions() as session:
            _reconcile_source(session, ctx, source.name, remote, result)
            session.commit()
    for target in ctx.mapping.targets:
        latest = _target_codes(ctx, target.name)
        with ctx.sessions() as session:
            _reconcile_target(session, ctx, target.name, latest, result)
            session.commit()
    log.info("reconcile deployment=%s counts=%s", ctx.mapping.deployment, result.counts)
    return result


def _source_ids(ctx: StepContext, source: str) -> set[str]:
    remote: set[str] = set()
    for page in ctx.connectors.source(source).reports_since(None):
        remote.update(report.source_id for report in page.items)
        remote.update(bad.source_id for bad in page.quarantined if bad.source_id)
    return remote


def _target_codes(ctx: StepContext, target: str) -> dict[str, str]:
    """The latest raw status of every document of ours in the target."""
    latest: dict[str, str] = {}
    for page in ctx.connectors.target(target).changes_since(None):
        for change in page.items:
            if change.external_ref.startswith(OUR_PREFIX):
                latest[change.external_ref] = change.raw_code  # the feed is oldest first
    return latest


def _reconcile_source(session: Session, ctx: StepContext, source: str, remote: set[str], result: StepResult) -> None:
    known = set(session.scalars(select(ReportRow.source_id).where(ReportRow.source == source)))
    quarantined = set(session.scalars(select(QuarantineRow.source_id).where(QuarantineRow.source == source)))
    result.add(f"{source}.reports_at_source", len(remote))
    result.add(f"{source}.reports_in_ledger", len(known))
    linked = session.scalar(select(func.count(ReportRow.id)).where(ReportRow.source == source, ReportRow.duplicate_of.is_not(None)))
    if linked:
        result.add(f"{source}.linked_duplicates", linked)
    for source_id in sorted(remote - known - quarantined):
        record_event(session, "drift", report_id=None, run_id=ctx.run_id, kind_of_drift="missing_in_ledger",
                     source=source, source_id=source_id)
        result.add("missing_in_ledger")
    for row in session.scalars(select(ReportRow).where(ReportRow.source == source, ReportRow.source_id.in_(known - remote))):
        record_event(session, "drift", report_id=row.id, run_id=ctx.run_id, kind_of_drift="unknown_to_source", source=source)
        result.add("unknown_to_source")


def _reconcile_target(session: Session, ctx: StepContext, target: str, latest: dict[str, str], result: StepResult) -> None:
    deliveries = {d.external_ref: d for d in session.scalars(select(DeliveryRow).where(DeliveryRow.target == target))}
    delivered = {ref for ref, d in deliveries.items() if d.state == "delivered"}
    result.add(f"{target}.documents_at_target", len(latest))
    result.add(f"{target}.delivered_in_ledger", len(delivered))
    for ref in sorted(delivered - set(latest)):
        _drift(session, ctx, deliveries[ref], "missing_in_target", result)
    for ref in sorted(set(latest) - delivered):
        if ref in deliveries:
            _drift(session, ctx, deliveries[ref], "not_recorded_as_delivered", result, state=deliveries[ref].state)
        else:
            record_event(session, "drift", report_id=None, run_id=ctx.run_id, kind_of_drift="unknown_document",
                         target=target, external_ref=ref)
            result.add("unknown_document")
    for ref in sorted(delivered & set(latest)):
        delivery = deliveries[ref]
        if delivery.doc_raw_code and delivery.doc_raw_code != latest[ref]:
            _drift(session, ctx, delivery, "status_differs", result, ledger=delivery.doc_raw_code, target=latest[ref])


def _drift(session: Session, ctx: StepContext, delivery: DeliveryRow, kind: str, result: StepResult, **detail: object) -> None:
    record_event(session, "drift", report_id=delivery.report_id, delivery_id=delivery.id, run_id=ctx.run_id,
                 kind_of_drift=kind, external_ref=delivery.external_ref, **detail)
    result.add(kind)
