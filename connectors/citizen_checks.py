"""Checks a citizen app's report must pass beyond its wire shape, each failure naming its field.

The wire models in ``citizen_wire`` check types; these check meaning and size against the
connector's ``ConnectorLimits``: times, coordinates, text (control characters, legacy
encodings, lengths) and declared attachments. Each returns a list of reasons (empty when
all is well), so a quarantined report says everything that is wrong with it at once.
Values are never quoted (they may be personal data); times and coordinates are, as they
say what is wrong and identify nobody.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from paht_bridge.connectors.content import media_type_of
from paht_bridge.connectors.limits import ConnectorLimits
from paht_bridge.canonical import nfc
from paht_bridge.normalise.legacy_charsets import LegacyText, convert_legacy_text
from paht_bridge.normalise.text import strip_markup, text_problem, unusable_characters

if TYPE_CHECKING:
    from paht_bridge.connectors.citizen_wire import WireAttachment, WireLocation, WireRating, WireReport

#: Vietnam's mainland and near islands (Phú Quốc, Côn Đảo, Cát Bà...). A report placed
#: outside is a wrong GPS fix or a wrong sign, not a place an agency can go to.
VIETNAM_BOX = {"lat": (8.0, 23.5), "lng": (102.0, 110.0)}
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)  # before the apps existed: a zeroed clock
CATEGORY_CODE_CHARS = 32  # the ledger's column
STATUS_CHARS = 64
PHONE_CHARS = 32
URL_CHARS = 2048
#: Extensions a citizen's photo, video or voice note never has; an agency's officer might open one.
PROGRAM_EXTENSIONS = frozenset({
    "exe", "dll", "scr", "com", "bat", "cmd", "msi", "ps1", "vbs", "vbe", "js", "jse", "wsf", "hta", "jar",
    "apk", "sh", "php", "html", "htm", "xhtml", "svg", "lnk", "reg", "cpl",
})


#: The free-text fields a legacy-text converter may rewrite (issue 4): what people wrote and
#: the names of places and people. Ids, codes, URLs and phone numbers are never converted.
LEGACY_TEXT_FIELDS = (
    ("title",), ("description",), ("comment",), ("category", "name"), ("location", "address"),
    ("location", "admin_unit", "province"), ("location", "admin_unit", "district"), ("location", "admin_unit", "ward"),
    ("reporter", "full_name"),
)


def convert_legacy_fields(raw: object, mode: LegacyText) -> tuple[object, dict[str, str]]:
    """``raw`` (a decoded JSON item) with its legacy-encoded free text converted as ``mode``
    allows, and which fields were converted from what ("title" → "tcvn3"). The item itself
    is not changed, so a quarantined item still shows what the app sent."""
    if mode == "reject" or not isinstance(raw, dict):
        return raw, {}
    converted: dict[str, str] = {}
    item = raw
    for path in LEGACY_TEXT_FIELDS:
        parents = [item]
        for key in path[:-1]:
            child = parents[-1].get(key)
            if not isinstance(child, dict):
                break
            parents.append(child)
        else:
            value = parents[-1].get(path[-1])
            if isinstance(value, str) and (fixed := convert_legacy_text(value, mode)):
                # copy along the path only, leaving the app's item as it came
                item = copies = dict(item)
                for key in path[:-1]:
                    copies[key] = dict(copies[key])
                    copies = copies[key]
                copies[path[-1]] = fixed[0]
                converted[".".join(path)] = fixed[1]
    return item, converted


def check_report(wire: WireReport, limits: ConnectorLimits, now: datetime) -> list[str]:
    """Every reason ``wire`` cannot become a report, each naming its field; empty when it can."""
    problems = [
        *text_problems("title", wire.title, limits.max_title_chars),
        *text_problems("description", wire.description, limits.max_description_chars),
        *text_problems("category.code", wire.category.code, CATEGORY_CODE_CHARS),
        *time_problems("created_at", wire.created_at, now, limits),
    ]
    if not _plain(wire.title) and not _plain(wire.description):
        problems.append("title, description: both empty once markup is removed: nothing to forward")
    if wire.status is not None:
        problems += text_problems("status", wire.status, STATUS_CHARS)
    if wire.updated_at is not None and wire.updated_at != wire.created_at:
        problems += time_problems("updated_at", wire.updated_at, now, limits)
    if wire.location is not None:
        problems += _location_problems(wire.location, limits)
    if wire.reporter is not None:
        # Personal data: checked for what breaks storage only; a foreign letter in a name is fine.
        problems += text_problems("reporter.full_name", wire.reporter.full_name, limits.max_name_chars, legacy=False)
        problems += text_problems("reporter.phone", wire.reporter.phone, PHONE_CHARS, legacy=False)
    if len(wire.attachments) > limits.max_attachments:
        problems.append(f"attachments: {len(wire.attachments)} files, over the limit of {limits.max_attachments}")
    for index, attachment in enumerate(wire.attachments):
        problems += attachment_problems(f"attachments.{index}", attachment, limits)
    return problems


def check_rating(wire: WireRating, limits: ConnectorLimits, now: datetime) -> list[str]:
    return [
        *text_problems("comment", wire.comment, limits.max_comment_chars),
        *time_problems("rated_at", wire.rated_at, now, limits),
    ]


def _plain(text: str | None) -> str:
    return str(nfc(strip_markup(text))) if text else ""


def text_problems(field: str, value: str | None, max_chars: int, *, legacy: bool = True) -> list[str]:
    """What is wrong with one text field once NFC and without markup, if anything."""
    if not value:
        return []
    text = _plain(value)
    why = text_problem(text, legacy=legacy)
    if why:
        return [f"{field}: {why}"]
    if len(text) > max_chars:
        return [f"{field}: {len(text)} characters, over the {max_chars}-character limit"]
    return []


def time_problems(field: str, value: datetime, now: datetime, limits: ConnectorLimits) -> list[str]:
    """A time in the future (beyond the clock-skew allowance) or before the apps existed."""
    skew = timedelta(seconds=limits.max_clock_skew_seconds)
    try:
        if value > now + skew:
            return [f"{field}: {value.isoformat()} is in the future (more than {_duration(skew)} ahead of the bridge's clock)"]
        if value < EARLIEST_TIME:
            return [f"{field}: {value.isoformat()} is before {EARLIEST_TIME.year}: not a real report time"]
    except OverflowError:  # year 1 or 9999 with an offset cannot even be compared
        return [f"{field}: out of the range of real times"]
    return []


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} minutes" if seconds >= 120 else f"{seconds} seconds"


def _location_problems(location: WireLocation, limits: ConnectorLimits) -> list[str]:
    problems: list[str] = []
    lat, lng = location.lat, location.lng
    if lat is not None and lng is not None:
        (lat_min, lat_max), (lng_min, lng_max) = VIETNAM_BOX["lat"], VIETNAM_BOX["lng"]
        if lat == 0 and lng == 0:
            problems.append("location: lat/lng 0,0 is not a place (a missing GPS fix)")
        elif not (lat_min <= lat <= lat_max and lng_min <= lng <= lng_max):
            problems.append(
                f"location: lat {lat:.4f}, lng {lng:.4f} is outside Vietnam "
                f"(lat {lat_min}–{lat_max}, lng {lng_min}–{lng_max})"
            )
    problems += text_problems("location.address", location.address, limits.max_address_chars)
    if location.admin_unit is not None:
        for part in ("province", "district", "ward"):
            value = getattr(location.admin_unit, part)
            problems += text_problems(f"location.admin_unit.{part}", value, limits.max_name_chars)
    return problems


def attachment_problems(field: str, attachment: WireAttachment, limits: ConnectorLimits) -> list[str]:
    """An attachment we would refuse to fetch or pass on, judged by what the app declares."""
    problems: list[str] = []
    media_type = media_type_of(attachment.mime_type)
    if media_type not in limits.allowed_media_types:
        problems.append(f"{field}.mime_type: {media_type[:60]!r} is not an allowed attachment type")
    if attachment.size == 0:
        problems.append(f"{field}.size: the file is empty (0 bytes)")
    elif attachment.size is not None and attachment.size > limits.max_attachment_bytes:
        problems.append(f"{field}.size: {attachment.size} bytes, over the {limits.max_attachment_bytes}-byte limit")
    name_problems = text_problems(f"{field}.file_name", attachment.file_name, limits.max_file_name_chars)
    name = attachment.file_name
    if not name_problems and ("/" in name or "\\" in name or name.strip(". ") == ""):
        name_problems.append(f"{field}.file_name: a path, not a file name")
    extension = name.rpartition(".")[2].strip().lower() if "." in name else ""
    if not name_problems and extension in PROGRAM_EXTENSIONS:
        name_problems.append(f"{field}.file_name: extension .{extension} is not a photo, video or voice note")
    return problems + name_problems + _url_problems(f"{field}.download_url", attachment.download_url)


def _url_problems(field: str, url: str) -> list[str]:
    if len(url) > URL_CHARS:
        return [f"{field}: {len(url)} characters, over the {URL_CHARS}-character limit"]
    if unusable_characters(url) or any(c.isspace() for c in url):
        return [f"{field}: contains spaces or control characters"]
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return [f"{field}: not a URL"]
    if scheme and scheme not in ("http", "https"):
        return [f"{field}: scheme {scheme[:20]!r} is not allowed (http or https only)"]
    return []
