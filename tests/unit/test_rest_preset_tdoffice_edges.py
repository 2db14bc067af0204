"""How the TDOffice-style REST system (the configured REST connector with the ``tdoffice_rest``
preset) is spoken to, and how it reads what a misbehaving vendor sends back.

Answers are replayed at the transport level with ``responses``; nothing listens.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from pathlib import Path

import pytest
import requests
import responses

from paht_bridge.connectors.errors import AmbiguousError, MalformedResponse, PermanentError, TransientError
from paht_bridge.connectors.configured_rest import ConfiguredRestClient
from paht_bridge.canonical import VIETNAM_TZ, DocumentRecord, LocalAttachment, Location, Rating, RatingLevel, Reporter
from tests.preset_clients import tdoffice_client, tdoffice_wire

BASE = "https://tdoffice.dienbien.example.vn"
CREATE = f"{BASE}/api/v2/van-ban-den"
CHANGES = f"{BASE}/api/v2/thay-doi-trang-thai"
REF = "PAHT-dienbien-smart-42"
CREATED = {"id": "VBD-000042", "so_ky_hieu": REF, "trang_thai": "CHO_TIEP_NHAN", "existed": False, "tep_dinh_kem": []}


@pytest.fixture
def client() -> ConfiguredRestClient:
    return tdoffice_client(BASE, name="tdoffice-dienbien", token="t0ken", timeout=(1.0, 2.0))


@pytest.fixture
def record() -> DocumentRecord:
    return DocumentRecord(
        external_ref=REF, report_key="dienbien-smart:42", agency_code="000.20.11.H18", agency_name="UBND phường Điện Biên Phủ",
        sender_code="000.01.11.H18", sender_name="IOC Điện Biên", subject="Đèn đường hỏng tại ngã ba",
        content="Đèn đường không sáng đã một tuần.", category="HTDT", priority=2,
        issued_at=datetime(2025, 11, 3, 8, 30, tzinfo=VIETNAM_TZ), due_date=date(2025, 11, 13),
        reporter=Reporter(name="Lò Văn A", phone="0912345678"),
    )


@pytest.fixture
def photo(tmp_path: Path) -> LocalAttachment:
    data = b"\xff\xd8\xff" + bytes(range(256)) * 100
    path = tmp_path / "spool.bin"
    path.write_bytes(data)
    return LocalAttachment(name="ảnh.jpg", media_type="image/jpeg", size=len(data), sha256=hashlib.sha256(data).hexdigest(), path=path)


def multipart_parts(body: bytes, content_type: str) -> dict[str, tuple[bytes, bytes]]:
    """{part name: (headers, content)}; enough of a parser to check what was sent."""
    boundary = content_type.split("boundary=")[1].encode()
    parts = {}
    for chunk in body.split(b"--" + boundary)[1:-1]:
        headers, _, content = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        name = headers.split(b'name="')[1].split(b'"')[0].decode()
        parts[name] = (headers, content)
    return parts


@responses.activate
def test_an_html_page_served_with_200_is_malformed(client: ConfiguredRestClient, record: DocumentRecord) -> None:
    responses.post(CREATE, body="<html><body>Đăng nhập hệ thống</body></html>", status=200, content_type="text/html")
    with pytest.raises(MalformedResponse, match="expected JSON"):
        client.create_document(record, [])


@responses.activate
def test_a_503_on_create_is_ambiguous(client: ConfiguredRestClient, record: DocumentRecord) -> None:
    responses.post(CREATE, json={"error": "unavailable"}, status=503)
    with pytest.raises(AmbiguousError, match="503"):
        client.create_document(record, [])


@responses.activate
def test_a_503_on_a_lookup_is_only_transient(client: ConfiguredRestClient) -> None:
    responses.get(CREATE, json={"error": "unavailable"}, status=503)
    with pytest.raises(TransientError) as caught:
        client.find_by_ref(REF)
    assert not isinstance(caught.value, AmbiguousError)


@responses.activate
def test_a_read_timeout_on_create_is_ambiguous(client: ConfiguredRestClient, record: DocumentRecord) -> None:
    responses.post(CREATE, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(AmbiguousError) as caught:
        client.create_document(record, [])
    assert caught.value.ref == REF and caught.value.operation == "create_document"


@responses.activate
def test_json_of_the_wrong_shape_is_malformed(client: ConfiguredRestClient, record: DocumentRecord) -> None:
    responses.post(CREATE, json={"success": True, "data": {"ma": 42}}, status=201)
    with pytest.raises(MalformedResponse, match="no 'id' \\(document_id\\)"):
        client.create_document(record, [])


@responses.activate
def test_truncated_json_is_malformed(client: ConfiguredRestClient, record: DocumentRecord) -> None:
    responses.post(CREATE, body='{"id": "VBD-0000', status=201, content_type="application/json")
    with pytest.raises(MalformedResponse, match="invalid JSON"):
        client.create_document(record, [])


@responses.activate
def test_an_answer_for_another_reference_is_malformed(client: ConfiguredRestClient, record: DocumentRecord) -> None:
    responses.post(CREATE, json={**CREATED, "so_ky_hieu": "PAHT-dienbien-smart-41"}, status=201)
    with pytest.raises(MalformedResponse, match="PAHT-dienbien-smart-41"):
        client.create_document(record, [])


@responses.activate
def test_the_idempotency_key_the_record_and_the_file_are_sent(
    client: ConfiguredRestClient, record: DocumentRecord, photo: LocalAttachment
) -> None:
    responses.post(CREATE, json=CREATED, status=201)

    receipt = client.create_document(record, [photo])

    assert receipt.document_id == "VBD-000042" and receipt.created
    sent = responses.calls[0].request
    assert sent.headers["Idempotency-Key"] == REF
    assert sent.headers["Authorization"] == "Bearer t0ken"
    assert int(sent.headers["Content-Length"]) == len(sent.body)
    parts = multipart_parts(sent.body, sent.headers["Content-Type"])
    document = json.loads(parts["van_ban"][1])
    assert document["so_ky_hieu"] == REF
    assert document["do_khan"] == "THUONG_KHAN"  # canonical priority 2
    assert document["don_vi_nhan"] == {"ma": "000.20.11.H18", "ten": "UBND phường Điện Biên Phủ"}
    assert document["nguoi_phan_anh"] == {"ho_ten": "Lò Văn A", "so_dien_thoai": "0912345678"}
    assert document["han_xu_ly"] == "2025-11-13" and document["ngay_gui"] == "2025-11-03T08:30:00+07:00"
    headers, content = parts["tep_dinh_kem"]
    assert 'filename="ảnh.jpg"'.encode() in headers and b"Content-Type: image/jpeg" in headers
    assert hashlib.sha256(content).hexdigest() == photo.sha256


@responses.activate
def test_an_existing_document_is_a_receipt_not_a_creation(client: ConfiguredRestClient, record: DocumentRecord) -> None:
    responses.post(CREATE, json={**CREATED, "existed": True}, status=200)
    assert client.create_document(record, []).created is False


@responses.activate
def test_a_422_names_the_refused_fields(client: ConfiguredRestClient, record: DocumentRecord) -> None:
    refusal = {"error": "validation_failed", "message": "Dữ liệu không hợp lệ", "fields": [
        {"field": "han_xu_ly", "message": "Trường bắt buộc"}, {"field": "don_vi_nhan.ma", "message": "Sai định dạng"}]}
    responses.post(CREATE, json=refusal, status=422)
    with pytest.raises(PermanentError, match=r"han_xu_ly: Trường bắt buộc; don_vi_nhan\.ma: Sai định dạng"):
        client.create_document(record, [])


@responses.activate
def test_naive_vendor_times_are_read_as_vietnam_time_and_text_as_nfc(client: ConfiguredRestClient) -> None:
    decomposed = "UBND xa\u0303 Mu\u031bo\u031b\u0300ng Mươn"  # NFD, as some systems store it
    responses.get(f"{CREATE}/VBD-000042", json={
        "id": "VBD-000042", "so_ky_hieu": REF, "trang_thai": "DA_XU_LY", "ngay_cap_nhat": "2025-11-12T16:05:00",
        "y_kien_xu_ly": "Đã xử lý", "don_vi_xu_ly": decomposed, "truong_moi": "vendor added this"})

    status = client.get_status("VBD-000042")

    assert status.changed_at == datetime(2025, 11, 12, 16, 5, tzinfo=VIETNAM_TZ)
    assert status.answered_by == "UBND xã Mường Mươn" and status.raw_code == "DA_XU_LY"


@responses.activate
def test_a_bad_change_item_is_quarantined_and_the_feed_moves_on(client: ConfiguredRestClient) -> None:
    good = {"seq": 7, "id": "VBD-000042", "so_ky_hieu": REF, "trang_thai": "DA_TIEP_NHAN", "thoi_gian": "2025-11-04T09:00:00+07:00"}
    responses.get(CHANGES, json={"items": [good, {"id": "VBD-000043", "trang_thai": None}], "next_cursor": "8", "has_more": False})

    (page,) = list(client.changes_since("6"))

    assert [c.raw_code for c in page.items] == ["DA_TIEP_NHAN"]
    assert [(q.source, q.source_id) for q in page.quarantined] == [("tdoffice-dienbien", "VBD-000043")]
    assert page.next_cursor == "8"
    assert responses.calls[0].request.params == {"cursor": "6", "limit": "200"}


@responses.activate
def test_a_feed_that_claims_more_without_moving_its_cursor_is_malformed(client: ConfiguredRestClient) -> None:
    responses.get(CHANGES, json={"items": [], "next_cursor": "6", "has_more": True})
    with pytest.raises(MalformedResponse, match="did not advance past '6'"):
        list(client.changes_since("6"))


@responses.activate
def test_ratings_go_out_in_the_vendors_levels_keyed_by_rating_id(client: ConfiguredRestClient) -> None:
    responses.post(f"{CREATE}/VBD-000042/danh-gia", json={"ma_danh_gia": "r-1", "existed": False}, status=201)
    rating = Rating(rating_id="r-1", source="dienbien-smart", source_id="42", level=RatingLevel.SATISFIED,
                    rated_at=datetime(2025, 11, 20, 9, 0, tzinfo=VIETNAM_TZ))

    client.post_rating("VBD-000042", rating)

    sent = responses.calls[0].request
    assert json.loads(sent.body) == {"ma_danh_gia": "r-1", "muc_do": "HAI_LONG", "thoi_gian": "2025-11-20T09:00:00+07:00"}
    assert sent.headers["Idempotency-Key"] == "r-1" and sent.headers["Content-Type"] == "application/json"


@responses.activate
def test_a_rating_answered_for_another_rating_is_malformed(client: ConfiguredRestClient) -> None:
    responses.post(f"{CREATE}/VBD-000042/danh-gia", json={"ma_danh_gia": "r-2", "existed": False}, status=201)
    rating = Rating(rating_id="r-1", source="dienbien-smart", source_id="42", level=RatingLevel.SATISFIED,
                    rated_at=datetime(2025, 11, 20, 9, 0, tzinfo=VIETNAM_TZ))
    with pytest.raises(MalformedResponse, match="answered for rating id 'r-2'"):
        client.post_rating("VBD-000042", rating)


@responses.activate
def test_a_status_answered_for_another_document_is_malformed(client: ConfiguredRestClient) -> None:
    responses.get(f"{CREATE}/VBD-000042", json={"id": "VBD-000041", "so_ky_hieu": REF, "trang_thai": "DA_XU_LY",
                                                "ngay_cap_nhat": "2025-11-12T16:05:00"})
    with pytest.raises(MalformedResponse, match="VBD-000041"):
        client.get_status("VBD-000042")


@responses.activate
def test_markup_is_stripped_from_what_the_agency_receives(client: ConfiguredRestClient, record: DocumentRecord) -> None:
    responses.post(CREATE, json=CREATED, status=201)
    marked = record.model_copy(update={"subject": "<b>Đèn</b> hỏng<script>alert(1)</script>", "content": "Xem <a href='x'>ảnh</a>",
                                       "location": Location(address="<i>Ngã ba</i> Thanh Bình")})
    client.create_document(marked, [])
    sent = responses.calls[0].request
    document = json.loads(multipart_parts(sent.body, sent.headers["Content-Type"])["van_ban"][1])
    sent_text = [document["trich_yeu"], document["noi_dung"], document["dia_diem"]["dia_chi"]]
    assert [t.strip() for t in sent_text] == ["Đèn hỏng", "Xem ảnh", "Ngã ba Thanh Bình"]
    assert not any("<" in t or "alert" in t for t in sent_text)


@responses.activate
def test_duplicates_found_by_reference_are_logged_and_the_first_is_used(client: ConfiguredRestClient, caplog: pytest.LogCaptureFixture) -> None:
    item = {"so_ky_hieu": REF, "trang_thai": "DA_TIEP_NHAN", "ngay_cap_nhat": "2025-11-04T09:00:00+07:00"}
    responses.get(CREATE, json={"items": [{**item, "id": "VBD-7"}, {**item, "id": "VBD-8"}, {**item, "id": "VBD-9", "so_ky_hieu": REF + "0"}]})
    with caplog.at_level("WARNING"):
        found = client.find_by_ref(REF)
    assert found is not None and found.document_id == "VBD-7" and found.created is False
    assert f"duplicate documents system=tdoffice-dienbien ref={REF} document_ids=VBD-7,VBD-8" in caplog.text


@responses.activate
def test_a_list_that_is_not_a_list_is_malformed(client: ConfiguredRestClient) -> None:
    responses.get(CHANGES, json={"items": "none", "next_cursor": "1", "has_more": False})
    with pytest.raises(MalformedResponse, match="'items' holds str"):
        list(client.changes_since(None))


@responses.activate
def test_a_page_asks_for_no_more_than_the_vendor_gives(client: ConfiguredRestClient) -> None:
    responses.get(CHANGES, json={"items": [], "next_cursor": "0", "has_more": False})
    list(client.changes_since(None, page_size=2000))
    assert responses.calls[0].request.params == {"limit": "500"}  # no cursor yet: none is sent


@pytest.mark.parametrize(("body", "reason"), [
    ('{"error": "validation_failed", "message": "Dữ liệu không hợp lệ", "fields": []}'.encode(), "Dữ liệu không hợp lệ"),
    (b'{"error": "validation_failed"}', "validation_failed"),
    (b"{not json", "{not json"),
    (b'{"fields": "han_xu_ly"}', '{"fields": "han_xu_ly"}'),
])
@responses.activate
def test_a_refusal_without_fields_keeps_what_the_vendor_said(client: ConfiguredRestClient, record: DocumentRecord, body: bytes, reason: str) -> None:
    responses.post(CREATE, body=body, status=422, content_type="application/json")
    with pytest.raises(PermanentError) as caught:
        client.create_document(record, [])
    assert str(caught.value).endswith(f"rejected as invalid (HTTP 422): {reason}")
    assert not isinstance(caught.value, MalformedResponse)


@responses.activate
def test_the_reporter_never_shows_in_a_log_line(client: ConfiguredRestClient, record: DocumentRecord, caplog: pytest.LogCaptureFixture) -> None:
    responses.post(CREATE, json=CREATED, status=201)
    with caplog.at_level("DEBUG"):
        client.create_document(record, [])
    assert "0912345678" not in caplog.text and "Lò Văn A" not in caplog.text
    assert f"ref={REF}" in caplog.text


@responses.activate
def test_content_over_a_text_limit_streams_whole_as_a_file_beside_the_attachments(record: DocumentRecord, photo: LocalAttachment) -> None:
    limited = tdoffice_client(BASE, token="t0ken", wire=tdoffice_wire().model_copy(update={"text_limit": 100}))
    responses.post(CREATE, json=CREATED, status=201)
    long_content = "Đèn đường không sáng đã một tuần, người dân đi lại khó khăn. " * 10
    limited.create_document(record.model_copy(update={"content": long_content}), [photo])
    sent = responses.calls[0].request
    body = sent.body if isinstance(sent.body, bytes) else b"".join(sent.body)
    assert int(sent.headers["Content-Length"]) == len(body)
    files = [chunk for chunk in body.split(b"--" + sent.headers["Content-Type"].split("boundary=")[1].encode()) if b'name="tep_dinh_kem"' in chunk]
    assert [b'filename="noi_dung_day_du.txt"' in f for f in files] == [False, True]
    assert long_content.strip().encode() in files[1]
    document = json.loads(multipart_parts(body, sent.headers["Content-Type"])["van_ban"][1])
    assert len(document["noi_dung"]) <= 100 and document["noi_dung"].endswith("noi_dung_day_du.txt)")
