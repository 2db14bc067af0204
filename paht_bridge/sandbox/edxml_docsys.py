"""Stand-in for an edXML-style SOAP document system (a provincial LGSP / Qoffice-like service).

It speaks the service in ``mappings/wsdl/edxml_docsys.wsdl`` the way a strict real one
would: every request body is validated against the XSD and answered with a SOAP fault
naming the failing element; HTTP Basic auth; SendDocument idempotent by external
reference. The agency desk (``sandbox.desk``) moves documents through edXML status codes
and every move lands in a change feed whose sequence number is the cursor.

Tests read the counters (send calls and documents created per external reference) to
prove exactly-once delivery, and can inject faults (latency, a timeout after the
document was committed, a Server fault, an HTML page, an entity bomb).

This module is the HTTP side; the store is ``edxml_docsys_store``, the operations and their
XML ``edxml_docsys_operations``, and what the iOffice stand-in shares ``soap_service``.
"""

from __future__ import annotations

import logging
from functools import partial

from fastapi import FastAPI, Request, Response
from lxml import etree

from paht_bridge.config.folders import shipped_mappings
from paht_bridge.sandbox.edxml_docsys_operations import EDXML_NS, OPERATIONS, fault_body, soap_envelope
from paht_bridge.sandbox.edxml_docsys_store import EdxmlDocsysState
from paht_bridge.sandbox.soap_service import (
    SOAP_NS,
    SchemaCheck,
    SoapFault,
    answer_with_faults,
    basic_auth_ok,
    control_routes,
    local_name,
    soap_payload,
    xml_response,
)

WSDL_DIR = shipped_mappings() / "wsdl"
WSDL_FILE = WSDL_DIR / "edxml_docsys.wsdl"
XSD_FILE = WSDL_DIR / "edxml_docsys.xsd"

log = logging.getLogger(__name__)

ENTITY_BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]>\n"
    + f'<soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body><ed:FindDocumentByReferenceResponse xmlns:ed="{EDXML_NS}">'
    f"<ed:Found>&lol9;</ed:Found></ed:FindDocumentByReferenceResponse></soap:Body></soap:Envelope>".encode()
)


def create_edxml_app(state: EdxmlDocsysState) -> FastAPI:
    """The stand-in service: WSDL/XSD at ``GET /edxml?wsdl``, SOAP at ``POST /edxml``,
    unauthenticated test controls under ``/_sandbox``."""
    app = FastAPI(title="edXML document system (sandbox)", docs_url=None, redoc_url=None, openapi_url=None)
    schema = SchemaCheck(etree.XMLSchema(etree.parse(str(XSD_FILE))))

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
            invalid = schema.fault(payload, operation)
            if invalid is not None:
                raise invalid
            state.count_call(operation)
            return await answer_with_faults(
                state, operation, partial(handler, state, payload), schema=schema, envelope=soap_envelope,
                entity_bomb=ENTITY_BOMB, busy="Hệ thống tạm thời gián đoạn (injected)", internal_code="INTERNAL",
            )
        except SoapFault as fault:
            return xml_response(fault_body(fault), 500)
        except Exception as exc:  # a stand-in bug still answers in SOAP, as a real service would
            log.exception("edxml sandbox failed on a request")
            return xml_response(fault_body(SoapFault("Server", f"Internal error: {exc.__class__.__name__}", "INTERNAL")), 500)

    app.include_router(control_routes(state))
    return app
