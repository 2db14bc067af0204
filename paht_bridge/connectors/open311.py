"""Client for an Open311 GeoReport v2 server: a ``CitizenSource``.

Many cities' citizen portals speak GeoReport v2 (open311.org): a request
(``service_request``) is a phản ánh hiện trường (field report), its ``service_code`` the
category. This module pulls requests in date windows, streams their photo (``media_url``)
and publishes the agencies' answers back with mySociety's *service request updates*
extension. The wire shape stays here; the rest of the bridge sees canonical models only.

Wire format in brief (see ``paht_bridge.sandbox.open311`` for the stand-in):
``GET {base}/requests.{json|xml}?start_date=&end_date=&jurisdiction_id=`` (ISO 8601 with an
offset; both bounds inclusive) answers a JSON list or ``<service_requests><request>…``;
``POST {base}/servicerequestupdates.{fmt}`` (form-encoded, with ``api_key``) adds an update;
an error is ``[{"code": 403, "description": "…"}]`` or ``<errors><error><code>…``.

**Reading the feed.** GeoReport v2 has no change cursor and no paging, and real servers cap
an answer (FixMyStreet at 1000, others at 200). So the client walks date windows of
``window_days`` from the cursor up to ``clock()``, ordering requests by ``updated_datetime``
(``requested_datetime`` when the server sends none), and:

- continues from the last timestamp it took, asking again from that instant, so a server
  that keeps the *oldest* requests of a capped answer is read to the end;
- remembers the ids already taken at that instant (ties), so a request sharing the
  instant is neither lost nor taken twice; when an answer brings only requests already
  taken at that instant, it moves on to the next whole second;
- treats a window as read only when an answer from past the cursor comes back empty;
- halves the window when an answer holds ``page_size`` requests or more (until it is one
  second long), so pages stay near ``page_size`` and a server that keeps the *newest*
  requests of a capped answer is still read whole, provided ``page_size`` is at most the
  server's cap. More requests at one second than the server's cap cannot be reached
  through GeoReport v2 at all; that is logged as a warning.

The cursor is ``<instant>|<id>,<id>…``: every request ordered before the instant, plus the
listed ids at it, has been yielded. It stays within the ledger's 255 characters: when the
ids do not fit they are kept as short hashes, and failing that as ``*`` (the requests at
that instant are then read again on the next run: a repeat the ledger absorbs, never a
loss). A bare ISO date or date-time is accepted as a cursor too. Over an empty stretch
the cursor advances only to ``clock()`` minus ``limits.max_clock_skew_seconds``, so a
request the server stamps a little in our past, but stores late, is still read. Each HTTP
answer used becomes one ``Page`` whose ``next_cursor`` covers exactly what was yielded;
an answer discarded by halving the window yields nothing.

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
import logging
import math
import mimetypes
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urljoin, urlsplit

import requests
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError, model_validator

from paht_bridge.connectors.citizen_app import (
    ID_PATTERN,
    WireDateTime,
    clean_reason,
    describe_errors,
    mask_personal,
    payload_text,
)
from paht_bridge.connectors.citizen_checks import (
    CATEGORY_CODE_CHARS,
    PHONE_CHARS,
    STATUS_CHARS,
    VIETNAM_BOX,
    attachment_problems,
    text_problems,
    time_problems,
)
from paht_bridge.connectors.content import SIGNATURES, SNIFF_BYTES, media_type_of, mismatch
from paht_bridge.connectors.errors import AmbiguousError, MalformedResponse, PermanentError, RejectedContent, TransientError
from paht_bridge.connectors.http import DEFAULT_TIMEOUT, TRANSIENT_STATUS, HttpTransport
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.connectors.xml import XmlRefused, parse_xml
from paht_bridge.mappings.canonical import (
    VIETNAM_TZ,
    AdminUnit,
    Attachment,
    CanonicalStatus,
    Location,
    Outcome,
    Page,
    Quarantined,
    Rating,
    Report,
    Reporter,
    UnitScheme,
    nfc,
    vietnam_now,
)
from paht_bridge.mappings.text import strip_markup

log = logging.getLogger(__name__)

CHANNEL = "open311"
DEFAULT_START = datetime(2020, 1, 1, tzinfo=VIETNAM_TZ)
CURSOR_CHARS = 255  # the ledger's cursor column
TITLE_CHARS = 80  # a title made from a description's first line
STREAM_CHUNK = 64 * 1024
ONE_SECOND = timedelta(seconds=1)
#: Every status is read by the client itself, so an Open311 error document is never lost
#: behind the transport's generic "HTTP 403" message.
ANY_STATUS = tuple(range(100, 600))
#: Values real servers write for "missing".
NULL_WORDS = frozenset({"", "null"})
#: Open311 names for personal data that ``mask_personal`` does not know by name.
PERSONAL_FIELDS = frozenset({"first_name", "last_name", "phone", "email", "device_id", "account_id"})
#: An error's description saying the update is already there: success for an idempotent publish.
ALREADY_EXISTS = re.compile(r"already exist|duplicate|đã tồn tại", re.IGNORECASE)
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


def _missing_as_none(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in NULL_WORDS else value


def _number_as_text(value: object) -> object:
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


Open311Id = Annotated[str, BeforeValidator(_number_as_text), AfterValidator(_reference)]
UnitCode = Annotated[str, Field(pattern=r"^\d{1,6}$")]


class WireRequest(BaseModel):
    """One GeoReport v2 ``service_request`` with the Vietnamese unit extension; other fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    service_request_id: Open311Id
    status: str | None = None
    service_code: Annotated[str, BeforeValidator(_number_as_text), Field(min_length=1, max_length=CATEGORY_CODE_CHARS)]
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
    phone: Annotated[str | None, BeforeValidator(_number_as_text)] = None
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
            return {key: _missing_as_none(value) for key, value in data.items()}
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
    server recognises, while a changed answer for the same status is a new update."""
    said = "|".join((outcome.status.value, outcome.answer, outcome.answered_by, outcome.answered_at.astimezone(VIETNAM_TZ).isoformat()))
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
        raw = {key: ("***" if str(key).lower() in PERSONAL_FIELDS and _missing_as_none(value) is not None else value)
               for key, value in raw.items()}
    return mask_personal(raw)


# -- the feed position (cursor) ------------------------------------------------------------

_TIME = TypeAdapter(WireDateTime)


def _token_hash(token: str) -> str:
    return "#" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class FeedPosition:
    """Everything ordered before ``at``, and the requests named in ``taken`` at ``at``, was yielded.

    ``taken`` holds ids, ``#``-hashes of ids (a compact cursor) or ``~``-hashes of items without
    a usable id; ``*`` stands for "not recorded" and matches nothing (a repeat, never a loss).
    """

    at: datetime
    taken: frozenset[str] = frozenset()

    def covers(self, key: tuple[datetime, str]) -> bool:
        at, token = key
        if at != self.at:
            return at < self.at
        return token in self.taken or _token_hash(token) in self.taken

    def after(self, keys: list[tuple[datetime, str]]) -> FeedPosition:
        """The position once ``keys`` (sorted, none covered) are yielded too."""
        if not keys:
            return self
        last = keys[-1][0]
        tied = {token for at, token in keys if at == last}
        return FeedPosition(last, (self.taken | tied) if last == self.at else frozenset(tied))

    def advanced_to(self, at: datetime) -> FeedPosition:
        """The position when nothing lies between it and ``at`` (inclusive) that was not yielded."""
        return FeedPosition(at) if at > self.at else self

    def serialize(self) -> str:
        stamp = self.at.astimezone(VIETNAM_TZ).isoformat()
        tokens = sorted(t for t in self.taken if t != "*")
        text = f"{stamp}|{','.join(tokens)}"
        if len(text) <= CURSOR_CHARS:
            return text
        hashed = sorted({t if t.startswith("#") else _token_hash(t) for t in tokens})
        text = f"{stamp}|{','.join(hashed)}"
        return text if len(text) <= CURSOR_CHARS else f"{stamp}|*"

    @classmethod
    def parse(cls, cursor: str) -> FeedPosition:
        """A cursor this client wrote, or a bare ISO date/date-time (Vietnam time when zone-less)."""
        stamp, _, rest = cursor.strip().partition("|")
        at = datetime.fromisoformat(stamp)
        if at.tzinfo is None:
            at = at.replace(tzinfo=VIETNAM_TZ)
        return cls(at, frozenset(t for t in rest.split(",") if t))


def order_key(raw: object) -> tuple[datetime, str] | None:
    """(when, token) a request is ordered by in the feed, or None when it has no usable time.

    The time is ``updated_datetime``, else ``requested_datetime``; the token its id, or a hash
    of the item when the id is unusable (it is quarantined, but still has its place)."""
    if not isinstance(raw, dict):
        return None
    at = None
    for field in ("updated_datetime", "requested_datetime"):
        value = _missing_as_none(raw.get(field))
        if value is None:
            continue
        try:
            at = _TIME.validate_python(value)
            break
        except ValidationError:
            continue
    if at is None:
        return None
    identifier = _number_as_text(_missing_as_none(raw.get("service_request_id")))
    if isinstance(identifier, str) and re.match(ID_PATTERN, identifier):
        return at, identifier
    return at, "~" + hashlib.sha256((payload_text(raw) or repr(raw)).encode("utf-8", "backslashreplace")).hexdigest()[:10]


def _floor(at: datetime) -> datetime:
    return at.replace(microsecond=0)


def _ceil(at: datetime) -> datetime:
    return _floor(at) + ONE_SECOND if at.microsecond else at


def wire_time(at: datetime) -> str:
    """An instant as GeoReport v2 query bounds take it: whole seconds, Vietnam offset."""
    return at.astimezone(VIETNAM_TZ).replace(microsecond=0).isoformat()


# -- the client -----------------------------------------------------------------------------


class Open311Client:
    """A ``CitizenSource`` over one Open311 GeoReport v2 server.

    ``name`` is the source's name in the deployment mapping (``Report.source``); ``base_url``
    and ``api_key`` come from the Airflow Connection (host, password; see ``Open311Hook``),
    ``jurisdiction_id``, ``wire_format``, ``window_days`` and ``initial_start`` from the
    mapping's ``open311`` section, ``limits`` from the connection's extra. ``initial_start`` is
    where a source without a cursor starts (default 2020-01-01, Vietnam time); ``clock`` is
    "now" for the end of the walk and for refusing times in the future. The ``api_key`` is
    sent only with updates (the POST form), never in a GET's query string, where proxies log
    it. The constructor does no I/O; one HTTP session is reused.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key: str | None = None,
        jurisdiction_id: str | None = None,
        wire_format: Literal["json", "xml"] = "json",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        limits: ConnectorLimits = DEFAULT_LIMITS,
        window_days: int = 30,
        initial_start: datetime | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if wire_format not in ("json", "xml"):
            raise ValueError(f"wire_format must be 'json' or 'xml', not {wire_format!r}")
        if window_days < 1:
            raise ValueError("window_days must be at least 1")
        if initial_start is not None and initial_start.tzinfo is None:
            initial_start = initial_start.replace(tzinfo=VIETNAM_TZ)
        self.name = name
        self.limits = limits
        self.wire_format = wire_format
        self.window = timedelta(days=window_days)
        self.initial_start = initial_start or DEFAULT_START
        self._api_key = api_key
        self._jurisdiction_id = jurisdiction_id
        self._clock = clock or vietnam_now
        accept = "application/json" if wire_format == "json" else "application/xml, text/xml"
        self._http = HttpTransport(name, base_url, timeout=timeout, headers={"Accept": accept, "User-Agent": "paht-bridge"}, limits=limits)

    # the report feed

    def reports_since(self, cursor: str | None, page_size: int = 100) -> Iterator[Page[Report]]:
        """Requests changed after ``cursor``, oldest first, one page per HTTP answer used.

        Lazy: the next request is sent only when the caller asks for the next page, after it
        has committed this one. See the module docstring for how windows, caps and ties work.
        """
        position = self._position(cursor)
        now = self._clock()
        horizon = max(_ceil(now), _ceil(position.at))
        settled = _floor(now - timedelta(seconds=self.limits.max_clock_skew_seconds))
        start, span = _floor(position.at), self.window
        seen_unplaceable: set[str] = set()
        while True:
            end = min(_ceil(start + span), horizon)
            raw_items = self._fetch_requests(start, end)
            keyed = [(order_key(raw), raw) for raw in raw_items]
            in_window = [(key, raw) for key, raw in keyed if key is None or start <= key[0] <= end]
            if len(in_window) < len(keyed):
                log.warning("open311.outside_window source=%s start=%s end=%s ignored=%d",
                            self.name, wire_time(start), wire_time(end), len(keyed) - len(in_window))
            if len(in_window) >= page_size and end - start > ONE_SECOND:
                span = max(ONE_SECOND, timedelta(seconds=math.ceil((end - start).total_seconds() / 2)))
                log.info("open311.window_halved source=%s start=%s items=%d span_s=%d",
                         self.name, wire_time(start), len(in_window), span.total_seconds())
                continue  # this answer may be a capped one: read the first half again, smaller
            if len(in_window) >= page_size:
                log.warning("open311.full_at_one_second source=%s at=%s items=%d: more may be beyond the server's cap",
                            self.name, wire_time(start), len(in_window))
            new: dict[str, tuple[tuple[datetime, str], Any]] = {}
            unplaceable: list[Any] = []
            known = 0
            for key, raw in in_window:
                if key is None:
                    digest = hashlib.sha256((payload_text(raw) or repr(raw)).encode("utf-8", "backslashreplace")).hexdigest()
                    if digest not in seen_unplaceable:  # the same bad item in every answer is quarantined once
                        seen_unplaceable.add(digest)
                        unplaceable.append(raw)
                elif position.covers(key):
                    known += 1
                elif key[1] not in new or new[key[1]][0] < key:
                    new[key[1]] = (key, raw)
            taken = sorted(new.values(), key=lambda pair: pair[0])
            items, quarantined = self.parse_reports([raw for _, raw in taken] + unplaceable)
            has_more = True
            if taken:
                position = position.after([key for key, _ in taken])
                start = _floor(position.at)  # ask again from the last instant: a capped answer goes on
                span = min(self.window, span * 2)
            elif known and start <= position.at:
                start = _floor(position.at) + ONE_SECOND  # only ties we hold: past this second
            else:
                position = position.advanced_to(min(end, settled))
                if end >= horizon:
                    has_more = False
                start, span = end, min(self.window, span * 2)
            next_cursor = position.serialize()
            log.info("open311.reports_page source=%s items=%d quarantined=%d next_cursor=%s has_more=%s",
                     self.name, len(items), len(quarantined), next_cursor, has_more)
            yield Page[Report](items=items, quarantined=quarantined, next_cursor=next_cursor, has_more=has_more)
            if not has_more:
                return

    def _position(self, cursor: str | None) -> FeedPosition:
        if cursor is None or not cursor.strip():
            return FeedPosition(self.initial_start)
        try:
            return FeedPosition.parse(cursor)
        except (ValueError, TypeError) as exc:
            raise PermanentError(f"cursor {cursor[:80]!r} is not <ISO date-time>|<ids>", system=self.name, operation="reports_since") from exc

    def _fetch_requests(self, start: datetime, end: datetime) -> list[Any]:
        params = {"start_date": wire_time(start), "end_date": wire_time(end)}
        if self._jurisdiction_id:
            params["jurisdiction_id"] = self._jurisdiction_id
        body = self._call("GET", f"requests.{self.wire_format}", "reports_since", params=params)
        return self._request_items(body, "reports_since")

    def parse_reports(self, raw_items: list[Any]) -> tuple[list[Report], list[Quarantined]]:
        """Decoded requests (JSON items, or XML ``<request>`` elements read as dicts of text) as
        reports, the rest quarantined with why. Never raises for what an item holds; a
        quarantined item's payload is its JSON text, so ``json.loads`` it and pass it here to replay."""
        now = self._clock()
        reports: list[Report] = []
        quarantined: list[Quarantined] = []
        for raw in raw_items:
            try:
                wire = WireRequest.model_validate(raw)
                problems = check_request(wire, self.limits, now)
                if problems:
                    raise ValueError("; ".join(problems))
                reports.append(request_from_wire(wire, self.name, self._http.base_url))
            except ValidationError as exc:
                prefix = "" if exc.title == WireRequest.__name__ else "canonical "
                quarantined.append(self._quarantine(raw, describe_errors(exc, prefix)))
            except ValueError as exc:
                quarantined.append(self._quarantine(raw, str(exc)))
            except Exception as exc:  # noqa: BLE001 - one unreadable item must not stop its page
                quarantined.append(self._quarantine(raw, f"item: could not be read ({exc.__class__.__name__})"))
        return reports, quarantined

    def _quarantine(self, raw: object, reason: str) -> Quarantined:
        source_id = _number_as_text(_missing_as_none(raw.get("service_request_id"))) if isinstance(raw, dict) else None
        if not (isinstance(source_id, str) and re.match(ID_PATTERN, source_id)):
            source_id = None  # the raw text still shows it; the ledger key must stay storable
        if not isinstance(raw, dict):
            reason = f"item: expected an object, got {type(raw).__name__}"
        reason = clean_reason(reason)
        log.warning("open311.quarantined source=%s source_id=%s reason=%s", self.name, source_id, reason)
        payload = payload_text(raw)
        return Quarantined(source=self.name, source_id=source_id, reason=reason, raw=masked_raw(raw),
                           payload=SecretStr(payload) if payload is not None else None)

    # ratings

    def ratings_since(self, cursor: str | None, page_size: int = 100) -> Iterator[Page[Rating]]:
        """GeoReport v2 (and mySociety's extensions) carry no citizen ratings: one empty page,
        the caller's cursor unchanged, no request sent."""
        yield Page[Rating](items=[], next_cursor=cursor, has_more=False)

    # attachments

    @contextmanager
    def open_attachment(self, attachment: Attachment) -> Iterator[Iterator[bytes]]:
        """Stream a request's ``media_url`` in chunks, within the connector's limits.

        Only from the source's own host name (any port), or one listed in the connection's
        ``limits.allowed_media_hosts``: the URL
        comes from the server's data, and fetching wherever it points would let it make the
        bridge call internal addresses. Redirects are not followed, for the same reason (a
        redirect is a ``PermanentError``). The file's first bytes must be its declared type;
        for a ``media_url`` without a known extension (declared a photo by guess) any allowed
        image is accepted and keeps the ``image/jpeg`` label. A type not allowed, an empty
        file or one over ``max_attachment_bytes`` is ``RejectedContent``.
        """
        url = absolute_url(self._http.base_url, attachment.url)
        self._check_declared(attachment, url)
        response = self._http.request("GET", url, operation="open_attachment", ref=url, stream=True, ok=(200,),
                                      allow_redirects=False)
        try:
            content_type = response.headers.get("Content-Type", "")
            if "html" in content_type and "html" not in attachment.media_type:
                raise MalformedResponse(f"expected {attachment.media_type}, got {content_type}", system=self.name,
                                        operation="open_attachment", ref=url)
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > self.limits.max_attachment_bytes:
                raise self._rejected(attachment, url, f"Content-Length {length}, over the {self.limits.max_attachment_bytes}-byte limit")
            yield self._checked_chunks(response, attachment, url)
        finally:
            response.close()

    def _check_declared(self, attachment: Attachment, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise self._rejected(attachment, url, f"scheme {parts.scheme[:20]!r} is not allowed (http or https only)")
        allowed = {urlsplit(self._http.base_url).hostname, *self.limits.allowed_media_hosts}
        if parts.hostname not in allowed:
            raise self._rejected(attachment, url, f"host {str(parts.hostname)[:100]!r} is not the source's host")
        media_type = media_type_of(attachment.media_type)
        if media_type not in self.limits.allowed_media_types:
            raise self._rejected(attachment, url, f"type {media_type[:60]!r} is not allowed")

    def _checked_chunks(self, response: requests.Response, attachment: Attachment, url: str) -> Iterator[bytes]:
        size, head, sniffed = 0, b"", False
        limit = self.limits.max_attachment_bytes
        try:
            for chunk in response.iter_content(chunk_size=STREAM_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise self._rejected(attachment, url, f"more than the {limit}-byte limit")
                if not sniffed:
                    head += chunk
                    if len(head) < SNIFF_BYTES:
                        continue
                    self._sniff(attachment, url, head)
                    sniffed, chunk, head = True, head, b""
                yield chunk
        except requests.RequestException as exc:
            raise TransientError(f"download interrupted: {exc.__class__.__name__}", system=self.name,
                                 operation="open_attachment", ref=url) from exc
        if size == 0:
            raise self._rejected(attachment, url, "the file is empty (0 bytes)")
        if not sniffed:
            self._sniff(attachment, url, head)
            yield head

    def _sniff(self, attachment: Attachment, url: str, head: bytes) -> None:
        why = mismatch(attachment.media_type, head)
        if why is None:
            return
        _, _, guessed = media_of(url, "x")
        if guessed and any(t.startswith("image/") and mismatch(t, head) is None
                           for t in self.limits.allowed_media_types if t in SIGNATURES):
            return
        raise self._rejected(attachment, url, why)

    def _rejected(self, attachment: Attachment, url: str, why: str) -> RejectedContent:
        return RejectedContent(f"attachment {attachment.name}: {why}", system=self.name, operation="open_attachment", ref=url)

    # outcomes

    def publish_outcome(self, outcome: Outcome) -> None:
        """Post the answer as a service request update. The ``update_id`` is derived from the
        outcome, so a repeat is recognised by the server; its "already exists" is success."""
        form = outcome_form(outcome)
        if self._api_key:
            form["api_key"] = self._api_key
        if self._jurisdiction_id:
            form["jurisdiction_id"] = self._jurisdiction_id
        ref = outcome.source_id
        body = self._call("POST", f"servicerequestupdates.{self.wire_format}", "publish_outcome", ref=ref, exists_ok=True, data=form)
        if body is None:
            log.info("open311.outcome_published source=%s source_id=%s update_id=%s created=False", self.name, ref, form["update_id"])
            return
        update_id = _first_update_id(body)
        if update_id is None:
            log.warning("open311.update_without_id source=%s source_id=%s", self.name, ref)
        log.info("open311.outcome_published source=%s source_id=%s update_id=%s created=True", self.name, ref, update_id or form["update_id"])

    # plumbing

    def _call(self, method: str, path: str, operation: str, *, ref: str | None = None, exists_ok: bool = False,
              **kwargs: Any) -> Any:
        """One call, its body decoded (JSON values or the XML root). An error status or an Open311
        error document (servers send them with 200 too) is a typed error carrying the server's
        description; with ``exists_ok`` an "already exists" error returns ``None`` instead."""
        response = self._http.request(method, path, operation=operation, ref=ref, ok=ANY_STATUS, **kwargs)
        status = response.status_code
        try:
            body = self._decode(response, operation, ref)
        except MalformedResponse:
            if status < 400:
                raise
            body, error = None, None
        else:
            error = _xml_error(body) if hasattr(body, "tag") else _json_error(body)
        if error is None and status < 400:
            return body
        code, description = error if error is not None else (None, _printable(response.text[:300]))
        if status >= 400 and (code is None or code < 400):
            code = status
        code = code if code is not None else 400
        if exists_ok and (code == 409 or ALREADY_EXISTS.search(description)):
            return None
        message = f"Open311 error {code}: {description}" if error is not None else f"HTTP {status}: {description}"
        if code in TRANSIENT_STATUS:
            is_write = method.upper() != "GET"
            raise (AmbiguousError if (is_write and code >= 500) else TransientError)(message, system=self.name, operation=operation, ref=ref)
        raise PermanentError(message, system=self.name, operation=operation, ref=ref)

    def _decode(self, response: requests.Response, operation: str, ref: str | None = None) -> Any:
        """The body as JSON values or an XML root element, by its content type (the configured
        format when the type says neither); an HTML page or an unreadable body is ``MalformedResponse``."""
        content_type = response.headers.get("Content-Type", "").lower()
        if "json" in content_type or (self.wire_format == "json" and "xml" not in content_type):
            return self._http.json(response, operation=operation, ref=ref)
        if "html" in content_type:
            raise MalformedResponse(f"expected XML, got {content_type}: {_printable(response.text[:120])!r}",
                                    system=self.name, operation=operation, ref=ref)
        try:
            return parse_xml(response.content, max_bytes=self.limits.max_xml_bytes, max_depth=self.limits.max_xml_depth)
        except XmlRefused as exc:
            raise MalformedResponse(str(exc), system=self.name, operation=operation, ref=ref) from exc

    def _request_items(self, body: Any, operation: str) -> list[Any]:
        """The list of requests in an answer: a JSON list (or a wrapping object), or the
        ``<request>`` children of ``<service_requests>`` as dicts of text."""
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            inner = body.get("service_requests", body.get("requests"))
            if isinstance(inner, dict):
                inner = inner.get("request", [])
                inner = inner if isinstance(inner, list) else [inner]
            if isinstance(inner, list):
                return inner
        elif hasattr(body, "tag"):
            if _local(body.tag) == "service_requests":
                return [element_dict(child) for child in body if isinstance(child.tag, str) and _local(child.tag) == "request"]
            raise MalformedResponse(f"expected <service_requests>, got <{_local(str(body.tag))[:40]}>", system=self.name, operation=operation)
        raise MalformedResponse(f"expected a list of service requests, got {type(body).__name__}", system=self.name, operation=operation)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Open311Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- wire helpers ---------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def element_dict(element: Any) -> dict[str, Any]:
    """An XML ``<request>`` as a dict of its children's text (an empty element is ``None``);
    children with children of their own (extension blocks) are left out, as unknown JSON fields are."""
    fields: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str) or len(child):
            continue
        fields.setdefault(_local(child.tag), child.text)
    return fields


#: Fields that make an object a request or an update, never an error entry.
REQUEST_FIELDS = frozenset({"service_request_id", "service_code", "requested_datetime", "update_id"})


def _json_error(body: Any) -> tuple[int | None, str] | None:
    entries = body.get("errors", [body]) if isinstance(body, dict) else body
    if not isinstance(entries, list) or not entries:
        return None
    if not all(isinstance(e, dict) and "code" in e and "description" in e and not (REQUEST_FIELDS & e.keys()) for e in entries):
        return None
    return _error_summary([(e.get("code"), e.get("description")) for e in entries])


def _xml_error(root: Any) -> tuple[int | None, str] | None:
    if _local(root.tag) != "errors":
        return None
    entries = []
    for error in root:
        if isinstance(error.tag, str) and _local(error.tag) == "error":
            fields = element_dict(error)
            entries.append((fields.get("code"), fields.get("description")))
    return _error_summary(entries or [(None, "")])


def _error_summary(entries: list[tuple[object, object]]) -> tuple[int | None, str]:
    code = None
    text = str(entries[0][0]).strip() if entries[0][0] is not None else ""
    if text.isdigit():
        code = int(text)
    description = "; ".join(_printable(str(d))[:300] for _, d in entries if d is not None) or "(no description)"
    return code, description


def _first_update_id(body: Any) -> str | None:
    if isinstance(body, list) and body and isinstance(body[0], dict):
        value = body[0].get("update_id")
        return None if value is None else str(value)
    if hasattr(body, "iter"):
        for element in body.iter():
            if isinstance(element.tag, str) and _local(element.tag) == "update_id" and element.text:
                return element.text.strip()
    return None


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text)
