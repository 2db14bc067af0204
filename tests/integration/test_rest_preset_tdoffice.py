"""The TDOffice-style REST document system through the configured REST connector and the
``tdoffice_rest`` preset (Điện Biên's shipped target), against the real stand-in on loopback."""

from __future__ import annotations

import hashlib
import json
import random
import socket
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
import requests

from paht_bridge.connectors.base import DocumentSystem
from paht_bridge.connectors.errors import AmbiguousError, MalformedResponse, PermanentError, TransientError
from paht_bridge.connectors.configured_rest import ConfiguredRestClient
from paht_bridge.canonical import (
    VIETNAM_TZ,
    DocumentRecord,
    LocalAttachment,
    Location,
    Rating,
    RatingLevel,
    RawStatusChange,
    Reporter,
)
from paht_bridge.sandbox.desk import refuses
from paht_bridge.sandbox.rest_docsys import Faults, RestDocsysState, create_rest_docsys_app
from paht_bridge.sandbox.server import LoopbackServer
from tests.preset_clients import tdoffice_client

TOKEN = "dien-bien-test-token"
ANSWERED_PATH = ["CHO_TIEP_NHAN", "DA_TIEP_NHAN", "DA_PHAN_CONG", "DANG_XU_LY", "DA_XU_LY"]
REFUSED_PATH = ["CHO_TIEP_NHAN", "TRA_LAI"]


@pytest.fixture
def state() -> RestDocsysState:
    return RestDocsysState(refuse_one_in=7, token=TOKEN)


@pytest.fixture
def server(state: RestDocsysState) -> Iterator[LoopbackServer]:
    with LoopbackServer(create_rest_docsys_app(state), name="rest-docsys") as running:
        yield running


@pytest.fixture
def client(server: LoopbackServer) -> Iterator[ConfiguredRestClient]:
    with tdoffice_client(server.url, name="tdoffice-dienbien", token=TOKEN, timeout=(2.0, 10.0)) as connector:
        yield connector


def make_record(n: int = 1, **changes: object) -> DocumentRecord:
    values: dict[str, object] = dict(
        external_ref=f"PAHT-dienbien-smart-{n}",
        report_key=f"dienbien-smart:{n}",
        agency_code="000.20.11.H18",
        agency_name="UBND phường Điện Biên Phủ",
        sender_code="000.01.11.H18",
        sender_name="Trung tâm Giám sát, điều hành đô thị thông minh tỉnh Điện Biên",
        subject=f"Rác thải tập kết sai quy định tại tổ dân phố {n}",
        content="Người dân phản ánh rác thải sinh hoạt bị đổ bên đường, gây mùi hôi, đề nghị xử lý.",
        category="VSMT",
        priority=0,
        issued_at=datetime(2025, 11, 3, 8, 30, tzinfo=VIETNAM_TZ),
        due_date=date(2025, 11, 13),
        location=Location(lat=22.3839, lon=103.0137, address="Tổ dân phố 5, phường Điện Biên Phủ, tỉnh Điện Biên"),
    )
    values.update(changes)
    return DocumentRecord.model_validate(values)


def spool_file(directory: Path, name: str, data: bytes, media_type: str) -> LocalAttachment:
    path = directory / f"spool-{hashlib.sha1(name.encode()).hexdigest()}"
    path.write_bytes(data)
    return LocalAttachment(name=name, media_type=media_type, size=len(data), sha256=hashlib.sha256(data).hexdigest(), path=path)


def test_the_client_is_a_document_system(client: ConfiguredRestClient) -> None:
    assert isinstance(client, DocumentSystem)


def test_two_attachments_arrive_intact_and_the_document_reads_back(
    client: ConfiguredRestClient, state: RestDocsysState, tmp_path: Path
) -> None:
    photo = spool_file(tmp_path, "ảnh hiện trường 1.jpg", random.Random(1).randbytes(3 * 1024 * 1024 + 17), "image/jpeg")
    video = spool_file(tmp_path, "video \"rác\" bên đường.mp4", random.Random(2).randbytes(70_001), "video/mp4")

    receipt = client.create_document(make_record(), [photo, video])

    assert receipt.created and receipt.external_ref == "PAHT-dienbien-smart-1"
    stored = state.document_by_ref("PAHT-dienbien-smart-1")
    assert stored is not None and stored.agency == "000.20.11.H18"
    assert [(a.ten, a.loai, a.kich_thuoc, a.sha256) for a in stored.attachments] == [
        (photo.name, "image/jpeg", photo.size, photo.sha256),
        (video.name, "video/mp4", video.size, video.sha256),
    ]
    assert stored.reporter_fields == []  # no reporter in the record, none at the agency
    assert client.find_by_ref("PAHT-dienbien-smart-1") == receipt.model_copy(update={"created": False})
    status = client.get_status(receipt.document_id)
    assert (status.external_ref, status.raw_code, status.answer) == ("PAHT-dienbien-smart-1", "CHO_TIEP_NHAN", None)


def test_the_reporter_reaches_the_agency_only_when_the_record_carries_it(client: ConfiguredRestClient, state: RestDocsysState) -> None:
    client.create_document(make_record(1, reporter=Reporter(phone="0912345678")), [])
    client.create_document(make_record(2), [])
    assert state.document_by_ref("PAHT-dienbien-smart-1").reporter_fields == ["so_dien_thoai"]
    assert state.document_by_ref("PAHT-dienbien-smart-2").reporter_fields == []


def test_sending_the_same_external_reference_twice_creates_one_document(client: ConfiguredRestClient, state: RestDocsysState) -> None:
    first = client.create_document(make_record(), [])
    second = client.create_document(make_record(), [])

    assert first.created is True and second.created is False
    assert first.document_id == second.document_id
    stored = state.document_by_ref("PAHT-dienbien-smart-1")
    assert (stored.create_calls, stored.created_count) == (2, 1)
    assert len(state.documents()) == 1


def test_find_by_ref_for_a_reference_the_system_never_saw_is_none(client: ConfiguredRestClient) -> None:
    client.create_document(make_record(10), [])
    assert client.find_by_ref("PAHT-dienbien-smart-1") is None  # no "contains" match on -10


def test_the_change_feed_carries_every_desk_stage_once_with_a_resumable_cursor(client: ConfiguredRestClient, state: RestDocsysState) -> None:
    refs = [f"PAHT-dienbien-smart-{n}" for n in range(1, 13)]
    refused = {ref for ref in refs if refuses(ref)}
    assert refused and refused != set(refs)  # the sample exercises both endings
    for n in range(1, 13):
        client.create_document(make_record(n), [])

    cursor: str | None = None
    seen: list[RawStatusChange] = []

    def read_feed(pages: int | None = None) -> None:
        nonlocal cursor
        for count, page in enumerate(client.changes_since(cursor, page_size=4), start=1):
            assert not page.quarantined
            seen.extend(page.items)
            cursor = page.next_cursor  # what the ledger stores once the page is committed
            if count == pages:
                return

    read_feed(pages=1)  # a worker dies after one page of the twelve arrivals...
    assert len(seen) == 4
    read_feed()  # ...and the next one resumes from the stored cursor
    while state.tick():
        read_feed()

    by_ref: dict[str, list[str]] = {}
    for change in seen:
        by_ref.setdefault(change.external_ref, []).append(change.raw_code)
    assert by_ref == {ref: REFUSED_PATH if ref in refused else ANSWERED_PATH for ref in refs}
    assert len(seen) == len({(c.external_ref, c.raw_code) for c in seen})  # no repeats
    finals = [c for c in seen if c.raw_code in ("DA_XU_LY", "TRA_LAI")]
    assert all(c.answer and c.answered_by == "UBND phường Điện Biên Phủ" for c in finals)
    assert "không thuộc thẩm quyền" in next(c.answer for c in finals if c.raw_code == "TRA_LAI")


def test_an_empty_feed_keeps_the_cursor(client: ConfiguredRestClient) -> None:
    pages = list(client.changes_since("0"))
    assert [(p.items, p.next_cursor, p.has_more) for p in pages] == [([], "0", False)]


def test_a_document_missing_a_required_field_is_refused_naming_the_field(client: ConfiguredRestClient, state: RestDocsysState) -> None:
    with pytest.raises(PermanentError, match="trich_yeu") as caught:
        client.create_document(make_record(subject="   "), [])
    assert not isinstance(caught.value, AmbiguousError)
    assert state.documents() == []


def test_a_wrong_token_is_a_permanent_error(server: LoopbackServer, state: RestDocsysState) -> None:
    with tdoffice_client(server.url, token="stale-token") as stale:
        with pytest.raises(PermanentError, match="401"):
            stale.create_document(make_record(), [])
        with pytest.raises(PermanentError, match="401"):
            stale.find_by_ref("PAHT-dienbien-smart-1")
    assert state.documents() == []


def test_posting_a_rating_twice_stores_it_once(client: ConfiguredRestClient, state: RestDocsysState) -> None:
    receipt = client.create_document(make_record(), [])
    rating = Rating(
        rating_id="rating-77", source="dienbien-smart", source_id="1", level=RatingLevel.NOT_SATISFIED,
        comment="Rác vẫn còn sau 3 ngày", rated_at=datetime(2025, 11, 20, 9, 0, tzinfo=VIETNAM_TZ),
    )
    client.post_rating(receipt.document_id, rating)
    client.post_rating(receipt.document_id, rating)

    ratings = state.document_by_ref("PAHT-dienbien-smart-1").ratings
    assert [(r.rating_id, r.level, r.comment) for r in ratings] == [("rating-77", "KHONG_HAI_LONG", "Rác vẫn còn sau 3 ngày")]


def test_a_server_that_is_not_listening_is_transient() -> None:
    with socket.socket() as bound_not_listening:  # holds the port so nobody else takes it
        bound_not_listening.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound_not_listening.getsockname()[1]}"
        with tdoffice_client(url, token=TOKEN, timeout=(1.0, 1.0)) as offline:
            with pytest.raises(TransientError):
                offline.find_by_ref("PAHT-dienbien-smart-1")
            with pytest.raises(TransientError):
                offline.create_document(make_record(), [])


def test_a_timeout_after_commit_is_ambiguous_and_the_lookup_finds_the_document(
    server: LoopbackServer, state: RestDocsysState
) -> None:
    state.set_faults(Faults(stall_after_commit_next=1, stall_seconds=1.5))
    with tdoffice_client(server.url, token=TOKEN, timeout=(1.0, 0.5)) as impatient:
        with pytest.raises(AmbiguousError):
            impatient.create_document(make_record(), [])
        found = impatient.find_by_ref("PAHT-dienbien-smart-1")
        assert found is not None
        retry = impatient.create_document(make_record(), [])
    assert retry.created is False and retry.document_id == found.document_id
    assert state.created_count("PAHT-dienbien-smart-1") == 1


def test_a_gateway_error_before_processing_is_ambiguous_and_nothing_was_created(client: ConfiguredRestClient, state: RestDocsysState) -> None:
    state.set_faults(Faults(fail_next=1, fail_status=503))
    with pytest.raises(AmbiguousError):
        client.create_document(make_record(), [])
    assert client.find_by_ref("PAHT-dienbien-smart-1") is None
    assert client.create_document(make_record(), []).created is True


def test_a_recalled_document_reports_thu_hoi(client: ConfiguredRestClient, server: LoopbackServer) -> None:
    receipt = client.create_document(make_record(), [])
    requests.post(f"{server.url}/_sandbox/documents/{receipt.document_id}/recall", timeout=5).raise_for_status()
    requests.post(f"{server.url}/_sandbox/desk/tick", timeout=5).raise_for_status()
    assert client.get_status(receipt.document_id).raw_code == "THU_HOI"


def test_the_control_endpoints_tick_the_desk_and_list_documents_without_auth(
    client: ConfiguredRestClient, server: LoopbackServer, tmp_path: Path
) -> None:
    photo = spool_file(tmp_path, "anh.png", b"\x89PNG fake", "image/png")
    client.create_document(make_record(2), [photo])
    moved = requests.post(f"{server.url}/_sandbox/desk/tick", timeout=5).json()
    listed = requests.get(f"{server.url}/_sandbox/documents", timeout=5).json()
    assert moved == {"moved": 1}
    assert [(d["external_ref"], d["status"], d["create_calls"], d["created_count"]) for d in listed] == [
        ("PAHT-dienbien-smart-2", "DA_TIEP_NHAN", 1, 1)
    ]
    assert listed[0]["attachments"][0]["sha256"] == photo.sha256


def test_an_html_page_from_the_real_server_is_malformed_but_the_document_exists(
    client: ConfiguredRestClient, state: RestDocsysState
) -> None:
    state.set_faults(Faults(malformed_next=1, malformed="html"))
    with pytest.raises(MalformedResponse):
        client.create_document(make_record(), [])
    assert client.create_document(make_record(), []).created is False


def test_an_idempotency_key_reused_for_another_reference_is_a_conflict(server: LoopbackServer, state: RestDocsysState) -> None:
    def post(ref: str) -> requests.Response:
        document = make_record(external_ref=ref)
        body = {
            "so_ky_hieu": ref, "trich_yeu": document.subject, "noi_dung": document.content, "han_xu_ly": "2025-11-13",
            "don_vi_nhan": {"ma": document.agency_code, "ten": document.agency_name},
            "don_vi_gui": {"ma": document.sender_code, "ten": document.sender_name},
        }
        return requests.post(
            f"{server.url}/api/v2/van-ban-den", files={"van_ban": (None, json.dumps(body), "application/json")},
            headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "key-1"}, timeout=5,
        )

    assert post("PAHT-a-1").status_code == 201
    conflict = post("PAHT-a-2")
    assert conflict.status_code == 409 and conflict.json()["error"] == "idempotency_key_reused"
    assert [d.external_ref for d in state.documents()] == ["PAHT-a-1"]


def test_a_broken_multipart_body_is_refused_in_the_vendors_shape(server: LoopbackServer) -> None:
    answer = requests.post(
        f"{server.url}/api/v2/van-ban-den", data=b"--x\r\nnot a part", timeout=5,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert answer.status_code in (400, 422) and "error" in answer.json()


def test_concurrent_sends_of_one_reference_create_one_document(client: ConfiguredRestClient, state: RestDocsysState) -> None:
    # Two workers (a zombie beside its retry) can send the same report at the same moment.
    with ThreadPoolExecutor(max_workers=8) as pool:
        receipts = list(pool.map(lambda _: client.create_document(make_record(), []), range(8)))
    assert len({r.document_id for r in receipts}) == 1
    assert sum(r.created for r in receipts) == 1
    assert (state.create_calls("PAHT-dienbien-smart-1"), state.created_count("PAHT-dienbien-smart-1")) == (8, 1)


def test_a_refusal_names_the_refused_fields_in_the_dead_letter_reason(client: ConfiguredRestClient, state: RestDocsysState) -> None:
    with pytest.raises(PermanentError) as caught:
        client.create_document(make_record(agency_code="abc"), [])
    assert "rejected as invalid (HTTP 422): don_vi_nhan.ma: Sai định dạng" in str(caught.value)
    assert caught.value.operation == "create_document" and caught.value.ref == "PAHT-dienbien-smart-1"
    assert state.documents() == []


def test_a_subject_over_the_vendors_limit_is_cut_and_a_long_comment_too(
    client: ConfiguredRestClient, state: RestDocsysState, server: LoopbackServer
) -> None:
    receipt = client.create_document(make_record(subject="Ổ gà " * 200), [])
    stored = requests.get(f"{server.url}/api/v2/van-ban-den/{receipt.document_id}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()
    assert len(stored["trich_yeu"]) <= 500 and stored["trich_yeu"].endswith("…")
    rating = Rating(rating_id="rating-78", source="dienbien-smart", source_id="1", level=RatingLevel.SATISFIED,
                    comment="Cảm ơn cán bộ phường. " * 200, rated_at=datetime(2025, 11, 20, 9, 0, tzinfo=VIETNAM_TZ))
    client.post_rating(receipt.document_id, rating)
    [kept] = state.document_by_ref("PAHT-dienbien-smart-1").ratings
    assert 1900 < len(kept.comment) <= 2000
