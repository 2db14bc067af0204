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
committed, malformed answers), so the connector's handling of each can be tested.

Status codes: CHO_TIEP_NHAN (waiting to be received), DA_TIEP_NHAN (accepted),
DA_PHAN_CONG (assigned), DANG_XU_LY (in progress), DA_XU_LY (answered), TRA_LAI
(returned: refused by the agency), THU_HOI (recalled by the sender).

This module is the HTTP side (routes, errors in the vendor's shape, fault injection); the
store is ``rest_docsys_store`` and the JSON shapes are ``rest_docsys_wire``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from paht_bridge.sandbox.rest_docsys_store import IdempotencyConflict, RestDocsysState, StoredRecord
from paht_bridge.sandbox.rest_docsys_wire import (
    ApiError,
    AttachmentOut,
    ChangeOut,
    ChangesOut,
    CreatedOut,
    DocumentListOut,
    DocumentOut,
    Faults,
    IncomingDocument,
    RatingIn,
    RatingOut,
    SandboxDocument,
)

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
