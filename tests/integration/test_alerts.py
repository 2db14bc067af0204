"""Alerts reach IOC staff once: a report past its deadline, a back end that keeps failing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi import FastAPI, Request
from sqlalchemy import select

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import EventRow
from paht_bridge.steps import StepContext, alerts, deliver, ingest
from paht_bridge.canonical import vietnam_now
from paht_bridge.config.deployment import Deployment, deployment, deployment_names
from paht_bridge.sandbox.backlog import synthetic_reports
from paht_bridge.sandbox.server import LoopbackServer


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    received: list[dict] = []
    app = FastAPI()

    @app.post("/hooks/ioc")
    async def hook(request: Request) -> dict:
        received.extend(json.loads(await request.body()))
        return {"ok": True}

    server = LoopbackServer(app).start()
    monkeypatch.setenv("AIRFLOW_CONN_PAHT_IOC_ALERTS", json.dumps({"conn_type": "http", "host": server.url, "extra": {"path": "/hooks/ioc"}}))
    yield received
    server.stop()


def quang_tri_with_webhook(**target_changes: object) -> Deployment:
    data = deployment("quang_tri").model_dump(mode="json")
    data["alerts"]["webhook_connection_id"] = "paht_ioc_alerts"
    for target in data["targets"]:
        target.update(target_changes)
    return Deployment.model_validate(data)


def test_a_report_past_its_deadline_is_alerted_once_and_marked_on_its_trace(stack, ledger_url, webhook) -> None:
    mapping = quang_tri_with_webhook()
    reports = [r for s, r in synthetic_reports(6) if s == "quangtri_ioc"]
    for report in reports:
        report["created_at"] = vietnam_now().isoformat()  # fresh reports: not overdue yet
        stack.citizen_states["quangtri_ioc"].add_report(report)
    ctx = StepContext(mapping=mapping, sessions=sessions(ledger_url), connectors=AirflowConnectors(mapping), run_id="alerts")
    ingest(ctx)
    deliver(ctx)
    assert alerts(ctx).counts == {"sent_to_none": 0}  # nothing is due yet
    ctx.clock = lambda: vietnam_now() + timedelta(days=20)  # every deadline (at most 15 days) has passed
    assert alerts(ctx).counts == {"overdue": 3, "sent_to_webhook": 3}
    assert alerts(ctx).counts == {"sent_to_none": 0}  # once per delivery, not every run
    assert {a["kind"] for a in webhook} == {"overdue"} and len(webhook) == 3
    assert {a["report"] for a in webhook} == {r["id"] for r in reports}
    phones = {r["reporter"]["phone"] for r in reports}
    assert not [p for p in phones if p in json.dumps(webhook)]
    with sessions(ledger_url)() as session:
        assert len(session.scalars(select(EventRow).where(EventRow.kind == "overdue")).all()) == 3


def test_a_back_end_that_keeps_failing_raises_one_alert(stack, ledger_url, webhook) -> None:
    mapping = quang_tri_with_webhook(circuit_failures=2)
    for source, report in synthetic_reports(8):
        stack.citizen_states[source].add_report(report)
    ctx = StepContext(mapping=mapping, sessions=sessions(ledger_url), connectors=AirflowConnectors(mapping), run_id="alerts")
    ctx.clock = lambda: vietnam_now() - timedelta(days=400)  # keep the deadline alerts out of this test
    ingest(ctx)
    stack.take_down("qoffice_quangtri")
    deliver(ctx)
    counts = alerts(ctx).counts
    assert counts == {"failing_backend": 1, "sent_to_webhook": 1}, counts
    assert webhook[0]["target"] == "qoffice_quangtri" and webhook[0]["kind"] == "failing_backend"
    assert alerts(ctx).counts == {"sent_to_none": 0}


def test_a_failed_lifecycle_task_is_alerted_through_the_airflow_notifier(caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from paht_bridge.alerts import PahtAlertNotifier

    with caplog.at_level("ERROR", logger="paht_bridge.alerts"):
        PahtAlertNotifier().notify({"ti": SimpleNamespace(dag_id="paht_deliver", task_id="deliver"), "run_id": "scheduled__x"})
    lines = [r.getMessage() for r in caplog.records if r.name == "paht_bridge.alerts"]
    assert len(lines) == len(deployment_names()) and all("paht_deliver.deliver (run scheduled__x)" in line for line in lines)  # every deployment
