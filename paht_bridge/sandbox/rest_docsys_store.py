"""The TDOffice-style stand-in's memory: records, the change feed, ratings, faults and counters.

The agency desk (``sandbox.desk``) moves records through the vendor's status codes; every
move lands in the change feed, whose sequence number is also the cursor.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from paht_bridge.canonical import vietnam_now
from paht_bridge.sandbox.desk import Clock, Stage, answer_text, next_stage, refusal_text
from paht_bridge.sandbox.rest_docsys_wire import AttachmentOut, Faults, IncomingDocument, RatingIn, SandboxDocument, SandboxRating

STATUS_BY_STAGE: dict[Stage, str] = {
    Stage.ARRIVED: "CHO_TIEP_NHAN",
    Stage.ACCEPTED: "DA_TIEP_NHAN",
    Stage.ASSIGNED: "DA_PHAN_CONG",
    Stage.IN_PROGRESS: "DANG_XU_LY",
    Stage.ANSWERED: "DA_XU_LY",
    Stage.REFUSED: "TRA_LAI",
}
RECALLED = "THU_HOI"
ANSWERING_STAGES = {Stage.ANSWERED, Stage.REFUSED}


@dataclass
class StoredRecord:
    id: str
    document: IncomingDocument
    attachments: list[AttachmentOut]
    received_at: datetime
    stage: Stage = Stage.ARRIVED
    recalled: bool = False
    updated_at: datetime | None = None
    answer: str | None = None
    answered_by: str | None = None
    ratings: dict[str, RatingIn] = field(default_factory=dict)

    @property
    def external_ref(self) -> str:
        return self.document.so_ky_hieu

    @property
    def status(self) -> str:
        return RECALLED if self.recalled else STATUS_BY_STAGE[self.stage]


@dataclass(frozen=True)
class ChangeEntry:
    seq: int
    record_id: str
    external_ref: str
    status: str
    at: datetime
    answer: str | None
    answered_by: str | None


class IdempotencyConflict(Exception):
    """An Idempotency-Key already used for a different external reference."""


class RestDocsysState:
    """In-memory store of one stand-in document system; every method is thread-safe.

    The counters per external reference (create calls, records created) are what
    exactly-once tests assert: any number of calls, one record.
    """

    def __init__(self, refuse_one_in: int = 7, token: str = "sandbox-token") -> None:
        self.refuse_one_in = refuse_one_in
        self.token = token
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._records: dict[str, StoredRecord] = {}
        self._by_ref: dict[str, str] = {}
        self._by_idempotency_key: dict[str, str] = {}
        self._create_calls: Counter[str] = Counter()
        self._created: Counter[str] = Counter()
        self._log: list[ChangeEntry] = []
        self._faults = Faults()
        self._clock: Clock | None = None

    # records

    def create(
        self, document: IncomingDocument, attachments: list[AttachmentOut], idempotency_key: str | None = None
    ) -> tuple[StoredRecord, bool]:
        """Store a record unless its key or reference is known; return it and whether it existed."""
        ref = document.so_ky_hieu
        with self._lock:
            self._create_calls[ref] += 1
            known_id = self._by_idempotency_key.get(idempotency_key) if idempotency_key else None
            if known_id is not None:
                if self._records[known_id].external_ref != ref:
                    raise IdempotencyConflict(idempotency_key)
                return self._records[known_id], True
            if ref in self._by_ref:
                record = self._records[self._by_ref[ref]]
                if idempotency_key:
                    self._by_idempotency_key[idempotency_key] = record.id
                return record, True
            now = vietnam_now()
            record = StoredRecord(id=f"VBD-{next(self._ids):06d}", document=document, attachments=attachments, received_at=now)
            self._records[record.id] = record
            self._by_ref[ref] = record.id
            if idempotency_key:
                self._by_idempotency_key[idempotency_key] = record.id
            self._created[ref] += 1
            self._record_change(record, now)
            return record, False

    def get(self, record_id: str) -> StoredRecord | None:
        with self._lock:
            return self._records.get(record_id)

    def find(self, external_ref: str) -> list[StoredRecord]:
        with self._lock:
            record_id = self._by_ref.get(external_ref)
            return [self._records[record_id]] if record_id else []

    def create_calls(self, external_ref: str) -> int:
        with self._lock:
            return self._create_calls[external_ref]

    def created_count(self, external_ref: str) -> int:
        with self._lock:
            return self._created[external_ref]

    # change feed

    def _record_change(self, record: StoredRecord, at: datetime) -> None:
        """Append to the log; the caller holds the lock, so sequence numbers never interleave."""
        record.updated_at = at
        self._log.append(
            ChangeEntry(
                seq=len(self._log) + 1, record_id=record.id, external_ref=record.external_ref,
                status=record.status, at=at, answer=record.answer, answered_by=record.answered_by,
            )
        )

    def changes(self, after: int, limit: int) -> tuple[list[ChangeEntry], int, bool]:
        """Changes with a sequence above ``after``: (entries, next cursor, whether more remain)."""
        with self._lock:
            entries = self._log[after : after + limit]  # seq n sits at index n - 1
            next_cursor = entries[-1].seq if entries else max(after, 0)
            return entries, next_cursor, next_cursor < len(self._log)

    # the agency desk

    def tick(self) -> int:
        """Move every open record one desk stage on; return how many moved."""
        moved = 0
        with self._lock:
            now = vietnam_now()
            for record in self._records.values():
                if record.recalled:
                    continue
                stage = next_stage(record.stage, record.external_ref, self.refuse_one_in)
                if stage is None:
                    continue
                record.stage = stage
                agency = record.document.don_vi_nhan.ten
                if stage is Stage.ANSWERED:
                    record.answer = answer_text(record.document.trich_yeu, agency)
                elif stage is Stage.REFUSED:
                    record.answer = refusal_text(agency)
                if stage in ANSWERING_STAGES:
                    record.answered_by = agency
                self._record_change(record, now)
                moved += 1
        return moved

    def recall(self, record_id: str) -> StoredRecord:
        """Thu hồi (recall) by the sender; only while the agency has not answered."""
        with self._lock:
            record = self._records[record_id]
            if not record.recalled and record.stage not in ANSWERING_STAGES:
                record.recalled = True
                self._record_change(record, vietnam_now())
            return record

    def start_clock(self, interval: float) -> Clock:
        """Tick on its own every ``interval`` seconds (the demo); ``stop_clock`` ends it."""
        with self._lock:
            if self._clock is None:
                self._clock = Clock(self.tick, interval).start()
            return self._clock

    def stop_clock(self) -> None:
        with self._lock:
            clock, self._clock = self._clock, None
        if clock is not None:
            clock.stop()

    # ratings

    def rate(self, record_id: str, rating: RatingIn) -> bool:
        """Store a rating once; return whether its id was already known."""
        with self._lock:
            ratings = self._records[record_id].ratings
            if rating.ma_danh_gia in ratings:
                return True
            ratings[rating.ma_danh_gia] = rating
            return False

    # faults

    @property
    def faults(self) -> Faults:
        with self._lock:
            return self._faults

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults

    def take_fault(self, counter: Literal["fail_next", "stall_after_commit_next", "malformed_next"]) -> bool:
        """Use up one injected fault of this kind, if any is left."""
        with self._lock:
            left = getattr(self._faults, counter)
            if left <= 0:
                return False
            self._faults = self._faults.model_copy(update={counter: left - 1})
            return True

    # assertions

    def documents(self) -> list[SandboxDocument]:
        with self._lock:
            return [self._snapshot(record) for record in self._records.values()]

    def document(self, record_id: str) -> SandboxDocument:
        with self._lock:
            return self._snapshot(self._records[record_id])

    def document_by_ref(self, external_ref: str) -> SandboxDocument | None:
        with self._lock:
            record_id = self._by_ref.get(external_ref)
            return self._snapshot(self._records[record_id]) if record_id else None

    def _snapshot(self, record: StoredRecord) -> SandboxDocument:
        reporter = record.document.nguoi_phan_anh
        return SandboxDocument(
            id=record.id, external_ref=record.external_ref, agency=record.document.don_vi_nhan.ma,
            status=record.status, create_calls=self._create_calls[record.external_ref],
            created_count=self._created[record.external_ref], attachments=list(record.attachments),
            ratings=[SandboxRating(rating_id=r.ma_danh_gia, level=r.muc_do, comment=r.nhan_xet)
                     for r in record.ratings.values()],
            reporter_fields=sorted(reporter.model_dump(exclude_none=True)) if reporter else [],
        )
