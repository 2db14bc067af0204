"""Limits are set per connector: in code (``limits=``) or in the Airflow Connection's ``extra.limits``."""

from __future__ import annotations

import json

import pytest
import responses

from paht_bridge.connectors.citizen_app import CitizenAppClient
from paht_bridge.connectors.errors import MalformedResponse, RejectedContent
from paht_bridge.connectors.hooks import CitizenAppHook, ConfiguredRestHook, ConfiguredSoapHook
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.canonical import Attachment
from tests.hostile.cases import good_item
from tests.preset_clients import edxml_client, edxml_target, tdoffice_target

LIMITS = {"max_body_bytes": 4096, "max_title_chars": 20, "max_xml_depth": 12, "max_xml_bytes": 8192,
          "max_attachment_bytes": 2048, "allowed_media_types": ["image/jpeg", "application/pdf"]}


def _connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, extra: dict) -> None:
    conn = {"conn_type": "http", "host": "http://127.0.0.1:9", "login": "u", "password": "p", "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_every_hook_hands_its_client_the_limits_of_the_connection_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _connection(monkeypatch, "paht_limits_test", {"timeout": 5, "limits": LIMITS})
    citizen = CitizenAppHook("paht_limits_test").get_client("quangtri_ioc")
    soap = ConfiguredSoapHook("paht_limits_test").get_client("qoffice_quangtri", edxml_target())
    rest = ConfiguredRestHook("paht_limits_test").get_client("tdoffice_dienbien", tdoffice_target())
    for client in (citizen, soap, rest):
        assert client.limits.max_title_chars == 20 and client.limits.allowed_media_types == {"image/jpeg", "application/pdf"}
    assert soap._soap.transport.max_bytes == 8192 and soap._soap.transport.max_depth == 12  # noqa: SLF001
    assert soap.max_inline_bytes == 2048  # under the preset's 32 MiB for attachments carried inline


def test_a_connection_without_limits_gets_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    _connection(monkeypatch, "paht_limits_default", {"timeout": 5})
    assert CitizenAppHook("paht_limits_default").get_client("quangtri_ioc").limits == DEFAULT_LIMITS


@pytest.mark.parametrize("limits", [{"max_body_bytes": "a lot"}, {"max_xml_depth": 2}, {"max_body_size": 10}, "{not json"])
def test_a_mistyped_limit_stops_the_task_naming_the_connection(monkeypatch: pytest.MonkeyPatch, limits: object) -> None:
    _connection(monkeypatch, "paht_limits_bad", {"limits": limits})
    with pytest.raises(ValueError, match="connection paht_limits_bad: extra.limits is invalid"):
        CitizenAppHook("paht_limits_bad").get_client("quangtri_ioc")


def test_text_limits_of_the_connector_decide_what_is_quarantined() -> None:
    client = CitizenAppClient("quangtri_ioc", "http://unused.test", limits=ConnectorLimits(**LIMITS))
    reports, quarantined = client.parse_reports([good_item("QT-1")])
    assert reports == [] and quarantined[0].reason == "title: 26 characters, over the 20-character limit"


def test_allowed_media_types_of_the_connector_decide_what_is_fetched() -> None:
    client = CitizenAppClient("quangtri_ioc", "http://citizen.test", limits=ConnectorLimits(**LIMITS))
    video = Attachment(name="VID_1.mp4", media_type="video/mp4", size=1000, url="/a/1")
    with pytest.raises(RejectedContent, match="type 'video/mp4' is not allowed"):
        with client.open_attachment(video):
            pass
    item = {**good_item("QT-2"), "title": "Ổ gà", "attachments": [
        {"id": "A1", "file_name": "bien_ban.pdf", "mime_type": "application/pdf", "size": 900, "download_url": "/a/1"}]}
    reports, _ = client.parse_reports([item])
    assert reports[0].attachments[0].media_type == "application/pdf"


@responses.activate
def test_a_body_over_the_connectors_limit_is_refused() -> None:
    responses.get("http://citizen.test/api/v1/reports", json={"data": [good_item(f"QT-{i}") for i in range(20)], "paging": {"has_more": False}})
    client = CitizenAppClient("quangtri_ioc", "http://citizen.test", limits=ConnectorLimits(**LIMITS))
    with pytest.raises(MalformedResponse, match="4096-byte limit"):
        next(client.reports_since(None))


@responses.activate
def test_xml_deeper_than_the_connectors_limit_is_refused_before_zeep_reads_it() -> None:
    soap, ed = "http://schemas.xmlsoap.org/soap/envelope/", "http://www.mic.gov.vn/TBT/QCVN_102_2016"
    deep = "<x>" * 10 + "</x>" * 10
    body = (f'<soap:Envelope xmlns:soap="{soap}" xmlns:ed="{ed}"><soap:Body><ed:FindDocumentByReferenceResponse>'
            f"<ed:Found>false</ed:Found>{deep}</ed:FindDocumentByReferenceResponse></soap:Body></soap:Envelope>")
    responses.post("http://docsys.test/edxml", body=body, content_type="text/xml")
    client = edxml_client("http://docsys.test/edxml", name="q", limits=ConnectorLimits(**LIMITS))
    with pytest.raises(MalformedResponse, match="nested deeper than 12 levels"):
        client.find_by_ref("PAHT-x-1")
