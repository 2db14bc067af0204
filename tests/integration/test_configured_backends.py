"""Configured back ends: the same stand-ins, described by YAML instead of a built-in connector.

``tests/fixtures/mappings`` holds the two shipped deployments with their document systems
rewritten as ``kind: soap`` (the edXML service, from its WSDL) and ``kind: rest`` (the
TDOffice API, from endpoint templates and JSON paths). Every seeded report must go round
exactly as with the built-in connectors: one document each, answered, published, rated.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from paht_bridge.connectors.configured_rest import ConfiguredRestClient
from paht_bridge.connectors.configured_soap import ConfiguredSoapClient
from paht_bridge.connectors.errors import PermanentError
from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import migrate, sessions
from paht_bridge.steps import StepContext, deliver, ingest, poll, publish, ratings
from paht_bridge.config.deployment import deployment, deployment_names
from paht_bridge.sandbox.stack import SandboxStack
from tests.lifecycle_checks import assert_whole_lifecycle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mappings"


def contexts(url: str, run_id: str) -> list[StepContext]:
    mappings = [deployment(name, str(FIXTURES)) for name in deployment_names(FIXTURES)]
    return [StepContext(mapping=m, sessions=sessions(url), connectors=AirflowConnectors(m), run_id=run_id) for m in mappings]


def test_configured_connectors_are_the_ones_in_use(seeded_stack: SandboxStack, tmp_path: Path) -> None:
    clients = {t.name: ctx.connectors.target(t.name) for ctx in contexts(f"sqlite:///{tmp_path / 'l.sqlite'}", "x") for t in ctx.mapping.targets}
    assert isinstance(clients["qoffice_quangtri"], ConfiguredSoapClient)
    assert isinstance(clients["tdoffice_dienbien"], ConfiguredRestClient)


def test_every_seeded_report_goes_round_through_configured_back_ends(seeded_stack: SandboxStack, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    migrate(url)
    for round_no in range(12):
        for ctx in contexts(url, f"round-{round_no}"):
            for step in (ingest, deliver, poll, publish, ratings):
                step(ctx)
        seeded_stack.urls.tick_desks()
        seeded_stack.urls.citizens_rate()
    for ctx in contexts(url, "final"):
        ingest(ctx), deliver(ctx), poll(ctx), publish(ctx), ratings(ctx)
    with sessions(url)() as session:
        counts = assert_whole_lifecycle(session, seeded_stack.urls, sources=("quangtri_ioc", "dienbien_smart"))
    assert counts["reports"] == 70 and counts["rerouted"] > 0


def test_long_content_is_cut_to_the_limit_and_travels_whole_as_an_attachment(seeded_stack: SandboxStack, tmp_path: Path) -> None:
    from datetime import date, datetime

    from paht_bridge.canonical import VIETNAM_TZ, DocumentRecord

    ctx = next(c for c in contexts(f"sqlite:///{tmp_path / 'l.sqlite'}", "x") if c.mapping.deployment == "quang_tri")
    client = ctx.connectors.target("qoffice_quangtri")
    content = "Rác thải ùn ứ tại chợ Đông Hà. " * 40
    record = DocumentRecord(
        external_ref="PAHT-QT-LONG-1", report_key="quang_tri:quangtri_ioc:LONG-1", agency_code="000.03.44.H45", agency_name="Sở Xây dựng",
        sender_code="000.01.44.H45", sender_name="IOC Quảng Trị", subject="Rác " * 300, content=content, category="MOI_TRUONG",
        priority=0, issued_at=datetime(2026, 11, 20, 9, 30, tzinfo=VIETNAM_TZ), due_date=date(2026, 11, 27),
    )
    receipt = client.create_document(record, [])
    assert receipt.created
    doc = next(d for d in seeded_stack.soap_state.snapshot() if d["external_ref"] == "PAHT-QT-LONG-1")
    assert len(doc["subject"]) <= 500 and len(doc["content"]) <= 500
    assert [a["name"] for a in doc["attachments"]] == ["noi_dung_day_du.txt"]
    assert client.create_document(record, []).created is False  # idempotent by external reference
    assert client.find_by_ref("PAHT-QT-LONG-1").document_id == receipt.document_id
    assert client.find_by_ref("PAHT-QT-NOPE") is None
    assert client.get_status(receipt.document_id).raw_code == "01"


def test_a_value_missing_from_a_lookup_table_is_a_permanent_error_naming_it(seeded_stack: SandboxStack, tmp_path: Path) -> None:
    from datetime import date, datetime

    from paht_bridge.canonical import VIETNAM_TZ, DocumentRecord

    ctx = next(c for c in contexts(f"sqlite:///{tmp_path / 'l.sqlite'}", "x") if c.mapping.deployment == "dien_bien")
    wire = ctx.mapping.target("tdoffice_dienbien").rest
    create = wire.operations.create
    table = {k: v for k, v in create.request["do_khan"].table.items() if k != "0"}
    narrowed = wire.model_copy(update={"operations": wire.operations.model_copy(update={"create": create.model_copy(
        update={"request": {**create.request, "do_khan": create.request["do_khan"].model_copy(update={"table": table})}})})})
    client = ConfiguredRestClient("tdoffice_dienbien", seeded_stack.urls.urls["tdoffice_dienbien"], narrowed, password="sandbox-token")
    record = DocumentRecord(
        external_ref="PAHT-DB-X-1", report_key="dien_bien:dienbien_smart:X-1", agency_code="000.03.11.H18", agency_name="Sở Xây dựng",
        sender_code="000.01.11.H18", sender_name="IOC Điện Biên", subject="Ổ gà", content="Ổ gà lớn", category="01",
        priority=0, issued_at=datetime(2026, 11, 20, 9, 30, tzinfo=VIETNAM_TZ), due_date=date(2026, 11, 27),
    )
    with pytest.raises(PermanentError, match="no code for priority='0'"):
        client.create_document(record, [])
