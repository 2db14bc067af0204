"""What both SOAP stand-ins (the edXML one and the iOffice one) do alike.

Reading a SOAP 1.1 request safely, refusing it with a fault that names the failing element,
HTTP Basic auth, the injected faults a real service shows (a Server fault, an HTML page, an
entity bomb, a stall after commit) and the ``/_sandbox`` controls. Each stand-in keeps its
own wire format: its namespaces, its fault detail and its operations.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from lxml import etree
from pydantic import BaseModel, Field

from paht_bridge.connectors.xml import parse_xml
from paht_bridge.sandbox.edxml_docsys_store import EdxmlDocsysState

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
#: Attachments travel inline as base64, so a request is far bigger than an answer.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
HTML_ERROR_PAGE = (
    b"<html><head><title>Loi he thong</title></head>"
    b"<body><h1>H\xe1\xbb\x87 th\xe1\xbb\x91ng \xc4\x91ang b\xe1\xba\xa3o tr\xc3\xac</h1></body></html>"
)


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


class SchemaCheck:
    """A stand-in's XML Schema, shared by its request threads: lxml keeps a validation's errors
    on the schema object itself, so one validation runs at a time."""

    def __init__(self, schema: etree.XMLSchema) -> None:
        self._schema = schema
        self._lock = threading.Lock()

    def fault(self, element: etree._Element, operation: str) -> SoapFault | None:
        """None when ``element`` is valid, else the fault naming its first error."""
        with self._lock:
            return None if self._schema.validate(element) else schema_fault(self._schema, operation)


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


async def answer_with_faults(
    state: EdxmlDocsysState,
    operation: str,
    run: Callable[[], etree._Element],
    *,
    schema: SchemaCheck,
    envelope: Callable[[etree._Element], bytes],
    entity_bomb: bytes,
    busy: str,
    internal_code: str,
) -> Response:
    """Run one validated operation, honouring an injected fault if one is due.

    ``busy`` is the text of an injected Server fault and ``internal_code`` the error code of
    any Server fault, each in the stand-in's own words.
    """
    plan = state.take_fault(operation)
    kind, delay = (plan.kind, plan.delay) if plan else (None, 0.0)
    if kind == "server_fault":
        raise SoapFault("Server", busy, internal_code)
    if kind == "html":
        return Response(HTML_ERROR_PAGE, status_code=200, media_type="text/html; charset=utf-8")
    if kind == "entity_bomb":
        return xml_response(entity_bomb)
    if kind == "latency":
        await asyncio.sleep(delay)
    answer = run()
    # Check our own answers too, so the stand-in can never drift from the schema it publishes.
    broken = schema.fault(answer, f"{operation} answer")
    if broken is not None:
        raise SoapFault("Server", broken.reason, internal_code, broken.element, broken.path)
    if kind == "timeout_after_commit":
        await asyncio.sleep(delay)  # committed, but the caller gives up before hearing so
    return xml_response(envelope(answer))


def control_routes(state: EdxmlDocsysState) -> APIRouter:
    """The unauthenticated ``/_sandbox`` controls the tests and the demo drive: the desk, the
    documents with their counters, call statistics, fault injection."""
    router = APIRouter(prefix="/_sandbox")

    @router.post("/desk/tick")
    def tick() -> dict[str, int]:
        return {"moved": state.tick()}

    @router.get("/documents")
    def documents() -> dict[str, Any]:
        return {"documents": state.snapshot()}

    @router.get("/stats")
    def stats() -> dict[str, Any]:
        return state.stats()

    @router.post("/faults")
    def faults(request: FaultRequest) -> dict[str, str]:
        try:
            state.inject_fault(request.kind, operation=request.operation, times=request.times, delay=request.delay)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        return {"injected": request.kind}

    @router.delete("/faults")
    def clear_faults() -> dict[str, str]:
        state.clear_faults()
        return {"cleared": "all"}

    return router
