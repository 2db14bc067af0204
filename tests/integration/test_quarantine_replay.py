"""A quarantined report shows in the trace and is taken in when replayed after a fix; one
broken citizen app does not stop the other's reports."""

from __future__ import annotations

import copy
import json

import pytest
from sqlalchemy import select

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import QuarantineRow, ReportRow
from paht_bridge.ledger.stats import trace
from paht_bridge.steps import StepContext, ingest
from paht_bridge.connectors.errors import ConnectorError
from paht_bridge.steps.context import partial_result
from paht_bridge.config.deployment import deployment
from paht_bridge.operations.quarantine import replay_quarantine
from paht_bridge.sandbox.citizen_app import load_seed_reports
from paht_bridge.sandbox.stack import SandboxStack


def context(url: str, name: str) -> StepContext:
    mapping = deployment(name)
    return StepContext(mapping=mapping, sessions=sessions(url), connectors=AirflowConnectors(mapping), run_id=f"test-{name}")


def test_a_quarantined_report_is_traced_and_taken_in_when_replayed_after_a_fix(
    stack: SandboxStack, ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, long = copy.deepcopy(load_seed_reports("quangtri_ioc")[:2])
    long["description"] = "Ổ gà rất sâu trên đường. " * 60  # about 1,500 characters
    stack.citizen_states["quangtri_ioc"].add_report(good)
    stack.citizen_states["quangtri_ioc"].add_report(long)
    conn_var = "AIRFLOW_CONN_PAHT_CITIZEN_QUANGTRI"
    strict = json.loads(stack.urls.connection_env()[conn_var])
    strict["extra"]["limits"] = {"max_description_chars": 1000}
    monkeypatch.setenv(conn_var, json.dumps(strict))

    counts = ingest(context(ledger_url, "quang_tri")).counts
    assert counts == {"received": 1, "quarantined": 1}, counts
    with sessions(ledger_url)() as session:
        found = trace(session, long["id"])
        assert found is not None and found.status == "quarantined"
        assert "description" in found.events[0].detail["reason"]
        assert long["reporter"]["phone"] not in session.scalar(select(QuarantineRow.raw))

    # The fix: the province raises the limit on the connection. Replay takes the report in.
    monkeypatch.setenv(conn_var, json.dumps({**strict, "extra": {**strict["extra"], "limits": {}}}))
    assert replay_quarantine(context(ledger_url, "quang_tri")).counts == {"taken_in": 1}
    with sessions(ledger_url)() as session:
        row = session.scalar(select(ReportRow).where(ReportRow.source_id == long["id"]))
        assert row is not None and row.status == "routed"
        kinds = [e.kind for e in trace(session, long["id"]).events]
        assert kinds[:3] == ["received", "routed", "replayed_from_quarantine"]
        assert session.scalar(select(QuarantineRow.resolved_at)) is not None
    assert replay_quarantine(context(ledger_url, "quang_tri")).counts == {}  # nothing left to replay


def test_one_broken_citizen_app_does_not_hold_up_the_other(stack: SandboxStack, ledger_url: str) -> None:
    from paht_bridge.config.deployment import Deployment

    base = deployment("dien_bien").model_dump(mode="json")
    base["sources"].append({"name": "broken_app", "kind": "citizen_app", "connection_id": "paht_citizen_quangtri"})
    base["sources"].reverse()  # the broken one first
    mapping = Deployment.model_validate(base)
    for report in load_seed_reports("dienbien_smart")[:3]:
        stack.citizen_states["dienbien_smart"].add_report(report)
    stack.chaos["quangtri_ioc"].configure(down=True)
    ctx = StepContext(mapping=mapping, sessions=sessions(ledger_url), connectors=AirflowConnectors(mapping), run_id="isolation")
    with pytest.raises(ConnectorError) as failed:  # the broken app's own typed error, raised last
        ingest(ctx)
    assert failed.value.system == "broken_app"
    assert partial_result(failed.value).counts == {"received": 3}  # Điện Biên Smart's reports arrived anyway
