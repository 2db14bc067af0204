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

    def exchange(self, op: Operation, context: dict[str, Any], ref: str | None,
                 attachments: Sequence[LocalAttachment] = ()) -> Answer:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> ConfiguredDocumentSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- DocumentSystem

    def create_document(self, record: DocumentRecord, attachments: Sequence[LocalAttachment]) -> DocumentReceipt:
        op = self.wire.operations.create
        ref = record.external_ref
        answer = self.exchange(op, self.create_context(record, attachments), ref, attachments)
        document_id = self._required(answer, op, "document_id", ref)
        # Trusting an answer for another reference would bind our report to somebody else's document.
        self._echoed(answer, op, "external_ref", ref, ref)
        existed = self._flag(answer, op, "already_exists", ref)
        log.info("document sent system=%s ref=%s document_id=%s created=%s attachments=%d",
                 self.name, ref, document_id, not existed, len(attachments))
        return DocumentReceipt(external_ref=ref, document_id=document_id, created=not existed)

    def find_by_ref(self, external_ref: str) -> DocumentReceipt | None:
        op = self.wire.operations.find
        answer = self.exchange(op, {"external_ref": external_ref}, external_ref)
        said_found = "found" in op.response
        if said_found and not self._flag(answer, op, "found", external_ref):
            return None
        candidates = self._items(answer, op, "items", external_ref) if "items" in op.response else [answer]
        # Vendors' searches are often "contains": PAHT-x-1 must not match PAHT-x-10.
        matches = [item for item in candidates
                   if "external_ref" not in op.response or text(item.get(op.response["external_ref"])) == external_ref]
        found = [document_id for item in matches if (document_id := text(item.get(op.response["document_id"])))]
        if len(found) > 1:
            # Somebody created it twice (by hand, or before this bridge): the first is used, and IOC staff should know.
            log.warning("duplicate documents system=%s ref=%s document_ids=%s", self.name, external_ref, ",".join(found[:10]))
        if said_found and not found:
            raise MalformedResponse(f"says found but names no {op.response['document_id']!r} (document_id)",
                                    system=self.name, operation=op.name, ref=external_ref)
        return DocumentReceipt(external_ref=external_ref, document_id=found[0], created=False) if found else None

    def changes_since(self, cursor: str | None, page_size: int = 200) -> Iterator[Page[RawStatusChange]]:
        op = self.wire.operations.changes
        sequence = self.wire.cursor == "sequence"
        if sequence and cursor not in (None, "") and not _is_sequence(cursor):
            raise PermanentError(f"cursor {printable(cursor, 40)!r} is not a change sequence number", system=self.name, operation=op.name)
        limit = min(page_size, self.wire.max_page_size or page_size)
        while True:
            answer = self.exchange(op, {"cursor": cursor or None, "limit": limit}, None)
            items = self._items(answer, op, "items", None)
            next_cursor = text(answer.get(op.response["next_cursor"]))
            if next_cursor is None:
                raise MalformedResponse(f"no {op.response['next_cursor']!r} (next cursor) in the answer", system=self.name, operation=op.name)
            if sequence and not _is_sequence(next_cursor):
                raise MalformedResponse(f"next cursor {printable(next_cursor, 40)!r} is not a change sequence number",
                                        system=self.name, operation=op.name)
            if "has_more" in op.response:
                has_more = self._flag(answer, op, "has_more", None)
            else:  # no flag: a full page means there may be more
                has_more = len(items) >= limit
            yield self._page(items, op, next_cursor, has_more)
            if not has_more:
                return
            # A feed that says "more" without moving on would be read for ever.
            if next_cursor == cursor or (sequence and int(next_cursor) <= int(cursor or 0)):
                raise MalformedResponse(f"the feed says there is more but its cursor did not advance past {cursor!r}",
                                        system=self.name, operation=op.name)
            cursor = next_cursor

    def get_status(self, document_id: str) -> RawStatusChange:
        op = self.wire.operations.status
        answer = self.exchange(op, {"document_id": document_id}, None)
        item = self._items(answer, op, "item", None)[0:1] if "item" in op.response else [answer]
        if not item:
            raise MalformedResponse(f"no {op.response['item']!r} in the answer", system=self.name, operation=op.name)
        try:
            change = read_change(item[0], op.change, self.wire.time_format)
        except (ValidationError, ValueError, TypeError) as exc:
            raise MalformedResponse(f"unusable answer: {_why(exc)}", system=self.name, operation=op.name) from exc
        if change.document_id != document_id:
            raise MalformedResponse(f"answered for document {change.document_id!r}, asked for {document_id!r}", system=self.name, operation=op.name)
        return change

    def post_rating(self, document_id: str, rating: Rating) -> None:
        op = self.wire.operations.rating
        if op is None:
            raise PermanentError("this document system takes no ratings (no rating operation in its mapping)",
                                 system=self.name, operation="rating", ref=rating.rating_id)
        ref = rating.rating_id
        answer = self.exchange(op, rating_context(document_id, rating, self.wire.comment_limit), ref)
        self._echoed(answer, op, "rating_id", ref, ref)
        repeat = self._flag(answer, op, "already_exists", ref)
        log.info("rating sent system=%s document_id=%s rating_id=%s repeat=%s", self.name, document_id, ref, repeat)

    # -- requests and answers

    def create_context(self, record: DocumentRecord, attachments: Sequence[LocalAttachment]) -> dict[str, Any]:
        """The fields a create request is built from, cut to this system's limits."""
        return record_context(record, attachments, system=self.name, text_limit=self.wire.text_limit,
                              subject_limit=self.wire.subject_limit, with_data=self.inline_attachments)

    def request_for(self, op: Operation, context: dict[str, Any], ref: str | None, part: str = "request") -> dict[str, Any]:
        try:
            return build(getattr(op, part), context)
        except MissingCode as exc:
            raise PermanentError(f"mapping: {exc}", system=self.name, operation=op.name, ref=ref) from exc

    def _items(self, answer: Answer, op: Operation, field: str, ref: str | None) -> list[Answer]:
        try:
            return answer.all(op.response[field])
        except ValueError as exc:
            raise MalformedResponse(f"{exc} ({field})", system=self.name, operation=op.name, ref=ref) from exc

    def _required(self, answer: Answer, op: Operation, field: str, ref: str | None) -> str:
        value = text(answer.get(op.response[field]))
        if not value:
            raise MalformedResponse(f"no {op.response[field]!r} ({field}) in the answer", system=self.name, operation=op.name, ref=ref)
        return value

    def _echoed(self, answer: Answer, op: Operation, field: str, expected: str, ref: str | None) -> None:
        """An answer that names what it answers (``field``) must name what was asked."""
        path = op.response.get(field)
        if path and (echoed := text(answer.get(path))) != expected:
            raise MalformedResponse(f"answered for {field.replace('_', ' ')} {printable(str(echoed), 100)!r}, sent {expected!r}",
                                    system=self.name, operation=op.name, ref=ref)

    def _flag(self, answer: Answer, op: Operation, field: str, ref: str | None) -> bool:
        path = op.response.get(field)
        value = answer.get(path) if path else None
        if value is None:
            return False
        try:
            return to_bool(value)
        except ValueError as exc:
            raise MalformedResponse(f"{path!r} ({field}) is not a boolean: {printable(str(value), 40)!r}", system=self.name, operation=op.name, ref=ref) from exc

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


def _is_sequence(cursor: str) -> bool:
    return cursor.isascii() and cursor.isdigit() and len(cursor) <= 20


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return validation_summary(exc, "change")
    return f"{exc.__class__.__name__}: {printable(str(exc), MESSAGE_CHARS)}"
