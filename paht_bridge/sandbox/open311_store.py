"""The Open311 stand-in's memory: service requests as seeded (quirks kept), the updates
agencies posted, photos by name, and an armed fault; every method takes the lock."""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from paht_bridge.canonical import vietnam_now
from paht_bridge.sandbox.faults import FaultSlot
from paht_bridge.sandbox.open311_wire import ApiError, FaultIn, is_missing, parse_time

#: mySociety's update statuses: OPEN and CLOSED, and FixMyStreet's finer ones.
UPDATE_STATUSES = {
    "OPEN": "open", "CLOSED": "closed", "FIXED": "closed", "DUPLICATE": "closed", "NOT_COUNCILS_RESPONSIBILITY": "closed",
    "NO_FURTHER_ACTION": "closed", "INVESTIGATING": "open", "IN_PROGRESS": "open", "ACTION_SCHEDULED": "open",
    "INTERNAL_REFERRAL": "open",
}
MEDIA_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}


@dataclass
class _Stored:
    request_id: str
    data: dict[str, Any]  # served as-is (apart from an absolute media_url)
    at: datetime  # what the feed filters and orders by
    updates: list[dict[str, Any]] = field(default_factory=list)
    publish_calls: int = 0


class Open311State(FaultSlot):
    """Everything one Open311 server holds, in memory; every method takes the lock.

    ``clock`` stamps requests changed by an update (tests pass a fixed one);
    ``jurisdiction_id``, when set, must match the one a client sends, if it sends one.
    """

    def __init__(
        self,
        name: str,
        requests: list[dict[str, Any]],
        api_key: str,
        max_results: int = 50,
        *,
        jurisdiction_id: str | None = None,
        clock: Callable[[], datetime] = vietnam_now,
    ) -> None:
        if max_results < 1:
            raise ValueError("max_results must be at least 1")
        self.name = name
        self.api_key = api_key
        self.max_results = max_results
        self.jurisdiction_id = jurisdiction_id
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: dict[str, _Stored] = {}
        self._update_ids: set[str] = set()
        self._media: dict[str, str] = {}  # name → media type
        self._fault: FaultIn | None = None
        self._faults_left = 0
        for body in requests:
            self.add_request(body)

    def now(self) -> datetime:
        return self._clock()

    # requests

    def add_request(self, body: dict[str, Any]) -> tuple[str, bool]:
        """Add a request, or replace one (its updates stay). Stored as given: a seed's quirks are
        served back. Without any time it is stamped now. Returns (id, created)."""
        if not isinstance(body, dict):
            raise ApiError(400, "a request is a JSON object")
        data = dict(body)
        with self._lock:
            if is_missing(data.get("service_request_id")):
                data["service_request_id"] = str(len(self._requests) + 1)
            request_id = str(data["service_request_id"]).strip()
            at = parse_time(data.get("updated_datetime")) or parse_time(data.get("requested_datetime"))
            if at is None:
                at = self._clock()
                data.setdefault("requested_datetime", at.isoformat(timespec="seconds"))
                data["updated_datetime"] = at.isoformat(timespec="seconds")
            previous = self._requests.get(request_id)
            stored = _Stored(request_id, data, at)
            if previous is not None:
                stored.updates, stored.publish_calls = previous.updates, previous.publish_calls
            self._requests[request_id] = stored
            media = data.get("media_url")
            if isinstance(media, str) and media.startswith("/media/"):
                name = media.removeprefix("/media/")
                self._media[name] = MEDIA_TYPES.get(name.rpartition(".")[2].lower(), "image/jpeg")
            return request_id, previous is None

    def requests_between(
        self, start: datetime | None, end: datetime | None, *, status: set[str] | None = None,
        service_codes: set[str] | None = None, ids: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Requests in ``[start, end]`` by their feed time, oldest first, capped at ``max_results``."""
        with self._lock:
            if ids:
                chosen = [self._requests[i] for i in ids if i in self._requests]
            else:
                chosen = sorted(
                    (s for s in self._requests.values()
                     if (start is None or s.at >= start) and (end is None or s.at <= end)
                     and (status is None or str(s.data.get("status", "")).lower() in status)
                     and (service_codes is None or str(s.data.get("service_code", "")) in service_codes)),
                    key=lambda s: (s.at, s.request_id),
                )
            return [dict(s.data) for s in chosen[: self.max_results]]

    def media_type(self, name: str) -> str | None:
        with self._lock:
            return self._media.get(name)

    # updates

    def post_update(self, form: dict[str, str]) -> dict[str, str]:
        """Take one service request update; raises ``ApiError`` for what a real server refuses."""
        key = form.get("api_key")
        if not key or not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise ApiError(403, "api_key is missing or not valid")
        self.check_jurisdiction(form.get("jurisdiction_id"))
        for name in ("service_request_id", "update_id", "status", "description", "updated_datetime"):
            if is_missing(form.get(name)):
                raise ApiError(400, f"{name} is required")
        status = form["status"].strip().upper()
        if status not in UPDATE_STATUSES:
            raise ApiError(400, f"status {status[:40]!r} is not one of {', '.join(sorted(UPDATE_STATUSES))}")
        if parse_time(form["updated_datetime"]) is None:
            raise ApiError(400, "updated_datetime is not an ISO 8601 date-time")
        with self._lock:
            stored = self._requests.get(form["service_request_id"].strip())
            if stored is None:
                raise ApiError(404, f"service_request_id {form['service_request_id'][:60]} not found")
            stored.publish_calls += 1
            update_id = form["update_id"].strip()
            if update_id in self._update_ids:
                raise ApiError(409, f"update_id {update_id[:160]} already exists")
            now = self._clock().isoformat(timespec="seconds")
            update = {
                "update_id": update_id,
                "service_request_id": stored.request_id,
                "status": status,
                "description": form["description"],
                "agency_responsible": form.get("agency_responsible"),
                "updated_datetime": form["updated_datetime"],
                "received_datetime": now,
                "media_url": "",
            }
            self._update_ids.add(update_id)
            stored.updates.append(update)
            stored.data["status"] = UPDATE_STATUSES[status]
            stored.data["status_notes"] = form["description"]
            if form.get("agency_responsible"):
                stored.data["agency_responsible"] = form["agency_responsible"]
            stored.data["updated_datetime"] = now
            stored.at = parse_time(now) or stored.at
            return {"update_id": update_id, "service_request_id": stored.request_id}

    def updates_between(self, start: datetime | None, end: datetime | None, request_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            updates = [u for s in self._requests.values() for u in s.updates
                       if request_id is None or s.request_id == request_id]
        chosen = sorted(
            (u for u in updates if (at := parse_time(u["updated_datetime"])) is not None
             and (start is None or at >= start) and (end is None or at <= end)),
            key=lambda u: (parse_time(u["updated_datetime"]), u["update_id"]),
        )
        return [{k: v for k, v in u.items() if k not in ("received_datetime", "agency_responsible")} for u in chosen[: self.max_results]]

    def check_jurisdiction(self, jurisdiction_id: str | None) -> None:
        if self.jurisdiction_id and not is_missing(jurisdiction_id) and jurisdiction_id != self.jurisdiction_id:
            raise ApiError(404, f"jurisdiction_id {str(jurisdiction_id)[:60]} not found")

    # faults and inspection

    def snapshot(self) -> list[dict[str, Any]]:
        """Every request's state, oldest change first, in the shape every citizen stand-in
        reports (``outcomes``/``publish_calls``/``rating``), with ``published`` naming Open311's updates."""
        with self._lock:
            return [
                {
                    "id": s.request_id,
                    "status": s.data.get("status"),
                    "updated_datetime": s.data.get("updated_datetime"),
                    "published": [dict(u) for u in s.updates],
                    "outcomes": [dict(u) for u in s.updates],
                    "publish_calls": s.publish_calls,
                    "rating": None,
                }
                for s in sorted(self._requests.values(), key=lambda s: (s.at, s.request_id))
            ]
