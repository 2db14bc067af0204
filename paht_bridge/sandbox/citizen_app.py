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
  ``{"report_id", "outcome_id", "created"}`` (201 when new, 200 for an identical repeat)
- ``GET /api/v1/ratings?since=<cursor>&limit=<n>`` → ``{"data": [rating...], "paging": {...}}``
- errors: ``{"error": {"code": "...", "message": "..."}}``

The cursor is a change sequence number: every new or changed report takes the next
number, so a report added or answered later always comes after any cursor handed out.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import random
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from paht_bridge.canonical import vietnam_now
from paht_bridge.sandbox.faults import FaultSlot, add_fault_routes

SEED_FILE = Path(__file__).parent / "seeds" / "citizen_reports.json"
MAX_PAGE = 200
CHUNK = 1024  # small on purpose: even a few-KB file arrives in several chunks, as a large one would

CATEGORY_NAMES = {
    "XD": "Trật tự xây dựng",
    "MT": "Vệ sinh môi trường",
    "GT": "Hạ tầng giao thông",
    "DT": "Hạ tầng đô thị",
    "AN": "An ninh trật tự",
    "DV": "Chất lượng dịch vụ",
    "CB": "Cán bộ chậm trễ, gây phiền hà",
}

SATISFIED_COMMENTS = (
    "Cảm ơn cơ quan chức năng đã xử lý kịp thời.",
    "Đã được khắc phục, người dân rất hài lòng.",
    "Xử lý nhanh, đúng nội dung phản ánh.",
    "Cảm ơn chính quyền đã quan tâm giải quyết.",
)
UNSATISFIED_COMMENTS = (
    "Chưa xử lý dứt điểm, tình trạng vẫn tái diễn.",
    "Trả lời chưa đúng nội dung phản ánh.",
    "Thời gian xử lý quá lâu.",
)


class AppStatus(StrEnum):
    """The app's own report statuses, as its citizens see them."""

    NEW = "moi_tiep_nhan"  # just received
    IN_PROGRESS = "dang_xu_ly"  # being handled
    DONE = "da_xu_ly"  # answered
    INVALID = "khong_hop_le"  # rejected as not a valid report


#: Statuses that close a report for the citizen; only these can be rated.
FINAL_STATUSES = {AppStatus.DONE, AppStatus.INVALID}


# -- the seed shape (also the body of POST /_sandbox/reports) ---------------------------


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedAdmin(_Seed):
    scheme: Literal["legacy", "2025"]
    province: str
    district: str | None = None
    ward: str


class SeedLocation(_Seed):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    address: str
    admin: SeedAdmin


class SeedReporter(_Seed):
    name: str
    phone: str


class SeedAttachment(_Seed):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    name: str
    media_type: str


class SeedReport(_Seed):
    id: str = Field(min_length=1)
    source: str | None = None
    channel: Literal["app", "portal", "hotline", "fanpage"] = "app"
    category: str
    title: str
    description: str
    created_at: AwareDatetime
    location: SeedLocation
    reporter: SeedReporter
    attachments: list[SeedAttachment] = []


class OutcomeIn(BaseModel):
    """An agency's public answer as the app's API takes it."""

    model_config = ConfigDict(extra="forbid")

    status: AppStatus
    answer: str = Field(min_length=1)
    answer_unit: str = Field(min_length=1)
    answered_at: AwareDatetime


class FaultIn(BaseModel):
    """A fault for the next ``count`` API calls: an error status, an HTML page served with 200
    (a proxy's error page), a truncated JSON body, or only a delay."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["error", "html", "invalid_json", "delay"] = "error"
    count: int = Field(default=1, ge=1)
    status: int = Field(default=503, ge=400, le=599)
    delay_s: float = Field(default=0.0, ge=0, le=60)


def load_seed_reports(source: str) -> list[dict[str, Any]]:
    """The seed reports of one citizen app (``quangtri_ioc``, ``dienbien_smart``), oldest first."""
    doc = json.loads(SEED_FILE.read_text(encoding="utf-8"))
    return [report for report in doc["reports"] if report.get("source") == source]


# -- deterministic attachment bytes -----------------------------------------------------


def _rng(attachment_id: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(attachment_id.encode()).digest()[:8], "big"))


def _png(rng: random.Random) -> bytes:
    """A valid RGB PNG of noise: noise does not compress, so the file stays a few KB."""
    width = height = rng.randint(28, 40)
    rows = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _jpeg_like(rng: random.Random) -> bytes:
    """JPEG markers around random bytes: enough for content sniffing, not a decodable image."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return b"\xff\xd8" + app0 + rng.randbytes(rng.randint(3000, 7000)) + b"\xff\xd9"


def _mp4_like(rng: random.Random) -> bytes:
    """An ``ftyp`` box and an ``mdat`` box of random bytes."""
    ftyp = b"ftyp" + b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41"
    payload = rng.randbytes(rng.randint(8000, 14000))
    return struct.pack(">I", len(ftyp) + 4) + ftyp + struct.pack(">I", len(payload) + 8) + b"mdat" + payload


@lru_cache(maxsize=256)
def attachment_bytes(attachment_id: str, media_type: str) -> bytes:
    """The bytes of an attachment, a pure function of its id and media type."""
    rng = _rng(attachment_id)
    if media_type == "image/png":
        return _png(rng)
    if media_type.startswith("video/"):
        return _mp4_like(rng)
    return _jpeg_like(rng)


@lru_cache(maxsize=65536)
def attachment_digest(attachment_id: str, media_type: str) -> tuple[int, str]:
    """(size, sha256) of an attachment: every page render lists them, so they are kept apart
    from the bytes and cached longer."""
    data = attachment_bytes(attachment_id, media_type)
    return len(data), hashlib.sha256(data).hexdigest()


# -- state ------------------------------------------------------------------------------


@dataclass
class _Stored:
    """One report as the app holds it. ``verbatim`` is served as-is (for hostile-data tests)."""

    report_id: str
    seq: int
    updated_at: datetime
    seed: SeedReport | None = None
    verbatim: dict[str, Any] | None = None
    status: AppStatus = AppStatus.NEW
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    publish_calls: int = 0
    rating: dict[str, Any] | None = None


class CitizenAppState(FaultSlot):
    """Everything one citizen app holds, in memory; every method takes the lock."""

    def __init__(self, name: str, reports: list[dict[str, Any]], api_key: str = "sandbox-key") -> None:
        self.name = name
        self.api_key = api_key
        self._lock = threading.Lock()
        self._seq = 0
        self._reports: dict[str, _Stored] = {}
        self._log: list[tuple[int, str]] = []  # (seq, report id), append-only; stale entries skipped on read
        self._attachments: dict[str, tuple[str, str]] = {}  # id → (file name, media type)
        self._ratings: list[dict[str, Any]] = []
        self._fault: FaultIn | None = None
        self._faults_left = 0
        for report in reports:
            self.add_report(report)

    # reports

    def add_report(self, body: dict[str, Any], *, verbatim: bool = False) -> tuple[str, int, bool]:
        """Add a report, or replace one the citizen edited (its answers and rating stay); either
        way it takes the next change number. Returns (id, seq, created)."""
        seed = None if verbatim else SeedReport.model_validate(body)
        with self._lock:
            report_id = seed.id if seed else str(body.get("id") or f"RAW-{self._seq + 1}")
            previous = self._reports.get(report_id)
            seq = self._next_seq(report_id)
            stored = _Stored(
                report_id=report_id,
                seq=seq,
                updated_at=seed.created_at if seed and previous is None else vietnam_now(),
                seed=seed,
                verbatim=None if seed else dict(body),
            )
            if previous is not None:
                stored.status, stored.outcomes = previous.status, previous.outcomes
                stored.publish_calls, stored.rating = previous.publish_calls, previous.rating
            self._reports[report_id] = stored
            for attachment in seed.attachments if seed else ():
                self._attachments[attachment.id] = (attachment.name, attachment.media_type)
            return report_id, seq, previous is None

    def _next_seq(self, report_id: str) -> int:
        self._seq += 1
        self._log.append((self._seq, report_id))
        return self._seq

    def reports_after(self, since: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
        """Reports changed after ``since``, oldest change first: (items, next cursor, has more)."""
        with self._lock:
            live = self._live_after(since)
            chosen = list(islice(live, limit))
            has_more = next(live, None) is not None
            next_cursor = chosen[-1][0] if chosen else since
            return [self._render(self._reports[report_id]) for _, report_id in chosen], next_cursor, has_more

    def _live_after(self, since: int) -> Iterator[tuple[int, str]]:
        start = bisect.bisect_right(self._log, since, key=lambda entry: entry[0])
        for index in range(start, len(self._log)):  # by index: no copy of a long log's tail per page
            seq, report_id = self._log[index]
            if self._reports[report_id].seq == seq:  # skip the older entries of a report changed since
                yield seq, report_id

    def _render(self, stored: _Stored) -> dict[str, Any]:
        if stored.seed is None:
            return dict(stored.verbatim or {})
        seed = stored.seed
        location = seed.location
        return {
            "id": seed.id,
            "channel": seed.channel,
            "category": {"code": seed.category, "name": CATEGORY_NAMES.get(seed.category, seed.category)},
            "title": seed.title,
            "description": seed.description,
            "status": stored.status.value,
            "created_at": seed.created_at.isoformat(),
            "updated_at": stored.updated_at.isoformat(),
            "location": {
                "lat": location.lat,
                "lng": location.lon,
                "address": location.address,
                "admin_unit": location.admin.model_dump(exclude_none=True),
            },
            "reporter": {"full_name": seed.reporter.name, "phone": seed.reporter.phone},
            "attachments": [self._render_attachment(a) for a in seed.attachments],
        }

    @staticmethod
    def _render_attachment(attachment: SeedAttachment) -> dict[str, Any]:
        size, sha256 = attachment_digest(attachment.id, attachment.media_type)
        return {
            "id": attachment.id,
            "file_name": attachment.name,
            "mime_type": attachment.media_type,
            "size": size,
            "sha256": sha256,
            "download_url": f"/api/v1/attachments/{quote(attachment.id)}",
        }

    def attachment(self, attachment_id: str) -> tuple[str, str] | None:
        with self._lock:
            return self._attachments.get(attachment_id)

    # outcomes and ratings

    def publish(self, report_id: str, outcome: OutcomeIn) -> tuple[str, bool] | None:
        """Record an agency's answer; an identical repeat changes nothing. (outcome id, created)
        or None when the report is unknown."""
        record = outcome.model_dump(mode="json")
        with self._lock:
            stored = self._reports.get(report_id)
            if stored is None:
                return None
            stored.publish_calls += 1
            for existing in stored.outcomes:
                if _same_outcome(existing, outcome):
                    return existing["outcome_id"], False
            outcome_id = f"{report_id}-KQ{len(stored.outcomes) + 1}"
            stored.outcomes.append({"outcome_id": outcome_id, **record})
            stored.status = outcome.status
            stored.updated_at = vietnam_now()
            stored.seq = self._next_seq(report_id)  # an answered report is a changed report
            return outcome_id, True

    def rate_all(self) -> int:
        """Every citizen whose report has a final answer and no rating yet rates it."""
        with self._lock:
            rated = 0
            for stored in sorted(self._reports.values(), key=lambda s: s.seq):
                if stored.rating is None and stored.status in FINAL_STATUSES:
                    stored.rating = self._new_rating(stored.report_id)
                    rated += 1
            return rated

    def _new_rating(self, report_id: str) -> dict[str, Any]:
        crc = zlib.crc32(report_id.encode())
        satisfied = crc % 5 != 0
        comments = SATISFIED_COMMENTS if satisfied else UNSATISFIED_COMMENTS
        seq = len(self._ratings) + 1
        rating = {
            "id": f"DG-{seq:06d}",
            "seq": seq,
            "report_id": report_id,
            "level": "hai_long" if satisfied else "khong_hai_long",
            "comment": comments[crc % len(comments)],
            "rated_at": vietnam_now().isoformat(),
        }
        self._ratings.append(rating)
        return rating

    def ratings_after(self, since: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
        with self._lock:
            page = self._ratings[since : since + limit]  # rating seq n sits at index n-1
            next_cursor = page[-1]["seq"] if page else since
            wire = [{k: v for k, v in rating.items() if k != "seq"} for rating in page]
            return wire, next_cursor, len(self._ratings) > next_cursor

    # faults and inspection

    def snapshot(self) -> list[dict[str, Any]]:
        """Every report's state, oldest change first, for test assertions."""
        with self._lock:
            return [
                {
                    "id": s.report_id,
                    "seq": s.seq,
                    "status": s.status.value,
                    "outcomes": [dict(o) for o in s.outcomes],
                    "publish_calls": s.publish_calls,
                    "rating": dict(s.rating) if s.rating else None,
                }
                for s in sorted(self._reports.values(), key=lambda s: s.seq)
            ]


def _same_outcome(existing: dict[str, Any], outcome: OutcomeIn) -> bool:
    """Two posts are the same outcome when they say the same thing at the same moment."""
    return (
        existing["status"] == outcome.status.value
        and existing["answer"] == outcome.answer
        and existing["answer_unit"] == outcome.answer_unit
        and datetime.fromisoformat(existing["answered_at"]) == outcome.answered_at
    )


# -- HTTP -------------------------------------------------------------------------------


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
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(400, "invalid_request", where)

    @app.exception_handler(ValidationError)
    async def invalid_body(_: Request, exc: ValidationError) -> JSONResponse:
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
            page = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
            raise _FaultInjected(Response(page, status_code=200, media_type="text/html"))
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
        data = attachment_bytes(attachment_id, media_type)
        headers = {
            "Content-Length": str(len(data)),
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        }
        chunks = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
        return StreamingResponse(chunks, media_type=media_type, headers=headers)

    @api.post("/reports/{report_id}/outcome")
    def post_outcome(report_id: str, outcome: OutcomeIn) -> JSONResponse:
        result = state.publish(report_id, outcome)
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
