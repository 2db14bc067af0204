"""The hostile report corpus: hand-written cases in ``corpus/reports`` and generated ones.

Each case is one item of a citizen app's report feed and what must become of it: quarantined
with a reason that names the field and the problem, or accepted (tolerated, possibly
cleaned). Items are built from one good report by patching it, so each case differs from a
good report in exactly what it is about.
"""

from __future__ import annotations

import copy
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from paht_bridge.canonical import VIETNAM_TZ
from tests.hostile.legacy import ENCODERS

CORPUS = Path(__file__).parent / "corpus"
GOOD_TEXT = {
    "title": "Ổ gà lớn giữa đường Lê Lợi",
    "description": "Mặt đường có ổ gà sâu khoảng 20 cm, xe máy đi qua rất nguy hiểm. Đề nghị sửa chữa sớm.",
    "address": "Đường Lê Lợi, phường 1, thành phố Đông Hà, tỉnh Quảng Trị",
}


@dataclass(frozen=True)
class ReportCase:
    name: str
    kind: str  # which family of bad input: missing_field, wrong_type, coordinates, ...
    item: Any  # the JSON value served as one item of a page
    expect: Literal["quarantined", "accepted"]
    reason: str | None = None  # what the quarantine reason must contain
    check: str | None = None  # for an accepted item: nfc, no_markup, vietnam_time
    origin: str = "generated"  # or the hand-written file's name
    about: str = ""
    tags: tuple[str, ...] = field(default=())

    @property
    def servable(self) -> bool:
        """Whether the real stand-in can serve it: a JSON object its own JSON encoder accepts
        (no NaN, no unpaired surrogates). The rest is served at the transport level."""
        if not isinstance(self.item, dict):
            return False
        try:
            json.dumps(self.item, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (ValueError, UnicodeEncodeError):
            return False
        return True

    @property
    def source_id(self) -> str | None:
        item_id = self.item.get("id") if isinstance(self.item, dict) else None
        return item_id if isinstance(item_id, str) and re.match(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$", item_id) else None


def good_item(report_id: str) -> dict[str, Any]:
    """A report every check accepts: a real Quảng Trị address, times in the past."""
    return {
        "id": report_id,
        "channel": "app",
        "category": {"code": "GT", "name": "Hạ tầng giao thông"},
        "title": GOOD_TEXT["title"],
        "description": GOOD_TEXT["description"],
        "status": "moi_tiep_nhan",
        "created_at": "2026-11-02T08:15:00+07:00",
        "updated_at": "2026-11-02T08:15:00+07:00",
        "location": {
            "lat": 16.8185,
            "lng": 107.1003,
            "address": GOOD_TEXT["address"],
            "admin_unit": {"scheme": "legacy", "province": "tỉnh Quảng Trị", "district": "thành phố Đông Hà", "ward": "Phường 1"},
        },
        "reporter": {"full_name": "Nguyễn Văn Bình", "phone": "0912345678"},
        "attachments": [],
    }


def attachment(index: int = 1, **changes: Any) -> dict[str, Any]:
    return {
        "id": f"A{index}", "file_name": f"IMG_2026110{index % 10}_081500.jpg", "mime_type": "image/jpeg",
        "size": 48213, "sha256": "ab" * 32, "download_url": f"/api/v1/attachments/A{index}", **changes,
    }


# -- building items -----------------------------------------------------------------------------


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _remove(item: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        item = item[int(part)] if isinstance(item, list) else item[part]
    del item[last]


_NOW = re.compile(r"^@now([+-])(\d+)([smhd])$")


def _placeholders(value: Any, now: datetime) -> Any:
    """Hand-written files name times relative to now, NFD text and long strings by recipe."""
    if isinstance(value, dict):
        return {k: _placeholders(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v, now) for v in value]
    if not isinstance(value, str) or not value.startswith("@"):
        return value
    if match := _NOW.match(value):
        sign, amount, unit = match.groups()
        delta = timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: int(amount)})
        return (now + delta if sign == "+" else now - delta).isoformat()
    if value.startswith("@nfd:"):
        return unicodedata.normalize("NFD", value[5:])
    if value.startswith("@repeat:"):
        text, _, length = value[8:].rpartition(":")
        return (text * (int(length) // len(text) + 1))[: int(length)]
    if value.startswith("@attachments:"):
        return [attachment(i) for i in range(1, int(value.split(":")[1]) + 1)]
    return value


def _item(report_id: str, patch: dict[str, Any] | None = None, remove: tuple[str, ...] = ()) -> dict[str, Any]:
    item = _merge(good_item(report_id), copy.deepcopy(patch or {}))
    for path in remove:
        _remove(item, path)
    return item


# -- hand-written cases -------------------------------------------------------------------------


def hand_written(now: datetime) -> list[ReportCase]:
    cases = []
    for path in sorted((CORPUS / "reports").glob("*.json")):
        spec = json.loads(path.read_text(encoding="utf-8"))
        report_id = f"HW-{path.stem[:3]}"
        if "item" in spec:
            item = _placeholders(spec["item"], now)
        else:
            item = _item(report_id, _placeholders(spec.get("patch", {}), now), tuple(spec.get("remove", ())))
        cases.append(ReportCase(
            name=path.stem, kind="hand_written", item=item, expect=spec["expect"], reason=spec.get("reason"),
            check=spec.get("check"), origin=f"corpus/reports/{path.name}", about=spec.get("about", ""),
        ))
    return cases


# -- generated cases ----------------------------------------------------------------------------

#: Fields the wire model requires, by path.
REQUIRED = ("id", "category", "category.code", "title", "description", "created_at")
#: A wrong value of each JSON type, by name.
WRONG_VALUES: dict[str, Any] = {
    "int": 42, "float": 4.2, "bool": True, "null": None, "list": ["x"], "object": {"x": 1}, "text": "không phải",
}
#: field path → (JSON types it accepts, what the reason says).
TYPED_FIELDS: dict[str, tuple[set[str], str]] = {
    "id": ({"text"}, "id:"),
    "title": ({"text"}, "title:"),
    "description": ({"text"}, "description:"),
    "channel": (set(), "channel:"),  # only a channel name passes; every wrong value fails
    "status": ({"text", "null"}, "status:"),
    "created_at": ({"text"}, "created_at:"),
    "updated_at": ({"text", "null"}, "updated_at:"),
    "category": (set(), "category"),
    "category.code": ({"text"}, "category.code:"),
    "location": ({"null", "object"}, "location"),  # an object of unknown keys is an empty location
    "location.lat": ({"int", "float"}, "location"),
    "location.address": ({"text", "null"}, "location.address:"),
    "location.admin_unit": ({"null"}, "location.admin_unit"),
    "location.admin_unit.ward": ({"text", "null"}, "location.admin_unit.ward:"),
    "reporter": ({"null", "object"}, "reporter"),
    "reporter.phone": ({"text", "null"}, "reporter.phone:"),
    "attachments": (set(), "attachments"),
}

OUTSIDE_VIETNAM = {
    "paris": (48.8566, 2.3522), "new-york": (40.7128, -74.006), "sydney": (-33.8688, 151.2093),
    "beijing": (39.9042, 116.4074), "bangkok": (13.7563, 100.5018), "vientiane-west": (17.97, 101.5),
    "manila": (14.5995, 120.9842), "south-pole": (-90.0, 0.0), "north-pole": (90.0, 0.0),
    "date-line": (16.8, 180.0), "sign-flipped-lat": (-16.8185, 107.1003), "sign-flipped-lng": (16.8185, -107.1003),
    "just-north": (23.51, 105.3), "just-south": (7.99, 105.0), "just-west": (16.8, 101.99), "just-east": (16.8, 110.01),
    "hoang-sa": (16.5, 112.0), "truong-sa": (8.64, 111.92), "null-island": (0.0, 0.0), "lat-zero": (0.0, 107.1),
}
INSIDE_VIETNAM = {"corner-sw": (8.0, 102.0), "corner-ne": (23.5, 110.0), "ha-giang": (23.3, 105.3), "ca-mau": (8.6, 104.7)}
NOT_FINITE = {"nan": float("nan"), "infinity": float("inf"), "minus-infinity": float("-inf")}
BAD_TIMES = {
    "future-1h": "@now+1h", "future-1d": "@now+1d", "future-10y": "@now+3650d", "year-9999": "9999-12-31T23:59:59+07:00",
    "year-0001": "0001-01-01T00:00:00+07:00", "epoch": "1970-01-01T00:00:00Z", "y2k-minus": "1999-12-31T23:59:59+07:00",
    "not-a-date": "hôm qua", "empty": "", "month-13": "2026-13-01T08:00:00+07:00", "offset-25h": "2026-11-02T08:00:00+25:00",
    "slashes": "2026/11/02 08:00", "unix-ms": 1793600000000, "spaces": "   ",
}
TOLERATED_TIMES = {"naive": "2026-11-02T08:15:00", "utc-z": "2026-11-02T01:15:00Z", "date-only": "2026-11-02",
                   "space-separator": "2026-11-02 08:15:00", "fraction": "2026-11-02T08:15:00.123456+07:00"}
TEXT_FIELDS = {"title": "title", "description": "description", "location.address": "location.address",
               "location.admin_unit.ward": "location.admin_unit.ward", "location.admin_unit.province": "location.admin_unit.province"}
LEGACY_PHRASES = ("Đường Lê Lợi bị ngập nước sau mưa lớn", "Rác thải ùn ứ ở chợ Đông Hà", "Cây xanh nghiêng có nguy cơ gãy đổ")
MARKUP = {
    "script": "<script>alert(document.cookie)</script>{}",
    "script-upper": "<SCRIPT SRC=//evil.example/x.js></SCRIPT>{}",
    "script-split": "<scr<script>ipt>alert(1)</script>{}",
    "img-onerror": "{}<img src=x onerror=alert(1)>",
    "svg-onload": "<svg onload=alert(1)>{}</svg>",
    "iframe": "{}<iframe src=\"javascript:alert(1)\"></iframe>",
    "style": "<style>*{{display:none}}</style>{}",
    "entity-script": "&lt;script&gt;alert(1)&lt;/script&gt;{}",
    "double-entity": "&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;{}",
    "numeric-entity": "&#60;script&#62;alert(1)&#60;/script&#62;{}",
    "comment": "<!-- <script>alert(1)</script> -->{}",
    "cdata": "<![CDATA[<script>alert(1)</script>]]>{}",
    "paragraphs": "<p>{}</p><p><b>Gấp</b></p>",
    "link-js": "<a href=\"javascript:alert(1)\">{}</a>",
    "unclosed-script": "{}<script>alert(1)",
    "object-embed": "<object data=x.swf></object><embed src=x.swf>{}",
}
CONTROL_CHARS = {"nul": "\x00", "bell": "\x07", "backspace": "\x08", "vertical-tab": "\x0b", "escape": "\x1b", "delete": "\x7f",
                 "c1-nel": "\x85", "c1-csi": "\x9b", "non-character": "\ufffe", "lone-surrogate": "\ud83d"}
LIMITS = {"title": 500, "description": 20_000, "location.address": 1_000, "location.admin_unit.ward": 200,
          "location.admin_unit.province": 200, "reporter.full_name": 200, "reporter.phone": 32}
BAD_ATTACHMENTS = {
    "zero-bytes": ({"size": 0}, "attachments.0.size: the file is empty"),
    "over-limit": ({"size": 100 * 1024 * 1024 + 1}, "over the 104857600-byte limit"),
    "negative-size": ({"size": -5}, "attachments.0.size: Input should be greater than or equal to 0"),
    "size-as-text": ({"size": "lớn"}, "attachments.0.size:"),
    "exe-type": ({"mime_type": "application/x-msdownload"}, "not an allowed attachment type"),
    "octet-stream": ({"mime_type": "application/octet-stream"}, "not an allowed attachment type"),
    "html-type": ({"mime_type": "text/html"}, "not an allowed attachment type"),
    "js-type": ({"mime_type": "application/javascript"}, "not an allowed attachment type"),
    "empty-type": ({"mime_type": ""}, "attachments.0.mime_type:"),
    "exe-name": ({"file_name": "setup.exe"}, "extension .exe"),
    "double-extension": ({"file_name": "IMG_0001.jpg.scr"}, "extension .scr"),
    "html-name": ({"file_name": "anh.html"}, "extension .html"),
    "apk-name": ({"file_name": "ung_dung.apk"}, "extension .apk"),
    "path-name": ({"file_name": "../../etc/passwd"}, "a path, not a file name"),
    "windows-path": ({"file_name": "C:\\Windows\\system32\\a.jpg"}, "a path, not a file name"),
    "dots-name": ({"file_name": ".."}, "a path, not a file name"),
    "nul-name": ({"file_name": "a\x00.jpg"}, "contains control character U+0000"),
    "long-name": ({"file_name": "a" * 300 + ".jpg"}, "file_name: 304 characters"),
    "file-url": ({"download_url": "file:///etc/shadow"}, "scheme 'file' is not allowed"),
    "javascript-url": ({"download_url": "javascript:alert(1)"}, "scheme 'javascript' is not allowed"),
    "ftp-url": ({"download_url": "ftp://files.example/a.jpg"}, "scheme 'ftp' is not allowed"),
    "data-url": ({"download_url": "data:image/jpeg;base64,/9j/4AAQ"}, "scheme 'data' is not allowed"),
    "gopher-url": ({"download_url": "gopher://127.0.0.1:6379/_FLUSHALL"}, "scheme 'gopher' is not allowed"),
    "url-with-newline": ({"download_url": "/api/v1/attachments/A1\r\nX-Evil: 1"}, "contains spaces or control characters"),
    "broken-ipv6-url": ({"download_url": "http://[::1/a.jpg"}, "download_url: not a URL"),
    "sha-short": ({"sha256": "abc"}, "attachments.0.sha256"),
    "missing-id": ({"id": None}, "attachments.0.id"),
}
BAD_IDS = {
    "empty": "", "space": "QT 2026 1", "newline": "QT-1\nQT-2", "unicode": "PA-Đông-Hà-1", "too-long": "Q" * 129,
    "leading-dash": "-rf", "dot-dot": "../1", "sql": "1' OR '1'='1", "html": "<b>1</b>", "percent": "QT%2F1",
}
NON_OBJECTS = {"string": "QT-2026-000901", "number": 901, "null": None, "list": [good_item("NO-LIST")], "true": True,
               "empty-list": [], "nested-list": [[["x"]]], "float": 1.5}


def _set(item: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = item
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value
    return item


def generated(now: datetime) -> list[ReportCase]:
    cases: list[ReportCase] = []
    n = 0

    def add(kind: str, name: str, item: Any, expect: str = "quarantined", reason: str | None = None, check: str | None = None) -> None:
        cases.append(ReportCase(name=f"{kind}/{name}", kind=kind, item=item, expect=expect, reason=reason, check=check))  # type: ignore[arg-type]

    def rid() -> str:
        nonlocal n
        n += 1
        return f"GX-{n:04d}"

    for path in REQUIRED:
        item = good_item(rid())
        _remove(item, path)
        add("missing_field", path, item, reason=f"{path}: Field required")
    for path, (accepted, reason) in TYPED_FIELDS.items():
        for type_name, value in WRONG_VALUES.items():
            if type_name in accepted:
                continue
            add("wrong_type", f"{path}={type_name}", _set(good_item(rid()), path, copy.deepcopy(value)), reason=reason)
    add("extra_field", "top-level", {**good_item(rid()), "x_internal": {"debug": True}}, expect="accepted")
    add("extra_field", "nested", _set(good_item(rid()), "location.altitude_m", 12.5), expect="accepted")
    add("extra_field", "in-attachment", {**good_item(rid()), "attachments": [attachment(exif={"gps": [1, 2]})]}, expect="accepted")

    for name, (lat, lng) in OUTSIDE_VIETNAM.items():
        reason = "0,0 is not a place" if (lat, lng) == (0, 0) else ("less than or equal to" if abs(lng) > 180 or abs(lat) > 90 else "location")
        add("coordinates", name, _set(_set(good_item(rid()), "location.lat", lat), "location.lng", lng), reason=reason)
    for name, (lat, lng) in INSIDE_VIETNAM.items():
        add("coordinates", f"inside-{name}", _set(_set(good_item(rid()), "location.lat", lat), "location.lng", lng), expect="accepted")
    for name, value in NOT_FINITE.items():
        add("not_finite", f"lat-{name}", _set(good_item(rid()), "location.lat", value), reason="location.lat: Input should be a finite number")
        add("not_finite", f"lng-{name}", _set(good_item(rid()), "location.lng", value), reason="location.lng: Input should be a finite number")
        add("not_finite", f"lat-text-{name}", _set(good_item(rid()), "location.lat", str(value)), reason="location.lat: Input should be a finite number")
    add("not_finite", "lat-huge-int", _set(good_item(rid()), "location.lat", 10**400), reason="location.lat")

    for field_name in ("created_at", "updated_at"):
        for name, value in BAD_TIMES.items():
            value = _placeholders(value, now)
            item = good_item(rid())
            item[field_name] = value
            if field_name == "created_at":
                item["updated_at"] = None
            add("times", f"{field_name}-{name}", item, reason=f"{field_name}:")
    for name, value in TOLERATED_TIMES.items():
        add("times", f"tolerated-{name}", {**good_item(rid()), "created_at": value, "updated_at": None}, expect="accepted", check="vietnam_time")

    for path in ("title", "description", "location.address", "location.admin_unit.ward"):
        base = {"title": GOOD_TEXT["title"], "description": GOOD_TEXT["description"], "location.address": GOOD_TEXT["address"],
                "location.admin_unit.ward": "Phường 1"}[path]
        add("nfd", path, _set(good_item(rid()), path, unicodedata.normalize("NFD", base)), expect="accepted", check="nfc")
    for encoding, encode in ENCODERS.items():
        for path in TEXT_FIELDS:
            for index, phrase in enumerate(LEGACY_PHRASES[:2] if path.startswith("location.admin") else LEGACY_PHRASES):
                add("legacy_encoding", f"{encoding}-{path}-{index}", _set(good_item(rid()), path, encode(phrase)),
                    reason=f"{TEXT_FIELDS[path]}: looks like")
    for name, template in MARKUP.items():
        for path in ("title", "description", "location.address"):
            base = {"title": GOOD_TEXT["title"], "description": GOOD_TEXT["description"], "location.address": GOOD_TEXT["address"]}[path]
            add("markup", f"{name}-{path}", _set(good_item(rid()), path, template.format(base)), expect="accepted", check="no_markup")
    for name, char in CONTROL_CHARS.items():
        for path in ("title", "description", "location.address", "reporter.full_name"):
            # A lone C1 control may as well be a legacy byte: either reason names the field.
            reason = f"{path}: " if name.startswith("c1-") else f"{path}: contains"
            add("control_chars", f"{name}-{path}", _set(good_item(rid()), path, f"Ổ gà{char}giữa đường"), reason=reason)
    add("control_chars", "zalgo-title", _set(good_item(rid()), "title", "Ổ gà" + "\u0301\u0300\u0303" * 10), reason="title: contains 30 stacked")

    for path, limit in LIMITS.items():
        unit = "0123456789" if path == "reporter.phone" else "Đường hỏng "
        text = (unit * (limit // len(unit) + 2))[:limit] + "9"  # never ends in a space the NFC step would strip
        reason = f"{path}: {limit + 1} characters, over the {limit}-character limit"
        add("over_long", path, _set(good_item(rid()), path, text), reason=reason)
        add("over_long", f"{path}-at-limit", _set(good_item(rid()), path, text[1:]), expect="accepted")
    add("over_long", "description-1mb", _set(good_item(rid()), "description", "x" * 1_000_000), reason="description: 1000000 characters")
    add("over_long", "category-code", _set(good_item(rid()), "category.code", "C" * 33), reason="category.code: String should have at most 32")
    add("over_long", "status", _set(good_item(rid()), "status", "s" * 65), reason="status: 65 characters")

    for name, (changes, reason) in BAD_ATTACHMENTS.items():
        add("attachments", name, {**good_item(rid()), "attachments": [attachment(1, **changes)]}, reason=reason)
    add("attachments", "second-of-three-bad", {**good_item(rid()), "attachments": [attachment(1), attachment(2, size=0), attachment(3)]},
        reason="attachments.1.size: the file is empty")
    add("attachments", "twenty-one", {**good_item(rid()), "attachments": [attachment(i) for i in range(1, 22)]},
        reason="attachments: 21 files, over the limit of 20")
    for media_type in ("image/jpeg", "image/png", "video/mp4", "IMAGE/JPEG", "image/jpeg; charset=binary"):
        add("attachments", f"allowed-{media_type}", {**good_item(rid()), "attachments": [attachment(1, mime_type=media_type)]}, expect="accepted")

    for name, value in BAD_IDS.items():
        item = good_item(value)
        item["description"] += f" (id case {name})"  # each item distinct, so the ledger row is found by its payload
        add("ids", name, item, reason="id:")
    for name, value in NON_OBJECTS.items():
        add("non_object", name, value, reason=f"item: expected a JSON object, got {type(value).__name__}")
    return cases


def all_cases(now: datetime | None = None) -> list[ReportCase]:
    now = now or datetime.now(VIETNAM_TZ)
    cases = hand_written(now) + generated(now)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    payloads = [json.dumps(c.item, sort_keys=True, allow_nan=True) for c in cases]
    assert len(payloads) == len(set(payloads)), "case items must be distinct"
    return cases


def is_finite_json(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(is_finite_json(v) for v in value.values())
    if isinstance(value, list):
        return all(is_finite_json(v) for v in value)
    return True
