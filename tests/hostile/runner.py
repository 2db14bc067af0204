"""Runs the hostile corpus through the real paths and records what became of every case.

Sections, each a function returning ``Outcome`` rows:

- ``reports_served``: bad reports served by the real citizen-app stand-in (verbatim),
  mixed with good ones, pulled by the real ingest step into a SQLite ledger;
- ``reports_transport``: the bad reports the stand-in's own JSON encoder cannot carry
  (NaN, unpaired surrogates, items that are not objects), served at the transport level
  (``responses``), same ingest, same checks;
- ``citizen_pages``: whole feed answers that are broken (HTML, truncated, wrong shape...):
  the ingest step must fail with a typed error, commit nothing, and take every report once
  the app recovers;
- ``citizen_faults``, ``soap_faults``, ``rest_faults``: the stand-ins' fault injection;
- ``soap_answers``, ``rest_answers``: recorded-looking hostile answers (XXE, bombs, odd
  faults, HTML with 200...) through the connectors;
- ``transport``: a raw socket server that truncates, stalls, drips and hangs up;
- ``attachments``: mislabelled, empty and oversized files through ``open_attachment``;
- ``xml_parser``: every hostile XML through ``paht_bridge.connectors.xml.parse_xml``.

A *crash* is any exception that is not a ``ConnectorError`` escaping a connector or the
ingest step. An *entity expansion* is an expanded entity's text seen anywhere in a result
or an error, or a parse that took long enough to have expanded one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import requests
import responses
from sqlalchemy import select

from paht_bridge.connectors import errors
from paht_bridge.connectors.citizen_app import CitizenAppClient
from paht_bridge.connectors.configured_rest import ConfiguredRestClient
from paht_bridge.connectors.configured_soap import ConfiguredSoapClient
from paht_bridge.connectors.errors import ConnectorError
from paht_bridge.connectors.limits import ConnectorLimits
from paht_bridge.connectors.xml import XmlRefused, parse_xml
from paht_bridge.ledger.db import decrypt, migrate, sessions
from paht_bridge.ledger.models import EventRow, QuarantineRow, ReportRow
from paht_bridge.steps import StepContext, ingest
from paht_bridge.canonical import VIETNAM_TZ, Attachment, DocumentRecord
from paht_bridge.config.deployment import deployment
from paht_bridge.sandbox.citizen_app import CitizenAppState, create_citizen_app, load_seed_reports
from paht_bridge.sandbox.edxml_docsys import EdxmlDocsysState, create_edxml_app
from paht_bridge.sandbox.rest_docsys import Faults, RestDocsysState, create_rest_docsys_app
from paht_bridge.sandbox.server import LoopbackServer
from tests.hostile import raw_server
from tests.hostile.cases import CORPUS, ReportCase, all_cases, good_item
from tests.preset_clients import edxml_client, tdoffice_client

SOURCE = "quangtri_ioc"
MAPPING = deployment("quang_tri")
API_KEY = "hostile-key"
FAKE_CITIZEN = "http://citizen.hostile.test"
FAKE_SOAP = "http://docsys.hostile.test/edxml"
FAKE_REST = "http://tdoffice.hostile.test"
FAST = (1.0, 0.5)  # (connect, read) seconds: stalls are found in half a second
SMALL = ConnectorLimits(max_body_bytes=256 * 1024, max_xml_bytes=256 * 1024, max_answer_seconds=1.0, max_attachment_bytes=64 * 1024)
#: Text an expanded entity would put somewhere: billion laughs, a local file, an internal entity.
EXPANSION_MARKERS = ("lollol", "EXPANDED", "root:x:0:0", "A" * 1000, "/bin/bash")
SLOW_SECONDS = 2.0  # a refused answer is refused at once; this long means something was built
TAG_OPENER = re.compile(r"<[A-Za-z/!?]")
TYPED_ERRORS = {c.__name__ for c in vars(errors).values() if isinstance(c, type) and issubclass(c, ConnectorError)}


@dataclass
class Outcome:
    section: str
    case: str
    kind: str
    expected: str  # quarantined, accepted, arrived, ok, or an error class name
    got: str  # the same vocabulary, or lost, or crash:<exception class>
    detail: str = ""  # the quarantine reason or the error message, bounded
    ok: bool = False
    crash: bool = False
    expansion: bool = False
    lost: int = 0  # reports of the batch that neither arrived nor were quarantined

    def row(self) -> dict[str, Any]:
        return asdict(self)


# -- shared plumbing ----------------------------------------------------------------------------


class OneSource:
    """The ``Connectors`` the ingest step asks for its source: this client."""

    def __init__(self, client: CitizenAppClient) -> None:
        self.client = client

    def source(self, name: str) -> CitizenAppClient:
        assert name == SOURCE, name
        return self.client

    def target(self, name: str) -> Any:
        raise AssertionError("ingest needs no target")


def fresh_ledger(folder: Path) -> str:
    url = f"sqlite:///{folder / 'ledger.sqlite'}"
    migrate(url)
    return url


def run_ingest(url: str, client: CitizenAppClient, run_id: str) -> BaseException | None:
    ctx = StepContext(mapping=MAPPING, sessions=sessions(url), connectors=OneSource(client), run_id=run_id)
    try:
        ingest(ctx)
    except Exception as exc:  # noqa: BLE001 - what escapes is the finding
        return exc
    return None


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=True, allow_nan=True)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def expanded(*texts: object) -> bool:
    joined = " ".join(str(t) for t in texts)
    return any(marker in joined for marker in EXPANSION_MARKERS)


def bounded(text: object, limit: int = 300) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_outcome(section: str, case: str, kind: str, expected: str, call: Callable[[], Any]) -> Outcome:
    """Run ``call``; ``expected`` is an error class name of ``paht_bridge.connectors.errors``, or ok."""
    started = time.monotonic()
    try:
        result = call()
    except ConnectorError as exc:
        slow = time.monotonic() - started > SLOW_SECONDS and "timeout" not in kind
        wanted = getattr(errors, expected, None)
        ok = wanted is not None and isinstance(exc, wanted) and len(str(exc)) < 2000
        return Outcome(section, case, kind, expected, exc.__class__.__name__, bounded(exc), ok=ok and not slow,
                       expansion=expanded(exc) or slow)
    except Exception as exc:  # noqa: BLE001
        return Outcome(section, case, kind, expected, f"crash:{exc.__class__.__name__}", bounded(exc), crash=True)
    return Outcome(section, case, kind, expected, "ok", bounded(result), ok=expected == "ok", expansion=expanded(result))


# -- reports through the ingest step ------------------------------------------------------------


def _check_accepted(case: ReportCase, row: ReportRow) -> str | None:
    """Why an accepted report is not what it should be, or None."""
    texts = [row.title, *_strings(row.payload)]
    for text in texts:
        if not unicodedata.is_normalized("NFC", text):
            return "text not NFC"
        if TAG_OPENER.search(text):
            return "markup left in the text"
        if any(unicodedata.category(c) == "Cc" and c not in "\n\t\r" for c in text):
            return "control character left in the text"
    if case.check == "vietnam_time":
        value = datetime.fromisoformat(case.item["created_at"])
        expected = value if value.tzinfo else value.replace(tzinfo=VIETNAM_TZ)
        if row.created_at != expected:
            return f"created_at {row.created_at.isoformat()} != {expected.isoformat()}"
    if case.check == "nfc":
        title = unicodedata.normalize("NFC", case.item["title"]).strip()
        if row.title != title:
            return "title changed beyond NFC"
    return None


def evaluate_reports(section: str, url: str, cases: list[ReportCase], good_ids: list[str], error: BaseException | None) -> list[Outcome]:
    crash = error is not None
    with sessions(url)() as session:
        rows = list(session.scalars(select(QuarantineRow)))
        quarantine = {canonical(json.loads(decrypt(q.raw_enc))): q for q in rows if q.raw_enc}
        events = Counter((e.detail.get("source_id"), e.detail.get("reason")) for e in session.scalars(select(EventRow).where(EventRow.kind == "quarantined")))
        reports = {r.source_id: r for r in session.scalars(select(ReportRow).where(ReportRow.source == SOURCE))}
        outcomes = [_good_outcome(section, gid, reports, crash, error) for gid in good_ids]
        for case in cases:
            row = quarantine.get(canonical(case.item))
            report = reports.get(case.source_id) if case.source_id else None
            if row is not None:
                got, detail = "quarantined", row.reason
                problem = _quarantine_problem(case, row, events)
            elif report is not None:
                got, detail = "accepted", ""
                problem = _check_accepted(case, report) if case.expect == "accepted" else "accepted"
            else:
                got, detail, problem = "lost", bounded(error) if error else "neither quarantined nor stored", "lost"
            ok = got == case.expect and problem is None and not crash
            outcomes.append(Outcome(section, case.name, case.kind, case.expect, got, bounded(detail if ok else f"{detail} [{problem}]"),
                                    ok=ok, crash=crash, lost=int(got == "lost")))
    return outcomes


def _good_outcome(section: str, good_id: str, reports: dict[str, ReportRow], crash: bool, error: BaseException | None) -> Outcome:
    arrived = good_id in reports
    return Outcome(section, f"good/{good_id}", "good_report", "arrived", "arrived" if arrived else "lost",
                   "" if arrived else bounded(error or "missing"), ok=arrived and not crash, crash=crash, lost=int(not arrived))


def _quarantine_problem(case: ReportCase, row: QuarantineRow, events: Counter) -> str | None:
    if not row.reason.strip():
        return "empty reason"
    if case.reason and case.reason not in row.reason:
        return f"reason lacks {case.reason!r}"
    if row.source_id != case.source_id:
        return f"source_id {row.source_id!r} != {case.source_id!r}"
    if events[(row.source_id, row.reason)] < 1:
        return "no quarantined event"
    events[(row.source_id, row.reason)] -= 1
    try:
        row.raw.encode("utf-8")
    except UnicodeEncodeError:
        return "raw text not storable"
    if "0912345678" in row.raw or "Nguyễn Văn Bình" in row.raw:
        return "personal data in the raw text"
    return None


def _good_seeds(prefix: str, count: int) -> list[dict[str, Any]]:
    seeds = load_seed_reports(SOURCE)
    chosen = []
    for index in range(count):
        seed = copy.deepcopy(seeds[index % len(seeds)])
        seed["id"] = f"{prefix}-{index:03d}"
        for n, attachment in enumerate(seed["attachments"], start=1):
            attachment["id"] = f"{seed['id']}-A{n}"
        chosen.append(seed)
    return chosen


@contextmanager
def citizen_stand_in() -> Iterator[tuple[str, CitizenAppState]]:
    state = CitizenAppState(SOURCE, [], api_key=API_KEY)
    server = LoopbackServer(create_citizen_app(state), name="hostile-citizen").start()
    try:
        yield server.url, state
    finally:
        server.stop()


def reports_served(folder: Path, cases: list[ReportCase]) -> list[Outcome]:
    """Bad reports served by the real stand-in between good ones; the real ingest pulls them."""
    served = [c for c in cases if c.servable]
    goods = _good_seeds("GOOD", len(served) // 3 + 1)
    url = fresh_ledger(folder)
    with citizen_stand_in() as (base, _state):
        control = requests.Session()
        good_iter = iter(goods)
        for index, case in enumerate(served):
            if index % 3 == 0:  # a good report before every third bad one
                control.post(f"{base}/_sandbox/reports", json=next(good_iter), timeout=10).raise_for_status()
            response = control.post(f"{base}/_sandbox/reports", params={"verbatim": "true"}, json=case.item, timeout=30)
            response.raise_for_status()
        for seed in good_iter:
            control.post(f"{base}/_sandbox/reports", json=seed, timeout=10).raise_for_status()
        client = CitizenAppClient(SOURCE, base, api_key=API_KEY, timeout=(5.0, 30.0))
        error = run_ingest(url, client, "hostile-served")
    return evaluate_reports("reports_served", url, served, [g["id"] for g in goods], error)


def _page(items: list[Any], cursor: str = "1", has_more: bool = False) -> str:
    # The way a sloppy app writes JSON: NaN as a literal, surrogates escaped.
    return json.dumps({"data": items, "paging": {"next_cursor": cursor, "has_more": has_more}}, allow_nan=True, ensure_ascii=True)


def reports_transport(folder: Path, cases: list[ReportCase]) -> list[Outcome]:
    """The reports the stand-in cannot serve, at the transport level, between good ones."""
    served = [c for c in cases if not c.servable]
    goods = [good_item(f"GOOD-T-{i:03d}") for i in range(len(served) // 2 + 1)]
    items: list[Any] = []
    for index, case in enumerate(served):
        if index % 2 == 0:
            items.append(goods[index // 2])
        items.append(case.item)
    items += goods[(len(served) + 1) // 2 :]
    url = fresh_ledger(folder)
    client = CitizenAppClient(SOURCE, FAKE_CITIZEN, api_key=API_KEY, timeout=FAST)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{FAKE_CITIZEN}/api/v1/reports", body=_page(items), content_type="application/json")
        error = run_ingest(url, client, "hostile-transport")
    return evaluate_reports("reports_transport", url, served, [g["id"] for g in goods], error)


# -- whole feed answers ---------------------------------------------------------------------------


def _generated_pages() -> dict[str, tuple[bytes, str, int, str]]:
    good = good_item("PG-GEN-0")
    huge_number = _page([{**good_item("PG-HUGE-INT"), "location": {"lat": "__HUGE__", "lng": 107.1}}]).replace('"__HUGE__"', "9" * 5000)
    return {
        "deep-nesting": (('{"data": ' + "[" * 100_000 + "]" * 100_000 + ', "paging": {"has_more": false}}').encode(), "application/json", 200, "MalformedResponse"),
        "over-body-limit": (_page([good_item(f"PG-BIG-{i}") for i in range(400)]).encode(), "application/json", 200, "MalformedResponse"),
        "invalid-utf8": (b'{"data": [], "paging": {"next_cursor": "1", "has_more": false}, "x": "\xff\xfe\xfd"}', "application/json", 200, "MalformedResponse"),
        "utf16-body": (_page([]).encode("utf-16"), "application/json", 200, "ok"),
        "duplicate-keys": (b'{"data": [1], "data": [], "paging": {"next_cursor": "1", "has_more": false}}', "application/json", 200, "ok"),
        "5000-digit-number": (huge_number.encode(), "application/json", 200, "ok"),
        "cursor-too-long": (_page([], cursor="9" * 300).encode(), "application/json", 200, "MalformedResponse"),
        "html-with-json-type": (b"<html><body>Error</body></html>", "application/json", 200, "MalformedResponse"),
        "null-body": (b"null", "application/json", 200, "MalformedResponse"),
        "data-null": (b'{"data": null, "paging": {"has_more": false}}', "application/json", 200, "MalformedResponse"),
        "good-item-in-bad-page": (('{"data": [' + json.dumps(good) + '], "paging": ').encode(), "application/json", 200, "MalformedResponse"),
    }


def citizen_pages(folder: Path) -> list[Outcome]:
    """A broken feed answer: a typed error, nothing committed, and every report once it recovers."""
    manifest = json.loads((CORPUS / "pages" / "cases.json").read_text())
    pages = {name: ((CORPUS / "pages" / name).read_bytes(), spec["content_type"], spec["status"], spec["expect"]) for name, spec in manifest.items()}
    pages |= {f"generated/{name}": spec for name, spec in _generated_pages().items()}
    url = fresh_ledger(folder)
    client = CitizenAppClient(SOURCE, FAKE_CITIZEN, api_key=API_KEY, timeout=FAST, limits=SMALL)
    outcomes = []
    for index, (name, (body, content_type, status, expected)) in enumerate(pages.items()):
        goods = [good_item(f"PG-{index:02d}-{n}") for n in range(3)]
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            mock.get(f"{FAKE_CITIZEN}/api/v1/reports", body=body, status=status, content_type=content_type)
            mock.get(f"{FAKE_CITIZEN}/api/v1/reports", body=_page(goods, cursor=f"{1000 + index}"), content_type="application/json")
            started = time.monotonic()
            error = run_ingest(url, client, f"page-{index}")
            after = run_ingest(url, client, f"page-{index}-recovered")
        outcome = _page_outcome(name, expected, error, after, time.monotonic() - started)
        with sessions(url)() as session:
            arrived = set(session.scalars(select(ReportRow.source_id).where(ReportRow.source_id.in_([g["id"] for g in goods]))))
        outcome.lost = len(goods) - len(arrived)
        outcome.ok = outcome.ok and outcome.lost == 0
        outcomes.append(outcome)
    return outcomes


def _page_outcome(name: str, expected: str, error: BaseException | None, after: BaseException | None, seconds: float) -> Outcome:
    crash = any(e is not None and not isinstance(e, ConnectorError) for e in (error, after))
    got = "ok" if error is None else (error.__class__.__name__ if isinstance(error, ConnectorError) else f"crash:{error.__class__.__name__}")
    wanted = getattr(errors, expected, None)
    ok = (error is None if expected == "ok" else isinstance(error, wanted)) and after is None and not crash
    return Outcome("citizen_pages", name, "feed_answer", expected, got, bounded(error or after or ""), ok=ok and seconds < 10, crash=crash)


def citizen_faults(folder: Path) -> list[Outcome]:
    """The stand-in's own faults: the step fails typed, then takes every report when it recovers."""
    faults = {
        "error-503": ({"mode": "error", "status": 503}, "TransientError"),
        "error-500": ({"mode": "error", "status": 500}, "TransientError"),
        "error-429": ({"mode": "error", "status": 429}, "TransientError"),
        "error-400": ({"mode": "error", "status": 400}, "PermanentError"),
        "html-200": ({"mode": "html"}, "MalformedResponse"),
        "invalid-json": ({"mode": "invalid_json"}, "MalformedResponse"),
        "stall-timeout": ({"mode": "delay", "delay_s": 2.0}, "TransientError"),
    }
    url = fresh_ledger(folder)
    outcomes = []
    with citizen_stand_in() as (base, _state):
        control = requests.Session()
        client = CitizenAppClient(SOURCE, base, api_key=API_KEY, timeout=FAST)
        for index, (name, (fault, expected)) in enumerate(faults.items()):
            goods = _good_seeds(f"FAULT-{index}", 3)
            for seed in goods:
                control.post(f"{base}/_sandbox/reports", json=seed, timeout=10).raise_for_status()
            control.post(f"{base}/_sandbox/faults", json=fault, timeout=10).raise_for_status()
            error = run_ingest(url, client, f"fault-{name}")
            control.delete(f"{base}/_sandbox/faults", timeout=10).raise_for_status()
            time.sleep(0.05)
            after = run_ingest(url, client, f"fault-{name}-recovered")
            outcome = _page_outcome(name, expected, error, after, 0)
            outcome.section, outcome.kind = "citizen_faults", "stand_in_fault"
            with sessions(url)() as session:
                arrived = set(session.scalars(select(ReportRow.source_id).where(ReportRow.source_id.in_([g["id"] for g in goods]))))
            outcome.lost = len(goods) - len(arrived)
            outcome.ok = outcome.ok and outcome.lost == 0
            outcomes.append(outcome)
    return outcomes


# -- document systems ---------------------------------------------------------------------------


def document_record(ref: str = "PAHT-quangtri_ioc-HX-1") -> DocumentRecord:
    return DocumentRecord(
        external_ref=ref, report_key=f"quangtri_ioc:{ref.rpartition('-')[2]}", agency_code="000.21.44.H45",
        agency_name="UBND phường Đông Hà", sender_code="000.01.44.H45", sender_name="Trung tâm IOC tỉnh Quảng Trị",
        subject="[PAHT HX-1] Ổ gà lớn giữa đường", content="Mặt đường có ổ gà sâu, đề nghị sửa chữa.", category="GIAO_THONG",
        priority=0, issued_at=datetime(2026, 11, 2, 8, 15, tzinfo=VIETNAM_TZ), due_date=date(2026, 11, 12),
    )


SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
ED_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


def _envelope(body: str) -> str:
    return f'<soap:Envelope xmlns:soap="{SOAP_NS}" xmlns:ed="{ED_NS}"><soap:Body>{body}</soap:Body></soap:Envelope>'


def _laughs(depth: int, width: int, encoding: str = "utf-8") -> bytes:
    entities = "".join(f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * width if i else "lol"}">' for i in range(depth))
    found = f"<ed:FindDocumentByReferenceResponse><ed:Found>&lol{depth - 1};</ed:Found></ed:FindDocumentByReferenceResponse>"
    text = f'<?xml version="1.0" encoding="{encoding}"?><!DOCTYPE lolz [{entities}]>' + _envelope(found)
    return text.encode(encoding)


def generated_xml() -> dict[str, bytes]:
    found = "<ed:FindDocumentByReferenceResponse><ed:Found>true</ed:Found><ed:DocId>{}</ed:DocId></ed:FindDocumentByReferenceResponse>"
    cases = {f"deep-{n}": _envelope(found.format("<a>" * n + "x" + "</a>" * n)).encode() for n in (65, 100, 255, 300, 5000)}
    cases |= {f"laughs-{d}x{w}": _laughs(d, w) for d, w in ((3, 10), (10, 10), (20, 2), (6, 100))}
    cases["laughs-utf16"] = _laughs(10, 10, "utf-16")
    cases["xxe-utf16"] = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                          + _envelope(found.format("&e;"))).encode("utf-16")
    cases["xxe-utf32-no-bom"] = ('<?xml version="1.0" encoding="UTF-32"?><!DOCTYPE x [<!ENTITY e "EXPANDED">]>'
                                 + _envelope(found.format("&e;"))).encode("utf-32-le")
    cases["huge-answer"] = _envelope(found.format("x" * 300_000)).encode()
    cases["many-elements"] = _envelope("<ed:FindDocumentByReferenceResponse><ed:Found>true</ed:Found>" + "<ed:DocId>1</ed:DocId>" * 20_000 + "</ed:FindDocumentByReferenceResponse>").encode()
    cases["huge-faultstring"] = _envelope("<soap:Fault><faultcode>soap:Client</faultcode><faultstring>" + "sai " * 50_000 + "</faultstring></soap:Fault>").encode()
    cases["entity-in-fault"] = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "EXPANDED">]>'
                                + _envelope("<soap:Fault><faultcode>soap:Client</faultcode><faultstring>&e;</faultstring></soap:Fault>")).encode()
    return cases


GENERATED_SOAP_EXPECT = {"huge-faultstring": "PermanentError", "many-elements": "MalformedResponse"}


def _soap_client(endpoint: str = FAKE_SOAP, timeout: float = 2.0, limits: ConnectorLimits = SMALL) -> ConfiguredSoapClient:
    """Quảng Trị's edXML system as shipped (``preset: edxml_soap``)."""
    return edxml_client(endpoint, username="u", password="p", timeout=timeout, limits=limits)


def _rest_client(base_url: str = FAKE_REST, limits: ConnectorLimits = SMALL) -> ConfiguredRestClient:
    """Điện Biên's TDOffice system as shipped (``preset: tdoffice_rest``)."""
    return tdoffice_client(base_url, token="t", timeout=FAST, limits=limits)


def soap_answers() -> list[Outcome]:
    """Every hostile SOAP answer, to a lookup (safe to repeat) and to SendDocument (not)."""
    manifest = json.loads((CORPUS / "soap" / "cases.json").read_text())
    answers = {name: ((CORPUS / "soap" / name).read_bytes(), spec["status"], spec["content_type"], spec["expect"], spec.get("expect_send"))
               for name, spec in manifest.items()}
    answers |= {f"generated/{name}": (body, 200 if "fault" not in name else 500, "text/xml; charset=utf-8",
                                      GENERATED_SOAP_EXPECT.get(name, "MalformedResponse"), None) for name, body in generated_xml().items()}
    outcomes = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        client = _soap_client()
        for name, (body, status, content_type, expected, expected_send) in answers.items():
            for operation, call, expect in (
                ("find_by_ref", lambda: client.find_by_ref("PAHT-quangtri_ioc-HX-1"), expected),
                ("create_document", lambda: client.create_document(document_record(), []),
                 expected_send or ("AmbiguousError" if expected == "TransientError" else expected)),
            ):
                mock.upsert(responses.POST, FAKE_SOAP, body=body, status=status, content_type=content_type)
                outcomes.append(error_outcome("soap_answers", f"{name}:{operation}", "soap_answer", expect, call))
    return outcomes


def soap_faults() -> list[Outcome]:
    """The edXML stand-in's own faults, on a real socket."""
    state = EdxmlDocsysState(refuse_one_in=0, username="u", password="p")
    server = LoopbackServer(create_edxml_app(state), name="hostile-edxml").start()
    outcomes = []
    try:
        client = _soap_client(f"{server.url}/edxml", timeout=0.5)
        plans = (
            ("entity-bomb:find", "entity_bomb", "FindDocumentByReference", lambda: client.find_by_ref("PAHT-x-1"), "MalformedResponse"),
            ("html:find", "html", "FindDocumentByReference", lambda: client.find_by_ref("PAHT-x-1"), "MalformedResponse"),
            ("html:send", "html", "SendDocument", lambda: client.create_document(document_record("PAHT-quangtri_ioc-F1"), []), "MalformedResponse"),
            ("server-fault:find", "server_fault", "FindDocumentByReference", lambda: client.find_by_ref("PAHT-x-1"), "TransientError"),
            ("server-fault:send", "server_fault", "SendDocument", lambda: client.create_document(document_record("PAHT-quangtri_ioc-F2"), []), "AmbiguousError"),
            ("latency-timeout:find", "latency", "FindDocumentByReference", lambda: client.find_by_ref("PAHT-x-1"), "TransientError"),
            ("latency-timeout:changes", "latency", "GetStatusChanges", lambda: list(client.changes_since(None)), "TransientError"),
            ("timeout-after-commit:send", "timeout_after_commit", "SendDocument",
             lambda: client.create_document(document_record("PAHT-quangtri_ioc-F3"), []), "AmbiguousError"),
        )
        for name, kind, operation, call, expected in plans:
            state.inject_fault(kind, operation=operation, times=1, delay=1.5)
            outcomes.append(error_outcome("soap_faults", name, "stand_in_fault_timeout" if "timeout" in name else "stand_in_fault", expected, call))
            state.clear_faults()
        # The document sent into a timeout exists once, and the lookup finds it: nothing lost, nothing twice.
        time.sleep(1.6)
        found = client.find_by_ref("PAHT-quangtri_ioc-F3")
        outcomes.append(Outcome("soap_faults", "timeout-after-commit:found-once", "stand_in_fault", "ok", "ok" if found else "lost",
                                ok=found is not None, lost=int(found is None)))
    finally:
        server.stop()
    return outcomes


def rest_answers() -> list[Outcome]:
    manifest = json.loads((CORPUS / "rest" / "cases.json").read_text())
    answers = {name: ((CORPUS / "rest" / name).read_bytes(), spec["status"], spec["content_type"], spec["expect"]) for name, spec in manifest.items()}
    answers |= {
        "generated/deep-nesting": (b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 200, "application/json", "MalformedResponse"),
        "generated/over-body-limit": (json.dumps({"items": [], "pad": "x" * 300_000, "next_cursor": "1", "has_more": False}).encode(), 200, "application/json", "MalformedResponse"),
        "generated/empty-200": (b"", 200, "application/json", "MalformedResponse"),
        "generated/json-with-text-type": (b'{"items": [], "next_cursor": "1", "has_more": false}', 200, "text/plain", "MalformedResponse"),
    }
    outcomes = []
    client = _rest_client()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for name, (body, status, content_type, expected) in answers.items():
            mock.upsert(responses.GET, f"{FAKE_REST}/api/v2/thay-doi-trang-thai", body=body, status=status, content_type=content_type)
            outcomes.append(error_outcome("rest_answers", f"{name}:changes_since", "rest_answer", expected, lambda: list(client.changes_since(None))))
    create = {
        "html-200": (b"<html><body>Bao tri</body></html>", 200, "text/html", "MalformedResponse"),
        "truncated": (b'{"id": "VBD-1", "so_ky_h', 201, "application/json", "MalformedResponse"),
        "other-reference": (json.dumps({"id": "VBD-9", "so_ky_hieu": "PAHT-someone-else", "trang_thai": "X", "existed": False}).encode(), 201, "application/json", "MalformedResponse"),
        "gateway-500": (b"<html>500</html>", 500, "text/html", "AmbiguousError"),
        "rate-limited-429": (b'{"error": "slow down"}', 429, "application/json", "TransientError"),
        "garbage-422": (b"{not json", 422, "application/json", "PermanentError"),
        "deep-422": (b'{"fields": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 422, "application/json", "PermanentError"),
        "huge-422-message": (json.dumps({"error": "x", "message": "sai " * 100_000, "fields": [{"field": "f" * 10_000, "message": "m"}] * 50}).encode(), 422, "application/json", "MalformedResponse"),
    }
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for name, (body, status, content_type, expected) in create.items():
            mock.upsert(responses.POST, f"{FAKE_REST}/api/v2/van-ban-den", body=body, status=status, content_type=content_type)
            outcomes.append(error_outcome("rest_answers", f"{name}:create_document", "rest_answer", expected,
                                          lambda: client.create_document(document_record("PAHT-dienbien_smart-HX-1"), [])))
    return outcomes


def rest_faults() -> list[Outcome]:
    state = RestDocsysState(refuse_one_in=0, token="t")
    server = LoopbackServer(create_rest_docsys_app(state), name="hostile-rest").start()
    outcomes = []
    try:
        client = _rest_client(server.url)
        send = lambda ref: (lambda: client.create_document(document_record(ref), []))  # noqa: E731
        changes = lambda: list(client.changes_since(None))  # noqa: E731
        plans = (
            ("fail-503:changes", Faults(fail_next=1, fail_status=503), changes, "TransientError"),
            ("fail-503:send", Faults(fail_next=1, fail_status=503), send("PAHT-dienbien_smart-R1"), "AmbiguousError"),
            ("fail-429:send", Faults(fail_next=1, fail_status=429), send("PAHT-dienbien_smart-R2"), "TransientError"),
            ("fail-400:changes", Faults(fail_next=1, fail_status=400), changes, "PermanentError"),
            ("malformed-html:changes", Faults(malformed_next=1, malformed="html"), changes, "MalformedResponse"),
            ("malformed-truncated:changes", Faults(malformed_next=1, malformed="truncated"), changes, "MalformedResponse"),
            ("malformed-wrong-shape:send", Faults(malformed_next=1, malformed="wrong_shape"), send("PAHT-dienbien_smart-R3"), "MalformedResponse"),
            ("latency-timeout:changes", Faults(latency=1.5), changes, "TransientError"),
            ("stall-after-commit:send", Faults(stall_after_commit_next=1, stall_seconds=1.5), send("PAHT-dienbien_smart-R4"), "AmbiguousError"),
        )
        for name, faults, call, expected in plans:
            state.set_faults(faults)
            outcomes.append(error_outcome("rest_faults", name, "stand_in_fault_timeout" if "timeout" in name or "stall" in name else "stand_in_fault", expected, call))
            state.set_faults(Faults())
        time.sleep(1.6)
        found = client.find_by_ref("PAHT-dienbien_smart-R4")
        outcomes.append(Outcome("rest_faults", "stall-after-commit:found-once", "stand_in_fault", "ok", "ok" if found else "lost",
                                ok=found is not None, lost=int(found is None)))
    finally:
        server.stop()
    return outcomes


# -- the wire itself ----------------------------------------------------------------------------


def transport() -> list[Outcome]:
    """Truncated, stalled, dripping and hung-up answers on a real socket, for every client."""
    page = _page([good_item("TR-1")]).encode()
    soap_ok = _envelope("<ed:FindDocumentByReferenceResponse><ed:Found>false</ed:Found></ed:FindDocumentByReferenceResponse>").encode()
    scripts = {
        "truncated": lambda body, ctype: raw_server.truncated(body, ctype),
        "broken-chunks": lambda body, ctype: raw_server.broken_chunks(body, ctype),
        "stall-after-headers": lambda body, ctype: raw_server.stall_after_headers(2.0, ctype),
        "stall-before-anything": lambda body, ctype: raw_server.stall_before_anything(2.0),
        "drip": lambda body, ctype: raw_server.drip(body, 0.05, ctype),
        "hang-up": lambda body, ctype: raw_server.hang_up,
        "not-http": lambda body, ctype: raw_server.garbage,
        "declares-10-gb": lambda body, ctype: raw_server.huge_declared(ctype),
    }
    outcomes = []
    limits = ConnectorLimits(max_body_bytes=256 * 1024, max_xml_bytes=256 * 1024, max_answer_seconds=0.5)
    with raw_server.RawServer() as server:
        citizen = CitizenAppClient(SOURCE, server.url, api_key=API_KEY, timeout=FAST, limits=limits)
        rest = _rest_client(server.url, limits=limits)
        soap = _soap_client(f"{server.url}/edxml", timeout=0.5, limits=limits)
        calls = {
            "citizen:reports_since": (lambda: next(citizen.reports_since(None)), page, "application/json", False),
            "rest:changes_since": (lambda: list(rest.changes_since(None)), page, "application/json", False),
            "rest:create_document": (lambda: rest.create_document(document_record("PAHT-dienbien_smart-T1"), []), page, "application/json", True),
            "soap:find_by_ref": (lambda: soap.find_by_ref("PAHT-x-1"), soap_ok, "text/xml", False),
            "soap:create_document": (lambda: soap.create_document(document_record("PAHT-quangtri_ioc-T1"), []), soap_ok, "text/xml", True),
        }
        for script_name, make in scripts.items():
            for call_name, (call, body, content_type, is_write) in calls.items():
                server.script = make(body, content_type)
                expected = _transport_expectation(script_name, is_write)
                outcomes.append(error_outcome("transport", f"{script_name}:{call_name}", "transport_timeout", expected, call))
    return outcomes


def _transport_expectation(script: str, is_write: bool) -> str:
    if script == "declares-10-gb":
        return "MalformedResponse"
    return "AmbiguousError" if is_write else "TransientError"


# -- attachments ----------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 120
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 120
ATTACHMENT_BODIES: dict[str, tuple[bytes, str, str]] = {
    # name: (bytes served, declared media type, expected)
    "html-as-jpeg": (b"<!DOCTYPE html><html><body>Dang nhap</body></html>" + b" " * 100, "image/jpeg", "RejectedContent"),
    "html-lowercase-as-png": (b"\n\n  <html><script>alert(1)</script></html>" + b" " * 100, "image/png", "RejectedContent"),
    "windows-exe-as-jpeg": (b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 200, "image/jpeg", "RejectedContent"),
    "elf-as-mp4": (b"\x7fELF\x02\x01\x01" + b"\x00" * 200, "video/mp4", "RejectedContent"),
    "macho-as-png": (b"\xcf\xfa\xed\xfe" + b"\x00" * 200, "image/png", "RejectedContent"),
    "script-as-jpeg": (b"#!/bin/sh\nrm -rf /\n" + b" " * 100, "image/jpeg", "RejectedContent"),
    "zip-as-jpeg": (b"PK\x03\x04" + b"\x00" * 200, "image/jpeg", "RejectedContent"),
    "apk-as-mp4": (b"PK\x03\x04\x14\x00\x08\x08AndroidManifest.xml" + b"\x00" * 100, "video/mp4", "RejectedContent"),
    "svg-as-png": (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>' + b" " * 100, "image/png", "RejectedContent"),
    "png-as-jpeg": (PNG, "image/jpeg", "RejectedContent"),
    "jpeg-as-png": (JPEG, "image/png", "RejectedContent"),
    "pdf-as-jpeg": (b"%PDF-1.7\n" + b"\x00" * 200, "image/jpeg", "RejectedContent"),
    "random-as-mp4": (bytes(range(256)), "video/mp4", "RejectedContent"),
    "tiny-html-as-jpeg": (b"<html>", "image/jpeg", "RejectedContent"),
    "bom-html-as-jpeg": (b"\xef\xbb\xbf<html><body>x</body></html>", "image/jpeg", "RejectedContent"),
    "xml-as-pdf": (b'<?xml version="1.0"?><x/>' + b" " * 80, "application/pdf", "RejectedContent"),
    "empty-file": (b"", "image/jpeg", "RejectedContent"),
    "over-limit-streamed": (b"\xff\xd8\xff" + b"\x00" * (80 * 1024), "image/jpeg", "RejectedContent"),
    "good-jpeg": (JPEG, "image/jpeg", "ok"),
    "good-png": (PNG, "image/png", "ok"),
}
DECLARED: dict[str, tuple[dict[str, Any], str]] = {
    "declared-empty": ({"size": 0}, "RejectedContent"),
    "declared-over-limit": ({"size": 65 * 1024}, "RejectedContent"),
    "declared-type-not-allowed": ({"media_type": "application/x-msdownload"}, "RejectedContent"),
    "declared-size-mismatch": ({"size": 10}, "MalformedResponse"),
    "checksum-mismatch": ({"sha256": "0" * 64}, "MalformedResponse"),
}


def attachments() -> list[Outcome]:
    client = CitizenAppClient(SOURCE, FAKE_CITIZEN, api_key=API_KEY, timeout=FAST, limits=SMALL)
    url = f"{FAKE_CITIZEN}/api/v1/attachments/A1"
    outcomes = []

    def fetch(attachment: Attachment) -> int:
        with client.open_attachment(attachment) as chunks:
            return sum(len(c) for c in chunks)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for name, (body, media_type, expected) in ATTACHMENT_BODIES.items():
            mock.upsert(responses.GET, url, body=body, content_type=media_type)
            declared = Attachment(name=f"{name}.bin", media_type=media_type, size=None, sha256=None, url="/api/v1/attachments/A1")
            outcomes.append(error_outcome("attachments", name, "attachment", expected, lambda: fetch(declared)))
        mock.upsert(responses.GET, url, body=JPEG, content_type="image/jpeg")
        for name, (changes, expected) in DECLARED.items():
            fields = {"name": "IMG_1.jpg", "media_type": "image/jpeg", "size": len(JPEG), "sha256": hashlib.sha256(JPEG).hexdigest(),
                      "url": "/api/v1/attachments/A1", **changes}
            attachment = Attachment(**fields)
            outcomes.append(error_outcome("attachments", name, "attachment", expected, lambda: fetch(attachment)))
        mock.upsert(responses.GET, url, body=requests.exceptions.ChunkedEncodingError("cut"))
        cut = Attachment(name="IMG_2.jpg", media_type="image/jpeg", size=None, url="/api/v1/attachments/A1")
        outcomes.append(error_outcome("attachments", "download-cut", "attachment", "TransientError", lambda: fetch(cut)))
    return outcomes


# -- the XML parser itself ------------------------------------------------------------------------


def xml_parser() -> list[Outcome]:
    """``parse_xml`` (the stand-in's request parser, and any XML read outside zeep) never expands."""
    bodies = {f"corpus/{p.name}": p.read_bytes() for p in sorted((CORPUS / "soap").glob("*.xml"))}
    bodies |= {f"generated/{name}": body for name, body in generated_xml().items()}
    outcomes = []
    for name, body in bodies.items():
        started = time.monotonic()
        try:
            root = parse_xml(body, max_bytes=256 * 1024)
            text = " ".join(root.itertext())
            got, detail = "parsed", bounded(text, 120)
        except XmlRefused as exc:
            got, detail, text = "XmlRefused", bounded(exc), str(exc)
        except Exception as exc:  # noqa: BLE001
            outcomes.append(Outcome("xml_parser", name, "xml", "XmlRefused or parsed", f"crash:{exc.__class__.__name__}", bounded(exc), crash=True))
            continue
        expansion = expanded(text) or time.monotonic() - started > SLOW_SECONDS
        risky = b"ENTITY" in body.upper() or b"DOCTYPE" in body.upper() or b"E\x00N\x00T" in body or b"\x00\x00\x00E" in body
        ok = not expansion and (got == "XmlRefused" or not risky)
        outcomes.append(Outcome("xml_parser", name, "xml", "XmlRefused" if risky else "XmlRefused or parsed", got, detail,
                                ok=ok, expansion=expansion))
    return outcomes


# -- everything -----------------------------------------------------------------------------------

SECTIONS = ("reports_served", "reports_transport", "citizen_pages", "citizen_faults", "soap_answers", "soap_faults",
            "rest_answers", "rest_faults", "transport", "attachments", "xml_parser")


def run_section(name: str, cases: list[ReportCase] | None = None) -> list[Outcome]:
    cases = cases if cases is not None else all_cases()
    with tempfile.TemporaryDirectory(prefix=f"paht-hostile-{name}-") as folder:
        path = Path(folder)
        if name == "reports_served":
            return reports_served(path, cases)
        if name == "reports_transport":
            return reports_transport(path, cases)
        if name == "citizen_pages":
            return citizen_pages(path)
        if name == "citizen_faults":
            return citizen_faults(path)
        return globals()[name]()


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    bad_inputs = [o for o in outcomes if o.kind != "good_report"]
    quarantined = [o for o in bad_inputs if o.got == "quarantined"]
    per_section: dict[str, dict[str, int]] = {}
    for o in outcomes:
        section = per_section.setdefault(o.section, {"cases": 0, "as_expected": 0})
        section["cases"] += 1
        section["as_expected"] += o.ok
    return {
        "cases_tried": len(bad_inputs),
        "good_reports_mixed_in": sum(o.kind == "good_report" for o in outcomes),
        "quarantined_with_reason": sum(1 for o in quarantined if o.detail.strip() and o.ok),
        "quarantined_total": len(quarantined),
        "tolerated_and_kept": sum(o.got == "accepted" and o.ok for o in bad_inputs),
        "typed_errors": sum(o.got in TYPED_ERRORS for o in bad_inputs),
        "batch_crashes": sum(o.crash for o in outcomes),
        "entity_expansions": sum(o.expansion for o in outcomes),
        "reports_lost": sum(o.lost for o in outcomes),
        "not_as_expected": sum(not o.ok for o in outcomes),
        "by_section": per_section,
        "by_kind": dict(sorted(Counter(o.kind for o in bad_inputs).items())),
    }
