"""Properties of the parsers and transforms, over inputs nobody would think to write by hand.

Hypothesis settings stay modest (about 150 examples, no deadline) so the suite stays fast.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree

from paht_bridge.connectors.citizen_app import ID_PATTERN, CitizenAppClient, mask_personal
from paht_bridge.connectors.citizen_checks import VIETNAM_BOX
from paht_bridge.connectors.limits import ConnectorLimits
from paht_bridge.connectors.outbound import FULL_TEXT_NAME, NAME_LIMIT, xml_safe
from paht_bridge.connectors.xml import XmlRefused, check_untrusted, parse_xml
from paht_bridge.normalise.admin_units import resolve_units
from paht_bridge.canonical import VIETNAM_TZ, AdminUnit, Location, RawStatusChange, Report, nfc
from paht_bridge.config.deployment import deployment
from paht_bridge.normalise.text import legacy_encoding, strip_markup
from paht_bridge.normalise.transforms import UnknownStatus, build_document, map_status, route
from paht_bridge.sandbox.edxml_docsys import XSD_FILE, soap_payload
from tests.hostile.cases import good_item
from tests.hostile.legacy import ENCODERS
from tests.preset_clients import create_request, edxml_client, tdoffice_client

SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NOW = datetime(2026, 11, 23, 19, 0, tzinfo=VIETNAM_TZ)
TAG_OPENER = re.compile(r"<[A-Za-z/!?]")
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
QUANG_TRI = deployment("quang_tri")
DIEN_BIEN = deployment("dien_bien")

# -- strategies -----------------------------------------------------------------------------------

NASTY_TEXT = st.sampled_from([
    "", " ", "\x00", "\ud800", "\ufffe", "<script>alert(1)</script>", "&lt;script&gt;", "Hµ Néi", "Haø Noäi", "HÃ  Ná»™i",
    unicodedata.normalize("NFD", "Đường Lê Lợi"), "a" * 600, "e\u0301\u0301\u0301\u0301", "NaN", "0", "9" * 40,
    "2026-11-02T08:15:00", "9999-12-31T23:59:59+07:00", "file:///etc/passwd", "../../x", "\u202e", "🌧️",
])
TEXT = st.one_of(st.text(max_size=80), st.text(st.characters(codec="utf-8"), max_size=20), NASTY_TEXT)
NUMBERS = st.one_of(st.integers(), st.integers(min_value=-(10**400), max_value=10**400), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 0.0, -0.0, 16.8185, 107.1003, 8.0, 23.5, 102.0, 110.0, 90, 180, 1e308]))
JSON = st.recursive(st.none() | st.booleans() | NUMBERS | TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)
REPORT_KEYS = ("id", "channel", "category", "title", "description", "status", "created_at", "updated_at", "location",
               "reporter", "attachments", "lat", "lng", "address", "admin_unit", "scheme", "ward", "code", "size", "mime_type")


@st.composite
def mutated_reports(draw: st.DrawFn) -> object:
    """A good report with a few fields replaced, added or removed, at any depth."""
    item = good_item(draw(st.from_regex(r"\AQT-[0-9]{4}\Z")))
    item["attachments"] = [{"id": "A1", "file_name": "IMG_1.jpg", "mime_type": "image/jpeg", "size": 1000, "download_url": "/a/A1"}]
    for _ in range(draw(st.integers(1, 4))):
        node = item
        path = draw(st.lists(st.sampled_from(REPORT_KEYS), min_size=1, max_size=3))
        for key in path[:-1]:
            child = node.get(key) if isinstance(node, dict) else None
            if isinstance(child, list) and child and isinstance(child[0], dict):
                child = child[0]
            if not isinstance(child, dict):
                break
            node = child
        if draw(st.booleans()):
            node[path[-1]] = draw(JSON)
        else:
            node.pop(path[-1], None)
    return item


ITEMS = st.one_of(mutated_reports(), st.dictionaries(st.sampled_from(REPORT_KEYS) | TEXT, JSON, max_size=8), JSON)


# -- the citizen connector's report parser ----------------------------------------------------------


CLIENT = CitizenAppClient("quangtri_ioc", "http://unused.test", clock=lambda: NOW)


@SETTINGS
@given(item=ITEMS)
def test_any_json_value_becomes_one_report_or_one_quarantined_item_never_an_exception(item: object) -> None:
    reports, quarantined = CLIENT.parse_reports([item])
    assert len(reports) + len(quarantined) == 1
    if quarantined:
        (bad,) = quarantined
        assert bad.reason.strip() and bad.reason.isprintable()
        bad.raw.encode("utf-8")  # storable
        assert bad.source_id is None or re.match(ID_PATTERN, bad.source_id)
        if bad.payload is not None:
            again = json.loads(bad.payload.get_secret_value())
            assert json.dumps(again, sort_keys=True, allow_nan=True) == json.dumps(item, sort_keys=True, allow_nan=True)
        return
    (report,) = reports
    assert isinstance(item, dict) and report.source_id == item["id"]
    texts = [report.title, report.description, report.category, report.location.address or "",
             *(a.name for a in report.attachments)]
    for text in texts:
        assert unicodedata.is_normalized("NFC", text)
        assert not TAG_OPENER.search(text), text
        assert not any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\t\r" for c in text)
    if report.location.lat is not None:
        assert VIETNAM_BOX["lat"][0] <= report.location.lat <= VIETNAM_BOX["lat"][1]
        assert VIETNAM_BOX["lng"][0] <= report.location.lon <= VIETNAM_BOX["lng"][1]
    assert report.created_at <= NOW.replace(minute=10) and report.created_at.year >= 2000


RATING_KEYS = ("id", "report_id", "level", "comment", "rated_at")
GOOD_RATING = {"id": "DG-1", "report_id": "QT-1", "level": "hai_long", "comment": "Cảm ơn", "rated_at": "2026-11-20T09:00:00+07:00"}
RATINGS = st.one_of(
    st.fixed_dictionaries({}, optional={k: st.one_of(JSON, st.just(GOOD_RATING[k])) for k in RATING_KEYS}),
    st.builds(lambda key, value: {**GOOD_RATING, key: value}, st.sampled_from(RATING_KEYS), JSON),
    JSON,
)


@SETTINGS
@given(item=RATINGS)
def test_any_json_value_becomes_one_rating_or_one_quarantined_item(item: object) -> None:
    ratings, quarantined = CLIENT.parse_ratings([item])
    assert len(ratings) + len(quarantined) == 1
    if ratings:
        (rating,) = ratings
        assert rating.rated_at <= NOW.replace(minute=10)
        assert rating.comment is None or not TAG_OPENER.search(rating.comment)
    else:
        assert quarantined[0].reason.strip()


@SETTINGS
@given(item=JSON)
def test_masking_a_payload_never_fails_and_never_shows_the_phone(item: object) -> None:
    wrapped = {"id": "QT-1", "extra": item, "reporter": {"full_name": "Lò Văn Sơn", "phone": "0376543210"}}
    text = mask_personal(wrapped)
    text.encode("utf-8")
    assert "0376543210" not in text and "Lò Văn Sơn" not in text


# -- text ----------------------------------------------------------------------------------------------


@SETTINGS
@given(text=st.text())
def test_nfc_is_idempotent_and_decomposed_input_reads_the_same(text: str) -> None:
    once = nfc(text)
    assert nfc(once) == once
    assert nfc(unicodedata.normalize("NFD", text)) == once


@SETTINGS
@given(text=st.one_of(st.text(), st.text(st.sampled_from("<>/&;!?-[]ascriptlg#x3C60 \"'=")), NASTY_TEXT))
def test_stripped_text_never_holds_something_that_opens_a_tag(text: str) -> None:
    plain = strip_markup(text)
    assert not TAG_OPENER.search(plain)
    assert not TAG_OPENER.search(strip_markup(plain))
    if "<" not in text and "&" not in text:
        assert plain == text


SYLLABLES = ("đường", "phố", "ngập", "nước", "rác", "thải", "cây", "xanh", "đổ", "điện", "chiếu", "sáng", "hỏng", "ổ", "gà",
             "người", "dân", "phản", "ánh", "khu", "vực", "chợ", "Đông", "Hà", "Quảng", "Trị", "Điện", "Biên", "mưa", "lớn",
             "cầu", "cống", "tắc", "nghẽn", "giao", "thông", "trật", "tự", "xây", "dựng", "ủy", "ban", "nhân", "xã", "phường")
VIETNAMESE = st.lists(st.sampled_from(SYLLABLES), min_size=3, max_size=25).map(" ".join)


@SETTINGS
@given(text=VIETNAMESE, capitalise=st.booleans())
def test_real_vietnamese_is_never_taken_for_a_legacy_encoding(text: str, capitalise: bool) -> None:
    text = text.capitalize() if capitalise else text
    assert legacy_encoding(text) is None
    assert legacy_encoding(unicodedata.normalize("NFC", unicodedata.normalize("NFD", text))) is None


@SETTINGS
@given(text=VIETNAMESE, encoding=st.sampled_from(sorted(ENCODERS)))
def test_vietnamese_in_a_legacy_encoding_read_as_cp1252_is_recognised(text: str, encoding: str) -> None:
    encode = ENCODERS[encoding]
    # Some syllables come out as other valid Vietnamese (TCVN3 "phố" → "phè"): a sentence
    # is recognised by the ones that do not, so it needs two of those.
    visible = [word for word in text.split() if legacy_encoding(f"{encode(word)} {encode(word)}")]
    assume(len(visible) >= 2)
    garbled = encode(text)
    assert legacy_encoding(garbled) is not None, garbled


# -- routing and the edXML envelope ----------------------------------------------------------------------

UNIT = AdminUnit(scheme="2025", province="Tỉnh Quảng Trị", ward="Phường Đồng Hới")
UNITS = resolve_units(UNIT)
SCHEMA = etree.XMLSchema(etree.parse(str(XSD_FILE)))
SOAP_CLIENT = edxml_client("http://unused.test/edxml")  # Quảng Trị's target: preset edxml_soap
REST_CLIENT = tdoffice_client("http://unused.test")  # Điện Biên's: preset tdoffice_rest
TEXT_LIMIT = SOAP_CLIENT.wire.text_limit
LONG_TEXT = st.one_of(TEXT, st.text(min_size=400, max_size=3000), st.text(st.sampled_from("ab <>&\x00\x0b\ufffe ẩ"), max_size=1200))


@st.composite
def reports(draw: st.DrawFn) -> Report:
    return Report(
        source="quangtri_ioc", source_id=draw(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:/-]{0,60}\Z")),
        category=draw(st.sampled_from(sorted(QUANG_TRI.categories))), title=draw(LONG_TEXT), description=draw(LONG_TEXT),
        created_at=NOW, updated_at=NOW,
        location=Location(lat=17.47, lon=106.62, address=draw(st.one_of(st.none(), LONG_TEXT)), unit=UNIT),
    )


@SETTINGS
@given(report=reports())
def test_route_and_build_document_never_give_an_envelope_the_edxml_schema_refuses(report: Report) -> None:
    record = build_document(report, route(report, UNITS, QUANG_TRI), QUANG_TRI)
    envelope = xml_safe(create_request(SOAP_CLIENT, record))["edXMLEnvelope"]
    header = envelope["edXMLHeader"]["MessageHeader"]
    assert TEXT_LIMIT == 500 and len(header["Subject"]) <= TEXT_LIMIT and len(header["Content"]) <= TEXT_LIMIT
    assert not TAG_OPENER.search(header["Subject"]) and not TAG_OPENER.search(header["Content"])
    references = envelope["edXMLBody"]["edXMLManifest"]["Reference"]
    assert [r["AttachmentName"] for r in references] == ([FULL_TEXT_NAME] if header["Content"].endswith(f"{FULL_TEXT_NAME})") else [])
    for reference in references:
        assert len(reference["AttachmentName"]) <= NAME_LIMIT
    message = SOAP_CLIENT._soap.client.create_message(SOAP_CLIENT._soap.service, "SendDocument", edXMLEnvelope=envelope)  # noqa: SLF001
    payload = soap_payload(etree.tostring(message))
    assert SCHEMA.validate(payload), SCHEMA.error_log.last_error


@SETTINGS
@given(report=reports())
def test_what_a_rest_document_system_receives_carries_no_markup(report: Report) -> None:
    record = build_document(report, route(report, UNITS, QUANG_TRI), QUANG_TRI)
    document = create_request(REST_CLIENT, record)
    assert not TAG_OPENER.search(document["trich_yeu"]) and not TAG_OPENER.search(document["noi_dung"])
    assert len(document["trich_yeu"]) <= 500  # the preset's subject_limit: the vendor refuses more


# -- the hardened XML parser --------------------------------------------------------------------------------


@st.composite
def hostile_xml(draw: st.DrawFn) -> bytes:
    entity = draw(st.sampled_from([
        '<!ENTITY e "EXPANDED">', '<!ENTITY e SYSTEM "file:///etc/passwd">', '<!ENTITY e SYSTEM "http://127.0.0.1:9/x">',
        '<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;', '<!ENTITY e "&#60;x&#62;EXPANDED&#60;/x&#62;">',
        '<!ENTITY a "EXPANDED"><!ENTITY e "&a;&a;&a;&a;">',
    ]))
    doctype = draw(st.sampled_from(["<!DOCTYPE r [{}]>", "<!doctype r [{}]>", "<! DOCTYPE r [{}]>", "<!DOCTYPE r SYSTEM \"http://127.0.0.1:9/r.dtd\" [{}]>"]))
    padding = draw(st.sampled_from(["", "<!--" + " " * 5000 + "-->", "<?pi data?>", "\n" * 3000]))
    depth = draw(st.integers(0, 80))
    body = "<r>" + "<a>" * depth + draw(st.sampled_from(["&e;", "x&e;y", "<![CDATA[&e;]]>", "&amp;e;"])) + "</a>" * depth + "</r>"
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32", "latin-1"]))
    declaration = f'<?xml version="1.0" encoding="{encoding.upper() if encoding != "utf-16-le" else "UTF-16"}"?>' if draw(st.booleans()) else ""
    text = declaration + padding + doctype.format(entity) + body
    return text.encode(encoding)


@SETTINGS
@given(data=hostile_xml())
def test_parse_xml_never_expands_an_entity(data: bytes) -> None:
    try:
        root = parse_xml(data)
    except XmlRefused:
        return
    text = etree.tostring(root, encoding="unicode")
    assert "EXPANDED" not in text and "root:" not in text


@SETTINGS
@given(data=st.binary(max_size=2000) | hostile_xml())
def test_the_untrusted_xml_check_raises_nothing_but_xml_refused(data: bytes) -> None:
    try:
        check_untrusted(data, max_bytes=64 * 1024, max_depth=64)
        parse_xml(data, max_bytes=64 * 1024)
    except XmlRefused:
        pass


# -- status mapping -------------------------------------------------------------------------------------------


def _changes(code: str) -> RawStatusChange:
    return RawStatusChange(external_ref="PAHT-x-1", document_id="D1", raw_code=code, changed_at=NOW)


KNOWN_CODES = sorted({code for m in (QUANG_TRI, DIEN_BIEN) for t in m.targets for code in t.statuses})


@SETTINGS
@given(code=st.one_of(st.text(max_size=12), st.sampled_from(KNOWN_CODES),
                      st.sampled_from(KNOWN_CODES).map(lambda c: f" {c}") | st.sampled_from(KNOWN_CODES).map(str.lower)
                      | st.sampled_from(KNOWN_CODES).map(lambda c: c.lstrip("0")) | st.sampled_from(KNOWN_CODES).map(lambda c: "0" + c)))
def test_status_mapping_never_guesses(code: str) -> None:
    for mapping in (QUANG_TRI, DIEN_BIEN):
        for target in mapping.targets:
            table = target.statuses
            if code in table:
                assert map_status(_changes(code), target.name, mapping).status == table[code]
            else:
                with pytest.raises(UnknownStatus):
                    map_status(_changes(code), target.name, mapping)


# -- limits ---------------------------------------------------------------------------------------------------


@SETTINGS
@given(max_body=st.integers(1024, 10**9), depth=st.integers(8, 1000), types=st.lists(st.sampled_from(["image/JPEG", "video/mp4", " image/png "]), max_size=3),
       as_text=st.booleans())
def test_limits_read_from_a_connection_extra_are_the_limits_written(max_body: int, depth: int, types: list[str], as_text: bool) -> None:
    written = {"max_body_bytes": max_body, "max_xml_depth": depth, "allowed_media_types": types}
    extra = {"timeout": 5, "limits": json.dumps(written) if as_text else written}
    limits = ConnectorLimits.from_extra(extra)
    assert limits.max_body_bytes == max_body and limits.max_xml_depth == depth
    assert limits.allowed_media_types == frozenset(t.strip().lower() for t in types)
