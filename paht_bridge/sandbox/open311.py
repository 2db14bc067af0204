"""Stand-in for a city's Open311 GeoReport v2 server (here Quảng Ninh's citizen portal).

It serves service requests (phản ánh hiện trường, field reports) by date window, in JSON
and XML, streams their photos, and takes the agencies' answers as mySociety's *service
request updates*. Everything lives in memory behind one lock. Routes under ``/_sandbox``
are the test and demo controls every citizen stand-in has: read the whole state, add a
request, make citizens rate (Open311 has no ratings: nothing happens), inject faults.

Wire format (``{fmt}`` is ``json`` or ``xml``):

- ``GET /services.{fmt}``: the service list (category codes XD, MT, GT, DT).
- ``GET /requests.{fmt}?start_date=&end_date=&status=&service_code=&service_request_id=&jurisdiction_id=``:
  requests whose ``updated_datetime`` (``requested_datetime`` when it has none) lies in
  ``[start_date, end_date]``, both inclusive, oldest first, at most ``max_results`` of them
  (the oldest are kept, as many real servers do). Without dates: the last 90 days.
  JSON is a list; XML is ``<service_requests><request>…</request></service_requests>``.
- ``GET /requests/{id}.{fmt}``: one request, in a list of one.
- ``POST /servicerequestupdates.{fmt}``, form-encoded: ``api_key``, ``service_request_id``,
  ``update_id``, ``status`` (OPEN, CLOSED or one of FixMyStreet's extended statuses),
  ``description``, ``updated_datetime``, optional ``agency_responsible`` and
  ``jurisdiction_id``. Answers ``[{"update_id", "service_request_id"}]``; the request takes
  the new status, ``status_notes`` and a fresh ``updated_datetime`` (the server's clock), so
  the answer shows in the feed. An ``update_id`` already taken is refused with 409
  "already exists": a repeat never makes a second update.
- ``GET /servicerequestupdates.{fmt}?start_date=&end_date=&service_request_id=``: the updates.
- ``GET /media/{name}``: a photo's bytes (generated, deterministic).
- errors: ``[{"code": 403, "description": "…"}]`` or ``<errors><error><code>…``, with the
  same HTTP status.

Vietnamese extension fields on a request (the client reads them, other clients ignore them):
``province``, ``district``, ``ward``, ``province_code``, ``district_code``, ``ward_code`` (GSO
codes) and ``unit_scheme`` (``legacy``: 63 provinces with districts, before 1 July 2025;
``2025``: 34 provinces, two levels). Requests are served as seeded, quirks included (see
``seeds/open311_quangninh.json``); a relative ``media_url`` is made absolute on this server.

This module is the HTTP side; the store is ``open311_store`` and the wire helpers
``open311_wire``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from paht_bridge.sandbox import sample_media
from paht_bridge.sandbox.citizen_app_wire import CATEGORY_NAMES
from paht_bridge.sandbox.faults import add_fault_routes, bad_gateway_page
from paht_bridge.sandbox.open311_store import Open311State
from paht_bridge.sandbox.open311_wire import (
    ApiError,
    FaultIn,
    absolute_media,
    checked_format,
    csv_values,
    date_window,
    error_response,
    is_missing,
    render,
)

SEED_FILE = Path(__file__).parent / "seeds" / "open311_quangninh.json"
SERVICE_CODES = ("XD", "MT", "GT", "DT")


def load_open311_seeds(name: str = "quangninh_open311") -> list[dict[str, Any]]:
    """The seeded requests of one Open311 stand-in, as the server serves them (quirks kept)."""
    doc = json.loads(SEED_FILE.read_text(encoding="utf-8"))
    if doc.get("source") != name:
        raise ValueError(f"no Open311 seeds named {name!r} (there are: {doc.get('source')!r})")
    return copy.deepcopy(doc["requests"])


def create_open311_app(state: Open311State) -> FastAPI:
    """The ASGI app serving ``state``; run it with ``LoopbackServer``."""
    app = FastAPI(title=f"Open311 stand-in: {state.name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(_api_router(state))
    app.include_router(_control_router(state))
    return app


def _api_router(state: Open311State) -> APIRouter:
    api = APIRouter()

    def guarded(fmt: str, answer: Callable[[str], Response]) -> Response:
        """Faults first, then the answer; an ``ApiError`` becomes an error document in ``fmt``."""
        fault = state.take_fault()
        if fault is not None:
            if fault.mode == "html":
                return bad_gateway_page()
            return error_response(fmt, fault.status, fault.description)
        try:
            return answer(checked_format(fmt))
        except ApiError as exc:
            return error_response(fmt, exc.status, exc.description)

    @api.get("/services.{fmt}")
    def services(fmt: str) -> Response:
        entries = [{"service_code": code, "service_name": CATEGORY_NAMES[code], "description": CATEGORY_NAMES[code],
                    "metadata": False, "type": "realtime", "keywords": "", "group": "Phản ánh hiện trường"}
                   for code in SERVICE_CODES]
        return guarded(fmt, lambda f: render(f, "services", "service", entries))

    @api.get("/requests.{fmt}")
    def list_requests(
        request: Request, fmt: str, start_date: str | None = None, end_date: str | None = None, status: str | None = None,
        service_code: str | None = None, service_request_id: str | None = None, jurisdiction_id: str | None = None,
    ) -> Response:
        def answer(f: str) -> Response:
            state.check_jurisdiction(jurisdiction_id)
            start, end = date_window(start_date, end_date, state.now())
            statuses, codes = csv_values(status), csv_values(service_code)
            found = state.requests_between(
                start, end, status={s.lower() for s in statuses} if statuses else None,
                service_codes=set(codes) if codes else None, ids=csv_values(service_request_id),
            )
            base = str(request.base_url)
            return render(f, "service_requests", "request", [absolute_media(d, base) for d in found])

        return guarded(fmt, answer)

    @api.get("/requests/{request_id}.{fmt}")
    def one_request(request: Request, request_id: str, fmt: str, jurisdiction_id: str | None = None) -> Response:
        def answer(f: str) -> Response:
            state.check_jurisdiction(jurisdiction_id)
            found = state.requests_between(None, None, ids=[request_id])
            if not found:
                raise ApiError(404, f"service_request_id {request_id[:60]} not found")
            return render(f, "service_requests", "request", [absolute_media(d, str(request.base_url)) for d in found])

        return guarded(fmt, answer)

    @api.post("/servicerequestupdates.{fmt}")
    async def post_update(request: Request, fmt: str) -> Response:
        try:
            form = {key: str(value) for key, value in (await request.form()).items()}
        except Exception:  # noqa: BLE001 - a body that is not a form is the client's error
            form = None

        def answer(f: str) -> Response:
            if form is None:
                raise ApiError(400, "the body must be application/x-www-form-urlencoded")
            return render(f, "service_request_updates", "request_update", [state.post_update(form)])

        return guarded(fmt, answer)

    @api.get("/servicerequestupdates.{fmt}")
    def list_updates(fmt: str, start_date: str | None = None, end_date: str | None = None,
                     service_request_id: str | None = None, jurisdiction_id: str | None = None) -> Response:
        def answer(f: str) -> Response:
            state.check_jurisdiction(jurisdiction_id)
            start, end = date_window(start_date, end_date, state.now())
            found = state.updates_between(start, end, None if is_missing(service_request_id) else service_request_id)
            return render(f, "service_request_updates", "request_update", found)

        return guarded(fmt, answer)

    @api.get("/media/{name}")
    def media(name: str) -> Response:
        media_type = state.media_type(name)
        if media_type is None:
            return error_response("json", 404, f"media {name[:60]} not found")
        data = sample_media.attachment_bytes(f"open311:{name}", media_type)
        return sample_media.streamed(data, media_type, {"Content-Length": str(len(data))})

    return api


def _control_router(state: Open311State) -> APIRouter:
    control = APIRouter(prefix="/_sandbox")

    @control.get("/reports")
    def reports() -> dict[str, Any]:
        return {"source": state.name, "reports": state.snapshot()}

    @control.post("/reports", status_code=201)
    def add_report(body: Annotated[Any, Body()]) -> JSONResponse:
        """Add a request (Open311 wire shape, stored and served as given)."""
        try:
            request_id, created = state.add_request(body)
        except ApiError as exc:
            return JSONResponse({"error": exc.description}, status_code=exc.status)
        return JSONResponse({"id": request_id, "created": created}, status_code=201 if created else 200)

    @control.post("/citizens/rate")
    def rate() -> dict[str, int]:
        return {"rated": 0}  # GeoReport v2 has no ratings

    add_fault_routes(control, state, FaultIn)
    return control
