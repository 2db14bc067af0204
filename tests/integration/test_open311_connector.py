"""The Open311 client against the stand-in Open311 server, served on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import requests

from paht_bridge.connectors.errors import MalformedResponse, PermanentError, TransientError
from paht_bridge.connectors.open311 import Open311Client
from paht_bridge.normalise.admin_units import resolve_units
from paht_bridge.canonical import CanonicalStatus, Outcome, Report, UnitScheme
from paht_bridge.sandbox.open311 import Open311State, create_open311_app, load_open311_seeds
from paht_bridge.sandbox.server import LoopbackServer

ICT = timezone(timedelta(hours=7))
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=ICT)
SOURCE = "quangninh_open311"
API_KEY = "test-key-quangninh"
SEED_IDS = [str(s["service_request_id"]) for s in load_open311_seeds()]


@dataclass
class Running:
    url: str
    state: Open311State

    def client(self, wire_format: str = "json", **options: object) -> Open311Client:
        settings: dict[str, object] = {"api_key": API_KEY, "wire_format": wire_format, "timeout": (2.0, 10.0), "window_days": 14,
                                       "initial_start": datetime(2026, 9, 1, tzinfo=ICT), "clock": lambda: NOW}
        settings.update(options)
        return Open311Client(SOURCE, self.url, **settings)  # type: ignore[arg-type]

    def control(self, method: str, path: str, **kwargs: object) -> requests.Response:
        response = requests.request(method, f"{self.url}/_sandbox{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response

    def citizen_side(self, request_id: str) -> dict:
        return next(r for r in self.control("GET", "/reports").json()["reports"] if r["id"] == request_id)


def _serve(max_results: int, jurisdiction_id: str | None = None) -> Iterator[Running]:
    # The server's clock stamps updates a minute before the client's "now", so they show in the feed.
    state = Open311State(SOURCE, load_open311_seeds(), API_KEY, max_results=max_results, jurisdiction_id=jurisdiction_id,
                         clock=lambda: NOW - timedelta(minutes=1))
    server = LoopbackServer(create_open311_app(state), name="open311").start()
    try:
        yield Running(server.url, state)
    finally:
        server.stop()


@pytest.fixture
def capped() -> Iterator[Running]:
    """A server answering at most 3 requests per call, fewer than some windows hold."""
    yield from _serve(max_results=3, jurisdiction_id="quangninh.gov.vn")


@pytest.fixture
def roomy() -> Iterator[Running]:
    yield from _serve(max_results=50)


def pull(client: Open311Client, cursor: str | None = None) -> tuple[list[Report], list[str | None]]:
    reports: list[Report] = []
    cursors: list[str | None] = []
    for page in client.reports_since(cursor):
        assert not page.quarantined, [q.reason for q in page.quarantined]
        reports += page.items
        cursors.append(page.next_cursor)
    return reports, cursors


def by_id(reports: list[Report]) -> dict[str, Report]:
    return {r.source_id: r for r in reports}


# -- the feed -------------------------------------------------------------------------------


@pytest.mark.parametrize("wire_format", ["json", "xml"])
def test_every_seeded_request_arrives_once_oldest_first_across_windows_and_a_cap_with_ties(capped, wire_format):
    with capped.client(wire_format, jurisdiction_id="quangninh.gov.vn") as client:
        reports, cursors = pull(client)
    assert sorted(r.source_id for r in reports) == sorted(SEED_IDS) and len(reports) == len(SEED_IDS)
    assert [r.updated_at for r in reports] == sorted(r.updated_at for r in reports)
    tied = [r.source_id for r in reports if r.updated_at == datetime(2026, 11, 5, 9, 30, tzinfo=ICT)]
    assert tied == ["2611012", "2611013", "2611014"]  # three at one instant, through a cap of three
    assert len(cursors) > 10 and all(c and len(c) <= 255 for c in cursors)


def test_json_and_xml_give_the_same_reports(roomy):
    with roomy.client("json") as json_client, roomy.client("xml") as xml_client:
        assert pull(json_client)[0] == pull(xml_client)[0]


def test_the_seeded_quirks_of_real_servers_are_tolerated(roomy):
    with roomy.client() as client:
        reports = by_id(pull(client)[0])
    assert reports["2611004"].updated_at == reports["2611004"].created_at and reports["2611004"].attachments == ()
    assert reports["2611006"].created_at == datetime(2026, 10, 8, 7, 45, tzinfo=ICT)  # written without a zone
    assert reports["2611009"].location.lat is None and reports["2611009"].location.address  # 0/0: no GPS fix
    assert (reports["2611010"].location.lat, reports["2611010"].location.unit.ward_code) == (20.9997, "06661")
    assert reports["2611016"].source_id == "2611016"  # sent as a JSON number
    assert reports["2611008"].location.unit.scheme is UnitScheme.LEGACY
    assert reports["2611001"].reporter.name.get_secret_value() == "Phạm Văn Thắng"
    assert all(r.channel == "open311" and r.category in {"XD", "MT", "GT", "DT"} for r in reports.values())


def test_every_seeded_place_resolves_to_a_current_unit_in_quang_ninh(roomy):
    with roomy.client() as client:
        reports = pull(client)[0]
    for report in reports:
        resolved = resolve_units(report.location.unit)
        assert resolved.problem is None, (report.source_id, resolved.problem)
        assert resolved.current.province_code == "22"


def test_a_run_from_the_last_cursor_brings_only_what_changed(capped):
    with capped.client(jurisdiction_id="quangninh.gov.vn") as client:
        _, cursors = pull(client)
        assert pull(client, cursors[-1])[0] == []
        added = {"service_request_id": "2611017", "service_code": "MT", "service_name": "Vệ sinh môi trường",
                 "description": "Rác tràn ra đường Cột 5.", "requested_datetime": (NOW - timedelta(minutes=3)).isoformat(),
                 "updated_datetime": (NOW - timedelta(minutes=3)).isoformat(), "lat": 20.95, "long": 107.08, "status": "open"}
        capped.control("POST", "/reports", json=added)
        fresh, _ = pull(client, cursors[-1])
    assert [r.source_id for r in fresh] == ["2611017"]


def test_resuming_from_any_page_cursor_neither_loses_nor_repeats(capped):
    with capped.client(jurisdiction_id="quangninh.gov.vn") as client:
        pages = list(client.reports_since(None))
        everything = [r.source_id for p in pages for r in p.items]
        for index in range(0, len(pages), 3):  # a crash after committing page `index`
            before = [r.source_id for p in pages[: index + 1] for r in p.items]
            rest = [r.source_id for r in pull(client, pages[index].next_cursor)[0]]
            assert before + rest == everything, f"resuming after page {index}"


def test_a_wrong_jurisdiction_is_a_permanent_error_with_the_servers_description(capped):
    with capped.client(jurisdiction_id="hanoi.gov.vn") as client, pytest.raises(PermanentError, match="jurisdiction_id hanoi.gov.vn not found"):
        next(client.reports_since(None))


@pytest.mark.parametrize("wire_format", ["json", "xml"])
def test_a_503_error_document_is_transient_and_a_proxy_page_malformed(roomy, wire_format):
    with roomy.client(wire_format) as client:
        roomy.control("POST", "/faults", json={"status": 503, "description": "bảo trì"})
        with pytest.raises(TransientError, match="bảo trì"):
            next(client.reports_since(None))
        roomy.control("POST", "/faults", json={"mode": "html"})
        with pytest.raises(MalformedResponse):
            next(client.reports_since(None))
        assert len(next(client.reports_since(None)).items) > 0  # faults spent: reads again


# -- attachments ----------------------------------------------------------------------------


def test_every_seeded_photo_streams_and_matches_what_the_server_holds(roomy):
    with roomy.client() as client:
        with_media = [r for r in pull(client)[0] if r.attachments]
        assert len(with_media) >= len(SEED_IDS) // 3
        for report in with_media:
            (attachment,) = report.attachments
            with client.open_attachment(attachment) as chunks:
                data = b"".join(chunks)
            assert data == requests.get(attachment.url, timeout=10).content and len(data) > 1000
            assert data.startswith(b"\x89PNG" if attachment.media_type == "image/png" else b"\xff\xd8")


# -- publishing outcomes --------------------------------------------------------------------


def answer(text: str = "UBND phường Cẩm Phả đã chỉ đạo vá ổ gà trên Quốc lộ 18.") -> Outcome:
    return Outcome(source_id="2611003", status=CanonicalStatus.ANSWERED, answer=text, answered_by="UBND phường Cẩm Phả",
                   answered_at=datetime(2026, 11, 19, 15, 30, tzinfo=ICT))


@pytest.mark.parametrize("wire_format", ["json", "xml"])
def test_publishing_the_same_answer_twice_makes_one_update(roomy, wire_format):
    with roomy.client(wire_format) as client:
        client.publish_outcome(answer())
        client.publish_outcome(answer())
    side = roomy.citizen_side("2611003")
    assert side["publish_calls"] == 2 and len(side["published"]) == 1 == len(side["outcomes"])
    (update,) = side["published"]
    assert update["status"] == "CLOSED" and update["update_id"].startswith("paht-2611003-answered-")
    assert update["description"] == answer().answer and side["status"] == "closed"
    listed = requests.get(f"{roomy.url}/servicerequestupdates.json", params={"service_request_id": "2611003"}, timeout=10).json()
    assert [u["update_id"] for u in listed] == [update["update_id"]]


def test_a_changed_answer_is_a_second_update(roomy):
    with roomy.client() as client:
        client.publish_outcome(answer())
        client.publish_outcome(answer("Đã vá xong, mặt đường thông thoáng."))
    assert len(roomy.citizen_side("2611003")["published"]) == 2


def test_a_published_answer_shows_in_the_feed_as_a_change(roomy):
    with roomy.client() as client:
        _, cursors = pull(client)
        client.publish_outcome(answer())
        changed, _ = pull(client, cursors[-1])
    assert [(r.source_id, r.source_status) for r in changed] == [("2611003", "closed")]


def test_publishing_for_an_unknown_request_or_with_a_wrong_key_is_a_permanent_error(roomy):
    unknown = answer().model_copy(update={"source_id": "9999999"})
    with roomy.client() as client, pytest.raises(PermanentError, match="not found"):
        client.publish_outcome(unknown)
    with roomy.client(api_key="wrong") as client, pytest.raises(PermanentError, match="403.*api_key"):
        client.publish_outcome(answer())


def test_the_control_endpoints_every_citizen_stand_in_has(roomy):
    assert roomy.control("POST", "/citizens/rate").json() == {"rated": 0}
    reports = roomy.control("GET", "/reports").json()["reports"]
    assert sorted(r["id"] for r in reports) == sorted(SEED_IDS)
    assert all(r["rating"] is None and r["publish_calls"] == 0 for r in reports)
    with roomy.client() as client:
        (page,) = list(client.ratings_since(None))
    assert page.items == [] and page.has_more is False


# -- parse_reports and replay ---------------------------------------------------------------


def test_parse_reports_reads_the_raw_answer_as_the_feed_does(roomy):
    raw = requests.get(f"{roomy.url}/requests.json", params={"start_date": "2026-09-01T00:00:00+07:00"}, timeout=10).json()
    with roomy.client() as client:
        parsed, quarantined = client.parse_reports(raw)
        assert not quarantined and parsed == pull(client)[0]


def test_a_bad_request_is_quarantined_in_the_feed_and_replays_once_fixed(roomy):
    bad = {"service_request_id": "2611050", "service_code": "GT", "description": "Ổ gà trên đường Trần Phú",
           "requested_datetime": "2026-11-19T08:00:00+07:00", "updated_datetime": "2026-11-19T08:00:00+07:00",
           "lat": 48.85, "long": 2.35, "last_name": "Lê", "first_name": "Văn Nam", "phone": "0912345678"}
    roomy.control("POST", "/reports", json=bad)
    with roomy.client() as client:
        quarantined = [q for page in client.reports_since(None) for q in page.quarantined]
        (q,) = quarantined
        assert q.source_id == "2611050" and "outside Vietnam" in q.reason and "0912345678" not in q.raw
        raw = json.loads(q.payload.get_secret_value())
        raw.update(lat=21.0109, long=107.2788)
        (report,), still_bad = client.parse_reports([raw])
    assert not still_bad and report.source_id == "2611050" and report.location.lat == 21.0109
