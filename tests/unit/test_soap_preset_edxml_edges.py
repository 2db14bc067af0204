"""The edXML SOAP service's edges, through the configured SOAP connector and the
``edxml_soap`` preset, replayed at the HTTP level with ``responses``.

zeep sends through ``requests``, so each test serves one recorded-looking answer (or a
transport failure) and checks which typed error, or which value, comes out. The request
the preset builds is checked without a server.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
import requests
import responses

from paht_bridge.connectors.configured_soap import ConfiguredSoapClient
from paht_bridge.connectors.errors import AmbiguousError, MalformedResponse, PermanentError, TransientError
from paht_bridge.connectors.limits import ConnectorLimits
from paht_bridge.connectors.outbound import short_name, shorten
from paht_bridge.canonical import VIETNAM_TZ, DocumentRecord, LocalAttachment, Location, Reporter
from tests.preset_clients import create_request, edxml_client, edxml_wire

ENDPOINT = "http://docsys.test/edxml"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
ED = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


def envelope(body: str) -> str:
    return f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}" xmlns:ed="{ED}"><soap:Body>{body}</soap:Body></soap:Envelope>'


def fault(code: str, reason: str, error_code: str = "INVALID_REQUEST", element: str = "") -> str:
    detail = f"<ed:ServiceFaultDetail><ed:ErrorCode>{error_code}</ed:ErrorCode>" + (f"<ed:Element>{element}</ed:Element>" if element else "")
    return envelope(f"<soap:Fault><faultcode>soap:{code}</faultcode><faultstring>{reason}</faultstring><detail>{detail}</ed:ServiceFaultDetail></detail></soap:Fault>")


def serve(body: str | bytes | Exception, status: int = 200, content_type: str = "text/xml; charset=utf-8") -> None:
    if isinstance(body, Exception):
        responses.add(responses.POST, ENDPOINT, body=body)
    else:
        responses.add(responses.POST, ENDPOINT, body=body, status=status, content_type=content_type)


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    # The module-level mock, so the ``responses.add`` calls in ``serve`` land in it.
    with responses.mock as mock:
        yield mock


@pytest.fixture
def client(mocked: responses.RequestsMock) -> ConfiguredSoapClient:
    # Built while every HTTP request is intercepted: loading the WSDL must not need one.
    built = edxml_client(ENDPOINT, name="qt-edxml", username="u", password="p", timeout=3)
    assert len(mocked.calls) == 0
    return built


def record(ref: str = "PAHT-quangtri-ioc-7", content: str = "Đèn đường hỏng.") -> DocumentRecord:
    return DocumentRecord(
        external_ref=ref, report_key="quangtri-ioc:7", agency_code="000.00.31.H45", agency_name="UBND phường Đông Hà",
        sender_code="000.00.00.H45", sender_name="Trung tâm IOC Quảng Trị", subject="Đèn đường hỏng", content=content,
        category="HTDT", priority=0, issued_at=datetime(2025, 7, 15, 23, 30, tzinfo=VIETNAM_TZ), due_date=date(2025, 7, 25),
    )


SEND_OK = envelope("<ed:SendDocumentResponse><ed:DocId>VBD-1</ed:DocId><ed:AlreadyExists>false</ed:AlreadyExists><ed:StatusCode>01</ed:StatusCode></ed:SendDocumentResponse>")


# ---------------------------------------------------------------- hostile or broken answers


def test_an_html_error_page_with_http_200_is_a_malformed_response(client: ConfiguredSoapClient) -> None:
    serve("<html><head><title>Bảo trì</title></head><body><h1>Hệ thống đang bảo trì</h1></body></html>", content_type="text/html; charset=utf-8")
    with pytest.raises(MalformedResponse, match="text/html"):
        client.find_by_ref("PAHT-quangtri-ioc-7")


def test_well_formed_xml_that_is_not_a_soap_envelope_is_a_malformed_response(client: ConfiguredSoapClient) -> None:
    serve("<status>ok</status>")
    with pytest.raises(MalformedResponse):
        client.find_by_ref("PAHT-quangtri-ioc-7")


def test_an_answer_carrying_an_entity_bomb_is_refused_without_expansion(client: ConfiguredSoapClient) -> None:
    entities = "".join(f'<!ENTITY e{i} "{("&e%d;" % (i - 1)) * 10 if i else "ha"}">' for i in range(10))
    bomb = f'<?xml version="1.0"?><!DOCTYPE bomb [{entities}]>' + envelope(
        "<ed:FindDocumentByReferenceResponse><ed:Found>&e9;</ed:Found></ed:FindDocumentByReferenceResponse>"
    ).split("?>", 1)[1]
    serve(bomb)

    started = time.monotonic()
    with pytest.raises(MalformedResponse, match="DTD or entities"):
        client.find_by_ref("PAHT-quangtri-ioc-7")
    assert time.monotonic() - started < 1.0  # a billion "ha"s were never built


def test_an_answer_with_an_external_entity_is_refused(client: ConfiguredSoapClient) -> None:
    xxe = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>' + envelope(
        "<ed:FindDocumentByReferenceResponse><ed:Found>&secret;</ed:Found></ed:FindDocumentByReferenceResponse>"
    ).split("?>", 1)[1]
    serve(xxe)
    with pytest.raises(MalformedResponse):
        client.find_by_ref("PAHT-quangtri-ioc-7")


def test_an_oversized_answer_is_refused_before_parsing(mocked: responses.RequestsMock) -> None:
    client = edxml_client(ENDPOINT, username="u", password="p", limits=ConnectorLimits(max_xml_bytes=1024))
    serve(envelope("<ed:FindDocumentByReferenceResponse><ed:Found>false</ed:Found></ed:FindDocumentByReferenceResponse>" + " " * 2000))
    with pytest.raises(MalformedResponse, match="exceeds"):
        client.find_by_ref("PAHT-quangtri-ioc-7")


def test_an_answer_with_an_element_the_wsdl_does_not_know_is_malformed(client: ConfiguredSoapClient) -> None:
    serve(envelope("<ed:FindDocumentByReferenceResponse><ed:Found>true</ed:Found><ed:Surprise>1</ed:Surprise></ed:FindDocumentByReferenceResponse>"))
    with pytest.raises(MalformedResponse):
        client.find_by_ref("PAHT-quangtri-ioc-7")


# ---------------------------------------------------------------- transport failures


def test_a_read_timeout_on_send_document_is_ambiguous(client: ConfiguredSoapClient) -> None:
    serve(requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(AmbiguousError) as caught:
        client.create_document(record(), [])
    assert caught.value.ref == "PAHT-quangtri-ioc-7" and caught.value.operation == "SendDocument"


def test_a_dropped_connection_after_sending_a_document_is_ambiguous(client: ConfiguredSoapClient) -> None:
    serve(requests.exceptions.ConnectionError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer")))
    with pytest.raises(AmbiguousError):
        client.create_document(record(), [])


def test_a_read_timeout_on_a_lookup_is_transient(client: ConfiguredSoapClient) -> None:
    serve(requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(TransientError):
        client.find_by_ref("PAHT-quangtri-ioc-7")


def test_a_connect_timeout_is_transient_even_for_send_document(client: ConfiguredSoapClient) -> None:
    serve(requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(TransientError):
        client.create_document(record(), [])


def test_the_call_carries_an_explicit_timeout(client: ConfiguredSoapClient, mocked: responses.RequestsMock) -> None:
    serve(SEND_OK)
    client.create_document(record(), [])
    assert mocked.calls[0].request.req_kwargs["timeout"] == (3, 3)


# ---------------------------------------------------------------- SOAP faults and HTTP statuses


def test_a_server_fault_on_send_document_is_ambiguous(client: ConfiguredSoapClient) -> None:
    serve(fault("Server", "Lỗi hệ thống", "INTERNAL"), status=500)
    with pytest.raises(AmbiguousError, match="Server"):
        client.create_document(record(), [])


def test_a_server_fault_on_a_read_is_transient(client: ConfiguredSoapClient) -> None:
    serve(fault("Server", "Lỗi hệ thống", "INTERNAL"), status=500)
    with pytest.raises(TransientError) as caught:
        client.get_status("VBD-1")
    assert not isinstance(caught.value, AmbiguousError)


def test_a_client_fault_is_permanent_and_keeps_the_reason(client: ConfiguredSoapClient) -> None:
    serve(fault("Client", "Invalid SendDocument request: Element 'Subject': too long", element="Subject"), status=500)
    with pytest.raises(PermanentError) as caught:
        client.create_document(record(), [])
    assert "Element 'Subject'" in str(caught.value) and "Element=Subject" in str(caught.value)
    assert not isinstance(caught.value, MalformedResponse)


def test_http_401_is_a_permanent_error(client: ConfiguredSoapClient) -> None:
    serve("Unauthorized", status=401, content_type="text/plain")
    with pytest.raises(PermanentError, match="authentication"):
        client.find_by_ref("PAHT-quangtri-ioc-7")


def test_a_gateway_error_page_on_send_document_is_ambiguous(client: ConfiguredSoapClient) -> None:
    serve("<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", status=502, content_type="text/html")
    with pytest.raises(AmbiguousError):
        client.create_document(record(), [])


# ---------------------------------------------------------------- values read back


def test_text_in_answers_is_normalised_to_nfc(client: ConfiguredSoapClient) -> None:
    decomposed = unicodedata.normalize("NFD", "Đã xử lý xong, mặt đường đã được vá.")
    serve(envelope(
        "<ed:GetDocumentResponse><ed:DocId>VBD-1</ed:DocId><ed:ExternalReference>PAHT-quangtri-ioc-7</ed:ExternalReference>"
        "<ed:StatusCode>06</ed:StatusCode><ed:ChangedAt>2025-07-20T09:00:00+07:00</ed:ChangedAt>"
        f"<ed:Answer>{decomposed}</ed:Answer><ed:AnsweredBy><ed:OrganId>000.00.31.H45</ed:OrganId>"
        f"<ed:OrganName>{unicodedata.normalize('NFD', 'UBND phường Đông Hà')}</ed:OrganName></ed:AnsweredBy></ed:GetDocumentResponse>"
    ))
    status = client.get_status("VBD-1")
    assert status.answer == unicodedata.normalize("NFC", decomposed)
    assert status.answered_by == "UBND phường Đông Hà"


def test_a_change_time_without_a_zone_is_read_as_vietnam_time(client: ConfiguredSoapClient) -> None:
    serve(envelope(
        "<ed:GetStatusChangesResponse><ed:Change><ed:Sequence>1</ed:Sequence><ed:DocId>VBD-1</ed:DocId>"
        "<ed:ExternalReference>PAHT-quangtri-ioc-7</ed:ExternalReference><ed:StatusCode>03</ed:StatusCode>"
        "<ed:ChangedAt>2025-07-16T08:00:00</ed:ChangedAt></ed:Change>"
        "<ed:NextCursor>1</ed:NextCursor><ed:HasMore>false</ed:HasMore></ed:GetStatusChangesResponse>"
    ))
    [page] = list(client.changes_since(None))
    assert page.items[0].changed_at == datetime(2025, 7, 16, 8, tzinfo=VIETNAM_TZ)
    assert page.next_cursor == "1" and page.has_more is False


def test_a_change_feed_that_does_not_advance_is_malformed(client: ConfiguredSoapClient) -> None:
    stuck = envelope("<ed:GetStatusChangesResponse><ed:NextCursor>5</ed:NextCursor><ed:HasMore>true</ed:HasMore></ed:GetStatusChangesResponse>")
    serve(stuck)
    serve(stuck)
    with pytest.raises(MalformedResponse, match="did not advance past '5'"):
        list(client.changes_since("5"))


def test_a_cursor_that_is_not_a_sequence_number_is_refused(client: ConfiguredSoapClient) -> None:
    with pytest.raises(PermanentError, match="cursor"):
        next(client.changes_since("yesterday"))


def test_a_change_feed_whose_cursor_goes_back_is_malformed(client: ConfiguredSoapClient) -> None:
    serve(envelope("<ed:GetStatusChangesResponse><ed:NextCursor>3</ed:NextCursor><ed:HasMore>true</ed:HasMore></ed:GetStatusChangesResponse>"))
    with pytest.raises(MalformedResponse, match="did not advance"):
        list(client.changes_since("5"))


def test_a_page_asks_for_no_more_than_the_service_gives(client: ConfiguredSoapClient, mocked: responses.RequestsMock) -> None:
    serve(envelope("<ed:GetStatusChangesResponse><ed:NextCursor>0</ed:NextCursor><ed:HasMore>false</ed:HasMore></ed:GetStatusChangesResponse>"))
    list(client.changes_since(None, page_size=5000))
    assert b"Limit>1000</" in mocked.calls[0].request.body


def test_an_unusable_change_is_quarantined_and_the_page_goes_on(client: ConfiguredSoapClient) -> None:
    serve(envelope(
        "<ed:GetStatusChangesResponse>"
        "<ed:Change><ed:Sequence>1</ed:Sequence><ed:DocId>VBD-1</ed:DocId><ed:ExternalReference>PAHT-quangtri-ioc-7</ed:ExternalReference>"
        "<ed:StatusCode>03</ed:StatusCode><ed:ChangedAt>2025-07-16T08:00:00</ed:ChangedAt></ed:Change>"
        "<ed:Change><ed:Sequence>2</ed:Sequence><ed:DocId>VBD-2</ed:DocId><ed:ExternalReference>PAHT-quangtri-ioc-8</ed:ExternalReference>"
        "<ed:StatusCode> </ed:StatusCode><ed:ChangedAt>2025-07-16T08:05:00</ed:ChangedAt></ed:Change>"
        "<ed:NextCursor>2</ed:NextCursor><ed:HasMore>false</ed:HasMore></ed:GetStatusChangesResponse>"
    ))
    [page] = list(client.changes_since(None))
    assert [c.document_id for c in page.items] == ["VBD-1"]
    assert [(q.source, q.source_id) for q in page.quarantined] == [("qt-edxml", "VBD-2")]
    assert "raw_code" in page.quarantined[0].reason and page.next_cursor == "2"


def test_found_without_a_document_id_is_malformed_not_absent(client: ConfiguredSoapClient) -> None:
    serve(envelope("<ed:FindDocumentByReferenceResponse><ed:Found>true</ed:Found></ed:FindDocumentByReferenceResponse>"))
    with pytest.raises(MalformedResponse, match="names no 'DocId'"):
        client.find_by_ref("PAHT-quangtri-ioc-7")


def test_send_document_answer_becomes_a_receipt(client: ConfiguredSoapClient) -> None:
    serve(SEND_OK)
    receipt = client.create_document(record(), [])
    assert (receipt.document_id, receipt.created) == ("VBD-1", True)


def test_request_bodies_are_never_logged(client: ConfiguredSoapClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    serve(SEND_OK)
    client.create_document(record().model_copy(update={"reporter": Reporter(name="Lê Văn C", phone="0987654321")}), [])
    assert "0987654321" not in caplog.text and "Lê Văn C" not in caplog.text
    assert "ref=PAHT-quangtri-ioc-7" in caplog.text


def test_attachments_over_the_inline_limit_are_refused_before_anything_is_sent(mocked: responses.RequestsMock, tmp_path: Path) -> None:
    client = edxml_client(ENDPOINT, username="u", password="p", limits=ConnectorLimits(max_attachment_bytes=10**9))
    assert client.max_inline_bytes == 32 * 1024 * 1024  # the preset's: base64 inside the envelope, in memory
    video = LocalAttachment(name="video.mp4", media_type="video/mp4", size=40 * 1024 * 1024, sha256="0" * 64, path=tmp_path / "never-read")
    with pytest.raises(PermanentError, match="33554432-byte limit") as refused:
        client.create_document(record(), [video])
    assert (refused.value.operation, refused.value.ref) == ("SendDocument", "PAHT-quangtri-ioc-7")
    assert len(mocked.calls) == 0
    smaller = edxml_client(ENDPOINT, username="u", password="p", limits=ConnectorLimits(max_attachment_bytes=2048))
    with pytest.raises(PermanentError, match="2048-byte limit"):
        smaller.create_document(record(), [video.model_copy(update={"size": 4096})])


def test_a_request_that_does_not_fit_the_wsdl_fails_before_it_is_sent(mocked: responses.RequestsMock) -> None:
    wire = edxml_wire()
    create = wire.operations.create
    typo = wire.model_copy(update={"operations": wire.operations.model_copy(update={"create": create.model_copy(
        update={"request": {**create.request, "edXMLEnvelope.NoSuchPart": "{external_ref}"}})})})
    client = edxml_client(ENDPOINT, username="u", password="p", wire=typo)
    with pytest.raises(PermanentError, match="could not be built|does not fit the WSDL") as failure:
        client.create_document(record(), [])
    assert (failure.value.operation, failure.value.ref) == ("SendDocument", "PAHT-quangtri-ioc-7")
    assert len(mocked.calls) == 0


# ---------------------------------------------------------------- the request the preset builds (pure)


def header(record: DocumentRecord) -> dict:
    """The MessageHeader the preset builds for ``record`` (as zeep gets it, before the WSDL)."""
    return create_request(edxml_client(ENDPOINT), record)["edXMLEnvelope"]["edXMLHeader"]["MessageHeader"]


def test_dates_are_written_the_edxml_way_in_vietnam_time() -> None:
    late = record().model_copy(update={"issued_at": datetime.fromisoformat("2025-07-15T17:30:00+00:00")})  # 00:30 next day in Vietnam
    assert header(late)["PromulgationInfo"]["PromulgationDate"] == "2025/07/16"
    assert header(late)["DueDate"] == "2025/07/25"


def test_shorten_keeps_the_limit_and_does_not_split_a_syllable() -> None:
    text = "phản ánh " * 100
    cut = shorten(text, 500)
    assert len(cut) <= 500 and cut.endswith("…")
    assert cut[:-1].split()[-1] in {"phản", "ánh"}
    assert shorten("ngắn", 500) == "ngắn"


def test_a_long_attachment_name_keeps_its_extension() -> None:
    name = "ảnh " * 80 + ".jpeg"
    short = short_name(name)
    assert len(short) == 200 and short.endswith(".jpeg")


def test_the_envelope_carries_the_external_reference_and_edxml_dates() -> None:
    built = header(record())
    assert built["ExternalReference"] == "PAHT-quangtri-ioc-7"
    assert built["PromulgationInfo"]["PromulgationDate"] == "2025/07/15"
    assert built["DueDate"] == "2025/07/25"
    assert built["DocumentId"] == "000.00.00.H45,2025/07/15,7/PAHT-IOC"
    assert built["Code"] == {"CodeNumber": "7", "CodeNotation": "PAHT-IOC"}
    assert "FieldReport" not in built  # no location, no reporter: nothing personal goes out


def test_the_envelope_has_no_reporter_fields_unless_the_record_has_them() -> None:
    located = record().model_copy(update={"location": Location(address="Lê Duẩn, Đông Hà")})
    assert header(located)["FieldReport"] == {"Address": "Lê Duẩn, Đông Hà"}
    reported = located.model_copy(update={"reporter": Reporter(name="Lê Văn C", phone="0987654321")})
    assert header(reported)["FieldReport"] == {"Address": "Lê Duẩn, Đông Hà", "ReporterName": "Lê Văn C", "ReporterPhone": "0987654321"}


def test_markup_never_reaches_subject_or_content_and_long_text_is_cut_to_500() -> None:
    marked = record(content="<b>Đèn</b> hỏng <script>alert(1)</script> " + "rất lâu " * 200).model_copy(
        update={"subject": "<img src=x onerror=alert(1)>Đèn đường hỏng " * 30})
    built = header(marked)
    assert "<" not in built["Subject"] and "<" not in built["Content"]
    assert len(built["Subject"]) <= 500 and len(built["Content"]) <= 500
    assert built["Content"].endswith("noi_dung_day_du.txt)")
