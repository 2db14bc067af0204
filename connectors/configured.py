"""A document system described by a mapping, not by code: what both wire formats share.

``ConfiguredDocumentSystem`` implements the ``DocumentSystem`` protocol once: it builds
each request from the mapping's value specs over the canonical fields
(``wire_context``), hands it to ``exchange`` (SOAP or REST, in the subclasses), and reads
the answer by the mapping's paths (``answers``). What a vendor calls things, where it
puts them and how it pages its change feed is configuration; how failures are typed and
how a feed is walked safely is here, once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ValidationError

from paht_bridge.connectors.answers import Answer, read_change, text
from paht_bridge.connectors.errors import MalformedResponse, PermanentError
from paht_bridge.connectors.messages import MESSAGE_CHARS, printable, validation_summary
from paht_bridge.connectors.wire_context import rating_context, record_context
from paht_bridge.canonical import (
    DocumentReceipt,
    DocumentRecord,
    LocalAttachment,
    Page,
    Quarantined,
    Rating,
    RawStatusChange,
)
from paht_bridge.config.wire import MissingCode, Operation, build, to_bool

log = logging.getLogger(__name__)


class ConfiguredDocumentSystem:
    """The ``DocumentSystem`` a mapping describes; subclasses speak the wire (``exchange``)."""

    name: str
    wire: Any  # SoapWire | RestWire
    inline_attachments = True  # SOAP carries attachment bytes in the request; REST streams them

    def exchange(self, op_name: str, op: Operation, context: dict[str, Any], ref: str | None,
                 attachments: Sequence[LocalAttachment] = ()) -> Answer:
        raise NotImplementedError

    # -- DocumentSystem

    def create_document(self, record: DocumentRecord, attachments: Sequence[LocalAttachment]) -> DocumentReceipt:
        op = self.wire.operations.create
        ref = record.external_ref
        context = record_context(record, attachments, system=self.name, text_limit=self.wire.text_limit, with_data=self.inline_attachments)
        answer = self.exchange("create", op, context, ref, attachments)
        document_id = self._required(answer, op, "document_id", "create", ref)
        echoed = op.response.get("external_ref")
        if echoed and text(answer.get(echoed)) != ref:
            # Trusting this would bind our report to somebody else's document.
            raise MalformedResponse(f"answered for reference {text(answer.get(echoed))!r}", system=self.name, operation="create", ref=ref)
        existed = self._flag(answer, op, "already_exists", "create", ref)
        log.info("document sent system=%s ref=%s document_id=%s created=%s attachments=%d",
                 self.name, ref, document_id, not existed, len(attachments))
        return DocumentReceipt(external_ref=ref, document_id=document_id, created=not existed)

    def find_by_ref(self, external_ref: str) -> DocumentReceipt | None:
        op = self.wire.operations.find
        answer = self.exchange("find", op, {"external_ref": external_ref}, external_ref)
        if "found" in op.response and not self._flag(answer, op, "found", "find", external_ref):
            return None
        candidates = answer.all(op.response["items"]) if "items" in op.response else [answer]
        for item in candidates:
            # Vendors' searches are often "contains": PAHT-x-1 must not match PAHT-x-10.
            if "external_ref" in op.response and text(item.get(op.response["external_ref"])) != external_ref:
                continue
            document_id = text(item.get(op.response["document_id"]))
            if document_id:
                return DocumentReceipt(external_ref=external_ref, document_id=document_id, created=False)
        return None

    def changes_since(self, cursor: str | None, page_size: int = 200) -> Iterator[Page[RawStatusChange]]:
        op = self.wire.operations.changes
        while True:
            answer = self.exchange("changes", op, {"cursor": cursor, "limit": page_size}, None)
            items = answer.all(op.response["items"])
            next_cursor = text(answer.get(op.response["next_cursor"]))
            if next_cursor is None:
                raise MalformedResponse(f"no {op.response['next_cursor']!r} (next cursor) in the answer", system=self.name, operation="changes")
            if "has_more" in op.response:
                has_more = self._flag(answer, op, "has_more", "changes", None)
            else:  # no flag: a full page means there may be more
                has_more = len(items) >= page_size
            yield self._page(items, op, next_cursor, has_more)
            if not has_more:
                return
            if next_cursor == cursor:
                raise MalformedResponse(f"the feed says there is more but its cursor stays {cursor!r}", system=self.name, operation="changes")
            cursor = next_cursor

    def get_status(self, document_id: str) -> RawStatusChange:
        op = self.wire.operations.status
        answer = self.exchange("status", op, {"document_id": document_id}, None)
        item = answer.all(op.response["item"])[0:1] if "item" in op.response else [answer]
        if not item:
            raise MalformedResponse(f"no {op.response['item']!r} in the answer", system=self.name, operation="status")
        try:
            change = read_change(item[0], op.change, self.wire.time_format)
        except (ValidationError, ValueError, TypeError) as exc:
            raise MalformedResponse(f"unusable answer: {_why(exc)}", system=self.name, operation="status") from exc
        if change.document_id != document_id:
            raise MalformedResponse(f"answered for document {change.document_id!r}, asked for {document_id!r}", system=self.name, operation="status")
        return change

    def post_rating(self, document_id: str, rating: Rating) -> None:
        op = self.wire.operations.rating
        if op is None:
            raise PermanentError("this document system takes no ratings (no rating operation in its mapping)",
                                 system=self.name, operation="rating", ref=rating.rating_id)
        self.exchange("rating", op, rating_context(document_id, rating), rating.rating_id)
        log.info("rating sent system=%s document_id=%s rating_id=%s", self.name, document_id, rating.rating_id)

    # -- requests and answers

    def request_for(self, op_name: str, op: Operation, context: dict[str, Any], ref: str | None, part: str = "request") -> dict[str, Any]:
        try:
            return build(getattr(op, part), context)
        except MissingCode as exc:
            raise PermanentError(f"mapping: {exc}", system=self.name, operation=op_name, ref=ref) from exc

    def _required(self, answer: Answer, op: Operation, field: str, op_name: str, ref: str | None) -> str:
        value = text(answer.get(op.response[field]))
        if not value:
            raise MalformedResponse(f"no {op.response[field]!r} ({field}) in the answer", system=self.name, operation=op_name, ref=ref)
        return value

    def _flag(self, answer: Answer, op: Operation, field: str, op_name: str, ref: str | None) -> bool:
        path = op.response.get(field)
        value = answer.get(path) if path else None
        if value is None:
            return False
        try:
            return to_bool(value)
        except ValueError as exc:
            raise MalformedResponse(f"{path!r} ({field}) is not a boolean: {str(value)[:40]!r}", system=self.name, operation=op_name, ref=ref) from exc

    def _page(self, items: list[Answer], op: Operation, next_cursor: str, has_more: bool) -> Page[RawStatusChange]:
        changes: list[RawStatusChange] = []
        quarantined: list[Quarantined] = []
        for item in items:
            try:
                changes.append(read_change(item, op.change, self.wire.time_format))
            except (ValidationError, ValueError, TypeError) as exc:
                # One unusable change must not stop the feed; it is kept with why.
                doc_id = text(item.get(op.change["document_id"]))
                quarantined.append(Quarantined(
                    source=self.name, source_id=doc_id if doc_id and len(doc_id) <= 128 and doc_id.isprintable() else None,
                    reason=f"unusable status change: {_why(exc)}", raw=item.raw(),
                ))
        return Page[RawStatusChange](items=changes, quarantined=quarantined, next_cursor=next_cursor, has_more=has_more)


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return validation_summary(exc, "change")
    return f"{exc.__class__.__name__}: {printable(str(exc), MESSAGE_CHARS)}"
