"""Stand-in for an edXML-style SOAP document system (a provincial LGSP / Qoffice-like service).

It speaks the service in ``connectors/wsdl/edxml_docsys.wsdl`` the way a strict real one
would: every request body is validated against the XSD and answered with a SOAP fault
naming the failing element; HTTP Basic auth; SendDocument idempotent by external
reference. The agency desk (``sandbox.desk``) moves documents through edXML status codes
and every move lands in a change feed whose sequence number is the cursor.

Tests read the counters (send calls and documents created per external reference) to
prove exactly-once delivery, and can inject faults (latency, a timeout after the
document was committed, a Server fault, an HTML page, an entity bomb).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import secrets
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from lxml import etree
from pydantic import BaseModel, Field

from paht_bridge.config.folders import shipped_mappings
from paht_bridge.connectors.xml import parse_xml
from paht_bridge.canonical import VIETNAM_TZ
from paht_bridge.sandbox.desk import Clock, Stage, answer_text, next_stage, refusal_text

EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
NS = {"ed": EDXML_NS}
WSDL_DIR = shipped_mappings() / "wsdl"
WSDL_FILE = WSDL_DIR / "edxml_docsys.wsdl"
XSD_FILE = WSDL_DIR / "edxml_docsys.xsd"
#: Attachments travel inline as base64, so a request is far bigger than an answer.
MAX_REQUEST_BYTES = 64 * 1024 * 1024

STAGE_CODES: dict[Stage, str] = {
    Stage.ARRIVED: "01",
    Stage.REFUSED: "02",
    Stage.ACCEPTED: "03",
    Stage.ASSIGNED: "04",
    Stage.IN_PROGRESS: "05",
    Stage.ANSWERED: "06",
}

log = logging.getLogger(__name__)

FAULT_KINDS = {"latency", "timeout_after_commit", "server_fault", "html", "entity_bomb"}


# ---------------------------------------------------------------- state


@dataclass
class StoredAttachment:
    content_id: str
    name: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class StoredRating:
    rating_id: str
    doc_id: str
    level: str
    comment: str | None
    rated_at: str


@dataclass
class StoredDocument:
    doc_id: str
    external_ref: str
    agency_code: str
    agency_name: str
    sender_code: str
    sender_document_id: str
    subject: str
    content: str
    priority: int
    due_date: str | None
    field_report: dict[str, str]
    attachments: list[StoredAttachment]
    stage: Stage = Stage.ARRIVED
    changed_at: datetime = field(default_factory=lambda: datetime.now(VIETNAM_TZ))
    answer: str | None = None
    ratings: list[StoredRating] = field(default_factory=list)

    @property
    def status_code(self) -> str:
        return STAGE_CODES[self.stage]


@dataclass(frozen=True)
class ChangeEntry:
    sequence: int
    doc_id: str
    external_ref: str
    status_code: str
    changed_at: datetime
    answer: str | None
    answered_by: tuple[str, str] | None  # (OrganId, OrganName)


@dataclass
class FaultPlan:
    kind: str
    operation: str | None
    remaining: int
    delay: float


class EdxmlDocsysState:
    """The stand-in's memory: documents, the change feed, ratings and test counters.

    One lock guards everything, so a change's sequence number is assigned and published in
    one step: a reader never sees sequence 8 before 7 exists (no gaps behind the cursor).
    """

    def __init__(self, refuse_one_in: int = 7, username: str = "sandbox", password: str = "sandbox-secret") -> None:
        self.refuse_one_in = refuse_one_in
        self.username = username
        self.password = password
        self._lock = threading.RLock()
        self.documents: dict[str, StoredDocument] = {}
        self.by_ref: dict[str, str] = {}
        self.send_calls: Counter[str] = Counter()
        self.created: Counter[str] = Counter()
        self.changes: list[ChangeEntry] = []
        self.ratings: dict[str, StoredRating] = {}
        self.wsdl_fetches = 0
        self.soap_calls: Counter[str] = Counter()
        self._faults: deque[FaultPlan] = deque()
        self._clock: Clock | None = None

    # -- documents

    def send_document(self, incoming: dict[str, Any]) -> tuple[StoredDocument, bool]:
        """Register a document unless its external reference is known: (document, already existed)."""
        ref = incoming["external_ref"]
        with self._lock:
            self.send_calls[ref] += 1
            existing = self.by_ref.get(ref)
            if existing is not None:
                return self.documents[existing], True
            doc = StoredDocument(doc_id=f"VBD-{len(self.documents) + 1:08d}", **incoming)
            self.documents[doc.doc_id] = doc
            self.by_ref[ref] = doc.doc_id
            self.created[ref] += 1
            self._log_change(doc)
            return doc, False

    def find(self, external_ref: str) -> StoredDocument | None:
        with self._lock:
            doc_id = self.by_ref.get(external_ref)
            return self.documents[doc_id] if doc_id else None

    def get(self, doc_id: str) -> StoredDocument | None:
        with self._lock:
            return self.documents.get(doc_id)

    def changes_after(self, since: int, limit: int) -> tuple[list[ChangeEntry], int, bool]:
        """Changes with sequence > ``since``; sequences are 1-based list positions."""
        with self._lock:
            page = self.changes[since : since + limit]
            next_cursor = page[-1].sequence if page else min(since, len(self.changes))
            return page, next_cursor, next_cursor < len(self.changes)

    def add_rating(self, rating: StoredRating) -> bool:
        """Store a rating once per rating id; True when it had already been received."""
        with self._lock:
            if rating.rating_id in self.ratings:
                return True
            self.ratings[rating.rating_id] = rating
            self.documents[rating.doc_id].ratings.append(rating)
            return False

    # -- the agency desk

    def tick(self) -> int:
        """Move every open document one desk stage on; returns how many moved."""
        moved = 0
        with self._lock:
            for doc in self.documents.values():
                stage = next_stage(doc.stage, doc.external_ref, self.refuse_one_in)
                if stage is None:
                    continue
                doc.stage = stage
                doc.changed_at = datetime.now(VIETNAM_TZ)
                if stage is Stage.ANSWERED:
                    doc.answer = answer_text(doc.subject, doc.agency_name)
                elif stage is Stage.REFUSED:
                    doc.answer = refusal_text(doc.agency_name)
                self._log_change(doc)
                moved += 1
        return moved

    def start_clock(self, interval: float) -> Clock:
        self.stop_clock()
        self._clock = Clock(self.tick, interval).start()
        return self._clock

    def stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.stop()
            self._clock = None

    def _log_change(self, doc: StoredDocument) -> None:
        answered = doc.stage in (Stage.ANSWERED, Stage.REFUSED)
        self.changes.append(
            ChangeEntry(
                sequence=len(self.changes) + 1,
                doc_id=doc.doc_id,
                external_ref=doc.external_ref,
                status_code=doc.status_code,
                changed_at=doc.changed_at,
                answer=doc.answer if answered else None,
                answered_by=(doc.agency_code, doc.agency_name) if answered else None,
            )
        )

    # -- fault injection

    def inject_fault(self, kind: str, *, operation: str | None = None, times: int = 1, delay: float = 2.0) -> None:
        """Answer the next ``times`` calls (of ``operation``, or any) with a fault of ``kind``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(FaultPlan(kind, operation, times, delay))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, operation: str) -> FaultPlan | None:
        with self._lock:
            for plan in self._faults:
                if plan.operation in (None, operation) and plan.remaining > 0:
                    plan.remaining -= 1
                    if plan.remaining == 0:
                        self._faults.remove(plan)
                    return plan
            return None

    # -- test assertions

    def count_fetch(self) -> None:
        with self._lock:
            self.wsdl_fetches += 1

    def count_call(self, operation: str) -> None:
        with self._lock:
            self.soap_calls[operation] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"wsdl_fetches": self.wsdl_fetches, "soap_calls": dict(self.soap_calls), "changes": len(self.changes)}

    def snapshot(self) -> list[dict[str, Any]]:
        """Every document as plain data (reporter details reduced to whether they were sent)."""
        with self._lock:
            return [self._describe(doc) for doc in self.documents.values()]

    def _describe(self, doc: StoredDocument) -> dict[str, Any]:
        return {
            "id": doc.doc_id,
            "external_ref": doc.external_ref,
            "agency": doc.agency_code,
            "agency_name": doc.agency_name,
            "status_code": doc.status_code,
            "send_calls": self.send_calls[doc.external_ref],
            "created_count": self.created[doc.external_ref],
            "subject": doc.subject,
            "content": doc.content,
            "priority": doc.priority,
            "due_date": doc.due_date,
            "reporter_sent": any(k.startswith("Reporter") for k in doc.field_report),
            "attachments": [{"name": a.name, "content_type": a.content_type, "size": a.size} for a in doc.attachments],
            "ratings": [{"rating_id": r.rating_id, "level": r.level, "comment": r.comment} for r in doc.ratings],
        }


# ---------------------------------------------------------------- SOAP plumbing


class SoapFault(Exception):
    """A request the service refuses; becomes a SOAP 1.1 Fault answered with HTTP 500."""

    def __init__(self, code: str, reason: str, error_code: str, element: str | None = None, path: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.error_code = error_code
        self.element = element
        self.path = path


def local_name(tag: str) -> str:
    return etree.QName(tag).localname


def _strip_ns(text: str) -> str:
    return re.sub(r"\{[^}]*\}", "", text)


def _soap_envelope(payload: etree._Element) -> bytes:
    envelope = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS, "ed": EDXML_NS})
    etree.SubElement(envelope, f"{{{SOAP_NS}}}Body").append(payload)
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def fault_body(fault: SoapFault) -> bytes:
    el = etree.Element(f"{{{SOAP_NS}}}Fault")
    etree.SubElement(el, "faultcode").text = f"soap:{fault.code}"
    etree.SubElement(el, "faultstring").text = fault.reason
    detail = etree.SubElement(etree.SubElement(el, "detail"), f"{{{EDXML_NS}}}ServiceFaultDetail")
    _add(detail, "ErrorCode", fault.error_code)
    _add(detail, "Element", fault.element)
    _add(detail, "Path", fault.path)
    return _soap_envelope(el)


def _add(parent: etree._Element, name: str, value: object) -> etree._Element | None:
    """Append an edXML child; optional values that are None are left out, as the XSD allows."""
    if value is None:
        return None
    child = etree.SubElement(parent, f"{{{EDXML_NS}}}{name}")
    if isinstance(value, bool):
        child.text = "true" if value else "false"
    elif isinstance(value, datetime):
        child.text = value.isoformat()
    else:
        child.text = str(value)
    return child


def _answer(name: str) -> etree._Element:
    return etree.Element(f"{{{EDXML_NS}}}{name}")


def _organ(parent: etree._Element, name: str, organ: tuple[str, str] | None) -> None:
    if organ is None:
        return
    el = etree.SubElement(parent, f"{{{EDXML_NS}}}{name}")
    _add(el, "OrganId", organ[0])
    _add(el, "OrganName", organ[1])


def schema_fault(schema: etree.XMLSchema, operation: str) -> SoapFault:
    """Turn lxml's first validation error into a fault a person can act on."""
    if not schema.error_log:
        return SoapFault("Client", f"Invalid {operation} request", "INVALID_REQUEST")
    first = schema.error_log[0]
    message = _strip_ns(first.message)
    match = re.match(r"Element '([^']+)'", message)
    path = re.sub(r"\b\w+:", "", first.path) if first.path else None
    return SoapFault("Client", f"Invalid {operation} request: {message}", "INVALID_REQUEST", match and match.group(1), path)


def soap_payload(body: bytes) -> etree._Element:
    """The one element inside soap:Body, parsed without DTDs, entities or network."""
    try:
        root = parse_xml(body, max_bytes=MAX_REQUEST_BYTES)
    except (ValueError, etree.XMLSyntaxError) as exc:
        raise SoapFault("Client", f"Unreadable request: {exc}", "MALFORMED_XML") from exc
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise SoapFault("Client", f"Expected a SOAP 1.1 Envelope, got {local_name(root.tag)}", "MALFORMED_XML")
    body_el = root.find(f"{{{SOAP_NS}}}Body")
    children = [c for c in body_el if isinstance(c.tag, str)] if body_el is not None else []
    if len(children) != 1:
        raise SoapFault("Client", "soap:Body must hold exactly one request element", "MALFORMED_XML")
    return children[0]


# ---------------------------------------------------------------- operations


def _text(el: etree._Element, path: str) -> str | None:
    found = el.find(path, NS)
    return found.text if found is not None and found.text is not None else None


def _incoming(payload: etree._Element) -> dict[str, Any]:
    """The fields the store keeps from a validated SendDocumentRequest."""
    header = payload.find("ed:edXMLEnvelope/ed:edXMLHeader/ed:MessageHeader", NS)
    report = header.find("ed:FieldReport", NS)
    return {
        "external_ref": _text(header, "ed:ExternalReference"),
        "agency_code": _text(header, "ed:To/ed:OrganId"),
        "agency_name": _text(header, "ed:To/ed:OrganName"),
        "sender_code": _text(header, "ed:From/ed:OrganId"),
        "sender_document_id": _text(header, "ed:DocumentId"),
        "subject": _text(header, "ed:Subject"),
        "content": _text(header, "ed:Content"),
        "priority": int(_text(header, "ed:OtherInfo/ed:Priority") or 0),
        "due_date": _text(header, "ed:DueDate"),
        "field_report": {local_name(c.tag): c.text or "" for c in report} if report is not None else {},
        "attachments": [_attachment(ref) for ref in payload.iterfind(".//ed:edXMLManifest/ed:Reference", NS)],
    }


def _attachment(ref: etree._Element) -> StoredAttachment:
    try:
        data = base64.b64decode(_text(ref, "ed:AttachmentData") or "", validate=False)
    except binascii.Error as exc:
        raise SoapFault("Client", f"AttachmentData is not base64: {exc}", "INVALID_REQUEST", "AttachmentData") from exc
    return StoredAttachment(
        content_id=_text(ref, "ed:ContentId") or "",
        name=_text(ref, "ed:AttachmentName") or "",
        content_type=_text(ref, "ed:ContentType") or "",
        data=data,
    )


def op_send_document(state: EdxmlDocsysState, payload: etree._Element) -> etree._Element:
    doc, existed = state.send_document(_incoming(payload))
    answer = _answer("SendDocumentResponse")
    _add(answer, "DocId", doc.doc_id)
    _add(answer, "AlreadyExists", existed)
    _add(answer, "StatusCode", doc.status_code)
    return answer


def op_find(state: EdxmlDocsysState, payload: etree._Element) -> etree._Element:
    doc = state.find(_text(payload, "ed:ExternalReference") or "")
    answer = _answer("FindDocumentByReferenceResponse")
    _add(answer, "Found", doc is not None)
    if doc is not None:
        _add(answer, "DocId", doc.doc_id)
        _add(answer, "StatusCode", doc.status_code)
    return answer


def op_changes(state: EdxmlDocsysState, payload: etree._Element) -> etree._Element:
    since = int(_text(payload, "ed:Since") or 0)
    page, next_cursor, has_more = state.changes_after(since, int(_text(payload, "ed:Limit") or 100))
    answer = _answer("GetStatusChangesResponse")
    for entry in page:
        change = etree.SubElement(answer, f"{{{EDXML_NS}}}Change")
        for name, value in (
            ("Sequence", entry.sequence),
            ("DocId", entry.doc_id),
            ("ExternalReference", entry.external_ref),
            ("StatusCode", entry.status_code),
            ("ChangedAt", entry.changed_at),
            ("Answer", entry.answer),
        ):
            _add(change, name, value)
        _organ(change, "AnsweredBy", entry.answered_by)
    _add(answer, "NextCursor", next_cursor)
    _add(answer, "HasMore", has_more)
    return answer


def _require(state: EdxmlDocsysState, doc_id: str | None) -> StoredDocument:
    doc = state.get(doc_id or "")
    if doc is None:
        raise SoapFault("Client", f"No document with DocId {doc_id!r}", "NOT_FOUND", "DocId")
    return doc


def op_get_document(state: EdxmlDocsysState, payload: etree._Element) -> etree._Element:
    doc = _require(state, _text(payload, "ed:DocId"))
    answered = doc.stage in (Stage.ANSWERED, Stage.REFUSED)
    answer = _answer("GetDocumentResponse")
    for name, value in (
        ("DocId", doc.doc_id),
        ("ExternalReference", doc.external_ref),
        ("StatusCode", doc.status_code),
        ("ChangedAt", doc.changed_at),
        ("Answer", doc.answer if answered else None),
    ):
        _add(answer, name, value)
    _organ(answer, "AnsweredBy", (doc.agency_code, doc.agency_name) if answered else None)
    return answer


def op_post_rating(state: EdxmlDocsysState, payload: etree._Element) -> etree._Element:
    doc = _require(state, _text(payload, "ed:DocId"))
    rating = StoredRating(
        rating_id=_text(payload, "ed:RatingId") or "",
        doc_id=doc.doc_id,
        level=_text(payload, "ed:Level") or "",
        comment=_text(payload, "ed:Comment"),
        rated_at=_text(payload, "ed:RatedAt") or "",
    )
    already = state.add_rating(rating)
    answer = _answer("PostRatingResponse")
    _add(answer, "Accepted", True)
    _add(answer, "AlreadyReceived", already)
    return answer


Operation = Callable[[EdxmlDocsysState, etree._Element], etree._Element]
OPERATIONS: dict[str, Operation] = {
    "SendDocumentRequest": op_send_document,
    "FindDocumentByReferenceRequest": op_find,
    "GetStatusChangesRequest": op_changes,
    "GetDocumentRequest": op_get_document,
    "PostRatingRequest": op_post_rating,
}


# ---------------------------------------------------------------- HTTP


HTML_ERROR_PAGE = (
    b"<html><head><title>Loi he thong</title></head>"
    b"<body><h1>H\xe1\xbb\x87 th\xe1\xbb\x91ng \xc4\x91ang b\xe1\xba\xa3o tr\xc3\xac</h1></body></html>"
)
ENTITY_BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]>\n"
    + f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body><ed:FindDocumentByReferenceResponse xmlns:ed="{EDXML_NS}">'
    f"<ed:Found>&lol9;</ed:Found></ed:FindDocumentByReferenceResponse></soap:Body></soap:Envelope>".encode()
)


class FaultRequest(BaseModel):
    kind: str
    operation: str | None = None
    times: int = Field(default=1, ge=1)
    delay: float = Field(default=2.0, ge=0)


def basic_auth_ok(state: EdxmlDocsysState, header: str | None) -> bool:
    """Whether an ``Authorization`` header carries the stand-in's HTTP Basic credentials (both SOAP stand-ins)."""
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # compare_digest on both so a wrong user name costs the same time as a wrong password
    checks = [
        secrets.compare_digest(user.encode(), state.username.encode()),
        secrets.compare_digest(password.encode(), state.password.encode()),
    ]
    return all(checks)


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="text/xml; charset=utf-8")


def create_edxml_app(state: EdxmlDocsysState) -> FastAPI:
    """The stand-in service: WSDL/XSD at ``GET /edxml?wsdl``, SOAP at ``POST /edxml``,
    unauthenticated test controls under ``/_sandbox``."""
    app = FastAPI(title="edXML document system (sandbox)", docs_url=None, redoc_url=None, openapi_url=None)
    schema = etree.XMLSchema(etree.parse(str(XSD_FILE)))
    schema_lock = threading.Lock()  # an XMLSchema keeps its error log on itself: not shareable across threads

    def validate(element: etree._Element, operation: str) -> SoapFault | None:
        with schema_lock:
            return None if schema.validate(element) else schema_fault(schema, operation)

    @app.get("/edxml")
    def wsdl(request: Request) -> Response:
        if "wsdl" not in request.query_params:
            return Response("Add ?wsdl for the service description.", status_code=404, media_type="text/plain")
        state.count_fetch()
        text = WSDL_FILE.read_text(encoding="utf-8").replace("http://localhost/edxml", f"{str(request.base_url).rstrip('/')}/edxml")
        return xml_response(text.encode("utf-8"))

    @app.get("/edxml_docsys.xsd")
    def xsd() -> Response:
        state.count_fetch()
        return xml_response(XSD_FILE.read_bytes())

    @app.post("/edxml")
    async def soap(request: Request) -> Response:
        if not basic_auth_ok(state, request.headers.get("authorization")):
            return Response("Unauthorized", status_code=401, headers={"WWW-Authenticate": 'Basic realm="edxml"'}, media_type="text/plain")
        body = await request.body()
        try:
            payload = soap_payload(body)
            operation = local_name(payload.tag).removesuffix("Request")
            handler = OPERATIONS.get(local_name(payload.tag)) if payload.tag.startswith(f"{{{EDXML_NS}}}") else None
            if handler is None:
                raise SoapFault("Client", f"Unknown operation element {local_name(payload.tag)}", "UNKNOWN_OPERATION")
            invalid = validate(payload, operation)
            if invalid is not None:
                raise invalid
            state.count_call(operation)
            return await _run(state, operation, handler, payload, validate)
        except SoapFault as fault:
            return xml_response(fault_body(fault), 500)
        except Exception as exc:  # a stand-in bug still answers in SOAP, as a real service would
            log.exception("edxml sandbox failed on a request")
            return xml_response(fault_body(SoapFault("Server", f"Internal error: {exc.__class__.__name__}", "INTERNAL")), 500)

    @app.post("/_sandbox/desk/tick")
    def tick() -> dict[str, int]:
        return {"moved": state.tick()}

    @app.get("/_sandbox/documents")
    def documents() -> dict[str, Any]:
        return {"documents": state.snapshot()}

    @app.get("/_sandbox/stats")
    def stats() -> dict[str, Any]:
        return state.stats()

    @app.post("/_sandbox/faults")
    def faults(request: FaultRequest) -> dict[str, str]:
        try:
            state.inject_fault(request.kind, operation=request.operation, times=request.times, delay=request.delay)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        return {"injected": request.kind}

    @app.delete("/_sandbox/faults")
    def clear_faults() -> dict[str, str]:
        state.clear_faults()
        return {"cleared": "all"}

    return app


async def _run(
    state: EdxmlDocsysState,
    operation: str,
    handler: Operation,
    payload: etree._Element,
    validate: Callable[[etree._Element, str], SoapFault | None],
) -> Response:
    """Run one validated operation, honouring an injected fault if one is due."""
    plan = state.take_fault(operation)
    kind = plan.kind if plan else None
    if kind == "server_fault":
        raise SoapFault("Server", "Hệ thống tạm thời gián đoạn (injected)", "INTERNAL")
    if kind == "html":
        return Response(HTML_ERROR_PAGE, status_code=200, media_type="text/html; charset=utf-8")
    if kind == "entity_bomb":
        return xml_response(ENTITY_BOMB)
    if kind == "latency":
        await asyncio.sleep(plan.delay)
    answer = handler(state, payload)
    # Check our own answers too, so the stand-in can never drift from the XSD it publishes.
    broken = validate(answer, f"{operation} answer")
    if broken is not None:
        raise SoapFault("Server", broken.reason, "INTERNAL", broken.element, broken.path)
    if kind == "timeout_after_commit":
        await asyncio.sleep(plan.delay)  # committed, but the caller gives up before hearing so
    return xml_response(_soap_envelope(answer))
