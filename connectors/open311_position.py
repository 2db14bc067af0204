"""Where an Open311 feed resumes: the cursor GeoReport v2 lacks, kept by the client.

The cursor is ``<instant>|<id>,<id>…``: every request ordered before the instant, plus the
listed ids at it, has been yielded. It stays within the ledger's 255 characters: when the
ids do not fit they are kept as short hashes, and failing that as ``*`` (the requests at
that instant are then read again on the next run: a repeat the ledger absorbs, never a
loss). A bare ISO date or date-time is accepted as a cursor too. Over an empty stretch
the cursor advances only to ``clock()`` minus ``limits.max_clock_skew_seconds``, so a
request the server stamps a little in our past, but stores late, is still read. Each HTTP
answer used becomes one ``Page`` whose ``next_cursor`` covers exactly what was yielded;
an answer discarded by halving the window yields nothing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from paht_bridge.connectors.citizen_app import ID_PATTERN, WireDateTime, payload_text
from paht_bridge.connectors.open311_wire import CURSOR_CHARS, ONE_SECOND, missing_as_none, number_as_text
from paht_bridge.canonical import VIETNAM_TZ

_TIME = TypeAdapter(WireDateTime)


def _token_hash(token: str) -> str:
    return "#" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class FeedPosition:
    """Everything ordered before ``at``, and the requests named in ``taken`` at ``at``, was yielded.

    ``taken`` holds ids, ``#``-hashes of ids (a compact cursor) or ``~``-hashes of items without
    a usable id; ``*`` stands for "not recorded" and matches nothing (a repeat, never a loss).
    """

    at: datetime
    taken: frozenset[str] = frozenset()

    def covers(self, key: tuple[datetime, str]) -> bool:
        at, token = key
        if at != self.at:
            return at < self.at
        return token in self.taken or _token_hash(token) in self.taken

    def after(self, keys: list[tuple[datetime, str]]) -> FeedPosition:
        """The position once ``keys`` (sorted, none covered) are yielded too."""
        if not keys:
            return self
        last = keys[-1][0]
        tied = {token for at, token in keys if at == last}
        return FeedPosition(last, (self.taken | tied) if last == self.at else frozenset(tied))

    def advanced_to(self, at: datetime) -> FeedPosition:
        """The position when nothing lies between it and ``at`` (inclusive) that was not yielded."""
        return FeedPosition(at) if at > self.at else self

    def serialize(self) -> str:
        stamp = self.at.astimezone(VIETNAM_TZ).isoformat()
        tokens = sorted(t for t in self.taken if t != "*")
        text = f"{stamp}|{','.join(tokens)}"
        if len(text) <= CURSOR_CHARS:
            return text
        hashed = sorted({t if t.startswith("#") else _token_hash(t) for t in tokens})
        text = f"{stamp}|{','.join(hashed)}"
        return text if len(text) <= CURSOR_CHARS else f"{stamp}|*"

    @classmethod
    def parse(cls, cursor: str) -> FeedPosition:
        """A cursor this client wrote, or a bare ISO date/date-time (Vietnam time when zone-less)."""
        stamp, _, rest = cursor.strip().partition("|")
        at = datetime.fromisoformat(stamp)
        if at.tzinfo is None:
            at = at.replace(tzinfo=VIETNAM_TZ)
        return cls(at, frozenset(t for t in rest.split(",") if t))


def order_key(raw: object) -> tuple[datetime, str] | None:
    """(when, token) a request is ordered by in the feed, or None when it has no usable time.

    The time is ``updated_datetime``, else ``requested_datetime``; the token its id, or a hash
    of the item when the id is unusable (it is quarantined, but still has its place)."""
    if not isinstance(raw, dict):
        return None
    at = None
    for field in ("updated_datetime", "requested_datetime"):
        value = missing_as_none(raw.get(field))
        if value is None:
            continue
        try:
            at = _TIME.validate_python(value)
            break
        except ValidationError:
            continue
    if at is None:
        return None
    identifier = number_as_text(missing_as_none(raw.get("service_request_id")))
    if isinstance(identifier, str) and re.match(ID_PATTERN, identifier):
        return at, identifier
    return at, "~" + hashlib.sha256((payload_text(raw) or repr(raw)).encode("utf-8", "backslashreplace")).hexdigest()[:10]


def floor_second(at: datetime) -> datetime:
    return at.replace(microsecond=0)


def ceil_second(at: datetime) -> datetime:
    return floor_second(at) + ONE_SECOND if at.microsecond else at


def wire_time(at: datetime) -> str:
    """An instant as GeoReport v2 query bounds take it: whole seconds, Vietnam offset."""
    return at.astimezone(VIETNAM_TZ).replace(microsecond=0).isoformat()
