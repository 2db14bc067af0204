"""The connector for REST document systems in the style of TDOffice (JSON, Vietnamese wire names).

Điện Biên forwards reports into its districts' TDOffice, where each one is a văn bản đến
(incoming document). This module speaks that kind of API: it creates a document
idempotently by its external reference (sent as ``so_ky_hieu`` and as the
``Idempotency-Key`` header), streams attachments from the local spool, reads the status
change feed, and passes ratings on. The wire shapes are pydantic models private to this
module; only canonical models leave it. Answers are read within the connection's
``ConnectorLimits`` (body size, time); what we send carries no markup (``<script>`` never
reaches an agency's viewer).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import requests
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_serializer

from paht_bridge.connectors.base import PreparedSend
from paht_bridge.connectors.errors import MalformedResponse, PermanentError
from paht_bridge.connectors.http import DEFAULT_TIMEOUT, HttpTransport
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.connectors.multipart import MultipartBody
from paht_bridge.canonical import (
    VIETNAM_TZ,
    DocumentReceipt,
    DocumentRecord,
    LocalAttachment,
    Location,
    Page,
    Quarantined,
    Rating,
    RatingLevel,
    RawStatusChange,
    Reporter,
    Text,
)
from paht_bridge.normalise.text import strip_markup

log = logging.getLogger(__name__)

#: Độ khẩn (urgency) by canonical priority: normal, urgent, very urgent, express, timed express.
PRIORITY_CODES = ("BINH_THUONG", "KHAN", "THUONG_KHAN", "HOA_TOC", "HOA_TOC_HEN_GIO")
#: Mức độ hài lòng (satisfaction) by canonical rating level.
RATING_CODES = {RatingLevel.SATISFIED: "HAI_LONG", RatingLevel.NOT_SATISFIED: "KHONG_HAI_LONG"}

DOCUMENTS = "api/v2/van-ban-den"
CHANGES = "api/v2/thay-doi-trang-thai"
JSON_PART = "van_ban"
FILE_PART = "tep_dinh_kem"


def _assume_vietnam_time(value: datetime) -> datetime:
    """Vendors often send local time without an offset; in Vietnam that means UTC+7."""
    return value if value.tzinfo else value.replace(tzinfo=VIETNAM_TZ)


VendorTime = Annotated[datetime, AfterValidator(_assume_vietnam_time)]


# --- what we send ---


class _Outgoing(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WireOrganisation(_Outgoing):
    """Đơn vị (organisation): ``ma`` its code, ``ten`` its name."""

    ma: str
    ten: Text


class WirePlace(_Outgoing):
    """Địa điểm (place): address, latitude, longitude, administrative unit as text."""

    dia_chi: Text | None = None
    vi_do: float | None = None
    kinh_do: float | None = None
    don_vi_hanh_chinh: Text | None = None

    @classmethod
    def from_location(cls, location: Location) -> WirePlace | None:
        unit = location.unit
        unit_text = ", ".join(p for p in (unit.ward, unit.district, unit.province) if p) if unit else ""
        place = cls(dia_chi=location.address, vi_do=location.lat, kinh_do=location.lon, don_vi_hanh_chinh=unit_text or None)
        return place if place.model_dump(exclude_none=True) else None


class WireReporter(_Outgoing):
    """Người phản ánh (reporter): kept secret in every repr; revealed only in the request body."""

    ho_ten: SecretStr | None = None
    so_dien_thoai: SecretStr | None = None

    @field_serializer("ho_ten", "so_dien_thoai", when_used="json-unless-none")
    def _reveal(self, value: SecretStr) -> str:
        return value.get_secret_value()

    @classmethod
    def from_reporter(cls, reporter: Reporter) -> WireReporter | None:
        if reporter.name is None and reporter.phone is None:
            return None  # the deployment's privacy rules kept the reporter from this agency
        return cls(ho_ten=reporter.name, so_dien_thoai=reporter.phone)


class WireDocument(_Outgoing):
    """The ``van_ban`` part: so_ky_hieu (our external reference), ma_phan_anh (report key),
    trich_yeu (subject), noi_dung (content), don_vi_nhan / don_vi_gui (receiving agency /
    sender), ngay_gui (sent at), han_xu_ly (deadline), do_khan (urgency), linh_vuc
    (category), dia_diem (place), nguoi_phan_anh (reporter)."""

    so_ky_hieu: str
    ma_phan_anh: str
    trich_yeu: Text
    noi_dung: Text
    don_vi_nhan: WireOrganisation
    don_vi_gui: WireOrganisation
    ngay_gui: datetime
    han_xu_ly: date
    do_khan: str
    linh_vuc: str
    dia_diem: WirePlace | None = None
    nguoi_phan_anh: WireReporter | None = None

    @classmethod
    def from_record(cls, record: DocumentRecord) -> WireDocument:
        return cls(
            so_ky_hieu=record.external_ref, ma_phan_anh=record.report_key, trich_yeu=strip_markup(record.subject),
            noi_dung=strip_markup(record.content), don_vi_nhan=WireOrganisation(ma=record.agency_code, ten=record.agency_name),
            don_vi_gui=WireOrganisation(ma=record.sender_code, ten=record.sender_name), ngay_gui=record.issued_at,
            han_xu_ly=record.due_date, do_khan=PRIORITY_CODES[record.priority], linh_vuc=record.category,
            dia_diem=WirePlace.from_location(record.location), nguoi_phan_anh=WireReporter.from_reporter(record.reporter),
        )


class WireRating(_Outgoing):
    """Đánh giá (rating): ma_danh_gia its id, muc_do the level, nhan_xet a comment, thoi_gian when."""

    ma_danh_gia: str
    muc_do: str
    nhan_xet: Text | None = None
    thoi_gian: datetime

    @classmethod
    def from_rating(cls, rating: Rating) -> WireRating:
        return cls(
            ma_danh_gia=rating.rating_id, muc_do=RATING_CODES[rating.level], nhan_xet=rating.comment, thoi_gian=rating.rated_at
        )


# --- what we read (tolerant: a vendor adding a field must not break delivery) ---


class _Incoming(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class WireAttachment(_Incoming):
    ten: Text
    loai: str
    kich_thuoc: int
    sha256: str


class CreatedAnswer(_Incoming):
    id: str = Field(min_length=1)
    so_ky_hieu: Text
    trang_thai: str
    existed: bool
    tep_dinh_kem: list[WireAttachment] = []


class DocumentAnswer(_Incoming):
    """A record: trang_thai (status code), ngay_cap_nhat (last change), y_kien_xu_ly (the
    agency's answer), don_vi_xu_ly (the unit that answered)."""

    id: str = Field(min_length=1)
    so_ky_hieu: Text
    trang_thai: str = Field(min_length=1)
    ngay_cap_nhat: VendorTime
    y_kien_xu_ly: Text | None = None
    don_vi_xu_ly: Text | None = None


class DocumentListAnswer(_Incoming):
    items: list[DocumentAnswer]


class ChangeAnswer(_Incoming):
    seq: int | None = None  # the vendor's own ordering; the cursor already carries it
    id: str = Field(min_length=1)
    so_ky_hieu: Text
    trang_thai: str = Field(min_length=1)
    thoi_gian: VendorTime
    y_kien_xu_ly: Text | None = None
    don_vi_xu_ly: Text | None = None

    def to_canonical(self) -> RawStatusChange:
        return RawStatusChange(
            external_ref=self.so_ky_hieu, document_id=self.id, raw_code=self.trang_thai,
            changed_at=self.thoi_gian, answer=self.y_kien_xu_ly, answered_by=self.don_vi_xu_ly,
        )


class ChangesAnswer(_Incoming):
    items: list[Any]  # validated one by one, so one bad item is quarantined, not the page
    next_cursor: str = Field(min_length=1)
    has_more: bool


class RatingAnswer(_Incoming):
    ma_danh_gia: str
    existed: bool


class FieldProblem(_Incoming):
    field: str
    message: str = ""


class ErrorAnswer(_Incoming):
    error: str = ""
    message: str = ""
    fields: list[FieldProblem] = []


M = TypeVar("M", bound=BaseModel)


# --- the client ---


class RestDocsClient:
    """A TDOffice-style REST document system, implementing ``DocumentSystem``.

    ``name`` is the target's name in the deployment mapping (used in errors and logs);
    ``token`` is sent as ``Authorization: Bearer``. A hook builds this from an Airflow
    Connection (host → ``base_url``, password → ``token``); nothing here reads credentials.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        token: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        limits: ConnectorLimits = DEFAULT_LIMITS,
    ) -> None:
        self.name = name
        self.limits = limits
        headers = {"Accept": "application/json", "User-Agent": "paht-bridge"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = HttpTransport(name, base_url, timeout=timeout, headers=headers, session=session, limits=limits)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RestDocsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # DocumentSystem

    def create_document(self, record: DocumentRecord, attachments: Sequence[LocalAttachment]) -> DocumentReceipt:
        if not attachments:
            return self.send_prepared(self.prepare_create(record))
        body = self._create_body(record, attachments)  # file parts read from disk as the socket takes them
        try:
            return self._create(record.external_ref, body, body.content_type, len(attachments))
        finally:
            body.close()

    def prepare_create(self, record: DocumentRecord) -> PreparedSend:
        """``create_document(record, [])``'s request built ahead (``PreparesCreates``): one body in memory."""
        body = self._create_body(record, ())
        return PreparedSend(record.external_ref, 0, (body.content_type, body.read()))

    def send_prepared(self, prepared: PreparedSend) -> DocumentReceipt:
        content_type, data = prepared.request
        return self._create(prepared.external_ref, data, content_type, prepared.attachments)

    @staticmethod
    def _create_body(record: DocumentRecord, attachments: Sequence[LocalAttachment]) -> MultipartBody:
        document = WireDocument.from_record(record).model_dump_json(exclude_none=True).encode()
        return MultipartBody([(JSON_PART, "application/json", document)], [(FILE_PART, a) for a in attachments])

    def _create(self, ref: str, data: bytes | MultipartBody, content_type: str, attachments: int) -> DocumentReceipt:
        response = self._http.request(
            "POST", DOCUMENTS, operation="create_document", ref=ref, ok=(200, 201, 422), data=data,
            headers={"Content-Type": content_type, "Idempotency-Key": ref},
        )
        self._raise_if_rejected(response, "create_document", ref)
        answer = self._parse(CreatedAnswer, response, "create_document", ref)
        if answer.so_ky_hieu != ref:
            # Trusting this would bind our report to somebody else's document.
            raise self._malformed(f"answered for reference {answer.so_ky_hieu!r}", "create_document", ref)
        log.info("document sent system=%s ref=%s document_id=%s created=%s attachments=%d",
                 self.name, ref, answer.id, not answer.existed, attachments)
        return DocumentReceipt(external_ref=ref, document_id=answer.id, created=not answer.existed)

    def find_by_ref(self, external_ref: str) -> DocumentReceipt | None:
        response = self._http.request(
            "GET", DOCUMENTS, operation="find_by_ref", ref=external_ref, params={"external_ref": external_ref}
        )
        answer = self._parse(DocumentListAnswer, response, "find_by_ref", external_ref)
        # Vendors' searches are often "contains": PAHT-x-1 must not match PAHT-x-10.
        matches = [item for item in answer.items if item.so_ky_hieu == external_ref]
        if not matches:
            return None
        if len(matches) > 1:
            log.warning("duplicate documents system=%s ref=%s ids=%s", self.name, external_ref, ",".join(m.id for m in matches))
        return DocumentReceipt(external_ref=external_ref, document_id=matches[0].id, created=False)

    def changes_since(self, cursor: str | None, page_size: int = 200) -> Iterator[Page[RawStatusChange]]:
        while True:
            params: dict[str, str | int] = {"limit": page_size}
            if cursor is not None:
                params["cursor"] = cursor
            response = self._http.request("GET", CHANGES, operation="changes_since", params=params)
            answer = self._parse(ChangesAnswer, response, "changes_since")
            page = self._page(answer)
            yield page
            if not answer.has_more:
                return
            if answer.next_cursor == cursor:
                # A feed that says "more" without moving would loop for ever.
                raise self._malformed(f"has_more with an unchanged cursor {cursor!r}", "changes_since")
            cursor = answer.next_cursor

    def get_status(self, document_id: str) -> RawStatusChange:
        response = self._http.request("GET", f"{DOCUMENTS}/{quote(document_id, safe='')}", operation="get_status")
        answer = self._parse(DocumentAnswer, response, "get_status")
        if answer.id != document_id:
            raise self._malformed(f"answered for document {answer.id!r}, asked for {document_id!r}", "get_status")
        return RawStatusChange(
            external_ref=answer.so_ky_hieu, document_id=answer.id, raw_code=answer.trang_thai,
            changed_at=answer.ngay_cap_nhat, answer=answer.y_kien_xu_ly, answered_by=answer.don_vi_xu_ly,
        )

    def post_rating(self, document_id: str, rating: Rating) -> None:
        body = WireRating.from_rating(rating).model_dump(mode="json", exclude_none=True)
        response = self._http.request(
            "POST", f"{DOCUMENTS}/{quote(document_id, safe='')}/danh-gia", operation="post_rating", ref=rating.rating_id,
            ok=(200, 201, 422), json=body, headers={"Idempotency-Key": rating.rating_id},
        )
        self._raise_if_rejected(response, "post_rating", rating.rating_id)
        answer = self._parse(RatingAnswer, response, "post_rating", rating.rating_id)
        if answer.ma_danh_gia != rating.rating_id:
            raise self._malformed(f"answered for rating {answer.ma_danh_gia!r}", "post_rating", rating.rating_id)
        log.info("rating sent system=%s document_id=%s rating_id=%s repeat=%s",
                 self.name, document_id, rating.rating_id, answer.existed)

    # plumbing

    def _malformed(self, message: str, operation: str, ref: str | None = None) -> MalformedResponse:
        return MalformedResponse(message, system=self.name, operation=operation, ref=ref)

    def _parse(self, model: type[M], response: requests.Response, operation: str, ref: str | None = None) -> M:
        data = self._http.json(response, operation=operation, ref=ref)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise self._malformed(f"unexpected shape: {_summary(exc)}", operation, ref) from exc

    def _raise_if_rejected(self, response: requests.Response, operation: str, ref: str) -> None:
        """A 422 names the fields the vendor refused; put them in the error so the dead-letter
        reason says what to fix."""
        if response.status_code != 422:
            return
        try:
            problem = ErrorAnswer.model_validate(response.json())
        except (ValueError, ValidationError, RecursionError, requests.RequestException):
            text = "".join(c if c.isprintable() else " " for c in response.text[:300])
            raise PermanentError(f"HTTP 422: {text}", system=self.name, operation=operation, ref=ref) from None
        fields = "; ".join(f"{f.field[:100]}: {f.message[:200]}" if f.message else f.field[:100] for f in problem.fields[:10])
        reason = "".join(c if c.isprintable() else " " for c in (fields or problem.message or problem.error)[:1000])
        raise PermanentError(f"rejected as invalid: {reason}", system=self.name, operation=operation, ref=ref)

    def _page(self, answer: ChangesAnswer) -> Page[RawStatusChange]:
        items: list[RawStatusChange] = []
        quarantined: list[Quarantined] = []
        for raw in answer.items:
            try:
                items.append(ChangeAnswer.model_validate(raw).to_canonical())
            except ValidationError as exc:
                source_id = raw.get("id") if isinstance(raw, dict) else None
                source_id = None if source_id is None else str(source_id)
                quarantined.append(Quarantined(
                    source=self.name, source_id=source_id if source_id and len(source_id) <= 128 and source_id.isprintable() else None,
                    reason=f"unexpected change shape: {_summary(exc)}", raw=_raw_text(raw),
                ))
        return Page[RawStatusChange](
            items=items, quarantined=quarantined, next_cursor=answer.next_cursor, has_more=answer.has_more
        )


def _raw_text(raw: object, limit: int = 4000) -> str:
    """An unusable item as storable text: always valid UTF-8, bounded."""
    try:
        text = json.dumps(raw, ensure_ascii=False)
    except (RecursionError, ValueError, TypeError) as exc:
        return f"[item not printable: {exc.__class__.__name__}]"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def _summary(exc: ValidationError) -> str:
    """Where the shape was wrong, without echoing values (they may hold personal data)."""
    problems = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'} {e['type']}" for e in exc.errors(include_input=False)[:5]]
    return ", ".join(problems)
