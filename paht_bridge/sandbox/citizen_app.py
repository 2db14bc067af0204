"""Stand-in for one province's citizen app (QuangTri IOC, Điện Biên Smart...) and its open API.

It serves the reports a province's app holds as a paged change feed, streams their
attachments, takes the agencies' public answers (kết quả xử lý, outcome) and lets
citizens rate them (đánh giá, rating). Everything lives in memory behind one lock; the
demo runs one instance per province. Routes under ``/_sandbox`` are the test and demo
controls: add reports, make citizens rate, inject faults, read the whole state.

Wire format (JSON, snake_case), every ``/api/v1`` route needs ``X-API-Key``:

- ``GET /api/v1/reports?since=<cursor>&limit=<n>`` →
  ``{"data": [report...], "paging": {"next_cursor": "17", "has_more": true, "limit": 50}}``
- ``GET /api/v1/attachments/{id}`` → the file, streamed, with Content-Type and Content-Length
- ``POST /api/v1/reports/{id}/outcome`` ``{"status", "answer", "answer_unit", "answered_at"}`` →
  ``{"report_id", "outcome_id", "created"}`` (201 when new, 200 for a repeat: the same
  ``Idempotency-Key`` header as an earlier post, or without one an identical post)
- ``GET /api/v1/ratings?since=<cursor>&limit=<n>`` → ``{"data": [rating...], "paging": {...}}``
- errors: ``{"error": {"code": "...", "message": "..."}}``

The cursor is a change sequence number: every new or changed report takes the next
number, so a report added or answered later always comes after any cursor handed out.

This module is the HTTP side; the store is ``citizen_app_store``, the shapes
``citizen_app_wire`` and the attachment files ``sample_media``.
"""

from __future__ import annotations

import hmac
import json
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from paht_bridge.sandbox import sample_media
from paht_bridge.sandbox.citizen_app_store import CitizenAppState
from paht_bridge.sandbox.citizen_app_wire import FaultIn, OutcomeIn
from paht_bridge.sandbox.faults import add_fault_routes, bad_gateway_page

SEED_FILE = Path(__file__).parent / "seeds" / "citizen_reports.json"
MAX_PAGE = 200


def load_seed_reports(source: str) -> list[dict[str, Any]]:
    """The seed reports of one citizen app (``quangtri_ioc``, ``dienbien_smart``), oldest first."""
    doc = json.loads(SEED_FILE.read_text(encoding="utf-8"))
    return [report for report in doc["reports"] if report.get("source") == source]


class ApiError(Exception):
    """An error the API answers in its own envelope."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _FaultInjected(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _cursor(since: str | None) -> int:
    if since is None or since == "":
        return 0
    if not since.isdigit():
        raise ApiError(400, "invalid_cursor", "the cursor is a change number from an earlier page")
    return int(since)


def _paged(items: list[dict[str, Any]], next_cursor: int, has_more: bool, limit: int) -> dict[str, Any]:
    return {"data": items, "paging": {"next_cursor": str(next_cursor), "has_more": has_more, "limit": limit}}


def create_citizen_app(state: CitizenAppState) -> FastAPI:
    """The ASGI app serving ``state``; run it with ``LoopbackServer``."""
    app = FastAPI(title=f"Citizen app stand-in: {state.name}", docs_url=None, redoc_url=None, openapi_url=None)
    _install_error_handlers(app)
    app.include_router(_api_router(state))
    app.include_router(_control_router(state))
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "not_found" if exc.status_code == 404 else "error", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def invalid(_: Request, exc: RequestValidationError | ValidationError) -> JSONResponse:
        """A query or a body that does not fit: FastAPI's check, or a seed shape the store checks."""
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(400, "invalid_request", where)

    @app.exception_handler(_FaultInjected)
    async def injected(_: Request, exc: _FaultInjected) -> Response:
        return exc.response


def _api_router(state: CitizenAppState) -> APIRouter:
    def inject_faults() -> None:
        fault = state.take_fault()
        if fault is None:
            return
        time.sleep(fault.delay_s)
        if fault.mode == "error":
            raise _FaultInjected(_error(fault.status, "unavailable", "dịch vụ tạm thời gián đoạn"))
        if fault.mode == "html":
            raise _FaultInjected(bad_gateway_page())
        if fault.mode == "invalid_json":
            raise _FaultInjected(Response('{"data": [{"id": "QT-', status_code=200, media_type="application/json"))

    def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), state.api_key.encode()):
            raise ApiError(401, "unauthorized", "missing or wrong X-API-Key")

    api = APIRouter(prefix="/api/v1", dependencies=[Depends(inject_faults), Depends(require_key)])

    @api.get("/reports")
    def list_reports(since: str | None = None, limit: Annotated[int, Query(ge=1)] = 50) -> dict[str, Any]:
        limit = min(limit, MAX_PAGE)
        items, next_cursor, has_more = state.reports_after(_cursor(since), limit)
        return _paged(items, next_cursor, has_more, limit)

    @api.get("/attachments/{attachment_id}")
    def get_attachment(attachment_id: str) -> Response:
        found = state.attachment(attachment_id)
        if found is None:
            raise ApiError(404, "attachment_not_found", "no such attachment")
        name, media_type = found
        data = sample_media.attachment_bytes(attachment_id, media_type)
        headers = {
            "Content-Length": str(len(data)),
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        }
        return sample_media.streamed(data, media_type, headers)

    @api.post("/reports/{report_id}/outcome")
    def post_outcome(report_id: str, outcome: OutcomeIn,
                     idempotency_key: Annotated[str | None, Header(max_length=255)] = None) -> JSONResponse:
        result = state.publish(report_id, outcome, idempotency_key)
        if result is None:
            raise ApiError(404, "report_not_found", "no such report")
        outcome_id, created = result
        body = {"report_id": report_id, "outcome_id": outcome_id, "created": created}
        return JSONResponse(body, status_code=201 if created else 200)

    @api.get("/ratings")
    def list_ratings(since: str | None = None, limit: Annotated[int, Query(ge=1)] = 50) -> dict[str, Any]:
        limit = min(limit, MAX_PAGE)
        items, next_cursor, has_more = state.ratings_after(_cursor(since), limit)
        return _paged(items, next_cursor, has_more, limit)

    return api


def _control_router(state: CitizenAppState) -> APIRouter:
    control = APIRouter(prefix="/_sandbox")

    @control.post("/citizens/rate")
    def rate() -> dict[str, int]:
        return {"rated": state.rate_all()}

    @control.get("/reports")
    def reports() -> dict[str, Any]:
        return {"source": state.name, "reports": state.snapshot()}

    @control.post("/reports", status_code=201)
    def add_report(body: Annotated[dict[str, Any], Body()], verbatim: bool = False) -> JSONResponse:
        """Add a report (seed shape); ``verbatim=true`` stores and serves the body unchecked."""
        report_id, seq, created = state.add_report(body, verbatim=verbatim)
        return JSONResponse({"id": report_id, "seq": seq, "created": created}, status_code=201 if created else 200)

    add_fault_routes(control, state, FaultIn)
    return control
