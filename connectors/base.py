"""The two interfaces every outside system is spoken to through.

A *citizen source* is where reports come from and outcomes go back to; a *document
system* is where an agency handles them. A new kind of system is one module in this
package implementing one of these; a new system of a known kind is a mapping file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from paht_bridge.canonical import (
    Attachment,
    DocumentReceipt,
    DocumentRecord,
    LocalAttachment,
    Outcome,
    Page,
    Quarantined,
    Rating,
    RawStatusChange,
    Report,
)


@runtime_checkable
class CitizenSource(Protocol):
    """A citizen app: reports in, public answers out, ratings in."""

    name: str

    def reports_since(self, cursor: str | None, page_size: int = 100) -> Iterator[Page[Report]]:
        """Reports created or changed after ``cursor``, oldest first, one page at a time.
        Items that fail validation come back in ``Page.quarantined``, never as exceptions."""
        ...

    def open_attachment(self, attachment: Attachment) -> AbstractContextManager[Iterator[bytes]]:
        """Stream an attachment's bytes in chunks; never loads the whole file."""
        ...

    def publish_outcome(self, outcome: Outcome) -> None:
        """Publish the agency's answer for the citizen. Idempotent: publishing twice is harmless."""
        ...

    def ratings_since(self, cursor: str | None, page_size: int = 100) -> Iterator[Page[Rating]]:
        ...

    def parse_reports(self, raw_items: list[Any]) -> tuple[list[Report], list[Quarantined]]:
        """Decoded wire items as reports, the rest quarantined: how a quarantined payload is replayed."""
        ...


@runtime_checkable
class DocumentSystem(Protocol):
    """An agency's document-management system (edXML-style SOAP, TDOffice-style REST...)."""

    name: str

    def create_document(self, record: DocumentRecord, attachments: Sequence[LocalAttachment]) -> DocumentReceipt:
        """Create an incoming document. If the target already holds ``record.external_ref``
        this returns its receipt with ``created=False`` instead of creating a second one."""
        ...

    def find_by_ref(self, external_ref: str) -> DocumentReceipt | None:
        ...

    def changes_since(self, cursor: str | None, page_size: int = 200) -> Iterator[Page[RawStatusChange]]:
        """Status changes (in the target's raw codes) after ``cursor``, oldest first."""
        ...

    def get_status(self, document_id: str) -> RawStatusChange:
        """The current status and answer of one document (for systems without a change feed,
        and for reconciliation)."""
        ...

    def post_rating(self, document_id: str, rating: Rating) -> None:
        """Pass the citizen's rating on to the agency. Idempotent by ``rating.rating_id``."""
        ...
