"""The citizen-app client against the real stand-in app, served on loopback."""

from __future__ import annotations

import copy
import hashlib
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import requests

from paht_bridge.connectors.citizen_app import CitizenAppClient
from paht_bridge.connectors.errors import MalformedResponse, PermanentError, TransientError
from paht_bridge.canonical import CanonicalStatus, Outcome, RatingLevel, Report
from paht_bridge.sandbox.citizen_app import CitizenAppState, create_citizen_app, load_seed_reports
from paht_bridge.sandbox.server import LoopbackServer

ICT = timezone(timedelta(hours=7))
API_KEY = "test-key-quangtri"


@dataclass
class RunningApp:
    source: str
    url: str
    state: CitizenAppState
    client: CitizenAppClient

    def control(self, method: str, path: str, **kwargs: object) -> requests.Response:
        response = requests.request(method, f"{self.url}/_sandbox{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response


def _start(source: str) -> Iterator[RunningApp]:
    state = CitizenAppState(source, load_seed_reports(source), api_key=API_KEY)
    server = LoopbackServer(create_citizen_app(state), name=f"citizen-{source}").start()
    client = CitizenAppClient(source, server.url, api_key=API_KEY, timeout=(2.0, 10.0))
    try:
        yield RunningApp(source, server.url, state, client)
    finally:
        client.close()
        server.stop()


@pytest.fixture(params=["quangtri_ioc", "dienbien_smart"])
def app(request) -> Iterator[RunningApp]:
    """One province's app, fresh for each test, for each seeded source."""
    yield from _start(request.param)


@pytest.fixture
def quangtri() -> Iterator[RunningApp]:
    yield from _start("quangtri_ioc")


def _pull_all(client: CitizenAppClient, cursor: str | None = None, page_size: int = 7) -> tuple[list[Report], str | None]:
    reports: list[Report] = []
    for page in client.reports_since(cursor, page_size=page_size):
        assert not page.quarantined
        reports.extend(page.items)
        cursor = page.next_cursor
    return reports, cursor


def _answer(report_id: str) -> Outcome:
    return Outcome(
        source_id=report_id,
        status=CanonicalStatus.ANSWERED,
        answer="UBND phường đã kiểm tra hiện trường và chỉ đạo khắc phục dứt điểm.",
        answered_by="UBND phường Đông Lương",
        answered_at=datetime(2026, 12, 2, 15, 30, tzinfo=ICT),
    )


# -- the report feed ----------------------------------------------------------------------


def test_paging_through_all_seeds_yields_each_report_once_oldest_first(app):
    seeds = load_seed_reports(app.source)
    pages = list(app.client.reports_since(None, page_size=7))
    ids = [r.source_id for p in pages for r in p.items]
    assert ids == [s["id"] for s in seeds]
    assert len(pages) == -(-len(seeds) // 7)
    assert [p.has_more for p in pages] == [True] * (len(pages) - 1) + [False]
    cursors = [int(p.next_cursor) for p in pages]
    assert cursors == sorted(set(cursors))  # strictly increasing
    assert all(r.source == app.source for p in pages for r in p.items)


def test_pulling_again_from_the_last_cursor_returns_nothing(quangtri):
    _, cursor = _pull_all(quangtri.client)
    again, same = _pull_all(quangtri.client, cursor)
    assert again == [] and same == cursor


def test_a_report_added_after_a_full_pull_is_the_only_one_after_the_last_cursor(quangtri):
    _, cursor = _pull_all(quangtri.client)
    new = copy.deepcopy(load_seed_reports("quangtri_ioc")[0])
    new.update(id="QT-2026-009001", title="Cột điện nghiêng sau bão", created_at="2026-11-22T07:05:00+07:00")
    new["reporter"] = {"name": "Phan Thị Mỹ Duyên", "phone": "0387000111"}
    new["attachments"] = [{"id": "QT-2026-009001-A1", "name": "IMG_20261122_070412.jpg", "media_type": "image/jpeg"}]
    quangtri.control("POST", "/reports", json=new)

    later, next_cursor = _pull_all(quangtri.client, cursor)
    assert [r.source_id for r in later] == ["QT-2026-009001"]
    assert later[0].reporter.phone.get_secret_value() == "0387000111"
    assert int(next_cursor) > int(cursor)


def test_seed_reports_map_to_canonical_reports_with_their_declared_units(quangtri):
    reports, _ = _pull_all(quangtri.client, page_size=50)
    seeds = {s["id"]: s for s in load_seed_reports("quangtri_ioc")}
    for report in reports:
        seed = seeds[report.source_id]
        assert report.category == seed["category"] and report.channel == seed["channel"]
        assert report.created_at == datetime.fromisoformat(seed["created_at"])
        assert (report.location.lat, report.location.lon) == (seed["location"]["lat"], seed["location"]["lon"])
        assert report.location.unit.scheme.value == seed["location"]["admin"]["scheme"]
        assert report.location.unit.ward == seed["location"]["admin"]["ward"]
        assert report.reporter.phone.get_secret_value() == seed["reporter"]["phone"]
        assert [a.name for a in report.attachments] == [a["name"] for a in seed["attachments"]]


def test_all_text_arrives_nfc(app):
    reports, _ = _pull_all(app.client, page_size=100)
    for report in reports:
        texts = [report.title, report.description, report.category, report.location.address,
                 report.location.unit.province, report.location.unit.district, report.location.unit.ward,
                 report.reporter.name.get_secret_value(), *(a.name for a in report.attachments)]
        for text in filter(None, texts):
            assert unicodedata.is_normalized("NFC", text), (report.source_id, text)


def test_decomposed_text_sent_by_the_app_arrives_composed(quangtri):
    _, cursor = _pull_all(quangtri.client)
    new = copy.deepcopy(load_seed_reports("quangtri_ioc")[1])
    new.update(id="QT-2026-009002", title=unicodedata.normalize("NFD", "Rác thải ùn ứ ở chợ Đông Hà"))
    new["reporter"] = {"name": unicodedata.normalize("NFD", "Võ Thị Hằng"), "phone": "0358000222"}
    new["attachments"] = []
    quangtri.control("POST", "/reports", json=new)
    (report,), _ = _pull_all(quangtri.client, cursor)
    assert report.title == "Rác thải ùn ứ ở chợ Đông Hà"
    assert report.reporter.name.get_secret_value() == unicodedata.normalize("NFC", "Võ Thị Hằng")


def test_a_malformed_report_from_the_app_is_quarantined_and_the_feed_goes_on(quangtri):
    _, cursor = _pull_all(quangtri.client)
    bad = {"id": "QT-2026-009003", "category": {"code": "GT"}, "title": "Ổ gà", "description": "…",
           "created_at": "2026-12-01T08:00:00+07:00", "location": {"lat": 123.4, "lng": 107.1},
           "reporter": {"full_name": "Trần Văn Lực", "phone": "0399000333"}}
    quangtri.control("POST", "/reports", params={"verbatim": "true"}, json=bad)
    good = copy.deepcopy(load_seed_reports("quangtri_ioc")[2])
    good.update(id="QT-2026-009004")
    good["reporter"] = {"name": "Lê Quang Huy", "phone": "0977000444"}
    quangtri.control("POST", "/reports", json=good)

    pages = list(quangtri.client.reports_since(cursor))
    assert [r.source_id for p in pages for r in p.items] == ["QT-2026-009004"]
    (quarantined,) = [q for p in pages for q in p.quarantined]
    assert quarantined.source_id == "QT-2026-009003" and "location.lat" in quarantined.reason
    assert "0399000333" not in quarantined.raw and "Trần Văn Lực" not in quarantined.raw


# -- attachments --------------------------------------------------------------------------


def test_streamed_attachment_bytes_match_the_declared_size_and_sha256(app):
    reports, _ = _pull_all(app.client, page_size=100)
    attachments = [a for r in reports for a in r.attachments]
    assert attachments
    for attachment in attachments:
        with app.client.open_attachment(attachment) as chunks:
            data = b"".join(chunks)
        assert len(data) == attachment.size and 1_000 < len(data) < 20_000
        assert hashlib.sha256(data).hexdigest() == attachment.sha256
        if attachment.media_type == "image/png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
        elif attachment.media_type == "video/mp4":
            assert data[4:8] == b"ftyp"
        else:
            assert data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")


def test_attachment_bytes_are_the_same_on_every_run(quangtri):
    reports, _ = _pull_all(quangtri.client, page_size=100)
    attachment = next(a for r in reports for a in r.attachments)
    with quangtri.client.open_attachment(attachment) as first:
        one = b"".join(first)
    with quangtri.client.open_attachment(attachment) as second:
        two = b"".join(second)
    assert one == two


def test_an_attachment_served_with_the_wrong_length_is_refused(quangtri):
    reports, _ = _pull_all(quangtri.client, page_size=100)
    attachment = next(a for r in reports for a in r.attachments)
    wrong = attachment.model_copy(update={"size": attachment.size + 1})
    with pytest.raises(MalformedResponse, match="Content-Length"):
        with quangtri.client.open_attachment(wrong):
            pass


# -- outcomes and ratings -------------------------------------------------------------------


def _snapshot(app: RunningApp) -> dict[str, dict]:
    return {r["id"]: r for r in app.control("GET", "/reports").json()["reports"]}


def test_publishing_the_same_outcome_twice_records_one_outcome(quangtri):
    report_id = load_seed_reports("quangtri_ioc")[0]["id"]
    quangtri.client.publish_outcome(_answer(report_id))
    quangtri.client.publish_outcome(_answer(report_id))
    state = _snapshot(quangtri)[report_id]
    assert state["publish_calls"] == 2
    assert len(state["outcomes"]) == 1
    assert state["status"] == "da_xu_ly"
    assert state["outcomes"][0]["answer_unit"] == "UBND phường Đông Lương"


def test_a_post_with_a_key_already_used_is_a_repeat_whatever_it_says(quangtri):
    report_id = load_seed_reports("quangtri_ioc")[1]["id"]
    first = _answer(report_id).model_copy(update={"key": "PAHT-x/1"})
    quangtri.client.publish_outcome(first)
    quangtri.client.publish_outcome(first.model_copy(update={"answer": "Một câu trả lời đã sửa."}))
    quangtri.client.publish_outcome(first.model_copy(update={"key": "PAHT-x/2"}))  # another answer: a new outcome
    outcomes = _snapshot(quangtri)[report_id]["outcomes"]
    assert [(o["key"], o["answer"]) for o in outcomes] == [("PAHT-x/1", first.answer), ("PAHT-x/2", first.answer)]


def test_an_answered_report_comes_back_once_after_the_cursor_with_its_new_status(quangtri):
    _, cursor = _pull_all(quangtri.client)
    report_id = load_seed_reports("quangtri_ioc")[3]["id"]
    quangtri.client.publish_outcome(_answer(report_id))
    quangtri.client.publish_outcome(_answer(report_id))  # a repeat is no change
    later, _ = _pull_all(quangtri.client, cursor)
    assert [(r.source_id, r.source_status) for r in later] == [(report_id, "da_xu_ly")]
    assert later[0].updated_at > later[0].created_at


def test_publishing_for_an_unknown_report_is_a_permanent_error(quangtri):
    with pytest.raises(PermanentError):
        quangtri.client.publish_outcome(_answer("QT-2026-999999"))


def test_citizens_rate_answered_reports_and_ratings_since_returns_them(app):
    seeds = load_seed_reports(app.source)
    # Enough reports that the deterministic rule gives both levels.
    answered = [s["id"] for s in seeds[:20]]
    assert any(zlib.crc32(i.encode()) % 5 == 0 for i in answered)
    for report_id in answered:
        app.client.publish_outcome(_answer(report_id))

    assert app.control("POST", "/citizens/rate").json() == {"rated": len(answered)}
    assert app.control("POST", "/citizens/rate").json() == {"rated": 0}  # each citizen rates once

    ratings, cursor = [], None
    for page in app.client.ratings_since(None, page_size=6):
        assert not page.quarantined
        ratings.extend(page.items)
        cursor = page.next_cursor
    assert sorted(r.source_id for r in ratings) == sorted(answered)
    assert len({r.rating_id for r in ratings}) == len(answered)
    for rating in ratings:
        expected = RatingLevel.NOT_SATISFIED if zlib.crc32(rating.source_id.encode()) % 5 == 0 else RatingLevel.SATISFIED
        assert rating.level is expected and rating.source == app.source and rating.comment
    assert [p.items for p in app.client.ratings_since(cursor)] == [[]]
    assert _snapshot(app)[answered[0]]["rating"]["report_id"] == answered[0]


def test_reports_without_a_final_answer_are_not_rated(quangtri):
    report_id = load_seed_reports("quangtri_ioc")[0]["id"]
    progress = _answer(report_id).model_copy(update={"status": CanonicalStatus.IN_PROGRESS})
    quangtri.client.publish_outcome(progress)
    assert quangtri.control("POST", "/citizens/rate").json() == {"rated": 0}


# -- auth and faults --------------------------------------------------------------------------


@pytest.mark.parametrize("api_key", ["wrong-key", None], ids=["wrong key", "no key"])
def test_a_wrong_or_missing_api_key_is_a_permanent_error(quangtri, api_key):
    with CitizenAppClient("quangtri_ioc", quangtri.url, api_key=api_key) as client:
        with pytest.raises(PermanentError, match="401"):
            next(client.reports_since(None))
        with pytest.raises(PermanentError, match="401"):
            client.publish_outcome(_answer(load_seed_reports("quangtri_ioc")[0]["id"]))
    assert all(r["publish_calls"] == 0 for r in _snapshot(quangtri).values())


def test_an_unavailable_app_is_a_transient_error_and_the_next_call_succeeds(quangtri):
    quangtri.control("POST", "/faults", json={"mode": "error", "status": 503, "count": 1})
    with pytest.raises(TransientError):
        next(quangtri.client.reports_since(None))
    assert next(quangtri.client.reports_since(None)).items


@pytest.mark.parametrize("mode", ["html", "invalid_json"])
def test_a_proxy_page_or_a_truncated_body_is_a_malformed_response(quangtri, mode):
    quangtri.control("POST", "/faults", json={"mode": mode})
    with pytest.raises(MalformedResponse):
        next(quangtri.client.reports_since(None))


def test_a_slow_app_beyond_the_read_timeout_is_a_transient_error_on_a_read(quangtri):
    quangtri.control("POST", "/faults", json={"mode": "delay", "delay_s": 1.5})
    with CitizenAppClient("quangtri_ioc", quangtri.url, api_key=API_KEY, timeout=(1.0, 0.5)) as client:
        with pytest.raises(TransientError):
            next(client.reports_since(None))
