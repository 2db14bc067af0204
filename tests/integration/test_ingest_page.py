"""A page of reports goes into the ledger as a few multi-row statements (``take_page``);
what a page can hold must still come out right: a report first seen on the page and
changed further down it, a repeat, a report that cannot be routed, one routed to two agencies."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import requests

from sqlalchemy import select

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import decrypt, sessions
from paht_bridge.ledger.models import DeliveryRow, EventRow, ReportRow
from paht_bridge.steps import StepContext
from paht_bridge.steps.ingest import take_page
from paht_bridge.config.deployment import deployment
from paht_bridge.sandbox.citizen_app import load_seed_reports
from paht_bridge.sandbox.stack import CITIZEN_KEY, SandboxStack

SOURCE = "quangtri_ioc"


def _version(raw: dict, minutes_later: float, **changes: object) -> dict:
    item = copy.deepcopy(raw)
    since = raw.get("updated_at") or raw["created_at"]  # the app sends updated_at once a report changed
    item["updated_at"] = (datetime.fromisoformat(since) + timedelta(minutes=minutes_later)).isoformat()
    item.update(changes)
    return item


def test_a_page_with_a_change_a_repeat_and_an_unroutable_report_is_stored_as_it_ends(stack: SandboxStack, ledger_url: str) -> None:
    mapping = deployment("quang_tri")
    ctx = StepContext(mapping=mapping, sessions=sessions(ledger_url), connectors=AirflowConnectors(mapping), run_id="page")
    for seed in load_seed_reports(SOURCE)[:2]:
        stack.citizen_states[SOURCE].add_report(seed)
    first, other = requests.get(f"{stack.urls.urls[SOURCE]}/api/v1/reports", params={"limit": 2}, timeout=30,
                                headers={"X-API-Key": CITIZEN_KEY}).json()["data"]  # as the app sends them
    changed = _version(first, 30, title="Mất điện lại cả ngày hôm sau")
    stranger = _version(other, 0, id="QT-2026-990001")
    stranger["category"] = {"code": "KHONG-CO", "name": "Không có trong bảng ánh xạ"}  # no routing rule knows it
    page, bad = ctx.connectors.source(SOURCE).parse_reports([first, other, changed, first, stranger])
    assert not bad and len(page) == 5

    with ctx.sessions.begin() as session:
        outcomes = take_page(session, ctx, page)
    assert outcomes == ["received", "received", "updated", "repeated", "needs_review"]

    with sessions(ledger_url)() as session:
        rows = {r.source_id: r for r in session.scalars(select(ReportRow))}
        assert sorted(rows) == sorted([first["id"], other["id"], stranger["id"]])  # the repeat and the change: one row
        row = rows[first["id"]]
        assert row.title == "Mất điện lại cả ngày hôm sau" and row.payload["title"] == row.title  # the newest version
        assert row.updated_at == page[2].updated_at
        assert row.status == "routed" and rows[other["id"]].status == "routed"
        assert decrypt(row.reporter_phone_enc) == first["reporter"]["phone"]  # encrypted at rest, not lost
        assert rows[stranger["id"]].status == "received" and "KHONG-CO" in rows[stranger["id"]].problem
        deliveries = session.scalars(select(DeliveryRow).where(DeliveryRow.report_id == row.id)).all()
        assert [(d.state, d.attempt, d.tries) for d in deliveries] == [("pending", 1, 0)] * len(deliveries) and deliveries
        assert session.scalars(select(DeliveryRow).where(DeliveryRow.report_id == rows[stranger["id"]].id)).all() == []
        trace = session.scalars(select(EventRow).where(EventRow.report_id == row.id).order_by(EventRow.id)).all()
        kinds = [e.kind for e in trace]
        assert kinds.index("received") < kinds.index("updated") and kinds.count("routed") == len(deliveries)
        routed = [e for e in trace if e.kind == "routed"]
        assert {e.delivery_id for e in routed} == {d.id for d in deliveries}  # each event names its own delivery
        assert [e.kind for e in session.scalars(select(EventRow).where(EventRow.report_id == rows[stranger["id"]].id)
                                                .order_by(EventRow.id))] == ["received", "needs_review"]

    with ctx.sessions.begin() as session:  # the same page again: nothing new
        assert take_page(session, ctx, page) == ["repeated", "repeated", "repeated", "repeated", "repeated"]


def test_an_apps_own_status_change_is_no_citizen_update(stack: SandboxStack, ledger_url: str) -> None:
    """When the bridge publishes an outcome, the app moves the report's status and its
    ``updated_at``; a feed ordered by change time (Open311) then brings the report again. That
    echo is stored (the newest version) but is not an ``updated`` event, "Người dân cập nhật"
    on the trace: the citizen said nothing new. A changed description still is one."""
    mapping = deployment("quang_tri")
    ctx = StepContext(mapping=mapping, sessions=sessions(ledger_url), connectors=AirflowConnectors(mapping), run_id="echo")
    stack.citizen_states[SOURCE].add_report(load_seed_reports(SOURCE)[0])
    (first,) = requests.get(f"{stack.urls.urls[SOURCE]}/api/v1/reports", params={"limit": 1}, timeout=30,
                            headers={"X-API-Key": CITIZEN_KEY}).json()["data"]
    echo = _version(first, 30, status="da_xu_ly")
    edited = _version(echo, 30, description=first["description"] + " Đến nay vẫn chưa sửa.")
    page, bad = ctx.connectors.source(SOURCE).parse_reports([first, echo, edited])
    assert not bad and page[1].source_status != page[0].source_status

    outcomes = []
    for report in page:  # each on its own page, as three runs would bring them
        with ctx.sessions.begin() as session:
            outcomes += take_page(session, ctx, [report])
    assert outcomes == ["received", "repeated", "updated"]
    with sessions(ledger_url)() as session:
        row = session.scalar(select(ReportRow).where(ReportRow.source_id == first["id"]))
        kinds = session.scalars(select(EventRow.kind).where(EventRow.report_id == row.id)).all()
        assert row.updated_at == page[2].updated_at and row.payload["description"].endswith("Đến nay vẫn chưa sửa.")
    assert kinds.count("updated") == 1
