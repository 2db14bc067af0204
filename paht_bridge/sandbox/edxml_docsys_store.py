"""The edXML stand-in's memory: documents, the change feed, ratings, injected faults and the
counters tests read (send calls and documents created per external reference) to prove
exactly-once delivery. The iOffice stand-in keeps its documents here too.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from paht_bridge.canonical import VIETNAM_TZ
from paht_bridge.sandbox.desk import Clock, Stage, answer_text, next_stage, refusal_text

STAGE_CODES: dict[Stage, str] = {
    Stage.ARRIVED: "01",
    Stage.REFUSED: "02",
    Stage.ACCEPTED: "03",
    Stage.ASSIGNED: "04",
    Stage.IN_PROGRESS: "05",
    Stage.ANSWERED: "06",
}

FAULT_KINDS = {"latency", "timeout_after_commit", "server_fault", "html", "entity_bomb"}


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
