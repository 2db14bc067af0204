"""How the citizen-app client copes with what a real app, or the proxy in front of it, may send."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
import responses
from responses import matchers

from paht_bridge.connectors.base import CitizenSource
from paht_bridge.connectors.citizen_app import CitizenAppClient, mask_personal
from paht_bridge.connectors.errors import MalformedResponse, PermanentError, TransientError
from paht_bridge.canonical import Attachment, CanonicalStatus, Outcome, RatingLevel, UnitScheme

BASE = "http://citizen.test"
REPORTS = f"{BASE}/api/v1/reports"
RATINGS = f"{BASE}/api/v1/ratings"
PHONE = "0912345678"
ICT = timezone(timedelta(hours=7))


def wire_report(report_id: str = "QT-2026-000900", **changes: object) -> dict:
    report = {
        "id": report_id,
        "channel": "app",
        "category": {"code": "GT", "name": "Hạ tầng giao thông"},
        "title": "Ổ gà lớn giữa đường",
        "description": "Mặt đường có ổ gà sâu, đề nghị sửa chữa.",
        "status": "moi_tiep_nhan",
        "created_at": "2026-10-05T08:15:00+07:00",
        "updated_at": "2026-10-05T08:15:00+07:00",
        "location": {
            "lat": 16.8185,
            "lng": 107.1003,
            "address": "Đường Lê Lợi, phường 1, thành phố Đông Hà, tỉnh Quảng Trị",
            "admin_unit": {"scheme": "legacy", "province": "tỉnh Quảng Trị", "district": "thành phố Đông Hà", "ward": "Phường 1"},
        },
        "reporter": {"full_name": "Nguyễn Văn Bình", "phone": PHONE},
        "attachments": [],
    }
    report.update(changes)
    return report


def page(items: list, next_cursor: str | None = "3", has_more: bool = False) -> dict:
    return {"data": items, "paging": {"next_cursor": next_cursor, "has_more": has_more, "limit": 100}}


@pytest.fixture
def client():
    with CitizenAppClient("quangtri_ioc", BASE, api_key="k", timeout=(1.0, 2.0)) as c:
        yield c


# -- bad server answers -------------------------------------------------------------------


@responses.activate
def test_an_html_page_served_with_200_is_a_malformed_response(client):
    responses.get(REPORTS, body="<html><body>502 Bad Gateway</body></html>", status=200, content_type="text/html")
    with pytest.raises(MalformedResponse):
        next(client.reports_since(None))


@responses.activate
def test_invalid_json_is_a_malformed_response(client):
    responses.get(REPORTS, body='{"data": [{"id": "QT-', status=200, content_type="application/json")
    with pytest.raises(MalformedResponse, match="invalid JSON"):
        next(client.reports_since(None))


@responses.activate
def test_json_of_the_wrong_shape_is_a_malformed_response(client):
    responses.get(REPORTS, json={"items": [], "next": None})
    with pytest.raises(MalformedResponse, match="data"):
        next(client.reports_since(None))


@responses.activate
def test_a_503_is_a_transient_error(client):
    responses.get(REPORTS, json={"error": {"code": "unavailable"}}, status=503)
    with pytest.raises(TransientError):
        next(client.reports_since(None))


@responses.activate
def test_a_401_is_a_permanent_error_not_a_malformed_one(client):
    responses.get(REPORTS, json={"error": {"code": "unauthorized"}}, status=401)
    with pytest.raises(PermanentError) as raised:
        next(client.reports_since(None))
    assert not isinstance(raised.value, MalformedResponse)


@responses.activate
def test_has_more_with_a_cursor_that_does_not_advance_is_malformed_instead_of_looping_for_ever(client):
    responses.get(REPORTS, json=page([wire_report()], next_cursor="7", has_more=True))
    with pytest.raises(MalformedResponse, match="did not advance"):
        list(client.reports_since("7"))


# -- paging -------------------------------------------------------------------------------


@responses.activate
def test_paging_follows_the_next_cursor_until_has_more_is_false(client):
    responses.get(REPORTS, match=[matchers.query_param_matcher({"limit": "2"})],
                  json=page([wire_report("A-1"), wire_report("A-2")], "2", True))
    responses.get(REPORTS, match=[matchers.query_param_matcher({"limit": "2", "since": "2"})],
                  json=page([wire_report("A-3")], "3", False))
    pages = list(client.reports_since(None, page_size=2))
    assert [[r.source_id for r in p.items] for p in pages] == [["A-1", "A-2"], ["A-3"]]
    assert [(p.next_cursor, p.has_more) for p in pages] == [("2", True), ("3", False)]


@responses.activate
def test_an_empty_feed_keeps_the_callers_cursor(client):
    responses.get(REPORTS, json=page([], next_cursor=None, has_more=False))
    (only,) = list(client.reports_since("41"))
    assert only.items == [] and only.next_cursor == "41" and not only.has_more


@responses.activate
def test_an_empty_page_is_logged_at_debug_and_a_page_with_reports_at_info(client, caplog):
    """The triggerer's watch reads every source every 15 s: a quiet feed stays out of its log."""
    import logging

    responses.get(REPORTS, match=[matchers.query_param_matcher({"limit": "100", "since": "41"})],
                  json=page([], next_cursor=None, has_more=False))
    responses.get(REPORTS, match=[matchers.query_param_matcher({"limit": "100", "since": "42"})],
                  json=page([wire_report("A-1")], next_cursor="43", has_more=False))
    with caplog.at_level(logging.DEBUG, logger="paht_bridge.connectors.citizen_app"):
        list(client.reports_since("41"))
        list(client.reports_since("42"))
    pages = [(r.levelno, r.getMessage()) for r in caplog.records if "reports_page" in r.getMessage()]
    assert [level for level, _ in pages] == [logging.DEBUG, logging.INFO]
    assert "items=0" in pages[0][1] and "items=1" in pages[1][1]


@responses.activate
def test_a_wire_report_maps_to_the_canonical_report(client):
    attachment = {"id": "A1", "file_name": "IMG_1.jpg", "mime_type": "image/jpeg", "size": 10,
                  "sha256": "a" * 64, "download_url": "/api/v1/attachments/A1"}
    responses.get(REPORTS, json=page([wire_report(attachments=[attachment])]))
    (report,) = next(client.reports_since(None)).items
    assert report.source == "quangtri_ioc" and report.source_id == "QT-2026-000900"
    assert report.category == "GT" and report.source_status == "moi_tiep_nhan"
    assert report.location.lat == 16.8185 and report.location.lon == 107.1003
    assert report.location.unit.scheme is UnitScheme.LEGACY
    assert report.location.unit.district == "thành phố Đông Hà" and report.location.unit.ward_code is None
    assert report.reporter.phone.get_secret_value() == PHONE
    assert PHONE not in repr(report)
    assert report.attachments[0].url == "/api/v1/attachments/A1" and report.attachments[0].size == 10


@responses.activate
def test_a_timestamp_without_offset_is_read_as_vietnam_time(client):
    responses.get(REPORTS, json=page([wire_report(created_at="2026-10-05T08:15:00", updated_at=None)]))
    (report,) = next(client.reports_since(None)).items
    assert report.created_at == datetime(2026, 10, 5, 8, 15, tzinfo=ICT)
    assert report.updated_at == report.created_at


@responses.activate
def test_decomposed_vietnamese_text_arrives_composed(client):
    import unicodedata

    nfd = unicodedata.normalize("NFD", "Đèn đường không sáng")
    responses.get(REPORTS, json=page([wire_report(title=nfd)]))
    (report,) = next(client.reports_since(None)).items
    assert report.title == unicodedata.normalize("NFC", nfd) and report.title != nfd


# -- quarantine ---------------------------------------------------------------------------


def _without(field: str) -> dict:
    report = wire_report("QT-BAD")
    del report[field]
    return report


def _with_location(**changes: object) -> dict:
    report = wire_report("QT-BAD")
    report["location"] = {**report["location"], **changes}
    return report


MALFORMED = {
    "missing title": (_without("title"), "title: Field required"),
    "title of the wrong type": (wire_report("QT-BAD", title=12345), "title: Input should be a valid string"),
    "latitude out of range": (_with_location(lat=123.4), "location.lat: Input should be less than or equal to 90"),
    "latitude without longitude": (_with_location(lng=None), "lat and lng must be given together"),
    "unparseable date": (wire_report("QT-BAD", created_at="32/13/2026 25:00"), "created_at: Input should be a valid datetime"),
    "date as a number": (wire_report("QT-BAD", created_at=1791000000), "created_at: Value error, expected an ISO 8601"),
    "unknown unit scheme": (_with_location(admin_unit={"scheme": "1990", "ward": "x"}), "location.admin_unit.scheme"),
    "category without code": (wire_report("QT-BAD", category={"name": "Giao thông"}), "category.code: Field required"),
}


@pytest.mark.parametrize("bad, reason", MALFORMED.values(), ids=MALFORMED.keys())
@responses.activate
def test_a_malformed_report_is_quarantined_with_the_field_and_why_and_the_good_ones_kept(client, bad, reason):
    responses.get(REPORTS, json=page([wire_report("QT-1"), bad, wire_report("QT-2")]))
    result = next(client.reports_since(None))
    assert [r.source_id for r in result.items] == ["QT-1", "QT-2"]
    (quarantined,) = result.quarantined
    assert quarantined.source == "quangtri_ioc" and quarantined.source_id == "QT-BAD"
    assert reason in quarantined.reason
    assert result.next_cursor == "3"  # the bad item does not hold the cursor back


@responses.activate
def test_an_item_that_is_not_an_object_is_quarantined_without_an_id(client):
    responses.get(REPORTS, json=page([wire_report("QT-1"), "QT-2026-000901"]))
    result = next(client.reports_since(None))
    assert len(result.items) == 1
    (quarantined,) = result.quarantined
    assert quarantined.source_id is None and "expected a JSON object" in quarantined.reason


@responses.activate
def test_the_reporter_phone_and_name_never_appear_in_the_quarantined_raw_text(client, caplog):
    bad = wire_report("QT-BAD", title=None, description=f"Gọi lại cho tôi số {PHONE} hoặc +84 912 345 678.")
    responses.get(REPORTS, json=page([bad]))
    caplog.set_level("DEBUG")
    (quarantined,) = next(client.reports_since(None)).quarantined
    assert PHONE not in quarantined.raw and "912 345 678" not in quarantined.raw
    assert "Nguyễn Văn Bình" not in quarantined.raw
    assert json.loads(quarantined.raw)["id"] == "QT-BAD"  # still readable JSON for IOC staff
    assert PHONE not in quarantined.reason and "Nguyễn Văn Bình" not in quarantined.reason
    assert PHONE not in caplog.text and "Nguyễn Văn Bình" not in caplog.text


def test_masking_keeps_coordinates_ids_and_hashes_intact():
    raw = {"id": "DB-2026-000123", "location": {"lat": 21.0123456789, "lng": 103.0166270}, "sha256": "0" * 64,
           "reporter": {"full_name": "Lò Văn Sơn", "phone": "0376543210"}}
    masked = json.loads(mask_personal(raw))
    assert masked["id"] == raw["id"] and masked["location"] == raw["location"] and masked["sha256"] == raw["sha256"]
    assert masked["reporter"] == {"full_name": "***", "phone": "********10"}


@responses.activate
def test_an_unknown_rating_level_is_quarantined_not_guessed(client):
    good = {"id": "DG-1", "report_id": "QT-1", "level": "khong_hai_long", "comment": "Chưa xử lý", "rated_at": "2026-11-02T09:00:00+07:00"}
    odd = {**good, "id": "DG-2", "level": "binh_thuong"}
    responses.get(RATINGS, json=page([good, odd], "2", False))
    result = next(client.ratings_since(None))
    assert [(r.rating_id, r.level) for r in result.items] == [("DG-1", RatingLevel.NOT_SATISFIED)]
    assert result.quarantined[0].source_id == "DG-2" and "unknown rating level" in result.quarantined[0].reason


# -- attachments and outcomes ---------------------------------------------------------------


def _attachment(data: bytes, url: str = "/api/v1/attachments/A1", **changes: object) -> Attachment:
    fields = {"name": "IMG_1.jpg", "media_type": "image/jpeg", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "url": url}
    return Attachment(**{**fields, **changes})


@responses.activate
def test_an_attachment_whose_bytes_do_not_match_its_checksum_is_refused(client):
    data = b"\xff\xd8" + b"x" * 5000 + b"\xff\xd9"
    responses.get(f"{BASE}/api/v1/attachments/A1", body=data, content_type="image/jpeg")
    with pytest.raises(MalformedResponse, match="sha256"):
        with client.open_attachment(_attachment(data, sha256="0" * 64)) as chunks:
            b"".join(chunks)


@responses.activate
def test_an_html_page_instead_of_an_attachment_is_refused_before_streaming(client):
    data = b"\xff\xd8\xff\xd9"
    responses.get(f"{BASE}/api/v1/attachments/A1", body="<html>login</html>", content_type="text/html")
    with pytest.raises(MalformedResponse, match="expected image/jpeg"):
        with client.open_attachment(_attachment(data)):
            pass


@responses.activate
def test_the_api_key_is_not_sent_to_another_host(client):
    data = b"\x89PNG-bytes"
    cdn = responses.get("https://cdn.example.test/a1.png", body=data, content_type="image/png")
    with client.open_attachment(_attachment(data, url="https://cdn.example.test/a1.png", media_type="image/png")) as chunks:
        assert b"".join(chunks) == data
    assert "X-API-Key" not in cdn.calls[0].request.headers


@responses.activate
def test_publish_outcome_sends_the_apps_status_and_field_names(client):
    posted = responses.post(f"{REPORTS}/QT-2026-000900/outcome", status=201,
                            json={"report_id": "QT-2026-000900", "outcome_id": "QT-2026-000900-KQ1", "created": True})
    answered_at = datetime(2026, 11, 3, 14, 0, tzinfo=ICT)
    client.publish_outcome(Outcome(source_id="QT-2026-000900", status=CanonicalStatus.ANSWERED,
                                   answer="Đã vá ổ gà.", answered_by="UBND phường Đông Lương", answered_at=answered_at))
    body = json.loads(posted.calls[0].request.body)
    assert body == {"status": "da_xu_ly", "answer": "Đã vá ổ gà.", "answer_unit": "UBND phường Đông Lương",
                    "answered_at": "2026-11-03T14:00:00+07:00"}


@responses.activate
def test_publishing_for_a_report_the_app_does_not_know_is_a_permanent_error(client):
    responses.post(f"{REPORTS}/QT-404/outcome", status=404, json={"error": {"code": "report_not_found"}})
    outcome = Outcome(source_id="QT-404", status=CanonicalStatus.ANSWERED, answer="x", answered_by="y",
                      answered_at=datetime(2026, 11, 3, tzinfo=ICT))
    with pytest.raises(PermanentError):
        client.publish_outcome(outcome)


def test_the_client_is_a_citizen_source_and_does_no_io_when_built():
    client = CitizenAppClient("dienbien_smart", "http://127.0.0.1:9")  # nothing listens on port 9
    assert isinstance(client, CitizenSource)
    assert client.name == "dienbien_smart"
    client.close()


def test_wire_fixture_is_not_mutated_by_the_mapping():
    report = wire_report()
    snapshot = copy.deepcopy(report)
    mask_personal(report)
    assert report == snapshot
