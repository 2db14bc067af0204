"""How the Open311 client copes with what real GeoReport v2 servers send, and how it walks their feed."""

from __future__ import annotations

import json
import unicodedata
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from responses import matchers

from paht_bridge.connectors.base import CitizenSource
from paht_bridge.connectors.errors import AmbiguousError, MalformedResponse, PermanentError, RejectedContent, TransientError
from paht_bridge.connectors.limits import ConnectorLimits
from paht_bridge.connectors.open311 import Open311Client
from paht_bridge.connectors.open311_position import FeedPosition
from paht_bridge.connectors.open311_wire import update_id_for
from paht_bridge.canonical import Attachment, CanonicalStatus, Outcome, UnitScheme

BASE = "http://open311.test/georeport/v2"
REQUESTS_JSON = f"{BASE}/requests.json"
REQUESTS_XML = f"{BASE}/requests.xml"
UPDATES_JSON = f"{BASE}/servicerequestupdates.json"
ICT = timezone(timedelta(hours=7))
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=ICT)
START = datetime(2026, 10, 1, tzinfo=ICT)
PHONE = "0912345678"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 200 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200


def item(request_id: object = "2611900", **changes: object) -> dict:
    """A request as a well-behaved GeoReport v2 server writes it."""
    request = {
        "service_request_id": request_id,
        "status": "open",
        "status_notes": None,
        "service_name": "Hạ tầng giao thông",
        "service_code": "GT",
        "description": "Mặt đường có ổ gà sâu, đề nghị sửa chữa.",
        "agency_responsible": "UBND phường Bãi Cháy",
        "requested_datetime": "2026-10-05T08:15:00+07:00",
        "updated_datetime": "2026-10-05T08:15:00+07:00",
        "address": "Đường Hạ Long, phường Bãi Cháy, tỉnh Quảng Ninh",
        "lat": 20.9571,
        "long": 107.0382,
        "media_url": None,
    }
    request.update(changes)
    return request


def at(day: int, hour: int = 9, minute: int = 0, second: int = 0) -> str:
    return datetime(2026, 10, day, hour, minute, second, tzinfo=ICT).isoformat()


def client_for(**options: object) -> Open311Client:
    settings: dict[str, object] = {"api_key": "k", "timeout": (1.0, 2.0), "initial_start": START, "clock": lambda: NOW}
    settings.update(options)
    return Open311Client("quangninh_open311", BASE, **settings)  # type: ignore[arg-type]


@pytest.fixture
def client():
    with client_for() as c:
        yield c


def only_page(client: Open311Client, answer: list) -> tuple[list, list]:
    """The reports and quarantined items of an answer served for every window."""
    responses.get(REQUESTS_JSON, json=answer)
    page = next(client.reports_since(None))
    return page.items, page.quarantined


def one(client: Open311Client, **changes: object):
    reports, quarantined = only_page(client, [item(**changes)])
    assert not quarantined, quarantined
    (report,) = reports
    return report


# -- mapping and tolerance ----------------------------------------------------------------


def test_the_client_is_a_citizen_source(client):
    assert isinstance(client, CitizenSource)


@responses.activate
def test_a_request_maps_to_the_canonical_report(client):
    report = one(client, media_url="http://open311.test/media/a.jpg", first_name="Văn Bình", last_name="Nguyễn", phone=PHONE,
                 unit_scheme="2025", province="tỉnh Quảng Ninh", province_code="22", ward="phường Bãi Cháy", ward_code="06673")
    assert (report.source, report.source_id, report.channel) == ("quangninh_open311", "2611900", "open311")
    assert report.category == "GT" and report.title == "Hạ tầng giao thông" and report.source_status == "open"
    assert report.created_at == datetime(2026, 10, 5, 8, 15, tzinfo=ICT) == report.updated_at
    assert (report.location.lat, report.location.lon) == (20.9571, 107.0382)
    unit = report.location.unit
    assert unit.scheme is UnitScheme.CURRENT and unit.ward == "phường Bãi Cháy" and unit.ward_code == "06673" and unit.district is None
    (attachment,) = report.attachments
    assert attachment.url == "http://open311.test/media/a.jpg" and attachment.media_type == "image/jpeg" and attachment.name == "a.jpg"
    assert report.reporter.name.get_secret_value() == "Nguyễn Văn Bình"  # family name first
    assert report.reporter.phone.get_secret_value() == PHONE and PHONE not in repr(report)


@responses.activate
def test_the_string_null_and_empty_strings_are_missing_values(client):
    report = one(client, updated_datetime="null", media_url="", address="NULL", status_notes="null", zipcode="null")
    assert report.updated_at == report.created_at
    assert report.attachments == () and report.location.address is None


@responses.activate
def test_a_zero_zero_position_is_no_position_and_the_report_is_kept(client):
    report = one(client, lat=0, long=0)
    assert report.location.lat is None and report.location.lon is None
    assert report.location.address.startswith("Đường Hạ Long")


@responses.activate
def test_a_lone_coordinate_is_no_position(client):
    report = one(client, long="null")
    assert report.location.lat is None and report.location.lon is None


@responses.activate
def test_numbers_written_as_strings_and_ids_and_codes_written_as_numbers_are_read(client):
    report = one(client, request_id=2611016, lat="20.9997", long="106.9642", service_code=12,
                 ward="phường Việt Hưng", ward_code=6661, province_code="22")
    assert report.source_id == "2611016" and report.category == "12"
    assert (report.location.lat, report.location.lon) == (20.9997, 106.9642)
    assert report.location.unit.ward_code == "06661"  # the leading zero a JSON number lost


@responses.activate
def test_a_timestamp_without_a_zone_is_vietnam_time(client):
    report = one(client, requested_datetime="2026-10-08T07:45:00", updated_datetime="2026-10-08 09:00:00")
    assert report.created_at == datetime(2026, 10, 8, 7, 45, tzinfo=ICT)
    assert report.updated_at == datetime(2026, 10, 8, 9, 0, tzinfo=ICT)


@responses.activate
def test_unknown_fields_are_ignored(client):
    report = one(client, x_kenh_tiep_nhan="zalo", extended_attributes={"luot_ung_ho": 12}, service_notice="")
    assert report.source_id == "2611900"


@responses.activate
def test_decomposed_text_arrives_composed_and_markup_is_removed(client):
    nfd = unicodedata.normalize("NFD", "Đèn đường không sáng")
    report = one(client, service_name=nfd, description=f"<p>{nfd}</p><script>alert(1)</script>")
    assert report.title == unicodedata.normalize("NFC", nfd) != nfd
    assert report.description == unicodedata.normalize("NFC", nfd)


@responses.activate
def test_without_a_service_name_the_title_is_the_descriptions_first_line_within_80_characters(client):
    long_line = "Cống thoát nước ngang đường bị sập một đoạn, mặt đường bị hõm sâu, ô tô con không đi qua được dù đã báo"
    report = one(client, service_name="null", description=f"{long_line}\nDòng thứ hai")
    assert len(report.title) <= 80 and report.title.endswith("…") and long_line.startswith(report.title[:-1])
    assert report.description.startswith(long_line)


@responses.activate
def test_a_legacy_unit_keeps_its_district_and_the_scheme_is_inferred_when_not_sent(client):
    report = one(client, province="tỉnh Quảng Ninh", district="thành phố Hạ Long", district_code=193, ward="phường Bãi Cháy")
    unit = report.location.unit
    assert unit.scheme is UnitScheme.LEGACY and unit.district == "thành phố Hạ Long" and unit.district_code == "193"


@responses.activate
def test_without_unit_fields_the_unit_is_left_to_normalisation(client):
    assert one(client).location.unit is None


@responses.activate
def test_a_relative_media_url_is_made_absolute_and_one_without_extension_is_taken_as_a_photo(client):
    report = one(client, media_url="photos/2611900")
    (attachment,) = report.attachments
    assert attachment.url == f"{BASE}/photos/2611900"
    assert one(client, media_url="/media/x.png").attachments[0].url == "http://open311.test/media/x.png"  # as a browser resolves it
    assert attachment.media_type == "image/jpeg" and attachment.name == "2611900-media.jpg"


# -- quarantine ---------------------------------------------------------------------------


QUARANTINED = {
    "no id": (item(request_id="null"), "service_request_id"),
    "an id unusable as a reference": (item(request_id="a b/<c>"), "service_request_id: Value error, not usable as a reference"),
    "no service code": (item(service_code=""), "service_code"),
    "an unreadable time": (item(requested_datetime="32/13/2026"), "requested_datetime"),
    "a time in the future": (item(requested_datetime="2027-01-01T00:00:00+07:00"), "requested_datetime: 2027-01-01T00:00:00+07:00 is in the future"),
    "a position outside Vietnam": (item(lat=48.85, long=2.35), "lat/long: 48.8500, 2.3500 is outside Vietnam"),
    "nothing to forward": (item(service_name="", description="null"), "both empty"),
    "a media_url that is a program": (item(media_url="http://open311.test/setup.exe"), "media_url"),
    "a media_url that is not http": (item(media_url="javascript:alert(1)"), "media_url"),
    "an unknown unit scheme": (item(ward="phường Bãi Cháy", unit_scheme="1990"), "unit_scheme"),
    "a control character": (item(description="ổ gà\x00"), "description: contains control character U+0000"),
}


@pytest.mark.parametrize("bad, reason", QUARANTINED.values(), ids=QUARANTINED.keys())
@responses.activate
def test_a_bad_request_is_quarantined_with_the_field_and_the_good_ones_kept(client, bad, reason):
    reports, quarantined = only_page(client, [item("2611901"), bad, item("2611902")])
    assert [r.source_id for r in reports] == ["2611901", "2611902"]
    (q,) = quarantined
    assert q.source == "quangninh_open311" and reason in q.reason
    assert json.loads(q.payload.get_secret_value()) == bad


@responses.activate
def test_an_item_that_is_not_an_object_is_quarantined_without_an_id(client):
    reports, quarantined = only_page(client, [item("2611901"), ["not", "an", "object"]])
    assert [r.source_id for r in reports] == ["2611901"]
    assert quarantined[0].source_id is None and "expected an object" in quarantined[0].reason


@responses.activate
def test_personal_data_is_masked_in_the_quarantine_record_but_kept_in_its_encrypted_payload(client):
    bad = item("2611903", first_name="Văn Bình", last_name="Nguyễn", phone=PHONE, service_code="")
    _, (q,) = only_page(client, [bad])
    assert "Bình" not in q.raw and "Nguyễn" not in q.raw and PHONE not in q.raw
    assert PHONE in q.payload.get_secret_value()


def test_a_quarantined_payload_replays_through_parse_reports_once_fixed(client):
    bad = item("2611904", lat=48.85, long=2.35)
    _, (q,) = client.parse_reports([bad])
    raw = json.loads(q.payload.get_secret_value())
    assert client.parse_reports([raw])[1][0].reason == q.reason
    raw.update(lat=20.95, long=107.05)
    (report,), quarantined = client.parse_reports([raw])
    assert not quarantined and report.source_id == "2611904"


# -- XML ----------------------------------------------------------------------------------


XML_ANSWER = """<?xml version="1.0" encoding="utf-8"?>
<service_requests>
  <request>
    <service_request_id>2611900</service_request_id>
    <status>open</status>
    <status_notes/>
    <service_name>Hạ tầng giao thông</service_name>
    <service_code>GT</service_code>
    <description>Mặt đường có ổ gà sâu, đề nghị sửa chữa.</description>
    <requested_datetime>2026-10-05T08:15:00+07:00</requested_datetime>
    <updated_datetime>2026-10-05T08:15:00+07:00</updated_datetime>
    <address>Đường Hạ Long, phường Bãi Cháy, tỉnh Quảng Ninh</address>
    <lat>20.9571</lat>
    <long>107.0382</long>
    <media_url></media_url>
    <extended_attributes><luot_ung_ho>12</luot_ung_ho></extended_attributes>
  </request>
  <request>
    <service_request_id>2611901</service_request_id>
    <service_code>MT</service_code>
    <description>Rác thải tồn đọng</description>
    <requested_datetime>2026-10-06T08:00:00</requested_datetime>
    <lat>0</lat><long>0</long>
    <ward>phường Hồng Gai</ward><ward_code>6685</ward_code><province>tỉnh Quảng Ninh</province>
  </request>
</service_requests>"""


@responses.activate
def test_an_xml_answer_reads_like_the_json_one():
    responses.get(REQUESTS_XML, body=XML_ANSWER.encode(), content_type="text/xml; charset=utf-8")
    responses.get(REQUESTS_JSON, json=[item()])
    with client_for(wire_format="xml") as xml_client, client_for() as json_client:
        xml_page = next(xml_client.reports_since(None))
        json_page = next(json_client.reports_since(None))
    assert not xml_page.quarantined
    assert xml_page.items[0] == json_page.items[0]
    second = xml_page.items[1]
    assert second.title == "Rác thải tồn đọng" and second.location.lat is None
    assert second.created_at == datetime(2026, 10, 6, 8, 0, tzinfo=ICT)
    assert second.location.unit.ward_code == "06685" and second.location.unit.scheme is UnitScheme.CURRENT


@responses.activate
def test_xml_with_a_dtd_is_refused():
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><service_requests>&a;</service_requests>'
    responses.get(REQUESTS_XML, body=bomb, content_type="text/xml")
    with client_for(wire_format="xml") as c, pytest.raises(MalformedResponse, match="DTD"):
        next(c.reports_since(None))


@responses.activate
def test_an_xml_answer_with_another_root_is_malformed():
    responses.get(REQUESTS_XML, body=b"<html_like><p>hi</p></html_like>", content_type="application/xml")
    with client_for(wire_format="xml") as c, pytest.raises(MalformedResponse, match="service_requests"):
        next(c.reports_since(None))


# -- error documents ----------------------------------------------------------------------


@responses.activate
def test_a_json_error_document_is_a_permanent_error_with_its_description(client):
    responses.get(REQUESTS_JSON, json=[{"code": 403, "description": "jurisdiction_id không hợp lệ"}], status=403)
    with pytest.raises(PermanentError, match="Open311 error 403: jurisdiction_id không hợp lệ") as raised:
        next(client.reports_since(None))
    assert raised.value.system == "quangninh_open311" and raised.value.operation == "reports_since"


@responses.activate
def test_an_error_document_served_with_200_is_still_an_error(client):
    responses.get(REQUESTS_JSON, json=[{"code": "400", "description": "Invalid start_date"}])
    with pytest.raises(PermanentError, match="Invalid start_date"):
        next(client.reports_since(None))


@responses.activate
def test_a_503_error_document_is_transient(client):
    responses.get(REQUESTS_JSON, json=[{"code": 503, "description": "bảo trì hệ thống"}], status=503)
    with pytest.raises(TransientError, match="bảo trì"):
        next(client.reports_since(None))


@responses.activate
def test_an_xml_error_document_is_a_permanent_error_with_its_description():
    body = b"<?xml version='1.0'?><errors><error><code>404</code><description>jurisdiction not found</description></error></errors>"
    responses.get(REQUESTS_XML, body=body, status=404, content_type="text/xml")
    with client_for(wire_format="xml") as c, pytest.raises(PermanentError, match="Open311 error 404: jurisdiction not found") as raised:
        next(c.reports_since(None))
    assert not isinstance(raised.value, MalformedResponse)


@responses.activate
def test_an_html_page_served_with_200_is_malformed(client):
    responses.get(REQUESTS_JSON, body="<html><body>Bad Gateway</body></html>", content_type="text/html")
    with pytest.raises(MalformedResponse, match="expected JSON"):
        next(client.reports_since(None))


@responses.activate
def test_a_502_html_page_is_transient(client):
    responses.get(REQUESTS_JSON, body="<html>Bad Gateway</html>", status=502, content_type="text/html")
    with pytest.raises(TransientError, match="HTTP 502"):
        next(client.reports_since(None))


@responses.activate
def test_an_answer_that_is_not_a_list_is_malformed(client):
    responses.get(REQUESTS_JSON, json={"hello": "world"})
    with pytest.raises(MalformedResponse, match="list of service requests"):
        next(client.reports_since(None))


# -- walking the feed: windows, caps and ties ---------------------------------------------


class FakeServer:
    """A GeoReport v2 server over ``items``: inclusive date filter on updated_datetime, a cap,
    oldest first (or newest first, or ignoring the dates, as some servers do)."""

    def __init__(self, items: list[dict], cap: int | None = None, newest_first: bool = False, ignore_dates: bool = False) -> None:
        self.items, self.cap, self.newest_first, self.ignore_dates = items, cap, newest_first, ignore_dates
        self.calls: list[dict[str, str]] = []

    def __call__(self, request):
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        self.calls.append(query)
        start, end = datetime.fromisoformat(query["start_date"]), datetime.fromisoformat(query["end_date"])
        chosen = [i for i in self.items if self.ignore_dates or start <= datetime.fromisoformat(i["updated_datetime"]) <= end]
        chosen.sort(key=lambda i: (datetime.fromisoformat(i["updated_datetime"]), str(i["service_request_id"])), reverse=self.newest_first)
        if self.cap is not None:
            chosen = chosen[: self.cap]
        return 200, {"Content-Type": "application/json"}, json.dumps(chosen)

    def serve(self) -> FakeServer:
        responses.add_callback(responses.GET, REQUESTS_JSON, callback=self)
        return self


def changed(request_id: str, when: str) -> dict:
    return item(request_id, requested_datetime=when, updated_datetime=when)


def pull(client: Open311Client, cursor: str | None = None, page_size: int = 100) -> tuple[list[str], list[str | None]]:
    ids, cursors = [], []
    for page in client.reports_since(cursor, page_size=page_size):
        assert not page.quarantined
        ids += [r.source_id for r in page.items]
        cursors.append(page.next_cursor)
    return ids, cursors


@responses.activate
def test_the_walk_goes_window_by_window_from_the_initial_start_to_now():
    server = FakeServer([changed("A", at(3)), changed("B", at(25))]).serve()
    with client_for(window_days=10) as c:
        pages = list(c.reports_since(None))
    assert [r.source_id for p in pages for r in p.items] == ["A", "B"]
    first = server.calls[0]
    assert first["start_date"] == "2026-10-01T00:00:00+07:00" and first["end_date"] == "2026-10-11T00:00:00+07:00"
    assert server.calls[-1]["end_date"] == NOW.isoformat()
    assert all(datetime.fromisoformat(c["end_date"]) - datetime.fromisoformat(c["start_date"]) <= timedelta(days=10) for c in server.calls)
    assert [p.has_more for p in pages][-1] is False and all(p.has_more for p in pages[:-1])


@responses.activate
def test_without_a_cursor_or_initial_start_the_walk_starts_on_1_january_2020():
    server = FakeServer([]).serve()
    with Open311Client("qn", BASE, clock=lambda: datetime(2020, 1, 20, tzinfo=ICT), window_days=30) as c:
        list(c.reports_since(None))
    assert server.calls[0]["start_date"] == "2020-01-01T00:00:00+07:00"


@responses.activate
def test_a_capped_server_is_read_to_the_end_by_continuing_from_the_last_timestamp(client):
    items = [changed(f"R{n}", at(2 + n)) for n in range(8)]
    FakeServer(items, cap=3).serve()
    ids, _ = pull(client)
    assert ids == [f"R{n}" for n in range(8)]


@responses.activate
def test_requests_sharing_an_instant_across_capped_answers_are_neither_lost_nor_repeated(client):
    """As long as the server's cap is at least the number of requests at one instant (GeoReport
    v2 offers no way past more than that)."""
    tie = at(10, 9, 30)
    items = [changed("X", at(9)), changed("A", tie), changed("B", tie), changed("C", tie), changed("D", at(11))]
    FakeServer(items, cap=3).serve()
    ids, cursors = pull(client)
    assert ids == ["X", "A", "B", "C", "D"]
    assert any(c.endswith("|A,B,C") or c.endswith("|A,B") for c in cursors)


@responses.activate
def test_as_many_ties_as_the_cap_still_moves_on_to_later_requests(client):
    tie = at(10, 9, 30)
    FakeServer([changed("A", tie), changed("B", tie), changed("C", tie), changed("D", at(12))], cap=3).serve()
    assert pull(client)[0] == ["A", "B", "C", "D"]


@responses.activate
def test_resuming_from_any_page_cursor_yields_exactly_the_rest(client):
    tie = at(10, 9, 30)
    items = [changed("X", at(2)), changed("A", tie), changed("B", tie), changed("C", tie)] + [changed(f"R{n}", at(12 + n)) for n in range(5)]
    FakeServer(items, cap=3).serve()
    pages = list(client.reports_since(None))
    expected = [r.source_id for p in pages for r in p.items]
    assert sorted(expected) == sorted(i["service_request_id"] for i in items)
    for index, page in enumerate(pages):  # a crash after committing page `index`
        before = [r.source_id for p in pages[: index + 1] for r in p.items]
        rest, _ = pull(client, page.next_cursor)
        assert before + rest == expected, f"resuming after page {index}"


@responses.activate
def test_a_second_run_from_the_final_cursor_finds_nothing_and_then_only_what_changed(client):
    tie = (NOW - timedelta(minutes=5)).isoformat()  # recent: the cursor holds the instant and its ids
    items = [changed("A", tie), changed("B", tie)]
    FakeServer(items, cap=5).serve()
    ids, cursors = pull(client)
    assert ids == ["A", "B"]
    assert pull(client, cursors[-1])[0] == []
    items.append(changed("C", tie))  # stored late, stamped at the same instant
    items.append(changed("A", (NOW - timedelta(minutes=1)).isoformat()))  # A changed again
    assert pull(client, cursors[-1])[0] == ["C", "A"]


@responses.activate
def test_a_server_keeping_the_newest_of_a_capped_answer_is_read_whole_by_halving_the_window(client):
    items = [changed(f"R{n}", at(2 + n, 8 + n % 5)) for n in range(12)]
    server = FakeServer(items, cap=4, newest_first=True).serve()
    ids, _ = pull(client, page_size=4)
    assert sorted(ids) == sorted(f"R{n}" for n in range(12)) and len(ids) == 12
    assert len(server.calls) > 12  # the narrowing cost some extra calls


@responses.activate
def test_a_server_ignoring_the_dates_gives_each_request_once_in_its_own_window(client):
    items = [changed("A", at(3)), changed("B", at(20)), changed("C", datetime(2026, 11, 10, tzinfo=ICT).isoformat())]
    FakeServer(items, ignore_dates=True).serve()
    assert pull(client)[0] == ["A", "B", "C"]


@responses.activate
def test_over_an_empty_stretch_the_cursor_stops_short_of_now_by_the_clock_skew_allowance(client):
    FakeServer([]).serve()
    _, cursors = pull(client)
    assert FeedPosition.parse(cursors[-1]).at == NOW - timedelta(minutes=10)


@responses.activate
def test_a_request_seen_at_the_settle_edge_keeps_its_own_time_in_the_cursor(client):
    recent = (NOW - timedelta(minutes=2)).isoformat()
    FakeServer([changed("A", recent)]).serve()
    ids, cursors = pull(client)
    assert ids == ["A"] and cursors[-1] == f"{recent}|A"


@responses.activate
def test_many_ties_keep_the_cursor_within_255_characters_and_are_still_not_repeated(client):
    tie = (NOW - timedelta(minutes=5)).isoformat()
    items = [changed(f"QN-2026-TIE-{n:04d}", tie) for n in range(20)]
    FakeServer(items).serve()
    ids, cursors = pull(client)
    assert len(ids) == 20
    assert all(len(c) <= 255 for c in cursors) and "#" in cursors[-1]
    assert pull(client, cursors[-1])[0] == []


def test_too_many_ties_for_even_hashes_are_recorded_as_unknown_a_repeat_not_a_loss():
    tie = datetime(2026, 10, 10, 9, 30, tzinfo=ICT)
    position = FeedPosition(tie, frozenset(f"ID-{n}" for n in range(60)))
    text = position.serialize()
    assert text.endswith("|*") and len(text) <= 255
    assert not FeedPosition.parse(text).covers((tie, "ID-1"))
    assert FeedPosition.parse(text).covers((tie - timedelta(seconds=1), "ID-1"))


@responses.activate
def test_a_bare_date_is_accepted_as_a_cursor(client):
    server = FakeServer([changed("A", at(20))]).serve()
    assert pull(client, "2026-10-15")[0] == ["A"]
    assert server.calls[0]["start_date"] == "2026-10-15T00:00:00+07:00"


def test_a_cursor_that_cannot_be_read_is_a_permanent_error(client):
    with pytest.raises(PermanentError, match="cursor"):
        next(client.reports_since("not-a-cursor|x"))


@responses.activate
def test_a_request_without_a_usable_time_is_quarantined_once_per_run_though_every_answer_holds_it():
    broken = item("2611999", requested_datetime="hôm qua", updated_datetime="null")
    responses.get(REQUESTS_JSON, json=[broken])
    with client_for(window_days=10) as c:
        pages = list(c.reports_since(None))
    assert len(pages) > 2
    assert sum(len(p.quarantined) for p in pages) == 1


@responses.activate
def test_the_jurisdiction_is_sent_and_the_api_key_is_not_put_in_a_query_string():
    responses.get(REQUESTS_JSON, json=[], match=[matchers.query_param_matcher(
        {"start_date": "2026-11-10T00:00:00+07:00", "end_date": NOW.isoformat(), "jurisdiction_id": "quangninh.gov.vn"})])
    with client_for(jurisdiction_id="quangninh.gov.vn") as c:
        pages = list(c.reports_since("2026-11-10"))
    assert len(pages) == 1 and "k" not in parse_qs(urlsplit(responses.calls[0].request.url).query).get("api_key", [])


# -- publishing outcomes ------------------------------------------------------------------


def outcome(status: CanonicalStatus = CanonicalStatus.ANSWERED, answer: str = "UBND phường đã chỉ đạo vá ổ gà.") -> Outcome:
    return Outcome(source_id="2611900", status=status, answer=answer, answered_by="UBND phường Bãi Cháy",
                   answered_at=datetime(2026, 11, 18, 15, 30, tzinfo=ICT))


@responses.activate
def test_an_answer_is_posted_as_a_closed_update_with_a_deterministic_update_id():
    responses.post(UPDATES_JSON, json=[{"update_id": update_id_for(outcome())}])
    with client_for(jurisdiction_id="quangninh.gov.vn") as c:
        c.publish_outcome(outcome())
    form = parse_qs(responses.calls[0].request.body)
    assert form["status"] == ["CLOSED"] and form["service_request_id"] == ["2611900"]
    assert form["api_key"] == ["k"] and form["jurisdiction_id"] == ["quangninh.gov.vn"]
    assert form["description"] == ["UBND phường đã chỉ đạo vá ổ gà."]
    assert form["updated_datetime"] == ["2026-11-18T15:30:00+07:00"]
    assert form["update_id"] == [update_id_for(outcome())]
    assert update_id_for(outcome()) == update_id_for(outcome()) != update_id_for(outcome(answer="Khác"))


@pytest.mark.parametrize("status, wire", [(CanonicalStatus.IN_PROGRESS, "OPEN"), (CanonicalStatus.REFUSED_BY_AGENCY, "OPEN"),
                                          (CanonicalStatus.REJECTED_INVALID, "CLOSED"), (CanonicalStatus.CLOSED, "CLOSED")])
@responses.activate
def test_canonical_statuses_map_to_open_or_closed(client, status, wire):
    responses.post(UPDATES_JSON, json=[{"update_id": "x"}])
    client.publish_outcome(outcome(status))
    assert parse_qs(responses.calls[0].request.body)["status"] == [wire]


@pytest.mark.parametrize("status, description", [(409, "update_id paht-1 already exists"), (400, "Duplicate update")])
@responses.activate
def test_an_update_the_server_already_has_is_success(client, status, description):
    responses.post(UPDATES_JSON, json=[{"code": status, "description": description}], status=status)
    client.publish_outcome(outcome())  # no error


@responses.activate
def test_an_update_for_an_unknown_request_is_a_permanent_error(client):
    responses.post(UPDATES_JSON, json=[{"code": 404, "description": "service_request_id 2611900 not found"}], status=404)
    with pytest.raises(PermanentError, match="not found") as raised:
        client.publish_outcome(outcome())
    assert raised.value.operation == "publish_outcome" and raised.value.ref == "2611900"


@responses.activate
def test_a_5xx_after_posting_an_update_is_ambiguous(client):
    responses.post(UPDATES_JSON, json=[{"code": 500, "description": "lỗi máy chủ"}], status=500)
    with pytest.raises(AmbiguousError):
        client.publish_outcome(outcome())


@responses.activate
def test_an_xml_update_answer_is_read():
    body = b"<service_request_updates><request_update><update_id>77</update_id></request_update></service_request_updates>"
    responses.post(f"{BASE}/servicerequestupdates.xml", body=body, content_type="text/xml")
    with client_for(wire_format="xml") as c:
        c.publish_outcome(outcome())
    assert responses.calls[0].request.url.endswith("servicerequestupdates.xml")


def test_ratings_are_one_empty_page_with_the_callers_cursor(client):
    (page,) = list(client.ratings_since("opaque-7"))
    assert page.items == [] and page.next_cursor == "opaque-7" and page.has_more is False


# -- attachments --------------------------------------------------------------------------


def photo(url: str = "http://open311.test/media/a.jpg", media_type: str = "image/jpeg") -> Attachment:
    return Attachment(name=url.rsplit("/", 1)[-1], media_type=media_type, url=url)


@responses.activate
def test_a_photo_streams_in_chunks(client):
    responses.get("http://open311.test/media/a.jpg", body=JPEG, content_type="image/jpeg")
    with client.open_attachment(photo()) as chunks:
        assert b"".join(chunks) == JPEG


@responses.activate
def test_a_photo_on_another_host_is_refused_without_a_request(client):
    with pytest.raises(RejectedContent, match="not the source's host"):
        with client.open_attachment(photo("http://169.254.169.254/latest/meta-data.jpg")):
            pass
    assert len(responses.calls) == 0


@responses.activate
def test_a_media_host_the_connection_allows_is_fetched_and_others_still_refused():
    limits = ConnectorLimits.from_extra({"limits": {"allowed_media_hosts": ["CDN.Quangninh.gov.vn"]}})
    responses.get("https://cdn.quangninh.gov.vn/paht/a.jpg", body=JPEG, content_type="image/jpeg")
    with client_for(limits=limits) as client:
        with client.open_attachment(photo("https://cdn.quangninh.gov.vn/paht/a.jpg")) as chunks:
            assert b"".join(chunks) == JPEG
        with pytest.raises(RejectedContent, match="not the source's host"):
            with client.open_attachment(photo("http://169.254.169.254/latest/meta-data.jpg")):
                pass
    assert len(responses.calls) == 1


@responses.activate
def test_a_redirect_is_not_followed(client):
    responses.get("http://open311.test/media/a.jpg", status=302, headers={"Location": "http://evil.test/a.jpg"})
    with pytest.raises(PermanentError, match="302"):
        with client.open_attachment(photo()):
            pass
    assert len(responses.calls) == 1


@responses.activate
def test_a_photo_that_is_really_an_html_page_is_refused(client):
    responses.get("http://open311.test/media/a.jpg", body=b"<html><body>login</body></html>" + b" " * 80, content_type="image/jpeg")
    with pytest.raises(RejectedContent, match="HTML"):
        with client.open_attachment(photo()) as chunks:
            b"".join(chunks)


@responses.activate
def test_a_photo_over_the_size_limit_is_refused_while_streaming():
    responses.get("http://open311.test/media/a.jpg", body=JPEG * 10, content_type="image/jpeg")
    with client_for(limits=ConnectorLimits(max_attachment_bytes=1000)) as c, pytest.raises(RejectedContent, match="limit"):
        with c.open_attachment(photo()) as chunks:
            b"".join(chunks)


@responses.activate
def test_a_media_url_without_extension_accepts_any_allowed_image(client):
    responses.get("http://open311.test/photos/2611900", body=PNG, content_type="application/octet-stream")
    with client.open_attachment(photo("http://open311.test/photos/2611900")) as chunks:
        assert b"".join(chunks) == PNG


@responses.activate
def test_a_media_url_with_a_jpg_name_holding_a_png_is_refused(client):
    responses.get("http://open311.test/media/a.jpg", body=PNG, content_type="image/jpeg")
    with pytest.raises(RejectedContent, match="do not start like one"):
        with client.open_attachment(photo()) as chunks:
            b"".join(chunks)
