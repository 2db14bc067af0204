"""Alerts: flag reports past their deadline and back ends that keep failing, once each.

Overdue is a flag computed from the deadline, not a status: a report is overdue when its
current delivery (in any lane) has no answer yet and its deadline has passed. Each finding
becomes an event on the trace (``overdue``, ``backend_alert``) so it is raised once, and
the alerts go out through the deployment's channel (``paht_bridge.alerts``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from paht_bridge.alerts import Alert, send_alerts
from paht_bridge.ledger.models import DeliveryRow, EventRow, ReportRow
from paht_bridge.steps.context import StepContext, StepResult
from paht_bridge.steps.status import lane_heads
from paht_bridge.ledger.store import record_event
from paht_bridge.canonical import VIETNAM_TZ, CanonicalStatus

FINISHED = {CanonicalStatus.ANSWERED, CanonicalStatus.REFUSED_BY_AGENCY, CanonicalStatus.RECALLED}


def alerts(ctx: StepContext) -> StepResult:
    result = StepResult(deployment=ctx.mapping.deployment, step="alerts")
    found: list[Alert] = []
    with ctx.sessions() as session:
        if ctx.mapping.alerts.overdue:
            found += _overdue(session, ctx)
        if ctx.mapping.alerts.failing_backend:
            found += _failing_backends(session, ctx)
        channel = send_alerts(found, ctx.mapping)  # a failed send raises: nothing is marked raised
        session.commit()
    result.counts = {kind: sum(a.kind == kind for a in found) for kind in {a.kind for a in found}}
    result.counts["sent_to_" + channel] = len(found)
    return result


def _overdue(session, ctx: StepContext) -> list[Alert]:  # noqa: ANN001 - a Session
    now = ctx.clock()
    due = select(DeliveryRow.report_id).where(DeliveryRow.deployment == ctx.mapping.deployment, DeliveryRow.deadline < now)
    candidates = session.scalars(
        select(ReportRow).options(selectinload(ReportRow.deliveries)).where(ReportRow.id.in_(due))
    ).all()
    already = set(session.scalars(select(EventRow.delivery_id).where(EventRow.kind == "overdue")))
    found = []
    for report in candidates:
        for delivery in lane_heads(report):
            if delivery.deadline >= now or delivery.id in already or delivery.doc_status in FINISHED:
                continue
            record_event(session, "overdue", report_id=report.id, delivery_id=delivery.id, run_id=ctx.run_id,
                         agency=delivery.agency_code, deadline=delivery.deadline.isoformat())
            found.append(Alert(kind="overdue", deployment=ctx.mapping.deployment, report=report.source_id,
                               agency=delivery.agency_code, target=delivery.target, deadline=delivery.deadline,
                               message=f"Phản ánh {report.source_id} quá hạn xử lý ({delivery.deadline.astimezone(VIETNAM_TZ):%d/%m/%Y}) "
                                       f"tại {delivery.agency_name} / overdue"))
    return found


def _failing_backends(session, ctx: StepContext) -> list[Alert]:  # noqa: ANN001 - a Session
    targets = {t.name for t in ctx.mapping.targets}
    opened = session.scalars(select(EventRow).where(EventRow.kind == "circuit_opened").order_by(EventRow.id)).all()
    alerted = {e.detail.get("circuit_event") for e in session.scalars(select(EventRow).where(EventRow.kind == "backend_alert"))}
    found = []
    for event in opened:
        target = event.detail.get("target")
        if target not in targets or event.id in alerted:
            continue
        record_event(session, "backend_alert", report_id=None, run_id=ctx.run_id, target=target, circuit_event=event.id)
        found.append(Alert(kind="failing_backend", deployment=ctx.mapping.deployment, target=target,
                           message=f"Hệ thống {target} liên tục lỗi, tạm ngừng gửi đến {event.detail.get('until')} / back end failing: "
                                   f"{event.detail.get('error')}"))
    return found
