"""What an Open311 GeoReport v2 server sends, how it becomes a canonical report, and what
goes back: the wire model of a request, its checks, the outcome form.

The client (``open311``) does the HTTP and the paging; everything here is pure. Error
documents and XML read as dicts are ``open311_answers``.

**What is tolerated, and what is quarantined.** Real servers send: ``"null"`` or ``""`` for a
missing value (read as missing); lat/long of 0,0, or only one of them (no position); numbers
as strings and ids or codes as numbers; times without a zone (Vietnam time, UTC+7); fields
nobody asked for (ignored); markup in text (removed); decomposed Vietnamese (made NFC).
Quarantined, each reason naming the field: no usable id, no ``service_code``, no usable
time, neither a ``service_name`` nor a description, a position outside Vietnam, text with
control characters or legacy encodings or over its limit, times in the future or before
2000, a ``media_url`` that is not http(s) or names a program. The same checks as the
citizen app's (``citizen_checks``), so one policy holds for every source.

**Administrative units.** A Vietnamese deployment may add ``province``, ``district``, ``ward``,
``province_code``, ``district_code``, ``ward_code`` and ``unit_scheme`` (``legacy`` or
``2025``) to a request (the sandbox does). Without ``unit_scheme`` the scheme is ``legacy``
when a district is given and ``2025`` otherwise; codes sent as numbers get back their
leading zeros. Without any of them ``Location.unit`` stays None and normalisation works from
the address.

**Reporter.** ``first_name``/``last_name``/``phone`` when a server sends them: the full name
is ``last_name first_name`` (Vietnamese order, family name first). Personal data: held
as ``SecretStr``, masked in quarantine records, never logged.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Annotated, Literal
from urllib.parse import unquote, urljoin, urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from paht_bridge.connectors.citizen_app import ID_PATTERN, WireDateTime, mask_personal
from paht_bridge.connectors.citizen_checks import (
    CATEGORY_CODE_CHARS,
    PHONE_CHARS,
    STATUS_CHARS,
    VIETNAM_BOX,
    attachment_problems,
    text_problems,
    time_problems,
)
from paht_bridge.connectors.limits import ConnectorLimits
from paht_bridge.canonical import (
    VIETNAM_TZ,
    AdminUnit,
    Attachment,
    CanonicalStatus,
    Location,
    Outcome,
    Report,
    Reporter,
    UnitScheme,
    nfc,
)
from paht_bridge.normalise.text import strip_markup
from paht_bridge.privacy import PERSONAL_KEYS as PERSONAL_FIELDS

CHANNEL = "open311"
CURSOR_CHARS = 255  # the ledger's cursor column
TITLE_CHARS = 80  # a title made from a description's first line
ONE_SECOND = timedelta(seconds=1)
#: Values real servers write for "missing".
NULL_WORDS = frozenset({"", "null"})
#: Widths of the GSO codes (province, district, commune), to restore leading zeros a JSON number lost.
CODE_WIDTHS = {"province_code": 2, "district_code": 3, "ward_code": 5}

#: What a citizen sees of each canonical status in Open311's two (OPEN/CLOSED, as mySociety's
#: updates extension takes them). As in the citizen app, the bridge's internal steps
#: (routed, refused by one agency and re-routed, recalled) are still "being handled": the
#: report is closed only once it has an answer, or was rejected as not a valid report.
OPEN311_STATUS: dict[CanonicalStatus, str] = {
    CanonicalStatus.RECEIVED: "OPEN",
    CanonicalStatus.REJECTED_INVALID: "CLOSED",
    CanonicalStatus.ROUTED: "OPEN",
    CanonicalStatus.DELIVERED: "OPEN",
    CanonicalStatus.ACCEPTED: "OPEN",
    CanonicalStatus.ASSIGNED: "OPEN",
    CanonicalStatus.IN_PROGRESS: "OPEN",
    CanonicalStatus.REFUSED_BY_AGENCY: "OPEN",
    CanonicalStatus.RECALLED: "OPEN",
    CanonicalStatus.ANSWERED: "CLOSED",
    CanonicalStatus.PUBLISHED: "CLOSED",
    CanonicalStatus.RATED: "CLOSED",
    CanonicalStatus.CLOSED: "CLOSED",
}

#: Media types by extension for what citizens attach; ``mimetypes`` misses some (HEIC, AMR).
MEDIA_TYPES = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp",
    "heic": "image/heic", "heif": "image/heif", "mp4": "video/mp4", "mov": "video/quicktime", "3gp": "video/3gpp",
    "mp3": "audio/mpeg", "m4a": "audio/mp4", "aac": "audio/aac", "amr": "audio/amr", "pdf": "application/pdf",
}
#: An Open311 ``media_url`` is a photo unless its name says otherwise.
DEFAULT_MEDIA_TYPE = "image/jpeg"


# -- wire model -----------------------------------------------------------------------------


def missing_as_none(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in NULL_WORDS else value


def number_as_text(value: object) -> object:
    """Ids and codes arrive as JSON numbers from some servers; a float or a bool is no id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.strip() if isinstance(value, str) else value


def _reference(value: str) -> str:
    if not re.match(ID_PATTERN, value):
        raise ValueError("not usable as a reference (1-128 letters, digits or . _ : / -, starting with a letter or digit)")
    return value


def _code(field: str) -> Callable[[object], object]:
    width = CODE_WIDTHS[field]

    def padded(value: object) -> object:
        # GSO codes are fixed-width: "6661" is ward 06661 that went through a number somewhere.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = value.strip()
            return value.zfill(width) if value.isdigit() else value
        return value

    return padded


def _scheme(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value.strip().lower() if isinstance(value, str) else value


Open311Id = Annotated[str, BeforeValidator(number_as_text), AfterValidator(_reference)]
UnitCode = Annotated[str, Field(pattern=r"^\d{1,6}$")]


class WireRequest(BaseModel):
    """One GeoReport v2 ``service_request`` with the Vietnamese unit extension; other fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    service_request_id: Open311Id
    status: str | None = None
    service_code: Annotated[str, BeforeValidator(number_as_text), Field(min_length=1, max_length=CATEGORY_CODE_CHARS)]
    service_name: str | None = None
    description: str | None = None
    requested_datetime: WireDateTime
    updated_datetime: WireDateTime | None = None
    address: str | None = None
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    long: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    media_url: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: Annotated[str | None, BeforeValidator(number_as_text)] = None
    unit_scheme: Annotated[Literal["legacy", "2025"] | None, BeforeValidator(_scheme)] = None
    province: str | None = None
    province_code: Annotated[UnitCode | None, BeforeValidator(_code("province_code"))] = None
    district: str | None = None
    district_code: Annotated[UnitCode | None, BeforeValidator(_code("district_code"))] = None
    ward: str | None = None
    ward_code: Annotated[UnitCode | None, BeforeValidator(_code("ward_code"))] = None

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data: object) -> object:
        if isinstance(data, dict):
            return {key: missing_as_none(value) for key, value in data.items()}
        return data

    @property
    def position(self) -> tuple[float, float] | None:
        """lat/long, or None for 0,0 (a missing GPS fix) or a lone coordinate."""
        if self.lat is None or self.long is None or (self.lat == 0 and self.long == 0):
            return None
        return self.lat, self.long


# -- pure mappings --------------------------------------------------------------------------


def request_from_wire(wire: WireRequest, source: str, base_url: str) -> Report:
    """The canonical report for one request; a relative ``media_url`` is made absolute."""
    description = strip_markup(wire.description) if wire.description else ""
    service_name = strip_markup(wire.service_name) if wire.service_name else ""
    title = service_name.strip() or first_line(description)
    return Report(
        source=source,
        source_id=wire.service_request_id,
        channel=CHANNEL,
        category=wire.service_code,
        title=title,
        description=description.strip() or title,
        created_at=wire.requested_datetime,
        updated_at=wire.updated_datetime or wire.requested_datetime,
        location=_location(wire),
        attachments=(_attachment(wire, base_url),) if wire.media_url else (),
        reporter=_reporter(wire),
        source_status=wire.status.strip() if wire.status else None,
    )


def first_line(text: str, limit: int = TITLE_CHARS) -> str:
    """The first non-empty line of ``text``, cut at a word within ``limit`` characters."""
    line = next((part.strip() for part in str(nfc(text)).splitlines() if part.strip()), "")
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rsplit(" ", 1)[0] or line[: limit - 1]
    return cut.rstrip(" ,.;:") + "…"


def _location(wire: WireRequest) -> Location:
    position = wire.position
    unit = None
    if wire.province or wire.district or wire.ward:
        scheme = wire.unit_scheme or ("legacy" if wire.district else "2025")
        legacy = scheme == "legacy"
        unit = AdminUnit(
            scheme=UnitScheme(scheme),
            province_code=wire.province_code, province=wire.province,
            district_code=wire.district_code if legacy else None, district=wire.district if legacy else None,
            ward_code=wire.ward_code, ward=wire.ward,
        )
    return Location(
        lat=position[0] if position else None,
        lon=position[1] if position else None,
        address=strip_markup(wire.address) if wire.address else None,
        unit=unit,
    )


def media_of(url: str, source_id: str) -> tuple[str, str, bool]:
    """(file name, media type, guessed) for a ``media_url``: named by its last path segment when
    that has a known extension, else ``<id>-media.jpg`` as a photo (``guessed``)."""
    try:
        segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    except ValueError:
        segment = ""
    extension = segment.rpartition(".")[2].lower() if "." in segment else ""
    media_type = MEDIA_TYPES.get(extension) or (mimetypes.guess_type(f"x.{extension}")[0] if extension else None)
    if media_type:
        return segment, media_type, False
    return f"{source_id}-media.jpg", DEFAULT_MEDIA_TYPE, True


def _attachment(wire: WireRequest, base_url: str) -> Attachment:
    url = absolute_url(base_url, wire.media_url or "")
    name, media_type, _ = media_of(url, wire.service_request_id)
    return Attachment(name=name, media_type=media_type, url=url)


def absolute_url(base_url: str, url: str) -> str:
    url = url.strip()
    return url if url.startswith(("http://", "https://")) else urljoin(base_url.rstrip("/") + "/", url)


def _reporter(wire: WireRequest) -> Reporter:
    parts = [str(nfc(p)) for p in (wire.last_name, wire.first_name) if p and str(nfc(p))]
    name = " ".join(parts) or None
    phone = wire.phone.strip() if wire.phone else None
    return Reporter(name=SecretStr(name) if name else None, phone=SecretStr(phone) if phone else None)


def check_request(wire: WireRequest, limits: ConnectorLimits, now: datetime) -> list[str]:
    """Every reason ``wire`` cannot become a report, each naming its field; empty when it can."""
    problems = [
        *text_problems("service_name", wire.service_name, limits.max_title_chars),
        *text_problems("description", wire.description, limits.max_description_chars),
        *text_problems("service_code", wire.service_code, CATEGORY_CODE_CHARS),
        *text_problems("status", wire.status, STATUS_CHARS),
        *text_problems("address", wire.address, limits.max_address_chars),
        *time_problems("requested_datetime", wire.requested_datetime, now, limits),
    ]
    if not _plain(wire.service_name) and not _plain(wire.description):
        problems.append("service_name, description: both empty once markup is removed: nothing to forward")
    if wire.updated_datetime is not None and wire.updated_datetime != wire.requested_datetime:
        problems += time_problems("updated_datetime", wire.updated_datetime, now, limits)
    position = wire.position
    if position is not None:
        (lat_min, lat_max), (lng_min, lng_max) = VIETNAM_BOX["lat"], VIETNAM_BOX["lng"]
        lat, lng = position
        if not (lat_min <= lat <= lat_max and lng_min <= lng <= lng_max):
            problems.append(f"lat/long: {lat:.4f}, {lng:.4f} is outside Vietnam (lat {lat_min}–{lat_max}, long {lng_min}–{lng_max})")
    for part in ("province", "district", "ward"):
        problems += text_problems(part, getattr(wire, part), limits.max_name_chars)
    # Personal data: checked for what breaks storage only.
    problems += text_problems("first_name", wire.first_name, limits.max_name_chars, legacy=False)
    problems += text_problems("last_name", wire.last_name, limits.max_name_chars, legacy=False)
    problems += text_problems("phone", wire.phone, PHONE_CHARS, legacy=False)
    if wire.media_url:
        name, media_type, _ = media_of(wire.media_url.strip(), wire.service_request_id)
        declared = SimpleNamespace(mime_type=media_type, size=None, file_name=name, download_url=wire.media_url.strip())
        problems += [p.replace("media_url.download_url", "media_url").replace("media_url.file_name", "media_url")
                     for p in attachment_problems("media_url", declared, limits)]  # type: ignore[arg-type]
    return problems


def _plain(text: str | None) -> str:
    return str(nfc(strip_markup(text))) if text else ""


def update_id_for(outcome: Outcome) -> str:
    """The update's id, a pure function of the outcome: publishing it again is a repeat the
    server recognises (by the outcome's key when it has one, else by what it says), while a
    changed answer for the same status is a new update."""
    said = outcome.key or "|".join((outcome.status.value, outcome.answer, outcome.answered_by,
                                    outcome.answered_at.astimezone(VIETNAM_TZ).isoformat()))
    digest = hashlib.sha256(said.encode("utf-8")).hexdigest()[:10]
    return f"paht-{outcome.source_id}-{outcome.status.value}-{digest}"


def outcome_form(outcome: Outcome) -> dict[str, str]:
    """The update as mySociety's ``POST servicerequestupdates`` takes it (without credentials).
    ``agency_responsible`` is an extension field naming the answering unit; servers ignore it."""
    return {
        "service_request_id": outcome.source_id,
        "update_id": update_id_for(outcome),
        "status": OPEN311_STATUS[outcome.status],
        "description": outcome.answer,
        "agency_responsible": outcome.answered_by,
        "updated_datetime": outcome.answered_at.astimezone(VIETNAM_TZ).isoformat(),
    }


def masked_raw(raw: object) -> str:
    """``mask_personal`` with Open311's own personal fields (first/last name, phone, email) masked too."""
    if isinstance(raw, dict):
        raw = {key: ("***" if str(key).lower() in PERSONAL_FIELDS and missing_as_none(value) is not None else value)
               for key, value in raw.items()}
    return mask_personal(raw)
