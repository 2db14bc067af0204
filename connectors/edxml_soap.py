"""Document system over an edXML-style SOAP exchange service (a provincial LGSP, Qoffice-like).

Speaks ``wsdl/edxml_docsys.wsdl`` with zeep: the WSDL comes from this package (never fetched
over the network), the address comes from the deployment, every call has an explicit
timeout, XML answers are parsed with DTDs and entities forbidden and their size and depth
bounded (``ConnectorLimits``), and every failure becomes a typed error (DESIGN §5):
transient, permanent or ambiguous, whatever shape the answer takes.

The message builders are pure functions of the canonical models, so what an agency
receives can be checked without a server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from zeep.helpers import serialize_object

from paht_bridge.config.folders import shipped_mappings
from paht_bridge.connectors.base import PreparedSend
from paht_bridge.connectors.errors import MalformedResponse, PermanentError
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.connectors.outbound import FULL_TEXT_NAME, FULL_TEXT_NOTE, NAME_LIMIT, aware, nfc, read_spooled, short_name, shorten  # noqa: F401 - NAME_LIMIT: part of this module's API
from paht_bridge.connectors.outbound import outbound_text as _outbound
from paht_bridge.connectors.outbound import xml_safe as _xml_safe
from paht_bridge.connectors.messages import MESSAGE_CHARS
from paht_bridge.connectors.messages import printable as _printable
from paht_bridge.connectors.soap import SoapCaller
from paht_bridge.canonical import (
    VIETNAM_TZ,
    DocumentReceipt,
    DocumentRecord,
    LocalAttachment,
    Page,
    Quarantined,
    Rating,
    RatingLevel,
    RawStatusChange,
)

log = logging.getLogger(__name__)

WSDL_PATH = shipped_mappings() / "wsdl" / "edxml_docsys.wsdl"
BINDING = "{urn:paht-bridge:edxml-docsys}EdxmlDocsysSoapBinding"

TEXT_LIMIT = 500  # Subject and Content, in characters
COMMENT_LIMIT = 4000
DOCUMENT_TYPE = {"Type": 1, "TypeName": "Phiếu chuyển phản ánh hiện trường"}  # forwarding slip for a field report
RATING_LEVELS = {RatingLevel.SATISFIED: "SATISFIED", RatingLevel.NOT_SATISFIED: "NOT_SATISFIED"}

MAX_ATTACHMENT_BYTES = 32 * 1024 * 1024  # inline base64 grows it by a third; the body is held in memory
PAGE_LIMIT = 1000  # the service's Limit maximum

#: Operations whose repeat could create something: an unanswered call is "unknown", so the
#: caller looks the document up by its reference before any retry. Reads are safe to repeat,
#: and PostRating is idempotent by rating id, so for them a lost answer is merely transient.
UNSAFE_TO_REPEAT = frozenset({"SendDocument"})




# ---------------------------------------------------------------- pure message building


@dataclass(frozen=True)
class AttachmentPart:
    """One attachment ready for the manifest (inline base64: this service cannot stream)."""

    content_id: str
    name: str
    media_type: str
    data: bytes


def ed_date(value: date | datetime) -> str:
    """edXML writes dates yyyy/MM/dd; an aware time is read in Vietnam's zone first."""
    if isinstance(value, datetime):
        value = value.astimezone(VIETNAM_TZ).date()
    return value.strftime("%Y/%m/%d")


def full_text_part(record: DocumentRecord, content_id: str) -> AttachmentPart | None:
    """The whole report text as a file when it does not fit in Content, so nothing is lost."""
    content = _outbound(record.content)
    if len(content) <= TEXT_LIMIT:
        return None
    return AttachmentPart(content_id, FULL_TEXT_NAME, "text/plain; charset=utf-8", content.encode("utf-8"))


def document_id(record: DocumentRecord, code_number: str, code_notation: str) -> str:
    """The sender's edXML DocumentId: organisation code, date, number/notation."""
    return f"{record.sender_code},{ed_date(record.issued_at)},{code_number}/{code_notation}"


def code_number(record: DocumentRecord) -> str:
    """The IOC keeps no register of its own, so the report's source id serves as the number."""
    source_id = record.report_key.rpartition(":")[2] or record.external_ref
    return source_id[:50]


def field_report(record: DocumentRecord) -> dict[str, Any] | None:
    """Where the report was made and, only if the record carries them, who made it."""
    location, unit, reporter = record.location, record.location.unit, record.reporter
    fields: dict[str, Any] = {
        "Address": location.address,
        "Latitude": None if location.lat is None else round(location.lat, 7),
        "Longitude": None if location.lon is None else round(location.lon, 7),
        "Ward": unit.ward if unit else None,
        "Province": unit.province if unit else None,
        "ReporterName": reporter.name.get_secret_value() if reporter.name else None,
        "ReporterPhone": reporter.phone.get_secret_value() if reporter.phone else None,
    }
    fields = {key: value for key, value in fields.items() if value not in (None, "")}
    return fields or None


def edxml_envelope(record: DocumentRecord, parts: Sequence[AttachmentPart], code_notation: str) -> dict[str, Any]:
    """The edXMLEnvelope for one record, in zeep's dict form."""
    number = code_number(record)
    header: dict[str, Any] = {
        "From": {"OrganId": record.sender_code, "OrganName": record.sender_name},
        "To": {"OrganId": record.agency_code, "OrganName": record.agency_name},
        "DocumentId": document_id(record, number, code_notation),
        "Code": {"CodeNumber": number, "CodeNotation": code_notation},
        "PromulgationInfo": {"PromulgationDate": ed_date(record.issued_at)},
        "DocumentType": DOCUMENT_TYPE,
        "Subject": shorten(_outbound(record.subject), TEXT_LIMIT),
        "Content": shorten(_outbound(record.content), TEXT_LIMIT, FULL_TEXT_NOTE),
        "DueDate": ed_date(record.due_date),
        "OtherInfo": {"Priority": record.priority, "Category": record.category or None},
        "ExternalReference": record.external_ref,
        "FieldReport": field_report(record),
    }
    references = [
        {"ContentId": p.content_id, "ContentType": p.media_type, "AttachmentName": short_name(p.name), "AttachmentData": p.data}
        for p in parts
    ]
    return _xml_safe({
        "edXMLHeader": {
            "MessageHeader": header,
            "TraceHeaderList": {"TraceHeader": [{"OrganId": record.sender_code, "Timestamp": record.issued_at}]},
        },
        "edXMLBody": {"edXMLManifest": {"Reference": references}},
    })


# ---------------------------------------------------------------- the client


class EdxmlSoapClient:
    """A ``DocumentSystem`` for an edXML-style SOAP service.

    Built once per task and reused: the WSDL is parsed once, the HTTP session keeps its
    connections. An Airflow hook builds it from a Connection: host/schema/port → ``endpoint``,
    login/password → HTTP Basic, extra ``timeout``, ``wsdl`` (a local file) and ``limits``
    (answers up to ``max_xml_bytes`` and ``max_xml_depth``; attachments inline up to the
    smaller of ``max_attachment_bytes`` and 32 MiB, as this service takes them base64).
    """

    def __init__(
        self,
        name: str,
        endpoint: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        wsdl: str | Path | None = None,
        code_notation: str = "PAHT-IOC",
        max_attachment_bytes: int | None = None,
        max_answer_bytes: int | None = None,
        limits: ConnectorLimits = DEFAULT_LIMITS,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.code_notation = code_notation
        self.limits = limits
        self.max_attachment_bytes = max_attachment_bytes or min(limits.max_attachment_bytes, MAX_ATTACHMENT_BYTES)
        self._soap = SoapCaller(
            name, endpoint, wsdl or WSDL_PATH, binding=BINDING, unsafe=UNSAFE_TO_REPEAT, username=username, password=password,
            timeout=timeout, max_answer_bytes=max_answer_bytes, limits=limits,
        )
        self._call = self._soap.call
        self._reading = self._soap.reading

    # -- DocumentSystem

    def create_document(self, record: DocumentRecord, attachments: Sequence[LocalAttachment]) -> DocumentReceipt:
        return self.send_prepared(self._prepare(record, attachments))

    def prepare_create(self, record: DocumentRecord) -> PreparedSend:
        """``create_document(record, [])``'s request, built ahead (``PreparesCreates``)."""
        return self._prepare(record, ())

    def send_prepared(self, prepared: PreparedSend) -> DocumentReceipt:
        ref = prepared.external_ref
        answer = self._soap.send(prepared.request, ref)
        with self._reading("SendDocument", ref):
            receipt = DocumentReceipt(external_ref=ref, document_id=nfc(answer.DocId), created=not answer.AlreadyExists)
        log.info(
            "edxml.send system=%s ref=%s doc_id=%s created=%s attachments=%d",
            self.name, ref, receipt.document_id, receipt.created, prepared.attachments,
        )
        return receipt

    def find_by_ref(self, external_ref: str) -> DocumentReceipt | None:
        answer = self._call("FindDocumentByReference", external_ref, ExternalReference=external_ref)
        with self._reading("FindDocumentByReference", external_ref):
            if not answer.Found:
                return None
            # Found, not made by this call: the same meaning as an "already exists" repeat.
            return DocumentReceipt(external_ref=external_ref, document_id=nfc(answer.DocId), created=False)

    def changes_since(self, cursor: str | None, page_size: int = 200) -> Iterator[Page[RawStatusChange]]:
        since = self._cursor(cursor)
        limit = max(1, min(page_size, PAGE_LIMIT))
        while True:
            answer = self._call("GetStatusChanges", None, Since=since, Limit=limit)
            with self._reading("GetStatusChanges", None):
                page = self._page(answer)
            yield page
            if not page.has_more:
                return
            with self._reading("GetStatusChanges", None):
                next_cursor = int(answer.NextCursor)
            if next_cursor <= (since or 0):
                raise MalformedResponse(
                    f"change feed did not advance past cursor {since}", system=self.name, operation="GetStatusChanges"
                )
            since = next_cursor

    def get_status(self, document_id: str) -> RawStatusChange:
        answer = self._call("GetDocument", None, DocId=document_id)
        with self._reading("GetDocument", None):
            return self._change(answer)

    def post_rating(self, document_id: str, rating: Rating) -> None:
        self._call(
            "PostRating",
            None,
            DocId=document_id,
            RatingId=rating.rating_id,
            Level=RATING_LEVELS[rating.level],
            Comment=shorten(_outbound(rating.comment), COMMENT_LIMIT) if rating.comment else None,
            RatedAt=rating.rated_at,
        )

    def close(self) -> None:
        self._soap.close()

    # -- reading answers

    def _page(self, answer: Any) -> Page[RawStatusChange]:
        items: list[RawStatusChange] = []
        quarantined: list[Quarantined] = []
        for change in answer.Change or []:
            try:
                items.append(self._change(change))
            except (PydanticValidationError, ValueError, TypeError, AttributeError, OverflowError) as exc:
                # One unusable change must not stop the feed; it is kept with why.
                quarantined.append(self._quarantine(change, exc))
        return Page[RawStatusChange](items=items, quarantined=quarantined, next_cursor=str(answer.NextCursor), has_more=bool(answer.HasMore))

    def _quarantine(self, change: Any, exc: Exception) -> Quarantined:
        doc_id = nfc(getattr(change, "DocId", None))
        if isinstance(exc, PydanticValidationError):
            why = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'change'}: {e['msg']}" for e in exc.errors(include_input=False)[:5])
        else:
            why = f"{exc.__class__.__name__}: {_printable(str(exc))[:MESSAGE_CHARS]}"
        return Quarantined(
            source=self.name, source_id=doc_id if doc_id and len(doc_id) <= 128 and doc_id.isprintable() else None,
            reason=f"unusable status change: {why}", raw=_printable(repr(serialize_object(change)))[:4000],
        )

    @staticmethod
    def _change(item: Any) -> RawStatusChange:
        """A Change or a GetDocumentResponse (same fields) as a RawStatusChange."""
        by = item.AnsweredBy
        return RawStatusChange(
            external_ref=nfc(item.ExternalReference),
            document_id=nfc(item.DocId),
            raw_code=nfc(item.StatusCode),
            changed_at=aware(item.ChangedAt),
            answer=nfc(item.Answer) or None,
            answered_by=nfc(by.OrganName) if by is not None else None,
        )

    def _cursor(self, cursor: str | None) -> int | None:
        if cursor in (None, ""):
            return None
        try:
            value = int(cursor)
        except ValueError:
            value = -1
        if value < 0:
            raise PermanentError(f"cursor {cursor!r} is not a change sequence number", system=self.name, operation="GetStatusChanges")
        return value

    # -- attachments

    def _prepare(self, record: DocumentRecord, attachments: Sequence[LocalAttachment]) -> PreparedSend:
        parts = self._parts(record, attachments)
        request = self._soap.prepare("SendDocument", record.external_ref, edXMLEnvelope=edxml_envelope(record, parts, self.code_notation))
        return PreparedSend(record.external_ref, len(parts), request)

    def _parts(self, record: DocumentRecord, attachments: Sequence[LocalAttachment]) -> list[AttachmentPart]:
        total = sum(a.size for a in attachments)
        if total > self.max_attachment_bytes:
            raise PermanentError(
                f"attachments total {total} bytes, over this service's {self.max_attachment_bytes}-byte limit "
                "(it takes attachments inline, not streamed)",
                system=self.name, operation="SendDocument", ref=record.external_ref,
            )
        parts = [self._read(record, a, f"att-{n:02d}") for n, a in enumerate(attachments, start=1)]
        full_text = full_text_part(record, f"att-{len(parts) + 1:02d}")
        return parts + ([full_text] if full_text else [])

    def _read(self, record: DocumentRecord, attachment: LocalAttachment, content_id: str) -> AttachmentPart:
        """Read a spooled file and check it is the one the source described."""
        data = read_spooled(attachment, system=self.name, operation="SendDocument", ref=record.external_ref)
        return AttachmentPart(content_id, attachment.name, attachment.media_type, data)
