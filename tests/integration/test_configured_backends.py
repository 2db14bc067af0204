"""The shipped document systems are configured back ends: each shipped deployment's target
names a preset, and the Airflow hooks build it as a configured SOAP or REST client over the
sandbox's connections. (Every seeded report going round through them is
``test_lifecycle_steps``; each system's own behaviour is ``test_soap_preset_edxml`` and
``test_rest_preset_tdoffice``.)"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from paht_bridge.canonical import VIETNAM_TZ, DocumentRecord
from paht_bridge.connectors.configured_rest import ConfiguredRestClient
from paht_bridge.connectors.configured_soap import ConfiguredSoapClient
from paht_bridge.connectors.errors import PermanentError
from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.config.deployment import deployment
from paht_bridge.config.folders import presets_folder, shipped_mappings
from paht_bridge.sandbox.stack import SandboxStack


def test_the_hooks_build_each_shipped_target_from_its_preset(stack: SandboxStack) -> None:
    quang_tri, dien_bien = deployment("quang_tri", str(shipped_mappings())), deployment("dien_bien", str(shipped_mappings()))
    soap = AirflowConnectors(quang_tri).target("qoffice_quangtri")
    rest = AirflowConnectors(dien_bien).target("tdoffice_dienbien")
    assert isinstance(soap, ConfiguredSoapClient) and isinstance(rest, ConfiguredRestClient)
    assert quang_tri.target("qoffice_quangtri").preset == "edxml_soap" and dien_bien.target("tdoffice_dienbien").preset == "tdoffice_rest"
    assert Path(soap.wire.wsdl) == presets_folder().parent / "wsdl" / "edxml_docsys.wsdl"  # the preset's ../wsdl/, from its own folder
    # The sandbox's connections carry no service path: the preset's /edxml is the one used.
    assert soap._soap.endpoint == stack.urls.urls["qoffice_quangtri"] + "/edxml"  # noqa: SLF001
    assert soap.find_by_ref("PAHT-quangtri_ioc-NOPE") is None and rest.find_by_ref("PAHT-dienbien_smart-NOPE") is None


def test_a_value_missing_from_a_lookup_table_is_a_permanent_error_naming_it(stack: SandboxStack) -> None:
    wire = deployment("dien_bien", str(shipped_mappings())).target("tdoffice_dienbien").rest
    create = wire.operations.create
    table = {k: v for k, v in create.request["do_khan"].table.items() if k != "0"}
    narrowed = wire.model_copy(update={"operations": wire.operations.model_copy(update={"create": create.model_copy(
        update={"request": {**create.request, "do_khan": create.request["do_khan"].model_copy(update={"table": table})}})})})
    client = ConfiguredRestClient("tdoffice_dienbien", stack.urls.urls["tdoffice_dienbien"], narrowed, password="sandbox-token")
    record = DocumentRecord(
        external_ref="PAHT-DB-X-1", report_key="dien_bien:dienbien_smart:X-1", agency_code="000.03.11.H18", agency_name="Sở Xây dựng",
        sender_code="000.01.11.H18", sender_name="IOC Điện Biên", subject="Ổ gà", content="Ổ gà lớn", category="01",
        priority=0, issued_at=datetime(2026, 11, 20, 9, 30, tzinfo=VIETNAM_TZ), due_date=date(2026, 11, 27),
    )
    with pytest.raises(PermanentError, match="no code for priority='0'"):
        client.create_document(record, [])
    assert stack.rest_state is not None and stack.rest_state.documents() == []
