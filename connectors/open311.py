"""Client for an Open311 GeoReport v2 server: a ``CitizenSource``.

Many cities' citizen portals speak GeoReport v2 (open311.org): a request
(``service_request``) is a phản ánh hiện trường (field report), its ``service_code`` the
category. This module pulls requests in date windows, streams their photo (``media_url``)
and publishes the agencies' answers back with mySociety's *service request updates*
extension. The wire shape stays in this module and its companions, ``open311_wire`` (the
request model, its checks and mapping, the outcome form), ``open311_answers`` (error
documents, XML read as dicts) and ``open311_position`` (the cursor); the rest of the bridge
sees canonical models only.

Wire format in brief (see ``paht_bridge.sandbox.open311`` for the stand-in):
``GET {base}/requests.{json|xml}?start_date=&end_date=&jurisdiction_id=`` (ISO 8601 with an
offset; both bounds inclusive) answers a JSON list or ``<service_requests><request>…``;
``POST {base}/servicerequestupdates.{fmt}`` (form-encoded, with ``api_key``) adds an update;
an error is ``[{"code": 403, "description": "…"}]`` or ``<errors><error><code>…``.

**Reading the feed.** GeoReport v2 has no change cursor and no paging, and real servers cap
an answer (FixMyStreet at 1000, others at 200). So the client walks date windows of
``window_days`` from the cursor up to ``clock()``, ordering requests by ``updated_datetime``
(``requested_datetime`` when the server sends none), and:

- continues from the last timestamp it took, asking again from that instant, so a server
  that keeps the *oldest* requests of a capped answer is read to the end;
- remembers the ids already taken at that instant (ties), so a request sharing the
  instant is neither lost nor taken twice; when an answer brings only requests already
  taken at that instant, it moves on to the next whole second;
- treats a window as read only when an answer from past the cursor comes back empty;
- halves the window when an answer holds ``page_size`` requests or more (until it is one
  second long), so pages stay near ``page_size`` and a server that keeps the *newest*
  requests of a capped answer is still read whole, provided ``page_size`` is at most the
  server's cap. More requests at one second than the server's cap cannot be reached
  through GeoReport v2 at all; that is logged as a warning.

The cursor that records how far the walk got is ``open311_position.FeedPosition``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

from paht_bridge.connectors.attachment_download import CheckedDownload
from paht_bridge.connectors.citizen_app import page_log_level
from paht_bridge.connectors.content import SIGNATURES, media_type_of, mismatch
from paht_bridge.connectors.errors import AmbiguousError, MalformedResponse, PermanentError, TransientError
from paht_bridge.connectors.http import DEFAULT_TIMEOUT, TRANSIENT_STATUS, HttpTransport
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.connectors.open311_position import FeedPosition, ceil_second, floor_second, order_key, wire_time
from paht_bridge.connectors.messages import printable
from paht_bridge.connectors.open311_answers import element_dict, first_update_id, json_error, local_name, xml_error
from paht_bridge.connectors.open311_wire import (
    ONE_SECOND,
    WireRequest,
    absolute_url,
    check_request,
    masked_raw,
    media_of,
    missing_as_none,
    number_as_text,
    outcome_form,
    request_from_wire,
)
from paht_bridge.connectors.quarantine import convert_each, payload_text, quarantine_record
from paht_bridge.connectors.xml import XmlRefused, parse_xml
from paht_bridge.canonical import VIETNAM_TZ, Attachment, Outcome, Page, Quarantined, Rating, Report, vietnam_now

log = logging.getLogger(__name__)

DEFAULT_START = datetime(2020, 1, 1, tzinfo=VIETNAM_TZ)
#: Every status is read by the client itself, so an Open311 error document is never lost
#: behind the transport's generic "HTTP 403" message.
ANY_STATUS = tuple(range(100, 600))
#: An error's description saying the update is already there: success for an idempotent publish.
ALREADY_EXISTS = re.compile(r"already exist|duplicate|đã tồn tại", re.IGNORECASE)


class Open311Client:
    """A ``CitizenSource`` over one Open311 GeoReport v2 server.

    ``name`` is the source's name in the deployment mapping (``Report.source``); ``base_url``
    and ``api_key`` come from the Airflow Connection (host, password; see ``Open311Hook``),
    ``jurisdiction_id``, ``wire_format``, ``window_days`` and ``initial_start`` from the
    mapping's ``open311`` section, ``limits`` from the connection's extra. ``initial_start`` is
    where a source without a cursor starts (default 2020-01-01, Vietnam time); ``clock`` is
    "now" for the end of the walk and for refusing times in the future. The ``api_key`` is
    sent only with updates (the POST form), never in a GET's query string, where proxies log
    it. The constructor does no I/O; one HTTP session is reused.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key: str | None = None,
        jurisdiction_id: str | None = None,
        wire_format: Literal["json", "xml"] = "json",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        limits: ConnectorLimits = DEFAULT_LIMITS,
        window_days: int = 30,
        initial_start: datetime | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if wire_format not in ("json", "xml"):
            raise ValueError(f"wire_format must be 'json' or 'xml', not {wire_format!r}")
        if window_days < 1:
            raise ValueError("window_days must be at least 1")
        if initial_start is not None and initial_start.tzinfo is None:
            initial_start = initial_start.replace(tzinfo=VIETNAM_TZ)
        self.name = name
        self.limits = limits
        self.wire_format = wire_format
        self.window = timedelta(days=window_days)
        self.initial_start = initial_start or DEFAULT_START
        self._api_key = api_key
        self._jurisdiction_id = jurisdiction_id
        self._clock = clock or vietnam_now
        accept = "application/json" if wire_format == "json" else "application/xml, text/xml"
        self._http = HttpTransport(name, base_url, timeout=timeout, headers={"Accept": accept, "User-Agent": "paht-bridge"}, limits=limits)

    # the report feed

    def reports_since(self, cursor: str | None, page_size: int = 100) -> Iterator[Page[Report]]:
        """Requests changed after ``cursor``, oldest first, one page per HTTP answer used.

        Lazy: the next request is sent only when the caller asks for the next page, after it
        has committed this one. See the module docstring for how windows, caps and ties work.
        """
        position = self._position(cursor)
        now = self._clock()
        horizon = max(ceil_second(now), ceil_second(position.at))
        settled = floor_second(now - timedelta(seconds=self.limits.max_clock_skew_seconds))
        start, span = floor_second(position.at), self.window
        seen_unplaceable: set[str] = set()
        while True:
            end = min(ceil_second(start + span), horizon)
            raw_items = self._fetch_requests(start, end)
            keyed = [(order_key(raw), raw) for raw in raw_items]
            in_window = [(key, raw) for key, raw in keyed if key is None or start <= key[0] <= end]
            if len(in_window) < len(keyed):
                log.warning("open311.outside_window source=%s start=%s end=%s ignored=%d",
                            self.name, wire_time(start), wire_time(end), len(keyed) - len(in_window))
            if len(in_window) >= page_size and end - start > ONE_SECOND:
                span = max(ONE_SECOND, timedelta(seconds=math.ceil((end - start).total_seconds() / 2)))
                log.info("open311.window_halved source=%s start=%s items=%d span_s=%d",
                         self.name, wire_time(start), len(in_window), span.total_seconds())
                continue  # this answer may be a capped one: read the first half again, smaller
            if len(in_window) >= page_size:
                log.warning("open311.full_at_one_second source=%s at=%s items=%d: more may be beyond the server's cap",
                            self.name, wire_time(start), len(in_window))
            new: dict[str, tuple[tuple[datetime, str], Any]] = {}
            unplaceable: list[Any] = []
            known = 0
            for key, raw in in_window:
                if key is None:
                    digest = hashlib.sha256((payload_text(raw) or repr(raw)).encode("utf-8", "backslashreplace")).hexdigest()
                    if digest not in seen_unplaceable:  # the same bad item in every answer is quarantined once
                        seen_unplaceable.add(digest)
                        unplaceable.append(raw)
                elif position.covers(key):
                    known += 1
                elif key[1] not in new or new[key[1]][0] < key:
                    new[key[1]] = (key, raw)
            taken = sorted(new.values(), key=lambda pair: pair[0])
            items, quarantined = self.parse_reports([raw for _, raw in taken] + unplaceable)
            has_more = True
            if taken:
                position = position.after([key for key, _ in taken])
                start = floor_second(position.at)  # ask again from the last instant: a capped answer goes on
                span = min(self.window, span * 2)
            elif known and start <= position.at:
                start = floor_second(position.at) + ONE_SECOND  # only ties we hold: past this second
            else:
                position = position.advanced_to(min(end, settled))
                if end >= horizon:
                    has_more = False
                start, span = end, min(self.window, span * 2)
            next_cursor = position.serialize()
            log.log(page_log_level(items, quarantined), "open311.reports_page source=%s items=%d quarantined=%d next_cursor=%s has_more=%s",
                    self.name, len(items), len(quarantined), next_cursor, has_more)
            yield Page[Report](items=items, quarantined=quarantined, next_cursor=next_cursor, has_more=has_more)
            if not has_more:
                return

    def _position(self, cursor: str | None) -> FeedPosition:
        if cursor is None or not cursor.strip():
            return FeedPosition(self.initial_start)
        try:
            return FeedPosition.parse(cursor)
        except (ValueError, TypeError) as exc:
            raise PermanentError(f"cursor {cursor[:80]!r} is not <ISO date-time>|<ids>", system=self.name, operation="reports_since") from exc

    def _fetch_requests(self, start: datetime, end: datetime) -> list[Any]:
        params = {"start_date": wire_time(start), "end_date": wire_time(end)}
        if self._jurisdiction_id:
            params["jurisdiction_id"] = self._jurisdiction_id
        body = self._call("GET", f"requests.{self.wire_format}", "reports_since", params=params)
        return self._request_items(body, "reports_since")

    def parse_reports(self, raw_items: list[Any]) -> tuple[list[Report], list[Quarantined]]:
        """Decoded requests (JSON items, or XML ``<request>`` elements read as dicts of text) as
        reports, the rest quarantined with why. Never raises for what an item holds; a
        quarantined item's payload is its JSON text, so ``json.loads`` it and pass it here to replay."""
        now = self._clock()

        def convert(raw: Any) -> Report:
            wire = WireRequest.model_validate(raw)
            problems = check_request(wire, self.limits, now)
            if problems:
                raise ValueError("; ".join(problems))
            return request_from_wire(wire, self.name, self._http.base_url)

        return convert_each(raw_items, WireRequest.__name__, convert, self._quarantine)

    def _quarantine(self, raw: object, reason: str) -> Quarantined:
        source_id = number_as_text(missing_as_none(raw.get("service_request_id"))) if isinstance(raw, dict) else None
        if not isinstance(raw, dict):
            reason = f"item: expected an object, got {type(raw).__name__}"
        item = quarantine_record(self.name, raw, reason, source_id, masked_raw(raw))
        log.warning("open311.quarantined source=%s source_id=%s reason=%s", self.name, item.source_id, item.reason)
        return item

    # ratings

    def ratings_since(self, cursor: str | None, page_size: int = 100) -> Iterator[Page[Rating]]:
        """GeoReport v2 (and mySociety's extensions) carry no citizen ratings: one empty page,
        the caller's cursor unchanged, no request sent."""
        yield Page[Rating](items=[], next_cursor=cursor, has_more=False)

    # attachments

    @contextmanager
    def open_attachment(self, attachment: Attachment) -> Iterator[Iterator[bytes]]:
        """Stream a request's ``media_url`` in chunks, within the connector's limits.

        Only from the source's own host name (any port), or one listed in the connection's
        ``limits.allowed_media_hosts``: the URL
        comes from the server's data, and fetching wherever it points would let it make the
        bridge call internal addresses. Redirects are not followed, for the same reason (a
        redirect is a ``PermanentError``). The file's first bytes must be its declared type;
        for a ``media_url`` without a known extension (declared a photo by guess) any allowed
        image is accepted and keeps the ``image/jpeg`` label. A type not allowed, an empty
        file or one over ``max_attachment_bytes`` is ``RejectedContent``.
        """
        url = absolute_url(self._http.base_url, attachment.url)
        # GeoReport v2 declares no size or checksum for a media_url: only the limits hold.
        download = CheckedDownload(self.name, attachment, url, self.limits.max_attachment_bytes)
        self._check_declared(download)
        response = self._http.request("GET", url, operation="open_attachment", ref=url, stream=True, ok=(200,),
                                      allow_redirects=False)
        try:
            download.check_headers(response)
            yield download.chunks(response, partial(self._sniff, download))
        finally:
            response.close()

    def _check_declared(self, download: CheckedDownload) -> None:
        parts = urlsplit(download.ref)
        if parts.scheme not in ("http", "https"):
            raise download.rejected(f"scheme {parts.scheme[:20]!r} is not allowed (http or https only)")
        allowed = {urlsplit(self._http.base_url).hostname, *self.limits.allowed_media_hosts}
        if parts.hostname not in allowed:
            raise download.rejected(f"host {str(parts.hostname)[:100]!r} is not the source's host")
        media_type = media_type_of(download.attachment.media_type)
        if media_type not in self.limits.allowed_media_types:
            raise download.rejected(f"type {media_type[:60]!r} is not allowed")

    def _sniff(self, download: CheckedDownload, head: bytes) -> None:
        """The first bytes must be the declared type, except that a ``media_url`` whose type was
        guessed may be any allowed image."""
        why = mismatch(download.attachment.media_type, head)
        if why is None:
            return
        _, _, guessed = media_of(download.ref, "x")
        if guessed and any(t.startswith("image/") and mismatch(t, head) is None
                           for t in self.limits.allowed_media_types if t in SIGNATURES):
            return
        raise download.rejected(why)

    # outcomes

    def publish_outcome(self, outcome: Outcome) -> None:
        """Post the answer as a service request update. The ``update_id`` is derived from the
        outcome, so a repeat is recognised by the server; its "already exists" is success."""
        form = outcome_form(outcome)
        if self._api_key:
            form["api_key"] = self._api_key
        if self._jurisdiction_id:
            form["jurisdiction_id"] = self._jurisdiction_id
        ref = outcome.source_id
        body = self._call("POST", f"servicerequestupdates.{self.wire_format}", "publish_outcome", ref=ref, exists_ok=True, data=form)
        if body is None:
            log.info("open311.outcome_published source=%s source_id=%s update_id=%s created=False", self.name, ref, form["update_id"])
            return
        update_id = first_update_id(body)
        if update_id is None:
            log.warning("open311.update_without_id source=%s source_id=%s", self.name, ref)
        log.info("open311.outcome_published source=%s source_id=%s update_id=%s created=True", self.name, ref, update_id or form["update_id"])

    # plumbing

    def _call(self, method: str, path: str, operation: str, *, ref: str | None = None, exists_ok: bool = False,
              **kwargs: Any) -> Any:
        """One call, its body decoded (JSON values or the XML root). An error status or an Open311
        error document (servers send them with 200 too) is a typed error carrying the server's
        description; with ``exists_ok`` an "already exists" error returns ``None`` instead."""
        response = self._http.request(method, path, operation=operation, ref=ref, ok=ANY_STATUS, **kwargs)
        status = response.status_code
        try:
            body = self._decode(response, operation, ref)
        except MalformedResponse:
            if status < 400:
                raise
            body, error = None, None
        else:
            error = xml_error(body) if hasattr(body, "tag") else json_error(body)
        if error is None and status < 400:
            return body
        code, description = error if error is not None else (None, printable(response.text[:300]))
        if status >= 400 and (code is None or code < 400):
            code = status
        code = code if code is not None else 400
        if exists_ok and (code == 409 or ALREADY_EXISTS.search(description)):
            return None
        message = f"Open311 error {code}: {description}" if error is not None else f"HTTP {status}: {description}"
        if code in TRANSIENT_STATUS:
            is_write = method.upper() != "GET"
            raise (AmbiguousError if (is_write and code >= 500) else TransientError)(message, system=self.name, operation=operation, ref=ref)
        raise PermanentError(message, system=self.name, operation=operation, ref=ref)

    def _decode(self, response: requests.Response, operation: str, ref: str | None = None) -> Any:
        """The body as JSON values or an XML root element, by its content type (the configured
        format when the type says neither); an HTML page or an unreadable body is ``MalformedResponse``."""
        content_type = response.headers.get("Content-Type", "").lower()
        if "json" in content_type or (self.wire_format == "json" and "xml" not in content_type):
            return self._http.json(response, operation=operation, ref=ref)
        if "html" in content_type:
            raise MalformedResponse(f"expected XML, got {content_type}: {printable(response.text[:120])!r}",
                                    system=self.name, operation=operation, ref=ref)
        try:
            return parse_xml(response.content, max_bytes=self.limits.max_xml_bytes, max_depth=self.limits.max_xml_depth)
        except XmlRefused as exc:
            raise MalformedResponse(str(exc), system=self.name, operation=operation, ref=ref) from exc

    def _request_items(self, body: Any, operation: str) -> list[Any]:
        """The list of requests in an answer: a JSON list (or a wrapping object), or the
        ``<request>`` children of ``<service_requests>`` as dicts of text."""
        if isinstance(body, list):
            return body
        if isinstance(body, dict):
            inner = body.get("service_requests", body.get("requests"))
            if isinstance(inner, dict):
                inner = inner.get("request", [])
                inner = inner if isinstance(inner, list) else [inner]
            if isinstance(inner, list):
                return inner
        elif hasattr(body, "tag"):
            if local_name(body.tag) == "service_requests":
                return [element_dict(child) for child in body if isinstance(child.tag, str) and local_name(child.tag) == "request"]
            raise MalformedResponse(f"expected <service_requests>, got <{local_name(str(body.tag))[:40]}>", system=self.name, operation=operation)
        raise MalformedResponse(f"expected a list of service requests, got {type(body).__name__}", system=self.name, operation=operation)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Open311Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
