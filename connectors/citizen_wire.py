"""A citizen app's JSON as the bridge reads it, and how it maps to the canonical model.

The wire models below check the shape of what the app sends (types, formats, an id usable
as a reference); ``citizen_checks`` checks what a shape cannot (limits, legacy encodings,
times, places). The mappings are pure: a wire model in, a canonical model out, and back
for the answers the bridge publishes. Nothing past the client (``citizen_app``) sees these
shapes. Tolerated: fields the app added (ignored); a time without a zone (read as Vietnam
time, UTC+7, as Vietnamese servers write local time).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator

from paht_bridge.connectors.citizen_checks import CATEGORY_CODE_CHARS
from paht_bridge.connectors.content import media_type_of
from paht_bridge.canonical import (
    VIETNAM_TZ,
    AdminUnit,
    Attachment,
    CanonicalStatus,
    Location,
    Outcome,
    Rating,
    RatingLevel,
    Report,
    Reporter,
    UnitScheme,
    nfc,
)
from paht_bridge.normalise.text import strip_markup

#: The app's rating levels. "rat_hai_long" (very satisfied) is not sent by every app; accept it.
RATING_LEVELS: dict[str, RatingLevel] = {
    "hai_long": RatingLevel.SATISFIED,
    "rat_hai_long": RatingLevel.SATISFIED,
    "khong_hai_long": RatingLevel.NOT_SATISFIED,
}

#: Which of the app's statuses a canonical status is shown as. The app only knows four; the
#: bridge's internal steps (routed, refused by one agency, recalled...) look like "being
#: handled" to a citizen.
OUTCOME_STATUS: dict[CanonicalStatus, str] = {
    CanonicalStatus.RECEIVED: "moi_tiep_nhan",
    CanonicalStatus.REJECTED_INVALID: "khong_hop_le",
    CanonicalStatus.ROUTED: "dang_xu_ly",
    CanonicalStatus.DELIVERED: "dang_xu_ly",
    CanonicalStatus.ACCEPTED: "dang_xu_ly",
    CanonicalStatus.ASSIGNED: "dang_xu_ly",
    CanonicalStatus.IN_PROGRESS: "dang_xu_ly",
    CanonicalStatus.REFUSED_BY_AGENCY: "dang_xu_ly",
    CanonicalStatus.RECALLED: "dang_xu_ly",
    CanonicalStatus.ANSWERED: "da_xu_ly",
    CanonicalStatus.PUBLISHED: "da_xu_ly",
    CanonicalStatus.RATED: "da_xu_ly",
    CanonicalStatus.CLOSED: "da_xu_ly",
}

#: An id becomes part of a document reference (``PAHT-<source>-<id>``), a URL path and a
#: ledger key (128 characters): letters, digits and a few separators only.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


# -- wire models --------------------------------------------------------------------------


def _iso_datetime(value: object) -> object:
    """The app writes ISO 8601 strings; a bare number would silently parse as Unix time."""
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 date-time string")
    return value


def _vietnam_if_naive(value: datetime) -> datetime:
    """An offset-less time comes from a server on Vietnam time; read as UTC it would be 7 hours off."""
    return value.replace(tzinfo=VIETNAM_TZ) if value.tzinfo is None else value


WireDateTime = Annotated[datetime, BeforeValidator(_iso_datetime), AfterValidator(_vietnam_if_naive)]


class _Wire(BaseModel):
    # The app may add fields at any release; only the ones we read are checked.
    model_config = ConfigDict(extra="ignore", frozen=True)


def _lower_stripped(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _reference_id(value: str) -> str:
    if not re.match(ID_PATTERN, value):
        raise ValueError("not usable as a reference (1-128 letters, digits or . _ : / -, starting with a letter or digit)")
    return value


ReportId = Annotated[str, AfterValidator(_reference_id)]


class WireCategory(_Wire):
    code: str = Field(min_length=1, max_length=CATEGORY_CODE_CHARS)
    name: str | None = None


class WireAdminUnit(_Wire):
    scheme: Literal["legacy", "2025"]
    province: str | None = None
    district: str | None = None
    ward: str | None = None


class WireLocation(_Wire):
    lat: float | None = Field(default=None, ge=-90, le=90, allow_inf_nan=False)
    lng: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    address: str | None = None
    admin_unit: WireAdminUnit | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> WireLocation:
        if (self.lat is None) != (self.lng is None):
            raise ValueError("lat and lng must be given together")
        return self


class WireReporter(_Wire):
    full_name: str | None = None
    phone: str | None = None


class WireAttachment(_Wire):
    id: str = Field(min_length=1, max_length=128)
    file_name: str = Field(min_length=1)
    mime_type: str = Field(min_length=1)
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    download_url: str = Field(min_length=1)


class WireReport(_Wire):
    id: ReportId
    channel: Annotated[str, BeforeValidator(_lower_stripped), Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] = "app"
    category: WireCategory
    title: str
    description: str
    status: str | None = None
    created_at: WireDateTime
    updated_at: WireDateTime | None = None
    location: WireLocation | None = None
    reporter: WireReporter | None = None
    attachments: list[WireAttachment] = []


class WireRating(_Wire):
    id: ReportId
    report_id: ReportId
    level: str
    comment: str | None = None
    rated_at: WireDateTime


class WirePaging(_Wire):
    # The cursor is stored in the ledger (255 characters) and sent back as a query parameter.
    next_cursor: str | None = Field(default=None, max_length=255, pattern=r"^[\x21-\x7e]+$")
    has_more: bool


class WirePage(_Wire):
    data: list[Any]  # items are validated one by one so a bad one is quarantined alone
    paging: WirePaging


class WireOutcome(_Wire):
    status: str
    answer: str
    answer_unit: str
    answered_at: datetime


class WireOutcomeAck(_Wire):
    report_id: str
    outcome_id: str
    created: bool


# -- pure mappings ------------------------------------------------------------------------


def report_from_wire(wire: WireReport, source: str) -> Report:
    """The canonical report for one wire report. Units are passed on as the app named them;
    resolving them to codes is the normalisation step's job. Markup leaves the text here
    (``check_report`` has already refused what cannot be cleaned)."""
    return Report(
        source=source,
        source_id=wire.id,
        channel=wire.channel,
        category=wire.category.code,
        title=strip_markup(wire.title),
        description=strip_markup(wire.description),
        created_at=wire.created_at,
        updated_at=wire.updated_at or wire.created_at,
        location=_location(wire.location),
        attachments=tuple(_attachment(a) for a in wire.attachments),
        reporter=_reporter(wire.reporter),
        source_status=wire.status,
    )


def _location(wire: WireLocation | None) -> Location:
    if wire is None:
        return Location()
    unit = None
    if wire.admin_unit is not None:
        admin = wire.admin_unit
        unit = AdminUnit(scheme=UnitScheme(admin.scheme), province=admin.province, district=admin.district, ward=admin.ward)
    address = strip_markup(wire.address) if wire.address else wire.address
    return Location(lat=wire.lat, lon=wire.lng, address=address, unit=unit)


def _attachment(wire: WireAttachment) -> Attachment:
    return Attachment(
        name=wire.file_name,
        media_type=media_type_of(wire.mime_type),
        size=wire.size,
        sha256=wire.sha256.lower() if wire.sha256 else None,
        url=wire.download_url,
    )


def _reporter(wire: WireReporter | None) -> Reporter:
    if wire is None:
        return Reporter()
    name = nfc(wire.full_name) if wire.full_name else None
    phone = wire.phone.strip() if wire.phone else None
    return Reporter(name=SecretStr(name) if name else None, phone=SecretStr(phone) if phone else None)


def rating_from_wire(wire: WireRating, source: str) -> Rating:
    level = RATING_LEVELS.get(wire.level.strip().lower())
    if level is None:
        # Guessing a level would put a wrong satisfaction rate in the statistics.
        raise ValueError(f"level: unknown rating level {wire.level[:40]!r}")
    return Rating(
        rating_id=wire.id,
        source=source,
        source_id=wire.report_id,
        level=level,
        comment=strip_markup(wire.comment) if wire.comment else None,
        rated_at=wire.rated_at,
    )


def outcome_to_wire(outcome: Outcome) -> WireOutcome:
    return WireOutcome(
        status=OUTCOME_STATUS[outcome.status],
        answer=outcome.answer,
        answer_unit=outcome.answered_by,
        answered_at=outcome.answered_at,
    )
