"""An answer reaches the citizen once, even when the task dies between the call and the ledger."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import DeliveryRow, EventRow
from paht_bridge.sandbox.backlog import load_backlog
from paht_bridge.sandbox.stack import SandboxStack
from paht_bridge.steps import deliver, poll, publish
from tests.chaos.harness import contexts, ingest_all
from tests.lifecycle_checks import citizen_reports


def _answered(stack: SandboxStack, url: str) -> None:
    """Deliver, then let the desks move every document on until its answer is polled."""
    ctx = next(c for c in contexts(url, "answer") if c.mapping.deployment == "quang_tri")
    deliver(ctx)
    for _ in range(8):
        stack.urls.tick_desks()
        poll(ctx)
    with sessions(url)() as session:
        assert set(session.scalars(select(DeliveryRow.doc_status).where(DeliveryRow.deployment == "quang_tri"))) == {"answered"}


def test_a_publish_repeated_after_a_crash_before_its_record_is_one_outcome(stack: SandboxStack, ledger_url: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    load_backlog(stack, 4)  # two reports for Quảng Trị
    ingest_all(ledger_url)
    _answered(stack, ledger_url)
    ctx = next(c for c in contexts(ledger_url, "publish") if c.mapping.deployment == "quang_tri")
    sent: list[object] = []
    real = ctx.connectors.source("quangtri_ioc").publish_outcome

    def publish_then_die(outcome):  # noqa: ANN001, ANN202 - the call reaches the app; the task dies before its record
        real(outcome)
        sent.append(outcome)
        raise SystemExit("killed")

    monkeypatch.setattr(ctx.connectors.source("quangtri_ioc"), "publish_outcome", publish_then_die)
    with pytest.raises(SystemExit):
        publish(ctx)
    monkeypatch.undo()
    with sessions(ledger_url).begin() as session:  # meanwhile the agency amended its answer: the repeat says something else
        delivery = session.scalars(select(DeliveryRow).where(DeliveryRow.answer.is_not(None))).first()
        delivery.answer = f"{delivery.answer} (đã bổ sung)"
    assert publish(ctx).counts == {"published": 2}
    apps = citizen_reports(stack.urls.urls["quangtri_ioc"])
    told = {sid: app for sid, app in apps.items() if app["outcomes"]}
    assert len(told) == 2 and all(len(app["outcomes"]) == 1 for app in told.values())
    assert sum(app["publish_calls"] for app in told.values()) == 3  # the first report's answer was posted twice
    assert {o["key"] for app in told.values() for o in app["outcomes"]} >= {sent[0].key}
    with sessions(ledger_url)() as session:
        assert len(session.scalars(select(EventRow).where(EventRow.kind == "published")).all()) == 2
