"""The citizen-app stand-in's memory: reports, their change log, outcomes, ratings, faults.

Everything sits behind one lock. The cursor is a change sequence number: every new or
changed report takes the next number, so a report added or answered later always comes
after any cursor handed out.
"""

from __future__ import annotations

import bisect
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any
from urllib.parse import quote

from paht_bridge.canonical import vietnam_now
from paht_bridge.sandbox import sample_media
from paht_bridge.sandbox.citizen_app_wire import CATEGORY_NAMES, AppStatus, FaultIn, OutcomeIn, SeedAttachment, SeedReport
from paht_bridge.sandbox.faults import FaultSlot

SATISFIED_COMMENTS = (
    "Cảm ơn cơ quan chức năng đã xử lý kịp thời.",
    "Đã được khắc phục, người dân rất hài lòng.",
    "Xử lý nhanh, đúng nội dung phản ánh.",
    "Cảm ơn chính quyền đã quan tâm giải quyết.",
)
UNSATISFIED_COMMENTS = (
    "Chưa xử lý dứt điểm, tình trạng vẫn tái diễn.",
    "Trả lời chưa đúng nội dung phản ánh.",
    "Thời gian xử lý quá lâu.",
)

#: Statuses that close a report for the citizen; only these can be rated.
FINAL_STATUSES = {AppStatus.DONE, AppStatus.INVALID}


@dataclass
class _Stored:
    """One report as the app holds it. ``verbatim`` is served as-is (for hostile-data tests)."""

    report_id: str
    seq: int
    updated_at: datetime
    seed: SeedReport | None = None
    verbatim: dict[str, Any] | None = None
    status: AppStatus = AppStatus.NEW
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    publish_calls: int = 0
    rating: dict[str, Any] | None = None


class CitizenAppState(FaultSlot):
    """Everything one citizen app holds, in memory; every method takes the lock."""

    def __init__(self, name: str, reports: list[dict[str, Any]], api_key: str = "sandbox-key") -> None:
        self.name = name
        self.api_key = api_key
        self._lock = threading.Lock()
        self._seq = 0
        self._reports: dict[str, _Stored] = {}
        self._log: list[tuple[int, str]] = []  # (seq, report id), append-only; stale entries skipped on read
        self._attachments: dict[str, tuple[str, str]] = {}  # id → (file name, media type)
        self._ratings: list[dict[str, Any]] = []
        self._fault: FaultIn | None = None
        self._faults_left = 0
        for report in reports:
            self.add_report(report)

    # reports

    def add_report(self, body: dict[str, Any], *, verbatim: bool = False) -> tuple[str, int, bool]:
        """Add a report, or replace one the citizen edited (its answers and rating stay); either
        way it takes the next change number. Returns (id, seq, created)."""
        seed = None if verbatim else SeedReport.model_validate(body)
        with self._lock:
            report_id = seed.id if seed else str(body.get("id") or f"RAW-{self._seq + 1}")
            previous = self._reports.get(report_id)
            seq = self._next_seq(report_id)
            stored = _Stored(
                report_id=report_id,
                seq=seq,
                updated_at=seed.created_at if seed and previous is None else vietnam_now(),
                seed=seed,
                verbatim=None if seed else dict(body),
            )
            if previous is not None:
                stored.status, stored.outcomes = previous.status, previous.outcomes
                stored.publish_calls, stored.rating = previous.publish_calls, previous.rating
            self._reports[report_id] = stored
            for attachment in seed.attachments if seed else ():
                self._attachments[attachment.id] = (attachment.name, attachment.media_type)
            return report_id, seq, previous is None

    def _next_seq(self, report_id: str) -> int:
        self._seq += 1
        self._log.append((self._seq, report_id))
        return self._seq

    def reports_after(self, since: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
        """Reports changed after ``since``, oldest change first: (items, next cursor, has more)."""
        with self._lock:
            live = self._live_after(since)
            chosen = list(islice(live, limit))
            has_more = next(live, None) is not None
            next_cursor = chosen[-1][0] if chosen else since
            return [self._render(self._reports[report_id]) for _, report_id in chosen], next_cursor, has_more

    def _live_after(self, since: int) -> Iterator[tuple[int, str]]:
        start = bisect.bisect_right(self._log, since, key=lambda entry: entry[0])
        for index in range(start, len(self._log)):  # by index: no copy of a long log's tail per page
            seq, report_id = self._log[index]
            if self._reports[report_id].seq == seq:  # skip the older entries of a report changed since
                yield seq, report_id

    def _render(self, stored: _Stored) -> dict[str, Any]:
        if stored.seed is None:
            return dict(stored.verbatim or {})
        seed = stored.seed
        location = seed.location
        return {
            "id": seed.id,
            "channel": seed.channel,
            "category": {"code": seed.category, "name": CATEGORY_NAMES.get(seed.category, seed.category)},
            "title": seed.title,
            "description": seed.description,
            "status": stored.status.value,
            "created_at": seed.created_at.isoformat(),
            "updated_at": stored.updated_at.isoformat(),
            "location": {
                "lat": location.lat,
                "lng": location.lon,
                "address": location.address,
                "admin_unit": location.admin.model_dump(exclude_none=True),
            },
            "reporter": {"full_name": seed.reporter.name, "phone": seed.reporter.phone},
            "attachments": [self._render_attachment(a) for a in seed.attachments],
        }

    @staticmethod
    def _render_attachment(attachment: SeedAttachment) -> dict[str, Any]:
        size, sha256 = sample_media.attachment_digest(attachment.id, attachment.media_type)
        return {
            "id": attachment.id,
            "file_name": attachment.name,
            "mime_type": attachment.media_type,
            "size": size,
            "sha256": sha256,
            "download_url": f"/api/v1/attachments/{quote(attachment.id)}",
        }

    def attachment(self, attachment_id: str) -> tuple[str, str] | None:
        with self._lock:
            return self._attachments.get(attachment_id)

    # outcomes and ratings

    def publish(self, report_id: str, outcome: OutcomeIn, key: str | None = None) -> tuple[str, bool] | None:
        """Record an agency's answer; a repeat (the same idempotency ``key``, or without one an
        identical post) changes nothing. (outcome id, created) or None when the report is unknown."""
        record = outcome.model_dump(mode="json")
        with self._lock:
            stored = self._reports.get(report_id)
            if stored is None:
                return None
            stored.publish_calls += 1
            for existing in stored.outcomes:
                if (existing["key"] == key) if key else _same_outcome(existing, outcome):
                    return existing["outcome_id"], False
            outcome_id = f"{report_id}-KQ{len(stored.outcomes) + 1}"
            stored.outcomes.append({"outcome_id": outcome_id, **record, "key": key})
            stored.status = outcome.status
            stored.updated_at = vietnam_now()
            stored.seq = self._next_seq(report_id)  # an answered report is a changed report
            return outcome_id, True

    def rate_all(self) -> int:
        """Every citizen whose report has a final answer and no rating yet rates it."""
        with self._lock:
            rated = 0
            for stored in sorted(self._reports.values(), key=lambda s: s.seq):
                if stored.rating is None and stored.status in FINAL_STATUSES:
                    stored.rating = self._new_rating(stored.report_id)
                    rated += 1
            return rated

    def _new_rating(self, report_id: str) -> dict[str, Any]:
        crc = zlib.crc32(report_id.encode())
        satisfied = crc % 5 != 0
        comments = SATISFIED_COMMENTS if satisfied else UNSATISFIED_COMMENTS
        seq = len(self._ratings) + 1
        rating = {
            "id": f"DG-{seq:06d}",
            "seq": seq,
            "report_id": report_id,
            "level": "hai_long" if satisfied else "khong_hai_long",
            "comment": comments[crc % len(comments)],
            "rated_at": vietnam_now().isoformat(),
        }
        self._ratings.append(rating)
        return rating

    def ratings_after(self, since: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
        with self._lock:
            page = self._ratings[since : since + limit]  # rating seq n sits at index n-1
            next_cursor = page[-1]["seq"] if page else since
            wire = [{k: v for k, v in rating.items() if k != "seq"} for rating in page]
            return wire, next_cursor, len(self._ratings) > next_cursor

    # faults and inspection

    def snapshot(self) -> list[dict[str, Any]]:
        """Every report's state, oldest change first, for test assertions."""
        with self._lock:
            return [
                {
                    "id": s.report_id,
                    "seq": s.seq,
                    "status": s.status.value,
                    "outcomes": [dict(o) for o in s.outcomes],
                    "publish_calls": s.publish_calls,
                    "rating": dict(s.rating) if s.rating else None,
                }
                for s in sorted(self._reports.values(), key=lambda s: s.seq)
            ]


def _same_outcome(existing: dict[str, Any], outcome: OutcomeIn) -> bool:
    """Two posts are the same outcome when they say the same thing at the same moment."""
    return (
        existing["status"] == outcome.status.value
        and existing["answer"] == outcome.answer
        and existing["answer_unit"] == outcome.answer_unit
        and datetime.fromisoformat(existing["answered_at"]) == outcome.answered_at
    )
