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
"""

from __future__ import annotations

import copy
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from paht_bridge.connectors.xml import xml_text
from paht_bridge.canonical import VIETNAM_TZ, vietnam_now
from paht_bridge.sandbox.citizen_app import CATEGORY_NAMES, CHUNK, attachment_bytes
from paht_bridge.sandbox.faults import FaultSlot, add_fault_routes

SEED_FILE = Path(__file__).parent / "seeds" / "open311_quangninh.json"
FORMATS = ("json", "xml")
DEFAULT_DAYS = 90
SERVICE_CODES = ("XD", "MT", "GT", "DT")
#: mySociety's update statuses: OPEN and CLOSED, and FixMyStreet's finer ones.
UPDATE_STATUSES = {
    "OPEN": "open", "CLOSED": "closed", "FIXED": "closed", "DUPLICATE": "closed", "NOT_COUNCILS_RESPONSIBILITY": "closed",
    "NO_FURTHER_ACTION": "closed", "INVESTIGATING": "open", "IN_PROGRESS": "open", "ACTION_SCHEDULED": "open",
    "INTERNAL_REFERRAL": "open",
}
MEDIA_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}
NULL_WORDS = frozenset({"", "null"})


def load_open311_seeds(name: str = "quangninh_open311") -> list[dict[str, Any]]:
    """The seeded requests of one Open311 stand-in, as the server serves them (quirks kept)."""
    doc = json.loads(SEED_FILE.read_text(encoding="utf-8"))
    if doc.get("source") != name:
        raise ValueError(f"no Open311 seeds named {name!r} (there are: {doc.get('source')!r})")
    return copy.deepcopy(doc["requests"])


class FaultIn(BaseModel):
    """A fault for the next ``count`` API calls: an Open311 error document with ``status``, or
    a proxy's HTML page served with 200."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["error", "html"] = "error"
    count: int = Field(default=1, ge=1)
    status: int = Field(default=503, ge=400, le=599)
    description: str = "Dịch vụ tạm thời gián đoạn"


class ApiError(Exception):
    """An error the server answers as an Open311 error document."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in NULL_WORDS)


def parse_time(value: object) -> datetime | None:
    """A wire time (zone-less = Vietnam time), or None when missing or unreadable."""
    if _missing(value) or not isinstance(value, str):
        return None
    text = value.strip()
    if " " in text and "T" in text:
        text = text.replace(" ", "+")  # a '+' sent unencoded in a query string arrives as a space
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at.replace(tzinfo=VIETNAM_TZ) if at.tzinfo is None else at


@dataclass
class _Stored:
    request_id: str
    data: dict[str, Any]  # served as-is (apart from an absolute media_url)
    at: datetime  # what the feed filters and orders by
    updates: list[dict[str, Any]] = field(default_factory=list)
    publish_calls: int = 0


class Open311State(FaultSlot):
    """Everything one Open311 server holds, in memory; every method takes the lock.

    ``clock`` stamps requests changed by an update (tests pass a fixed one);
    ``jurisdiction_id``, when set, must match the one a client sends, if it sends one.
    """

    def __init__(
        self,
        name: str,
        requests: list[dict[str, Any]],
        api_key: str,
        max_results: int = 50,
        *,
        jurisdiction_id: str | None = None,
        clock: Callable[[], datetime] = vietnam_now,
    ) -> None:
        if max_results < 1:
            raise ValueError("max_results must be at least 1")
        self.name = name
        self.api_key = api_key
        self.max_results = max_results
        self.jurisdiction_id = jurisdiction_id
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: dict[str, _Stored] = {}
        self._update_ids: set[str] = set()
        self._media: dict[str, str] = {}  # name → media type
        self._fault: FaultIn | None = None
        self._faults_left = 0
        for body in requests:
            self.add_request(body)

    def now(self) -> datetime:
        return self._clock()

    # requests

    def add_request(self, body: dict[str, Any]) -> tuple[str, bool]:
        """Add a request, or replace one (its updates stay). Stored as given: a seed's quirks are
        served back. Without any time it is stamped now. Returns (id, created)."""
        if not isinstance(body, dict):
            raise ApiError(400, "a request is a JSON object")
        data = dict(body)
        with self._lock:
            if _missing(data.get("service_request_id")):
                data["service_request_id"] = str(len(self._requests) + 1)
            request_id = str(data["service_request_id"]).strip()
            at = parse_time(data.get("updated_datetime")) or parse_time(data.get("requested_datetime"))
            if at is None:
                at = self._clock()
                data.setdefault("requested_datetime", at.isoformat(timespec="seconds"))
                data["updated_datetime"] = at.isoformat(timespec="seconds")
            previous = self._requests.get(request_id)
            stored = _Stored(request_id, data, at)
            if previous is not None:
                stored.updates, stored.publish_calls = previous.updates, previous.publish_calls
            self._requests[request_id] = stored
            media = data.get("media_url")
            if isinstance(media, str) and media.startswith("/media/"):
                name = media.removeprefix("/media/")
                self._media[name] = MEDIA_TYPES.get(name.rpartition(".")[2].lower(), "image/jpeg")
            return request_id, previous is None

    def requests_between(
        self, start: datetime | None, end: datetime | None, *, status: set[str] | None = None,
        service_codes: set[str] | None = None, ids: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Requests in ``[start, end]`` by their feed time, oldest first, capped at ``max_results``."""
        with self._lock:
            if ids:
                chosen = [self._requests[i] for i in ids if i in self._requests]
            else:
                chosen = sorted(
                    (s for s in self._requests.values()
                     if (start is None or s.at >= start) and (end is None or s.at <= end)
                     and (status is None or str(s.data.get("status", "")).lower() in status)
                     and (service_codes is None or str(s.data.get("service_code", "")) in service_codes)),
                    key=lambda s: (s.at, s.request_id),
                )
            return [dict(s.data) for s in chosen[: self.max_results]]

    def media_type(self, name: str) -> str | None:
        with self._lock:
            return self._media.get(name)

    # updates

    def post_update(self, form: dict[str, str]) -> dict[str, str]:
        """Take one service request update; raises ``ApiError`` for what a real server refuses."""
        key = form.get("api_key")
        if not key or not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise ApiError(403, "api_key is missing or not valid")
        self.check_jurisdiction(form.get("jurisdiction_id"))
        for name in ("service_request_id", "update_id", "status", "description", "updated_datetime"):
            if _missing(form.get(name)):
                raise ApiError(400, f"{name} is required")
        status = form["status"].strip().upper()
        if status not in UPDATE_STATUSES:
            raise ApiError(400, f"status {status[:40]!r} is not one of {', '.join(sorted(UPDATE_STATUSES))}")
        if parse_time(form["updated_datetime"]) is None:
            raise ApiError(400, "updated_datetime is not an ISO 8601 date-time")
        with self._lock:
            stored = self._requests.get(form["service_request_id"].strip())
            if stored is None:
                raise ApiError(404, f"service_request_id {form['service_request_id'][:60]} not found")
            stored.publish_calls += 1
            update_id = form["update_id"].strip()
            if update_id in self._update_ids:
                raise ApiError(409, f"update_id {update_id[:160]} already exists")
            now = self._clock().isoformat(timespec="seconds")
            update = {
                "update_id": update_id,
                "service_request_id": stored.request_id,
                "status": status,
                "description": form["description"],
                "agency_responsible": form.get("agency_responsible"),
                "updated_datetime": form["updated_datetime"],
                "received_datetime": now,
                "media_url": "",
            }
            self._update_ids.add(update_id)
            stored.updates.append(update)
            stored.data["status"] = UPDATE_STATUSES[status]
            stored.data["status_notes"] = form["description"]
            if form.get("agency_responsible"):
                stored.data["agency_responsible"] = form["agency_responsible"]
            stored.data["updated_datetime"] = now
            stored.at = parse_time(now) or stored.at
            return {"update_id": update_id, "service_request_id": stored.request_id}

    def updates_between(self, start: datetime | None, end: datetime | None, request_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            updates = [u for s in self._requests.values() for u in s.updates
                       if request_id is None or s.request_id == request_id]
        chosen = sorted(
            (u for u in updates if (at := parse_time(u["updated_datetime"])) is not None
             and (start is None or at >= start) and (end is None or at <= end)),
            key=lambda u: (parse_time(u["updated_datetime"]), u["update_id"]),
        )
        return [{k: v for k, v in u.items() if k not in ("received_datetime", "agency_responsible")} for u in chosen[: self.max_results]]

    def check_jurisdiction(self, jurisdiction_id: str | None) -> None:
        if self.jurisdiction_id and not _missing(jurisdiction_id) and jurisdiction_id != self.jurisdiction_id:
            raise ApiError(404, f"jurisdiction_id {str(jurisdiction_id)[:60]} not found")

    # faults and inspection

    def snapshot(self) -> list[dict[str, Any]]:
        """Every request's state, oldest change first, in the shape every citizen stand-in
        reports (``outcomes``/``publish_calls``/``rating``), with ``published`` naming Open311's updates."""
        with self._lock:
            return [
                {
                    "id": s.request_id,
                    "status": s.data.get("status"),
                    "updated_datetime": s.data.get("updated_datetime"),
                    "published": [dict(u) for u in s.updates],
                    "outcomes": [dict(u) for u in s.updates],
                    "publish_calls": s.publish_calls,
                    "rating": None,
                }
                for s in sorted(self._requests.values(), key=lambda s: (s.at, s.request_id))
            ]


# -- rendering ------------------------------------------------------------------------------


def _absolute_media(data: dict[str, Any], base_url: str) -> dict[str, Any]:
    media = data.get("media_url")
    if isinstance(media, str) and media.startswith("/"):
        return {**data, "media_url": base_url.rstrip("/") + media}
    return data


def _fill(element: etree._Element, fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        child = etree.SubElement(element, key)
        if isinstance(value, dict):
            _fill(child, value)
        elif isinstance(value, list):
            for entry in value:
                etree.SubElement(child, "value").text = xml_text(str(entry))
        elif isinstance(value, bool):
            child.text = "true" if value else "false"
        elif value is not None:
            child.text = xml_text(str(value))


def render(fmt: str, root: str, item: str, entries: list[dict[str, Any]], status: int = 200) -> Response:
    """Entries as a JSON list, or as ``<root><item>…</item></root>``."""
    if fmt == "xml":
        element = etree.Element(root)
        for entry in entries:
            _fill(etree.SubElement(element, item), entry)
        body = etree.tostring(element, xml_declaration=True, encoding="utf-8")
        return Response(body, status_code=status, media_type="text/xml; charset=utf-8")
    return JSONResponse(entries, status_code=status)


def error_response(fmt: str, status: int, description: str) -> Response:
    return render(fmt if fmt in FORMATS else "json", "errors", "error", [{"code": status, "description": description}], status)


def _fmt(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ApiError(404, f"format {fmt[:10]!r} is not served (json or xml)")
    return fmt


def _window(start_date: str | None, end_date: str | None, now: datetime) -> tuple[datetime | None, datetime | None]:
    start, end = parse_time(start_date), parse_time(end_date)
    if not _missing(start_date) and start is None:
        raise ApiError(400, "start_date is not an ISO 8601 date-time")
    if not _missing(end_date) and end is None:
        raise ApiError(400, "end_date is not an ISO 8601 date-time")
    if start is not None and end is not None and end < start:
        raise ApiError(400, "end_date is before start_date")
    if start is None and end is None:
        start = now - timedelta(days=DEFAULT_DAYS)
    return start, end


def _csv(value: str | None) -> list[str] | None:
    if _missing(value):
        return None
    return [part.strip() for part in str(value).split(",") if part.strip()]


# -- HTTP -----------------------------------------------------------------------------------


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
                page = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
                return Response(page, status_code=200, media_type="text/html")
            return error_response(fmt, fault.status, fault.description)
        try:
            return answer(_fmt(fmt))
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
            start, end = _window(start_date, end_date, state.now())
            statuses, codes = _csv(status), _csv(service_code)
            found = state.requests_between(
                start, end, status={s.lower() for s in statuses} if statuses else None,
                service_codes=set(codes) if codes else None, ids=_csv(service_request_id),
            )
            base = str(request.base_url)
            return render(f, "service_requests", "request", [_absolute_media(d, base) for d in found])

        return guarded(fmt, answer)

    @api.get("/requests/{request_id}.{fmt}")
    def one_request(request: Request, request_id: str, fmt: str, jurisdiction_id: str | None = None) -> Response:
        def answer(f: str) -> Response:
            state.check_jurisdiction(jurisdiction_id)
            found = state.requests_between(None, None, ids=[request_id])
            if not found:
                raise ApiError(404, f"service_request_id {request_id[:60]} not found")
            return render(f, "service_requests", "request", [_absolute_media(d, str(request.base_url)) for d in found])

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
            start, end = _window(start_date, end_date, state.now())
            found = state.updates_between(start, end, None if _missing(service_request_id) else service_request_id)
            return render(f, "service_request_updates", "request_update", found)

        return guarded(fmt, answer)

    @api.get("/media/{name}")
    def media(name: str) -> Response:
        media_type = state.media_type(name)
        if media_type is None:
            return error_response("json", 404, f"media {name[:60]} not found")
        data = attachment_bytes(f"open311:{name}", media_type)
        chunks = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
        return StreamingResponse(chunks, media_type=media_type, headers={"Content-Length": str(len(data))})

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
