"""The edXML SOAP service through the configured SOAP connector and the ``edxml_soap``
preset (Quảng Trị's shipped target), against the real stand-in service on loopback.

Each test gets a fresh service (state and server), so counters start at zero.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from paht_bridge.connectors.base import DocumentSystem
from paht_bridge.connectors.configured_soap import ConfiguredSoapClient
from paht_bridge.connectors.errors import AmbiguousError, MalformedResponse, PermanentError, TransientError
from paht_bridge.connectors.outbound import FULL_TEXT_NAME
from paht_bridge.canonical import (
    DocumentRecord,
    LocalAttachment,
    Location,
    Rating,
    RatingLevel,
    RawStatusChange,
    Reporter,
    vietnam_now,
)
from paht_bridge.sandbox.desk import refuses
from paht_bridge.sandbox.edxml_docsys import EdxmlDocsysState, create_edxml_app
from paht_bridge.sandbox.server import LoopbackServer
from tests.preset_clients import edxml_client

AGENCY = "000.00.31.H45"
IOC = "000.00.00.H45"
FULL_SEQUENCE = ["01", "03", "04", "05", "06"]


@dataclass
class Docsys:
    state: EdxmlDocsysState
    server: LoopbackServer

    @property
    def endpoint(self) -> str:
        return f"{self.server.url}/edxml"

    def client(self, *, password: str = "sandbox-secret", timeout: float = 5.0) -> ConfiguredSoapClient:
        return edxml_client(self.endpoint, name="qt-edxml", password=password, timeout=timeout)

    def documents(self) -> dict[str, dict]:
        answer = requests.get(f"{self.server.url}/_sandbox/documents", timeout=5).json()
        return {doc["external_ref"]: doc for doc in answer["documents"]}

    def tick(self) -> int:
        return requests.post(f"{self.server.url}/_sandbox/desk/tick", timeout=5).json()["moved"]


@pytest.fixture
def docsys() -> Iterator[Docsys]:
    state = EdxmlDocsysState(refuse_one_in=7)
    with LoopbackServer(create_edxml_app(state), name="edxml-docsys") as server:
        yield Docsys(state, server)
    state.stop_clock()


@pytest.fixture
def client(docsys: Docsys) -> Iterator[ConfiguredSoapClient]:
    c = docsys.client()
    yield c
    c.close()


def record(ref: str, *, content: str | None = None, agency_code: str = AGENCY, reporter: Reporter = Reporter()) -> DocumentRecord:
    return DocumentRecord(
        external_ref=ref,
        report_key=f"quangtri-ioc:{ref.rsplit('-', 1)[-1]}",
        agency_code=agency_code,
        agency_name="UBND phường Đông Hà",
        sender_code=IOC,
        sender_name="Trung tâm Giám sát, điều hành đô thị thông minh tỉnh Quảng Trị",
        subject="Rác thải sinh hoạt ùn ứ tại kiệt 12 Lê Duẩn",
        content=content or "Người dân phản ánh rác thải ùn ứ nhiều ngày, gây mùi hôi, đề nghị thu gom.",
        category="VSMT",
        priority=1,
        issued_at=vietnam_now(),
        due_date=date.today() + timedelta(days=10),
        location=Location(lat=16.8163, lon=107.1003, address="Kiệt 12 Lê Duẩn, phường Đông Hà, Quảng Trị"),
        reporter=reporter,
    )


def spool(tmp_path: Path, name: str, data: bytes, media_type: str = "image/jpeg") -> LocalAttachment:
    path = tmp_path / hashlib.sha1(name.encode()).hexdigest()
    path.write_bytes(data)
    return LocalAttachment(name=name, media_type=media_type, size=len(data), sha256=hashlib.sha256(data).hexdigest(), path=path)


def refs_where(refused: bool, count: int, prefix: str = "PAHT-quangtri-ioc-") -> list[str]:
    found = [f"{prefix}{n}" for n in range(1, 500) if refuses(f"{prefix}{n}", 7) is refused]
    assert len(found) >= count
    return found[:count]


def read_feed(client: ConfiguredSoapClient, cursor: str | None, page_size: int) -> tuple[list[RawStatusChange], str | None]:
    changes: list[RawStatusChange] = []
    for page in client.changes_since(cursor, page_size=page_size):
        changes.extend(page.items)
        cursor = page.next_cursor
    return changes, cursor


def codes_by_ref(changes: list[RawStatusChange]) -> dict[str, list[str]]:
    codes: dict[str, list[str]] = defaultdict(list)
    for change in changes:
        codes[change.external_ref].append(change.raw_code)
    return dict(codes)


def test_client_implements_the_document_system_protocol(client: ConfiguredSoapClient) -> None:
    assert isinstance(client, DocumentSystem)


def test_document_with_two_attachments_is_created_and_read_back(docsys: Docsys, client: ConfiguredSoapClient, tmp_path: Path) -> None:
    photo = spool(tmp_path, "ảnh hiện trường 1.jpg", b"\xff\xd8" + b"p" * 5000)
    video = spool(tmp_path, "video.mp4", b"v" * 20000, "video/mp4")

    receipt = client.create_document(record("PAHT-quangtri-ioc-101"), [photo, video])

    assert receipt.created is True
    assert client.find_by_ref("PAHT-quangtri-ioc-101") == receipt.model_copy(update={"created": False})
    status = client.get_status(receipt.document_id)
    assert (status.raw_code, status.external_ref, status.answer) == ("01", "PAHT-quangtri-ioc-101", None)
    stored = docsys.documents()["PAHT-quangtri-ioc-101"]
    assert stored["agency"] == AGENCY
    assert stored["attachments"] == [
        {"name": "ảnh hiện trường 1.jpg", "content_type": "image/jpeg", "size": 5002},
        {"name": "video.mp4", "content_type": "video/mp4", "size": 20000},
    ]
    assert docsys.state.documents[receipt.document_id].attachments[1].data == b"v" * 20000


def test_unknown_reference_is_not_found(client: ConfiguredSoapClient) -> None:
    assert client.find_by_ref("PAHT-quangtri-ioc-404") is None


def test_sending_the_same_reference_twice_creates_one_document(docsys: Docsys, client: ConfiguredSoapClient) -> None:
    first = client.create_document(record("PAHT-quangtri-ioc-102"), [])
    second = client.create_document(record("PAHT-quangtri-ioc-102"), [])

    assert (first.created, second.created) == (True, False)
    assert first.document_id == second.document_id
    stored = docsys.documents()["PAHT-quangtri-ioc-102"]
    assert (stored["send_calls"], stored["created_count"]) == (2, 1)
    assert len(docsys.documents()) == 1


def test_desk_ticks_give_the_whole_status_sequence_and_the_cursor_resumes_without_repeats_or_gaps(
    docsys: Docsys, client: ConfiguredSoapClient
) -> None:
    refs = refs_where(refused=False, count=3)
    for ref in refs:
        client.create_document(record(ref), [])
    seen, cursor = read_feed(client, None, page_size=2)
    while docsys.tick():
        # Resume from the saved cursor after every tick, as the polling task does between runs.
        more, cursor = read_feed(client, cursor, page_size=2)
        seen.extend(more)

    assert codes_by_ref(seen) == {ref: FULL_SEQUENCE for ref in refs}
    assert len(seen) == len(docsys.state.changes) == 15
    assert cursor == "15"
    answered = [c for c in seen if c.raw_code == "06"]
    assert all(c.answer and c.answered_by == "UBND phường Đông Hà" for c in answered)
    assert read_feed(client, cursor, page_size=2)[0] == []


def test_a_cursor_saved_mid_feed_resumes_at_the_next_change(docsys: Docsys, client: ConfiguredSoapClient) -> None:
    for ref in refs_where(refused=False, count=2):
        client.create_document(record(ref), [])
    for _ in range(4):
        docsys.tick()
    first_page = next(client.changes_since(None, page_size=3))
    rest, _ = read_feed(client, first_page.next_cursor, page_size=3)

    everything, _ = read_feed(client, None, page_size=1000)
    assert first_page.has_more is True
    assert first_page.items + rest == everything


def test_references_the_desk_refuses_end_with_code_02_and_a_reason(docsys: Docsys, client: ConfiguredSoapClient) -> None:
    refused, accepted = refs_where(refused=True, count=2), refs_where(refused=False, count=1)
    receipts = {ref: client.create_document(record(ref), []) for ref in refused + accepted}
    while docsys.tick():
        pass

    changes, _ = read_feed(client, None, page_size=200)
    assert codes_by_ref(changes) == {**{ref: ["01", "02"] for ref in refused}, accepted[0]: FULL_SEQUENCE}
    status = client.get_status(receipts[refused[0]].document_id)
    assert status.raw_code == "02"
    assert "không thuộc thẩm quyền" in (status.answer or "")
    assert status.answered_by == "UBND phường Đông Hà"


def test_content_over_500_characters_is_cut_and_the_full_text_arrives_as_an_attachment(
    docsys: Docsys, client: ConfiguredSoapClient
) -> None:
    sentence = "Mặt đường Hùng Vương xuống cấp nghiêm trọng, nhiều ổ gà sâu gây nguy hiểm. "
    long_text = (sentence * 20)[:1200].strip()
    assert len(long_text) >= 1190

    receipt = client.create_document(record("PAHT-quangtri-ioc-103", content=long_text), [])

    stored = docsys.state.documents[receipt.document_id]
    assert len(stored.content) <= 500
    assert long_text.startswith(stored.content.split(" … (")[0])
    assert FULL_TEXT_NAME in stored.content
    [full] = [a for a in stored.attachments if a.name == FULL_TEXT_NAME]
    assert full.data.decode("utf-8") == long_text


def test_request_breaking_the_xsd_is_rejected_with_a_fault_naming_the_element(docsys: Docsys, client: ConfiguredSoapClient) -> None:
    with pytest.raises(PermanentError) as caught:
        client.create_document(record("PAHT-quangtri-ioc-104", agency_code="abc"), [])

    message = str(caught.value)
    assert "OrganId" in message and "abc" in message
    assert caught.value.operation == "SendDocument" and caught.value.ref == "PAHT-quangtri-ioc-104"
    assert not isinstance(caught.value, (TransientError, AmbiguousError))
    assert docsys.documents() == {}


def test_wrong_password_is_a_permanent_error(docsys: Docsys) -> None:
    intruder = docsys.client(password="wrong")
    with pytest.raises(PermanentError, match="authentication"):
        intruder.find_by_ref("PAHT-quangtri-ioc-105")
    with pytest.raises(PermanentError, match="authentication"):
        intruder.create_document(record("PAHT-quangtri-ioc-105"), [])
    assert docsys.documents() == {}


def test_a_rating_posted_twice_with_the_same_id_is_stored_once(docsys: Docsys, client: ConfiguredSoapClient) -> None:
    receipt = client.create_document(record("PAHT-quangtri-ioc-106"), [])
    rating = Rating(
        rating_id="R-106-1", source="quangtri-ioc", source_id="106", level=RatingLevel.NOT_SATISFIED,
        comment="Rác vẫn chưa được thu gom hết.", rated_at=vietnam_now(),
    )
    client.post_rating(receipt.document_id, rating)
    client.post_rating(receipt.document_id, rating)

    assert docsys.documents()["PAHT-quangtri-ioc-106"]["ratings"] == [
        {"rating_id": "R-106-1", "level": "NOT_SATISFIED", "comment": "Rác vẫn chưa được thu gom hết."}
    ]


def test_a_rating_for_an_unknown_document_is_permanent(client: ConfiguredSoapClient) -> None:
    rating = Rating(rating_id="R-x", source="s", source_id="x", level=RatingLevel.SATISFIED, rated_at=vietnam_now())
    with pytest.raises(PermanentError, match="NOT_FOUND"):
        client.post_rating("VBD-99999999", rating)


def test_a_server_that_is_not_listening_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again on leaving: nothing listens there
    dead = edxml_client(f"http://127.0.0.1:{port}/edxml", name="dead", username="u", password="p", timeout=2)

    with pytest.raises(TransientError):
        dead.create_document(record("PAHT-quangtri-ioc-107"), [])
    with pytest.raises(TransientError):
        next(dead.changes_since(None))


def test_a_timeout_after_the_document_was_committed_is_ambiguous_and_the_lookup_finds_it(docsys: Docsys) -> None:
    impatient = docsys.client(timeout=0.5)
    docsys.state.inject_fault("timeout_after_commit", operation="SendDocument", delay=1.5)

    with pytest.raises(AmbiguousError):
        impatient.create_document(record("PAHT-quangtri-ioc-108"), [])
    found = impatient.find_by_ref("PAHT-quangtri-ioc-108")
    retry = impatient.create_document(record("PAHT-quangtri-ioc-108"), [])

    assert found is not None and retry.document_id == found.document_id and retry.created is False
    assert docsys.documents()["PAHT-quangtri-ioc-108"]["created_count"] == 1


@pytest.mark.parametrize(
    ("kind", "operation", "expected"),
    [
        ("server_fault", "SendDocument", AmbiguousError),
        ("server_fault", "FindDocumentByReference", TransientError),
        ("html", "FindDocumentByReference", MalformedResponse),
        ("entity_bomb", "FindDocumentByReference", MalformedResponse),
    ],
)
def test_injected_faults_reach_the_caller_as_typed_errors(
    docsys: Docsys, client: ConfiguredSoapClient, kind: str, operation: str, expected: type[Exception]
) -> None:
    answer = requests.post(f"{docsys.server.url}/_sandbox/faults", json={"kind": kind, "operation": operation}, timeout=5)
    assert answer.status_code == 200

    with pytest.raises(expected) as caught:
        if operation == "SendDocument":
            client.create_document(record("PAHT-quangtri-ioc-112"), [])
        else:
            client.find_by_ref("PAHT-quangtri-ioc-112")
    assert type(caught.value) is expected
    assert client.find_by_ref("PAHT-quangtri-ioc-112") is None  # the fault was used up; nothing was created


def test_reporter_details_are_sent_only_when_the_record_carries_them(docsys: Docsys, client: ConfiguredSoapClient) -> None:
    client.create_document(record("PAHT-quangtri-ioc-109"), [])
    client.create_document(record("PAHT-quangtri-ioc-110", reporter=Reporter(name="Trần Thị B", phone="0912 345 678")), [])

    assert docsys.documents()["PAHT-quangtri-ioc-109"]["reporter_sent"] is False
    sent = docsys.state.documents[docsys.state.by_ref["PAHT-quangtri-ioc-110"]].field_report
    assert (sent["ReporterName"], sent["ReporterPhone"]) == ("Trần Thị B", "0912 345 678")


def test_the_wsdl_is_never_fetched_over_http(docsys: Docsys, client: ConfiguredSoapClient) -> None:
    receipt = client.create_document(record("PAHT-quangtri-ioc-111"), [])
    client.find_by_ref("PAHT-quangtri-ioc-111")
    client.get_status(receipt.document_id)
    list(client.changes_since(None))
    edxml_client(docsys.endpoint, name="another")

    assert docsys.state.wsdl_fetches == 0
    # The counter does count: a fetch by hand is seen, with the address rewritten to this server.
    served = requests.get(f"{docsys.endpoint}?wsdl", timeout=5)
    assert docsys.state.wsdl_fetches == 1 and f'location="{docsys.endpoint}"' in served.text


def test_the_server_refuses_a_request_with_a_doctype(docsys: Docsys) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>'
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b'<ed:FindDocumentByReferenceRequest xmlns:ed="http://www.mic.gov.vn/TBT/QCVN_102_2016">'
        b"<ed:ExternalReference>&a;</ed:ExternalReference></ed:FindDocumentByReferenceRequest></soap:Body></soap:Envelope>"
    )
    answer = requests.post(docsys.endpoint, data=bomb, auth=("sandbox", "sandbox-secret"), headers={"Content-Type": "text/xml"}, timeout=5)

    assert answer.status_code == 500
    assert "soap:Client" in answer.text and "MALFORMED_XML" in answer.text


def test_the_server_requires_basic_auth(docsys: Docsys) -> None:
    answer = requests.post(docsys.endpoint, data=b"<x/>", timeout=5)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")


def test_the_desk_clock_moves_documents_on_its_own(docsys: Docsys, client: ConfiguredSoapClient) -> None:
    [ref] = refs_where(refused=False, count=1)
    receipt = client.create_document(record(ref), [])
    docsys.state.start_clock(0.01)
    try:
        deadline = time.monotonic() + 5
        while client.get_status(receipt.document_id).raw_code != "06" and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        docsys.state.stop_clock()
    assert client.get_status(receipt.document_id).raw_code == "06"
