"""A stand-in REST document system in the style of TDOffice (Điện Biên's district document system).

Điện Biên forwards each phản ánh hiện trường (field report) into TDOffice, where it is
handled like any văn bản đến (incoming document). This stand-in speaks a JSON API of that
kind, with Vietnamese wire names, so the REST connector, the demo and the tests meet the
same quirks a real vendor API has:

- ``POST /api/v2/van-ban-den``: create an incoming document; multipart with a JSON part
  ``van_ban`` and any number of file parts ``tep_dinh_kem`` (attachments). Idempotent by
  ``Idempotency-Key`` and by ``so_ky_hieu`` (the sender's reference): a repeat answers 200
  with ``"existed": true``; a new record answers 201.
- ``GET /api/v2/van-ban-den/{id}``; ``GET /api/v2/van-ban-den?external_ref=``: one record; a
  list (exact match, empty when none).
- ``GET /api/v2/thay-doi-trang-thai?cursor=&limit=``: the change feed (thay đổi trạng thái,
  status changes), ordered by a sequence number that is also the cursor.
- ``POST /api/v2/van-ban-den/{id}/danh-gia``: a citizen's rating (đánh giá), idempotent by
  ``ma_danh_gia``.

Every ``/api`` call needs ``Authorization: Bearer <token>``. The ``/_sandbox`` routes (no
auth) tick the agency desk, list what was received for test assertions, recall a
document, and inject faults (latency, 5xx before processing, a stall after the record is
committed, malformed answers) as DESIGN §8 asks of every stand-in.

Status codes: CHO_TIEP_NHAN (waiting to be received), DA_TIEP_NHAN (accepted),
DA_PHAN_CONG (assigned), DANG_XU_LY (in progress), DA_XU_LY (answered), TRA_LAI
(returned: refused by the agency), THU_HOI (recalled by the sender).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from paht_bridge.canonical import vietnam_now
from paht_bridge.sandbox.desk import Clock, Stage, answer_text, next_stage, refusal_text

STATUS_BY_STAGE: dict[Stage, str] = {
    Stage.ARRIVED: "CHO_TIEP_NHAN",
    Stage.ACCEPTED: "DA_TIEP_NHAN",
    Stage.ASSIGNED: "DA_PHAN_CONG",
    Stage.IN_PROGRESS: "DANG_XU_LY",
    Stage.ANSWERED: "DA_XU_LY",
    Stage.REFUSED: "TRA_LAI",
}
RECALLED = "THU_HOI"
ANSWERING_STAGES = {Stage.ANSWERED, Stage.REFUSED}

#: Độ khẩn (urgency), in edXML's order: normal, urgent, very urgent, express, timed express.
Priority = Literal["BINH_THUONG", "KHAN", "THUONG_KHAN", "HOA_TOC", "HOA_TOC_HEN_GIO"]
#: Mức độ hài lòng (satisfaction): satisfied, not satisfied.
RatingValue = Literal["HAI_LONG", "KHONG_HAI_LONG"]

ORGAN_CODE = r"^[0-9A-Z]+(\.[0-9A-Z]+)*$"  # Decision 20/2020/QĐ-TTg organisation codes
CHUNK = 1024 * 1024
MAX_ATTACHMENT_NAME = 200  # the limit edXML validators apply; TDOffice-style systems copy it

# Messages as a Vietnamese vendor writes them; the field path is what a client acts on.
FIELD_MESSAGES = {
    "missing": "Trường bắt buộc",  # required field
    "string_too_short": "Không được để trống",  # must not be empty
    "string_too_long": "Vượt quá độ dài cho phép",  # too long
    "string_pattern_mismatch": "Sai định dạng",  # wrong format
    "extra_forbidden": "Trường không được hỗ trợ",  # unknown field
}


# --- wire models (the vendor's side; the connector keeps its own, so drift shows up) ---


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Organisation(Wire):
    """Đơn vị (organisation): ``ma`` its code, ``ten`` its name."""

    ma: str = Field(min_length=1, max_length=35, pattern=ORGAN_CODE)
    ten: str = Field(min_length=1, max_length=250)


class Place(Wire):
    """Địa điểm (where the report was made): address, latitude, longitude, administrative unit."""

    dia_chi: str | None = Field(default=None, max_length=500)
    vi_do: float | None = Field(default=None, ge=-90, le=90)
    kinh_do: float | None = Field(default=None, ge=-180, le=180)
    don_vi_hanh_chinh: str | None = Field(default=None, max_length=250)


class ReporterIn(Wire):
    """Người phản ánh (the reporter): personal data, present only when the IOC's rules allow."""

    ho_ten: SecretStr | None = None  # secret, so no repr or test failure prints it
    so_dien_thoai: SecretStr | None = None


class IncomingDocument(Wire):
    """A văn bản đến (incoming document) as the sender describes it.

    so_ky_hieu: the sender's reference (number/notation), unique per sender; trich_yeu:
    subject; noi_dung: content; han_xu_ly: deadline; do_khan: urgency; linh_vuc: category;
    ma_phan_anh: the report's key at the IOC; ngay_gui: when it was sent.
    """

    so_ky_hieu: str = Field(min_length=1, max_length=100)
    ma_phan_anh: str | None = Field(default=None, max_length=200)
    trich_yeu: str = Field(min_length=1, max_length=500)
    noi_dung: str = Field(min_length=1, max_length=10_000)
    don_vi_nhan: Organisation
    don_vi_gui: Organisation
    ngay_gui: AwareDatetime | None = None
    han_xu_ly: date
    do_khan: Priority = "BINH_THUONG"
    linh_vuc: str | None = Field(default=None, max_length=100)
    dia_diem: Place | None = None
    nguoi_phan_anh: ReporterIn | None = None


class RatingIn(Wire):
    """Đánh giá (rating): ma_danh_gia its id at the IOC, muc_do the level, nhan_xet a comment."""

    ma_danh_gia: str = Field(min_length=1, max_length=100)
    muc_do: RatingValue
    nhan_xet: str | None = Field(default=None, max_length=2000)
    thoi_gian: AwareDatetime | None = None


class AttachmentOut(BaseModel):
    """Tệp đính kèm (attachment): name, media type, size in bytes, SHA-256."""

    ten: str
    loai: str
    kich_thuoc: int
    sha256: str


class CreatedOut(BaseModel):
    id: str
    so_ky_hieu: str
    trang_thai: str
    existed: bool
    tep_dinh_kem: list[AttachmentOut]


class DocumentOut(BaseModel):
    """A record as the API shows it; the reporter's personal data is never echoed back."""

    id: str
    so_ky_hieu: str
    ma_phan_anh: str | None
    trich_yeu: str
    don_vi_nhan: Organisation
    han_xu_ly: date
    do_khan: str
    linh_vuc: str | None
    trang_thai: str
    ngay_den: datetime  # when it arrived
    ngay_cap_nhat: datetime  # last status change
    y_kien_xu_ly: str | None  # the agency's answer (or its reason for returning it)
    don_vi_xu_ly: str | None  # the unit that answered
    tep_dinh_kem: list[AttachmentOut]


class DocumentListOut(BaseModel):
    items: list[DocumentOut]


class ChangeOut(BaseModel):
    seq: int
    id: str
    so_ky_hieu: str
    trang_thai: str
    thoi_gian: datetime
    y_kien_xu_ly: str | None
    don_vi_xu_ly: str | None


class ChangesOut(BaseModel):
    items: list[ChangeOut]
    next_cursor: str
    has_more: bool


class RatingOut(BaseModel):
    ma_danh_gia: str
    existed: bool


# --- control plane shapes (English: these are for tests and the demo, not the vendor API) ---


class SandboxRating(BaseModel):
    rating_id: str
    level: str
    comment: str | None


class SandboxDocument(BaseModel):
    """Everything a test asserts about one record; reporter data only as which fields arrived."""

    id: str
    external_ref: str
    agency: str
    status: str
    create_calls: int
    created_count: int
    attachments: list[AttachmentOut]
    ratings: list[SandboxRating]
    reporter_fields: list[str]


class Faults(BaseModel):
    """Faults to inject into ``/api`` calls; the ``*_next`` counters are used up one call at a time."""

    model_config = ConfigDict(extra="forbid")

    latency: float = Field(default=0.0, ge=0, le=60)  # seconds added before every answer
    fail_next: int = Field(default=0, ge=0)  # answer ``fail_status`` without doing anything
    fail_status: int = Field(default=503, ge=400, le=599)
    stall_after_commit_next: int = Field(default=0, ge=0)  # commit a create, then answer late
    stall_seconds: float = Field(default=5.0, ge=0, le=300)
    malformed_next: int = Field(default=0, ge=0)  # do the work, then answer with garbage
    malformed: Literal["html", "truncated", "wrong_shape"] = "html"


class ApiError(Exception):
    """An error answer in the vendor's shape: ``{"error", "message", "fields"}``."""

    def __init__(self, status: int, error: str, message: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": error, "message": message, "fields": fields or []}


# --- state ---


@dataclass
class StoredRecord:
    id: str
    document: IncomingDocument
    attachments: list[AttachmentOut]
    received_at: datetime
    stage: Stage = Stage.ARRIVED
    recalled: bool = False
    updated_at: datetime | None = None
    answer: str | None = None
    answered_by: str | None = None
    ratings: dict[str, RatingIn] = field(default_factory=dict)

    @property
    def external_ref(self) -> str:
        return self.document.so_ky_hieu

    @property
    def status(self) -> str:
        return RECALLED if self.recalled else STATUS_BY_STAGE[self.stage]


@dataclass(frozen=True)
class ChangeEntry:
    seq: int
    record_id: str
    external_ref: str
    status: str
    at: datetime
    answer: str | None
    answered_by: str | None


class IdempotencyConflict(Exception):
    """An Idempotency-Key already used for a different external reference."""


class RestDocsysState:
    """In-memory store of one stand-in document system; every method is thread-safe.

    The counters per external reference (create calls, records created) are what
    exactly-once tests assert: any number of calls, one record.
    """

    def __init__(self, refuse_one_in: int = 7, token: str = "sandbox-token") -> None:
        self.refuse_one_in = refuse_one_in
        self.token = token
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._records: dict[str, StoredRecord] = {}
        self._by_ref: dict[str, str] = {}
        self._by_idempotency_key: dict[str, str] = {}
        self._create_calls: Counter[str] = Counter()
        self._created: Counter[str] = Counter()
        self._log: list[ChangeEntry] = []
        self._faults = Faults()
        self._clock: Clock | None = None

    # records

    def create(
        self, document: IncomingDocument, attachments: list[AttachmentOut], idempotency_key: str | None = None
    ) -> tuple[StoredRecord, bool]:
        """Store a record unless its key or reference is known; return it and whether it existed."""
        ref = document.so_ky_hieu
        with self._lock:
            self._create_calls[ref] += 1
            known_id = self._by_idempotency_key.get(idempotency_key) if idempotency_key else None
            if known_id is not None:
                if self._records[known_id].external_ref != ref:
                    raise IdempotencyConflict(idempotency_key)
                return self._records[known_id], True
            if ref in self._by_ref:
                record = self._records[self._by_ref[ref]]
                if idempotency_key:
                    self._by_idempotency_key[idempotency_key] = record.id
                return record, True
            now = vietnam_now()
            record = StoredRecord(id=f"VBD-{next(self._ids):06d}", document=document, attachments=attachments, received_at=now)
            self._records[record.id] = record
            self._by_ref[ref] = record.id
            if idempotency_key:
                self._by_idempotency_key[idempotency_key] = record.id
            self._created[ref] += 1
            self._record_change(record, now)
            return record, False

    def get(self, record_id: str) -> StoredRecord | None:
        with self._lock:
            return self._records.get(record_id)

    def find(self, external_ref: str) -> list[StoredRecord]:
        with self._lock:
            record_id = self._by_ref.get(external_ref)
            return [self._records[record_id]] if record_id else []

    def create_calls(self, external_ref: str) -> int:
        with self._lock:
            return self._create_calls[external_ref]

    def created_count(self, external_ref: str) -> int:
        with self._lock:
            return self._created[external_ref]

    # change feed

    def _record_change(self, record: StoredRecord, at: datetime) -> None:
        """Append to the log; the caller holds the lock, so sequence numbers never interleave."""
        record.updated_at = at
        self._log.append(
            ChangeEntry(
                seq=len(self._log) + 1, record_id=record.id, external_ref=record.external_ref,
                status=record.status, at=at, answer=record.answer, answered_by=record.answered_by,
            )
        )

    def changes(self, after: int, limit: int) -> tuple[list[ChangeEntry], int, bool]:
        """Changes with a sequence above ``after``: (entries, next cursor, whether more remain)."""
        with self._lock:
            entries = self._log[after : after + limit]  # seq n sits at index n - 1
            next_cursor = entries[-1].seq if entries else max(after, 0)
            return entries, next_cursor, next_cursor < len(self._log)

    # the agency desk

    def tick(self) -> int:
        """Move every open record one desk stage on; return how many moved."""
        moved = 0
        with self._lock:
            now = vietnam_now()
            for record in self._records.values():
                if record.recalled:
                    continue
                stage = next_stage(record.stage, record.external_ref, self.refuse_one_in)
                if stage is None:
                    continue
                record.stage = stage
                agency = record.document.don_vi_nhan.ten
                if stage is Stage.ANSWERED:
                    record.answer = answer_text(record.document.trich_yeu, agency)
                elif stage is Stage.REFUSED:
                    record.answer = refusal_text(agency)
                if stage in ANSWERING_STAGES:
                    record.answered_by = agency
                self._record_change(record, now)
                moved += 1
        return moved

    def recall(self, record_id: str) -> StoredRecord:
        """Thu hồi (recall) by the sender; only while the agency has not answered."""
        with self._lock:
            record = self._records[record_id]
            if not record.recalled and record.stage not in ANSWERING_STAGES:
                record.recalled = True
                self._record_change(record, vietnam_now())
            return record

    def start_clock(self, interval: float) -> Clock:
        """Tick on its own every ``interval`` seconds (the demo); ``stop_clock`` ends it."""
        with self._lock:
            if self._clock is None:
                self._clock = Clock(self.tick, interval).start()
            return self._clock

    def stop_clock(self) -> None:
        with self._lock:
            clock, self._clock = self._clock, None
        if clock is not None:
            clock.stop()

    # ratings

    def rate(self, record_id: str, rating: RatingIn) -> bool:
        """Store a rating once; return whether its id was already known."""
        with self._lock:
            ratings = self._records[record_id].ratings
            if rating.ma_danh_gia in ratings:
                return True
            ratings[rating.ma_danh_gia] = rating
            return False

    # faults

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults

    def take_fault(self, counter: Literal["fail_next", "stall_after_commit_next", "malformed_next"]) -> bool:
        """Use up one injected fault of this kind, if any is left."""
        with self._lock:
            left = getattr(self._faults, counter)
            if left <= 0:
                return False
            self._faults = self._faults.model_copy(update={counter: left - 1})
            return True

    # assertions

    def documents(self) -> list[SandboxDocument]:
        with self._lock:
            return [self._snapshot(record) for record in self._records.values()]

    def document(self, record_id: str) -> SandboxDocument:
        with self._lock:
            return self._snapshot(self._records[record_id])

    def document_by_ref(self, external_ref: str) -> SandboxDocument | None:
        with self._lock:
            record_id = self._by_ref.get(external_ref)
            return self._snapshot(self._records[record_id]) if record_id else None

    def _snapshot(self, record: StoredRecord) -> SandboxDocument:
        reporter = record.document.nguoi_phan_anh
        return SandboxDocument(
            id=record.id, external_ref=record.external_ref, agency=record.document.don_vi_nhan.ma,
            status=record.status, create_calls=self._create_calls[record.external_ref],
            created_count=self._created[record.external_ref], attachments=list(record.attachments),
            ratings=[SandboxRating(rating_id=r.ma_danh_gia, level=r.muc_do, comment=r.nhan_xet)
                     for r in record.ratings.values()],
            reporter_fields=sorted(reporter.model_dump(exclude_none=True)) if reporter else [],
        )


# --- the app ---


def _field_errors(exc: ValidationError | RequestValidationError, prefix: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Pydantic errors as ``[{"field": "don_vi_nhan.ma", "message": ...}]``; the request
    location (body, query) is dropped because a vendor names fields, not HTTP parts."""
    fields = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if part not in ("body", "query", "header", "path")]
        message = FIELD_MESSAGES.get(error["type"], error["msg"])
        fields.append({"field": ".".join((*prefix, *loc)) or "body", "message": message})
    return fields


def _invalid(fields: list[dict[str, str]]) -> ApiError:
    names = ", ".join(f["field"] for f in fields)
    return ApiError(422, "validation_failed", f"Dữ liệu không hợp lệ: {names}", fields)


def _document_out(record: StoredRecord) -> DocumentOut:
    doc = record.document
    return DocumentOut(
        id=record.id, so_ky_hieu=doc.so_ky_hieu, ma_phan_anh=doc.ma_phan_anh, trich_yeu=doc.trich_yeu,
        don_vi_nhan=doc.don_vi_nhan, han_xu_ly=doc.han_xu_ly, do_khan=doc.do_khan, linh_vuc=doc.linh_vuc,
        trang_thai=record.status, ngay_den=record.received_at, ngay_cap_nhat=record.updated_at or record.received_at,
        y_kien_xu_ly=record.answer, don_vi_xu_ly=record.answered_by, tep_dinh_kem=list(record.attachments),
    )


async def _parse_document(part: str | UploadFile | None) -> IncomingDocument:
    if part is None:
        raise _invalid([{"field": "van_ban", "message": "Thiếu phần van_ban (JSON)"}])  # the JSON part is missing
    raw = await part.read() if isinstance(part, UploadFile) else part
    try:
        data = json.loads(raw)
    except ValueError:
        raise _invalid([{"field": "van_ban", "message": "JSON không hợp lệ"}]) from None  # invalid JSON
    try:
        return IncomingDocument.model_validate(data)
    except ValidationError as exc:
        raise _invalid(_field_errors(exc)) from None


async def _store_attachment(index: int, upload: UploadFile) -> AttachmentOut:
    """Hash the upload in chunks: starlette spooled it to disk, so nothing large is held."""
    name = upload.filename or ""
    if not name or len(name) > MAX_ATTACHMENT_NAME:
        raise _invalid([{"field": f"tep_dinh_kem[{index}].ten", "message": f"Tên tệp từ 1 đến {MAX_ATTACHMENT_NAME} ký tự"}])
    digest, size = hashlib.sha256(), 0
    while chunk := await upload.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    media_type = upload.content_type or "application/octet-stream"
    return AttachmentOut(ten=name, loai=media_type, kich_thuoc=size, sha256=digest.hexdigest())


def _malformed_answer(kind: str) -> Response:
    if kind == "truncated":
        return Response(b'{"id": "VBD-0000', media_type="application/json")
    if kind == "wrong_shape":
        return JSONResponse({"success": True, "data": None})
    # What a reverse proxy or a login redirect serves in front of many real systems.
    return HTMLResponse("<!DOCTYPE html><html><head><title>TDOffice</title></head><body>Hệ thống đang bảo trì</body></html>")


def _api_router(state: RestDocsysState) -> APIRouter:
    def bearer(authorization: Annotated[str | None, Header()] = None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), state.token.encode()):
            raise ApiError(401, "unauthorized", "Thiếu hoặc sai mã truy cập")  # missing or wrong access token

    api = APIRouter(prefix="/api/v2", dependencies=[Depends(bearer)])

    def record_or_404(record_id: str) -> StoredRecord:
        record = state.get(record_id)
        if record is None:
            raise ApiError(404, "not_found", f"Không tìm thấy văn bản {record_id}")
        return record

    @api.post("/van-ban-den", status_code=201, response_model=CreatedOut)
    async def create_incoming(request: Request, idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        form = await request.form()
        try:
            document = await _parse_document(form.get("van_ban"))
            uploads = [part for part in form.getlist("tep_dinh_kem") if isinstance(part, UploadFile)]
            attachments = [await _store_attachment(i, upload) for i, upload in enumerate(uploads)]
        finally:
            await form.close()
        try:
            record, existed = state.create(document, attachments, idempotency_key)
        except IdempotencyConflict:
            raise ApiError(409, "idempotency_key_reused", "Idempotency-Key đã dùng cho văn bản khác") from None
        if state.take_fault("stall_after_commit_next"):
            await asyncio.sleep(state.faults.stall_seconds)  # committed; the client times out not knowing
        body = CreatedOut(
            id=record.id, so_ky_hieu=record.external_ref, trang_thai=record.status, existed=existed,
            tep_dinh_kem=record.attachments,
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=200 if existed else 201)

    @api.get("/van-ban-den", response_model=DocumentListOut)
    def find_incoming(external_ref: Annotated[str, Query(min_length=1)]) -> DocumentListOut:
        return DocumentListOut(items=[_document_out(r) for r in state.find(external_ref)])

    @api.get("/van-ban-den/{record_id}", response_model=DocumentOut)
    def get_incoming(record_id: str) -> DocumentOut:
        return _document_out(record_or_404(record_id))

    @api.get("/thay-doi-trang-thai", response_model=ChangesOut)
    def list_changes(cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 200) -> ChangesOut:
        if cursor is not None and not (cursor.isascii() and cursor.isdigit()):
            raise _invalid([{"field": "cursor", "message": "Sai định dạng"}])
        entries, next_cursor, has_more = state.changes(int(cursor or 0), limit)
        items = [
            ChangeOut(seq=e.seq, id=e.record_id, so_ky_hieu=e.external_ref, trang_thai=e.status, thoi_gian=e.at,
                      y_kien_xu_ly=e.answer, don_vi_xu_ly=e.answered_by)
            for e in entries
        ]
        return ChangesOut(items=items, next_cursor=str(next_cursor), has_more=has_more)

    @api.post("/van-ban-den/{record_id}/danh-gia", status_code=201, response_model=RatingOut)
    def rate_incoming(record_id: str, rating: RatingIn) -> JSONResponse:
        record_or_404(record_id)
        existed = state.rate(record_id, rating)
        body = RatingOut(ma_danh_gia=rating.ma_danh_gia, existed=existed)
        return JSONResponse(body.model_dump(), status_code=200 if existed else 201)

    return api


def _control_router(state: RestDocsysState) -> APIRouter:
    control = APIRouter(prefix="/_sandbox")

    @control.post("/desk/tick")
    def tick() -> dict[str, int]:
        return {"moved": state.tick()}

    @control.get("/documents", response_model=list[SandboxDocument])
    def documents() -> list[SandboxDocument]:
        return state.documents()

    @control.post("/documents/{record_id}/recall", response_model=SandboxDocument)
    def recall(record_id: str) -> SandboxDocument:
        if state.get(record_id) is None:
            raise ApiError(404, "not_found", record_id)
        state.recall(record_id)
        return state.document(record_id)

    @control.get("/faults", response_model=Faults)
    def get_faults() -> Faults:
        return state.faults

    @control.put("/faults", response_model=Faults)
    def put_faults(faults: Faults) -> Faults:
        state.set_faults(faults)
        return faults

    @control.delete("/faults", response_model=Faults)
    def clear_faults() -> Faults:
        state.set_faults(Faults())
        return state.faults

    return control


def create_rest_docsys_app(state: RestDocsysState) -> FastAPI:
    """The ASGI app over ``state``; serve it with ``LoopbackServer``."""
    app = FastAPI(title="TDOffice-style document system (PAHT bridge sandbox)", version="2")

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body, status_code=exc.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        # Starlette's own refusals (a broken multipart body, an unknown route) in the vendor's shape.
        error = "bad_request" if exc.status_code == 400 else "http_error"
        body = {"error": error, "message": str(exc.detail), "fields": []}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = _invalid(_field_errors(exc))
        return JSONResponse(error.body, status_code=error.status)

    @app.middleware("http")
    async def inject_faults(request: Request, call_next: Any) -> Response:
        if not request.url.path.startswith("/api/"):
            return await call_next(request)
        faults = state.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if state.take_fault("fail_next"):  # a gateway error before the system saw the request
            body = {"error": "unavailable", "message": "Dịch vụ tạm thời gián đoạn", "fields": []}  # service briefly down
            return JSONResponse(body, status_code=faults.fail_status)
        response = await call_next(request)
        if state.take_fault("malformed_next"):  # the work is done; only the answer is garbled
            return _malformed_answer(faults.malformed)
        return response

    app.include_router(_api_router(state))
    app.include_router(_control_router(state))
    return app
