"""The edXML stand-in's operations: each takes a request element the XSD has accepted and
builds its answer element in edXML's namespace; ``soap_envelope`` and ``fault_body`` wrap
them for the wire."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from typing import Any

from lxml import etree

from paht_bridge.sandbox.desk import Stage
from paht_bridge.sandbox.edxml_docsys_store import EdxmlDocsysState, StoredAttachment, StoredDocument, StoredRating
from paht_bridge.sandbox.soap_service import SOAP_NS, SoapFault, local_name

EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
NS = {"ed": EDXML_NS}


def soap_envelope(payload: etree._Element) -> bytes:
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
    return soap_envelope(el)


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
