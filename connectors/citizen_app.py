"""Client for a citizen app's open API (QuangTri IOC, Điện Biên Smart...): a ``CitizenSource``.

It pulls reports (phản ánh hiện trường, field reports) and ratings (đánh giá) from the
app's cursor-paged feeds, streams attachments, and publishes the agencies' public answers
(kết quả xử lý). The app's JSON is read into the wire models below and mapped to the
canonical model here; nothing past this module sees the wire shape. A report the app
sends malformed is quarantined with the reason and the rest of its page goes on, so one
bad record never blocks a province's feed.

What is quarantined, and what is tolerated (each reason names the field and the problem):

- quarantined: a missing or wrongly typed field; an id that cannot serve as a reference;
  coordinates at 0,0 or outside Vietnam's box (lat 8.0–23.5, lng 102.0–110.0; the
  Paracel and Spratly islands lie outside it) or not finite; a time more than
  ``max_clock_skew_seconds`` in the future or before 2000; text with control characters,
  unpaired surrogates, or legacy-encoded Vietnamese (TCVN3/VNI/VISCII, or UTF-8 read as
  cp1252) that the ``legacy_text`` setting does not convert; text over its length limit;
  an attachment that is declared empty, over the size limit, of a type not allowed, named
  like a program, or fetched from a non-HTTP URL. Limits come from ``ConnectorLimits``;
  the checks beyond the wire shape live in ``citizen_checks``.
- tolerated: fields the app added (ignored); a time without a zone (read as Vietnam time,
  UTC+7, as Vietnamese servers write local time); decomposed (NFD) text (made NFC); HTML
  in text (tags removed, ``<script>``/``<style>`` with their content, the report kept:
  see ``paht_bridge.normalise.text``).

An attachment's bytes are checked when it is fetched (at delivery): an empty file, one
over the limit, or one whose first bytes are not its declared type (an HTML page or a
program labelled ``image/jpeg``) is a ``RejectedContent`` error.

Wire format in brief (see ``paht_bridge.sandbox.citizen_app`` for the stand-in):
``GET /api/v1/reports?since=&limit=`` and ``GET /api/v1/ratings?since=&limit=`` answer
``{"data": [...], "paging": {"next_cursor", "has_more"}}``; ``GET /api/v1/attachments/{id}``
streams a file; ``POST /api/v1/reports/{id}/outcome`` takes an answer. ``X-API-Key`` authenticates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import requests
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, model_validator

from paht_bridge.connectors.citizen_checks import CATEGORY_CODE_CHARS, check_rating, check_report, convert_legacy_fields
from paht_bridge.connectors.content import SNIFF_BYTES, media_type_of, mismatch
from paht_bridge.connectors.errors import MalformedResponse, RejectedContent, TransientError
from paht_bridge.connectors.http import DEFAULT_TIMEOUT, HttpTransport
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.connectors.messages import printable
from paht_bridge.canonical import (
    VIETNAM_TZ,
    AdminUnit,
    Attachment,
    CanonicalStatus,
    Location,
    Outcome,
    Page,
    Quarantined,
    Rating,
    RatingLevel,
    Report,
    Reporter,
    UnitScheme,
    nfc,
    vietnam_now,
)
from paht_bridge.normalise.legacy_charsets import LegacyText
from paht_bridge.normalise.text import strip_markup
from paht_bridge.privacy import PERSONAL_KEYS

log = logging.getLogger(__name__)


def page_log_level(items: list[Any], quarantined: list[Any]) -> int:
    """INFO for a page that brought something, DEBUG for an empty one: the triggerer's watch
    reads every source every 15 s, and a quiet province should not fill its log."""
    return logging.INFO if items or quarantined else logging.DEBUG


API_KEY_HEADER = "X-API-Key"
REPORTS_PATH = "/api/v1/reports"
RATINGS_PATH = "/api/v1/ratings"
STREAM_CHUNK = 64 * 1024
MAX_RAW_CHARS = 64 * 1024  # a quarantined payload is kept for people to read, not as an archive

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

#: A Vietnamese phone number written anywhere in free text (0xx or +84, optional separators).
PHONE_PATTERN = re.compile(r"(?<![\d.])(?:\+?84|0)(?:[\s.-]?\d){8,10}(?!\d)")

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


def mask_personal(raw: object) -> str:
    """The raw payload as JSON text with personal data masked, for a quarantine record.

    Never fails: an item too deep or too odd to print is described instead, and unpaired
    surrogates are escaped so the text can always be stored.
    """
    try:
        text = json.dumps(_masked(raw), ensure_ascii=False, default=str)
    except (RecursionError, ValueError, TypeError) as exc:
        return f"[item not printable: {exc.__class__.__name__}]"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = PHONE_PATTERN.sub("[phone]", text)  # numbers people type into descriptions
    return text if len(text) <= MAX_RAW_CHARS else text[:MAX_RAW_CHARS] + "…[truncated]"


def payload_text(raw: object) -> str | None:
    """The item as received, as JSON text, for the encrypted replay copy (None if unprintable)."""
    try:
        text = json.dumps(raw, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(raw, ensure_ascii=True)  # unpaired surrogates: escaped, still the same JSON
    except (RecursionError, ValueError, TypeError):
        return None
    return text


def clean_reason(reason: str, limit: int = 2000) -> str:
    """A reason safe to store and show: printable, bounded."""
    text = printable(reason)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _masked(value: object, personal: bool = False) -> object:
    if isinstance(value, dict):
        return {k: _masked(v, personal or str(k).lower() in PERSONAL_KEYS) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, personal) for v in value]
    if personal and value is not None:
        return _mask_value(value)
    return value


def _mask_value(value: object) -> str:
    digits = re.sub(r"\D", "", str(value))
    if isinstance(value, str) and len(digits) >= 8:
        return "*" * (len(digits) - 2) + digits[-2:]  # the last two digits help staff match a call
    return "***"


def describe_errors(exc: ValidationError, prefix: str = "") -> str:
    """Which fields failed and why, without the input values (they may be personal data)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(p) for p in error["loc"]) or "item"
        parts.append(f"{prefix}{where}: {error['msg']}")
    return "; ".join(parts)


# -- the client ---------------------------------------------------------------------------

W = TypeVar("W", bound=_Wire)
C = TypeVar("C")


class CitizenAppClient:
    """A ``CitizenSource`` over one citizen app's open API.

    ``name`` is the app's name in the deployment mapping (it becomes ``Report.source``);
    ``base_url`` and ``api_key`` come from the Airflow Connection (host, password), and
    ``limits`` from its extra. ``legacy_text`` (``Source.legacy_text``: reject, tcvn3, vni,
    viscii or auto) says whether legacy-encoded Vietnamese is converted (issue 4) or
    quarantined; ``clock`` is what "the
    future" is measured from. The constructor does no I/O; one HTTP session is reused.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        limits: ConnectorLimits = DEFAULT_LIMITS,
        legacy_text: LegacyText = "reject",
        clock: Callable[[], datetime] = vietnam_now,
    ) -> None:
        self.name = name
        self.limits = limits
        self._legacy_text = legacy_text
        self._clock = clock
        headers = {"Accept": "application/json", "User-Agent": "paht-bridge"}
        if api_key:
            headers[API_KEY_HEADER] = api_key
        self._http = HttpTransport(name, base_url, timeout=timeout, headers=headers, limits=limits)

    # feeds

    def reports_since(self, cursor: str | None, page_size: int = 100) -> Iterator[Page[Report]]:
        """Reports changed after ``cursor``, one page at a time; bad items are quarantined."""
        for page, next_cursor, has_more in self._feed(REPORTS_PATH, cursor, page_size, "reports_since"):
            items, quarantined = self.parse_reports(page)
            log.log(
                page_log_level(items, quarantined),
                "citizen_app.reports_page source=%s items=%d quarantined=%d next_cursor=%s has_more=%s",
                self.name, len(items), len(quarantined), next_cursor, has_more,
            )
            yield Page[Report](items=items, quarantined=quarantined, next_cursor=next_cursor, has_more=has_more)

    def ratings_since(self, cursor: str | None, page_size: int = 100) -> Iterator[Page[Rating]]:
        """Citizens' ratings after ``cursor``, one page at a time; bad items are quarantined."""
        for page, next_cursor, has_more in self._feed(RATINGS_PATH, cursor, page_size, "ratings_since"):
            items, quarantined = self.parse_ratings(page)
            log.log(
                page_log_level(items, quarantined),
                "citizen_app.ratings_page source=%s items=%d quarantined=%d next_cursor=%s has_more=%s",
                self.name, len(items), len(quarantined), next_cursor, has_more,
            )
            yield Page[Rating](items=items, quarantined=quarantined, next_cursor=next_cursor, has_more=has_more)

    def _feed(self, path: str, cursor: str | None, page_size: int, operation: str) -> Iterator[tuple[list[Any], str | None, bool]]:
        """Walk a cursor feed lazily, so the caller commits each page before the next is asked for."""
        while True:
            params: dict[str, str | int] = {"limit": page_size}
            if cursor is not None:
                params["since"] = cursor
            response = self._http.request("GET", path, operation=operation, params=params)
            page = self._parse(response, WirePage, operation=operation)
            next_cursor = page.paging.next_cursor or cursor
            if page.paging.has_more and (next_cursor is None or next_cursor == cursor):
                # Following it would fetch the same page for ever.
                raise MalformedResponse(f"has_more with a cursor that did not advance ({cursor!r})", system=self.name, operation=operation)
            yield page.data, next_cursor, page.paging.has_more
            if not page.paging.has_more:
                return
            cursor = next_cursor

    def parse_reports(self, raw_items: list[Any]) -> tuple[list[Report], list[Quarantined]]:
        """The app's report items (decoded JSON) as reports, and the rest quarantined with why.

        Never raises for what an item holds. Also the way to replay a quarantined item after
        a fix: decrypt its payload, ``json.loads`` it and pass it here.
        """
        return self._convert(raw_items, WireReport, self._report)

    def parse_ratings(self, raw_items: list[Any]) -> tuple[list[Rating], list[Quarantined]]:
        """As ``parse_reports``, for the ratings feed."""
        return self._convert(raw_items, WireRating, self._rating)

    def _report(self, wire: WireReport, source: str) -> Report:
        problems = check_report(wire, self.limits, self._clock())
        if problems:
            raise ValueError("; ".join(problems))
        return report_from_wire(wire, source)

    def _rating(self, wire: WireRating, source: str) -> Rating:
        problems = check_rating(wire, self.limits, self._clock())
        if problems:
            raise ValueError("; ".join(problems))
        return rating_from_wire(wire, source)

    def _convert(
        self, raw_items: list[Any], wire_model: type[W], to_canonical: Callable[[W, str], C]
    ) -> tuple[list[C], list[Quarantined]]:
        """Each item on its own: whatever one item holds, it ends as an item or a quarantined one."""
        items: list[C] = []
        quarantined: list[Quarantined] = []
        for raw in raw_items:
            try:
                items.append(to_canonical(wire_model.model_validate(self._converted(raw)), self.name))
            except ValidationError as exc:
                prefix = "" if exc.title == wire_model.__name__ else "canonical "
                quarantined.append(self._quarantine(raw, describe_errors(exc, prefix)))
            except ValueError as exc:
                quarantined.append(self._quarantine(raw, str(exc)))
            except Exception as exc:  # noqa: BLE001 - one unreadable item must not stop its page
                quarantined.append(self._quarantine(raw, f"item: could not be read ({exc.__class__.__name__})"))
        return items, quarantined

    def _converted(self, raw: object) -> object:
        """``raw`` with its legacy-encoded free text converted, as ``legacy_text`` allows."""
        item, converted = convert_legacy_fields(raw, self._legacy_text)
        if converted:
            source_id = raw.get("id") if isinstance(raw, dict) else None
            log.info(
                "text.converted source=%s id=%s fields=%s charset=%s", self.name,
                source_id if isinstance(source_id, str) and re.match(ID_PATTERN, source_id) else None,
                ",".join(converted), ",".join(sorted(set(converted.values()))),
            )
        return item

    def _quarantine(self, raw: object, reason: str) -> Quarantined:
        source_id = raw.get("id") if isinstance(raw, dict) else None
        if not (isinstance(source_id, str) and re.match(ID_PATTERN, source_id)):
            source_id = None  # the raw text still shows it; the ledger key must stay storable
        if not isinstance(raw, dict):
            reason = f"item: expected a JSON object, got {type(raw).__name__}"
        reason = clean_reason(reason)
        log.warning("citizen_app.quarantined source=%s source_id=%s reason=%s", self.name, source_id, reason)
        payload = payload_text(raw)
        return Quarantined(
            source=self.name, source_id=source_id, reason=reason, raw=mask_personal(raw),
            payload=SecretStr(payload) if payload is not None else None,
        )

    # attachments

    @contextmanager
    def open_attachment(self, attachment: Attachment) -> Iterator[Iterator[bytes]]:
        """Stream an attachment in chunks, checking its type, size and checksum as it goes.

        A type not allowed, an empty file, one over the limit, or first bytes that are not
        the declared type (a page or a program labelled as a photo) raise ``RejectedContent``.
        """
        self._check_declared(attachment)
        headers: dict[str, str | None] = {}
        if not self._same_origin(attachment.url):
            headers[API_KEY_HEADER] = None  # never hand our key to another host (a CDN, a redirect target)
        response = self._http.request(
            "GET", attachment.url, operation="open_attachment", ref=attachment.url, stream=True, headers=headers
        )
        try:
            self._check_headers(response, attachment)
            yield self._checked_chunks(response, attachment)
        finally:
            response.close()

    def _same_origin(self, url: str) -> bool:
        if not url.startswith(("http://", "https://")):
            return True
        ours, theirs = urlsplit(self._http.base_url), urlsplit(url)
        return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)

    def _check_declared(self, attachment: Attachment) -> None:
        """Refuse before any request what the report itself says we must not fetch."""
        media_type = media_type_of(attachment.media_type)
        if media_type not in self.limits.allowed_media_types:
            raise self._rejected(attachment, f"type {media_type[:60]!r} is not allowed")
        if attachment.size == 0:
            raise self._rejected(attachment, "the file is empty (0 bytes)")
        if attachment.size is not None and attachment.size > self.limits.max_attachment_bytes:
            raise self._rejected(attachment, f"{attachment.size} bytes, over the {self.limits.max_attachment_bytes}-byte limit")

    def _check_headers(self, response: requests.Response, attachment: Attachment) -> None:
        """Refuse an HTML error page or a file of the wrong size before streaming any of it."""
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type and "html" not in attachment.media_type:
            raise MalformedResponse(f"expected {attachment.media_type}, got {content_type}", system=self.name, operation="open_attachment", ref=attachment.url)
        length = response.headers.get("Content-Length")
        if attachment.size is not None and length is not None and length.isdigit() and int(length) != attachment.size:
            raise MalformedResponse(f"Content-Length {length} but the report says {attachment.size} bytes", system=self.name, operation="open_attachment", ref=attachment.url)
        if length is not None and length.isdigit() and int(length) > self.limits.max_attachment_bytes:
            raise self._rejected(attachment, f"Content-Length {length}, over the {self.limits.max_attachment_bytes}-byte limit")

    def _checked_chunks(self, response: requests.Response, attachment: Attachment) -> Iterator[bytes]:
        digest = hashlib.sha256()
        size = 0
        head = b""  # held back until the first bytes show what the file really is
        sniffed = False
        limit = self.limits.max_attachment_bytes
        try:
            for chunk in response.iter_content(chunk_size=STREAM_CHUNK):
                size += len(chunk)
                if attachment.size is not None and size > attachment.size:
                    raise self._bad_file(attachment, f"more than the {attachment.size} bytes the report declares")
                if size > limit:
                    raise self._rejected(attachment, f"more than the {limit}-byte limit")
                digest.update(chunk)
                if not sniffed:
                    head += chunk
                    if len(head) < SNIFF_BYTES:
                        continue
                    self._sniff(attachment, head)
                    sniffed, chunk, head = True, head, b""
                yield chunk
        except requests.RequestException as exc:
            # A download cut half-way is safe to repeat.
            raise TransientError(f"download interrupted: {exc.__class__.__name__}", system=self.name, operation="open_attachment", ref=attachment.url) from exc
        if size == 0:
            raise self._rejected(attachment, "the file is empty (0 bytes)")
        if attachment.size is not None and size != attachment.size:
            raise self._bad_file(attachment, f"{size} bytes but the report declares {attachment.size}")
        if attachment.sha256 and digest.hexdigest() != attachment.sha256.lower():
            raise self._bad_file(attachment, "sha256 does not match the report")
        if not sniffed:  # a file shorter than the sniffing window
            self._sniff(attachment, head)
            yield head

    def _sniff(self, attachment: Attachment, head: bytes) -> None:
        why = mismatch(attachment.media_type, head)
        if why:
            raise self._rejected(attachment, why)

    def _rejected(self, attachment: Attachment, why: str) -> RejectedContent:
        return RejectedContent(f"attachment {attachment.name}: {why}", system=self.name, operation="open_attachment", ref=attachment.url)

    def _bad_file(self, attachment: Attachment, why: str) -> MalformedResponse:
        return MalformedResponse(f"attachment {attachment.name}: {why}", system=self.name, operation="open_attachment", ref=attachment.url)

    # outcomes

    def publish_outcome(self, outcome: Outcome) -> None:
        """Publish an agency's answer. The app ignores an identical repeat, so retrying is safe."""
        path = f"{REPORTS_PATH}/{quote(outcome.source_id, safe='')}/outcome"
        body = outcome_to_wire(outcome).model_dump(mode="json")
        response = self._http.request(
            "POST", path, operation="publish_outcome", ref=outcome.source_id, json=body, ok=(200, 201)
        )
        ack = self._parse(response, WireOutcomeAck, operation="publish_outcome", ref=outcome.source_id)
        log.info(
            "citizen_app.outcome_published source=%s source_id=%s outcome_id=%s created=%s",
            self.name, outcome.source_id, ack.outcome_id, ack.created,
        )

    # plumbing

    def _parse(self, response: requests.Response, model: type[W], *, operation: str, ref: str | None = None) -> W:
        body = self._http.json(response, operation=operation, ref=ref)
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise MalformedResponse(f"unexpected shape: {describe_errors(exc)}", system=self.name, operation=operation, ref=ref) from exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CitizenAppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
