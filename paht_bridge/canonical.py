"""The canonical model every part of the bridge speaks.

Connectors turn wire formats into these models and back; the ledger stores them; the
transforms in this package map them between a source's and a target's terms. Nothing
past a connector passes a loose dict around.

Personal data (a reporter's name and phone) is held in ``SecretStr`` so that a stray
``repr``, log line or XCom never shows it.
"""

from __future__ import annotations

import unicodedata
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

VIETNAM_TZ = timezone(timedelta(hours=7), "ICT")


def nfc(value: object) -> object:
    """Vietnamese text arrives precomposed or decomposed; compare and store it as NFC."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value).strip()
    return value


Text = Annotated[str, BeforeValidator(nfc)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UnitScheme(StrEnum):
    """Which administrative map a code belongs to: code 44 was Quảng Bình, is now Quảng Trị."""

    LEGACY = "legacy"  # 63 provinces, three levels (province / district / commune), before 1 July 2025
    CURRENT = "2025"  # 34 provinces, two levels (province / commune-level ward)


class AdminUnit(Model):
    scheme: UnitScheme
    province_code: str | None = None
    province: Text | None = None
    district_code: str | None = None  # legacy scheme only
    district: Text | None = None
    ward_code: str | None = None
    ward: Text | None = None


class Location(Model):
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: Text | None = None
    unit: AdminUnit | None = None


class Attachment(Model):
    """A file attached to a report, still at its source."""

    name: Text
    media_type: str
    size: int | None = Field(default=None, ge=0)
    sha256: str | None = None
    url: str  # where the source connector fetches it (absolute, or relative to the source)


class LocalAttachment(Model):
    """An attachment fetched into a local spool file, ready to send to a target."""

    name: Text
    media_type: str
    size: int
    sha256: str
    path: Path


class Reporter(Model):
    """Personal data (Decree 13/2023, Law 91/2025): masked everywhere, encrypted at rest."""

    name: SecretStr | None = None
    phone: SecretStr | None = None


class Report(Model):
    """A phản ánh hiện trường (field report) as a citizen app holds it."""

    source: str  # the citizen app's name in the deployment mapping
    source_id: str
    channel: str = "app"  # app, portal, fanpage, hotline
    category: Text  # the source's category code
    title: Text
    description: Text
    created_at: AwareDatetime
    updated_at: AwareDatetime
    location: Location = Location()
    attachments: tuple[Attachment, ...] = ()
    reporter: Reporter = Reporter()
    source_status: str | None = None

    @property
    def key(self) -> str:
        return f"{self.source}:{self.source_id}"


class CanonicalStatus(StrEnum):
    """Where a report stands. Overdue is a flag computed from the deadline, not a status."""

    RECEIVED = "received"
    REJECTED_INVALID = "rejected_invalid"
    ROUTED = "routed"
    DELIVERED = "delivered"
    ACCEPTED = "accepted"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    ANSWERED = "answered"
    REFUSED_BY_AGENCY = "refused_by_agency"
    RECALLED = "recalled"
    PUBLISHED = "published"
    RATED = "rated"
    CLOSED = "closed"


#: Progress order of the statuses a document passes through at an agency; an update to an
#: earlier stage never overwrites a later one.
DOCUMENT_PROGRESS: dict[CanonicalStatus, int] = {
    CanonicalStatus.DELIVERED: 1,
    CanonicalStatus.ACCEPTED: 2,
    CanonicalStatus.ASSIGNED: 3,
    CanonicalStatus.IN_PROGRESS: 4,
    CanonicalStatus.ANSWERED: 5,
    CanonicalStatus.REFUSED_BY_AGENCY: 5,
    CanonicalStatus.RECALLED: 5,
}


class Routing(Model):
    """Which agency handles a report, in which document system, by when."""

    agency_code: str  # organisation code (Decision 20/2020/QĐ-TTg)
    agency_name: Text
    target: str  # the document system's name in the deployment mapping
    deadline: AwareDatetime
    priority: int = Field(default=0, ge=0, le=4)  # edXML: 0 normal … 4 timed express
    target_category: str


class DocumentRecord(Model):
    """What a document system receives for one report and one agency."""

    external_ref: str  # deterministic: the key that makes creation idempotent
    report_key: str
    agency_code: str
    agency_name: Text
    sender_code: str  # the IOC's organisation code
    sender_name: Text
    subject: Text
    content: Text
    category: str
    priority: int
    issued_at: AwareDatetime
    due_date: date
    location: Location = Location()
    reporter: Reporter = Reporter()  # empty unless the deployment's privacy rules allow it


class DocumentReceipt(Model):
    external_ref: str
    document_id: str
    created: bool = True  # False when the target already had it (an idempotent repeat)


class RawStatusChange(Model):
    """A status change in the target's own codes; the mapping turns it canonical."""

    external_ref: str
    document_id: str
    raw_code: str
    changed_at: AwareDatetime
    answer: Text | None = None
    answered_by: Text | None = None


class StatusChange(Model):
    external_ref: str
    document_id: str
    status: CanonicalStatus
    raw_code: str
    changed_at: AwareDatetime
    answer: Text | None = None
    answered_by: Text | None = None


class Outcome(Model):
    """The public answer published back to the citizen app."""

    source_id: str
    status: CanonicalStatus
    answer: Text
    answered_by: Text
    answered_at: AwareDatetime
    #: The same for every attempt to publish one answer (the bridge derives it from the
    #: delivery answered): a source keeps one outcome per key, so a publication repeated
    #: after a crash between the call and the ledger's record is recognised as a repeat.
    key: str | None = None


class RatingLevel(StrEnum):
    SATISFIED = "satisfied"
    NOT_SATISFIED = "not_satisfied"


class Rating(Model):
    rating_id: str
    source: str
    source_id: str
    level: RatingLevel
    comment: Text | None = None
    rated_at: AwareDatetime


class Quarantined(Model):
    """An input that could not become a canonical model, kept with why."""

    source: str
    source_id: str | None = None
    reason: str
    raw: str  # the payload with personal data masked: safe to show
    payload: SecretStr | None = None  # the payload exactly as received, kept encrypted for replay after a fix


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a cursor-driven feed. ``next_cursor`` is where to resume after it."""

    items: list[T]
    quarantined: list[Quarantined] = []
    next_cursor: str | None
    has_more: bool


def vietnam_now() -> datetime:
    return datetime.now(VIETNAM_TZ)


def in_vietnam(value: datetime | None) -> datetime | None:
    """A stored time as IOC staff read it (Vietnam time); None stays None."""
    return value.astimezone(VIETNAM_TZ) if value else None
