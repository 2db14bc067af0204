"""Client for a citizen app's open API (QuangTri IOC, Điện Biên Smart...): a ``CitizenSource``.

It pulls reports (phản ánh hiện trường, field reports) and ratings (đánh giá) from the
app's cursor-paged feeds, streams attachments, and publishes the agencies' public answers
(kết quả xử lý). The app's JSON is read into the wire models of ``citizen_wire`` and mapped
to the canonical model there; nothing past this client sees the wire shape. A report the app
sends malformed is quarantined with the reason and the rest of its page goes on, so one
bad record never blocks a province's feed.

What is quarantined, and what is tolerated (each reason names the field and the problem):

- quarantined: a missing or wrongly typed field; an id that cannot serve as a reference;
  coordinates at 0,0 or outside Vietnam's box (lat 8.0–23.5, lng 102.0–110.0; the
  Paracel and Spratly islands lie outside it) or not finite; a time more than
  ``max_clock_skew_seconds`` in the future or before 2000; text with control characters,
  unpaired surrogates, or legacy-encoded Vietnamese (TCVN3/VNI/VISCII, or UTF-8 read as
  cp1252) that the ``legacy_text`` setting does not convert; text over its length limit;
  an attachment that is declared empty, over the size limit, of a type not allowed, named
  like a program, or fetched from a non-HTTP URL. Limits come from ``ConnectorLimits``;
  the checks beyond the wire shape live in ``citizen_checks``.
- tolerated: fields the app added (ignored); a time without a zone (read as Vietnam time,
  UTC+7, as Vietnamese servers write local time); decomposed (NFD) text (made NFC); HTML
  in text (tags removed, ``<script>``/``<style>`` with their content, the report kept:
  see ``paht_bridge.normalise.text``).

An attachment's bytes are checked when it is fetched (at delivery): an empty file, one
over the limit, or one whose first bytes are not its declared type (an HTML page or a
program labelled ``image/jpeg``) is a ``RejectedContent`` error.

Wire format in brief (see ``paht_bridge.sandbox.citizen_app`` for the stand-in):
``GET /api/v1/reports?since=&limit=`` and ``GET /api/v1/ratings?since=&limit=`` answer
``{"data": [...], "paging": {"next_cursor", "has_more"}}``; ``GET /api/v1/attachments/{id}``
streams a file; ``POST /api/v1/reports/{id}/outcome`` takes an answer. ``X-API-Key`` authenticates.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import requests
from pydantic import BaseModel, ValidationError

from paht_bridge.connectors.attachment_download import CheckedDownload
from paht_bridge.connectors.citizen_checks import check_rating, check_report, convert_legacy_fields
from paht_bridge.connectors.citizen_wire import (
    ID_PATTERN,
    WireDateTime,
    WireOutcomeAck,
    WirePage,
    WireRating,
    WireReport,
    outcome_to_wire,
    rating_from_wire,
    report_from_wire,
)
from paht_bridge.connectors.content import media_type_of
from paht_bridge.connectors.errors import MalformedResponse
from paht_bridge.connectors.http import DEFAULT_TIMEOUT, HttpTransport
from paht_bridge.connectors.limits import DEFAULT_LIMITS, ConnectorLimits
from paht_bridge.connectors.messages import validation_summary
from paht_bridge.connectors.quarantine import (
    convert_each,
    payload_text,
    quarantine_record,
    storable_id,
)
from paht_bridge.canonical import (
    Attachment,
    Outcome,
    Page,
    Quarantined,
    Rating,
    Report,
    vietnam_now,
)
from paht_bridge.normalise.legacy_charsets import LegacyText
from paht_bridge.privacy import PERSONAL_KEYS

#: What other modules import from here. ID_PATTERN and WireDateTime live in citizen_wire,
#: payload_text in quarantine; the Open311 modules and the tests import them from here.
__all__ = ["CitizenAppClient", "ID_PATTERN", "PERSONAL_KEYS", "WireDateTime", "mask_personal", "page_log_level", "payload_text"]

log = logging.getLogger(__name__)


def page_log_level(items: list[Any], quarantined: list[Any]) -> int:
    """INFO for a page that brought something, DEBUG for an empty one: the triggerer's watch
    reads every source every 15 s, and a quiet province should not fill its log."""
    return logging.INFO if items or quarantined else logging.DEBUG


API_KEY_HEADER = "X-API-Key"
REPORTS_PATH = "/api/v1/reports"
RATINGS_PATH = "/api/v1/ratings"
MAX_RAW_CHARS = 64 * 1024  # a quarantined payload is kept for people to read, not as an archive

#: A Vietnamese phone number written anywhere in free text (0xx or +84, optional separators).
PHONE_PATTERN = re.compile(r"(?<![\d.])(?:\+?84|0)(?:[\s.-]?\d){8,10}(?!\d)")


def mask_personal(raw: object) -> str:
    """The raw payload as JSON text with personal data masked, for a quarantine record.

    Never fails: an item too deep or too odd to print is described instead, and unpaired
    surrogates are escaped so the text can always be stored.
    """
    try:
        text = json.dumps(_masked(raw), ensure_ascii=False, default=str)
    except (RecursionError, ValueError, TypeError) as exc:
        return f"[item not printable: {exc.__class__.__name__}]"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = PHONE_PATTERN.sub("[phone]", text)  # numbers people type into descriptions
    return text if len(text) <= MAX_RAW_CHARS else text[:MAX_RAW_CHARS] + "…[truncated]"


def _masked(value: object, personal: bool = False) -> object:
    if isinstance(value, dict):
        return {k: _masked(v, personal or str(k).lower() in PERSONAL_KEYS) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, personal) for v in value]
    if personal and value is not None:
        return _mask_value(value)
    return value


def _mask_value(value: object) -> str:
    digits = re.sub(r"\D", "", str(value))
    if isinstance(value, str) and len(digits) >= 8:
        return "*" * (len(digits) - 2) + digits[-2:]  # the last two digits help staff match a call
    return "***"


# -- the client ---------------------------------------------------------------------------

W = TypeVar("W", bound=BaseModel)
C = TypeVar("C")


class CitizenAppClient:
    """A ``CitizenSource`` over one citizen app's open API.

    ``name`` is the app's name in the deployment mapping (it becomes ``Report.source``);
    ``base_url`` and ``api_key`` come from the Airflow Connection (host, password), and
    ``limits`` from its extra. ``legacy_text`` (``Source.legacy_text``: reject, tcvn3, vni,
    viscii or auto) says whether legacy-encoded Vietnamese is converted (issue 4) or
    quarantined; ``clock`` is what "the
    future" is measured from. The constructor does no I/O; one HTTP session is reused.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        limits: ConnectorLimits = DEFAULT_LIMITS,
        legacy_text: LegacyText = "reject",
        clock: Callable[[], datetime] = vietnam_now,
    ) -> None:
        self.name = name
        self.limits = limits
        self._legacy_text = legacy_text
        self._clock = clock
        headers = {"Accept": "application/json", "User-Agent": "paht-bridge"}
        if api_key:
            headers[API_KEY_HEADER] = api_key
        self._http = HttpTransport(name, base_url, timeout=timeout, headers=headers, limits=limits)

    # feeds

    def reports_since(self, cursor: str | None, page_size: int = 100) -> Iterator[Page[Report]]:
        """Reports changed after ``cursor``, one page at a time; bad items are quarantined."""
        yield from self._pages(REPORTS_PATH, "reports", cursor, page_size, self.parse_reports, Page[Report])

    def ratings_since(self, cursor: str | None, page_size: int = 100) -> Iterator[Page[Rating]]:
        """Citizens' ratings after ``cursor``, one page at a time; bad items are quarantined."""
        yield from self._pages(RATINGS_PATH, "ratings", cursor, page_size, self.parse_ratings, Page[Rating])

    def _pages(
        self, path: str, kind: Literal["reports", "ratings"], cursor: str | None, page_size: int,
        parse: Callable[[list[Any]], tuple[list[C], list[Quarantined]]], page_type: type[Page[C]],
    ) -> Iterator[Page[C]]:
        for raw_items, next_cursor, has_more in self._feed(path, cursor, page_size, f"{kind}_since"):
            items, quarantined = parse(raw_items)
            log.log(
                page_log_level(items, quarantined),
                f"citizen_app.{kind}_page source=%s items=%d quarantined=%d next_cursor=%s has_more=%s",
                self.name, len(items), len(quarantined), next_cursor, has_more,
            )
            yield page_type(items=items, quarantined=quarantined, next_cursor=next_cursor, has_more=has_more)

    def _feed(self, path: str, cursor: str | None, page_size: int, operation: str) -> Iterator[tuple[list[Any], str | None, bool]]:
        """Walk a cursor feed lazily, so the caller commits each page before the next is asked for."""
        while True:
            params: dict[str, str | int] = {"limit": page_size}
            if cursor is not None:
                params["since"] = cursor
            response = self._http.request("GET", path, operation=operation, params=params)
            page = self._parse(response, WirePage, operation=operation)
            next_cursor = page.paging.next_cursor or cursor
            if page.paging.has_more and (next_cursor is None or next_cursor == cursor):
                # Following it would fetch the same page for ever.
                raise MalformedResponse(f"has_more with a cursor that did not advance ({cursor!r})", system=self.name, operation=operation)
            yield page.data, next_cursor, page.paging.has_more
            if not page.paging.has_more:
                return
            cursor = next_cursor

    def parse_reports(self, raw_items: list[Any]) -> tuple[list[Report], list[Quarantined]]:
        """The app's report items (decoded JSON) as reports, and the rest quarantined with why.

        Never raises for what an item holds. Also the way to replay a quarantined item after
        a fix: decrypt its payload, ``json.loads`` it and pass it here.
        """
        return self._convert(raw_items, WireReport, self._report)

    def parse_ratings(self, raw_items: list[Any]) -> tuple[list[Rating], list[Quarantined]]:
        """As ``parse_reports``, for the ratings feed."""
        return self._convert(raw_items, WireRating, self._rating)

    def _report(self, wire: WireReport, source: str) -> Report:
        problems = check_report(wire, self.limits, self._clock())
        if problems:
            raise ValueError("; ".join(problems))
        return report_from_wire(wire, source)

    def _rating(self, wire: WireRating, source: str) -> Rating:
        problems = check_rating(wire, self.limits, self._clock())
        if problems:
            raise ValueError("; ".join(problems))
        return rating_from_wire(wire, source)

    def _convert(
        self, raw_items: list[Any], wire_model: type[W], to_canonical: Callable[[W, str], C]
    ) -> tuple[list[C], list[Quarantined]]:
        """Each item with its legacy text converted, read as ``wire_model``, checked and mapped,
        or quarantined with why."""

        def convert(raw: Any) -> C:
            return to_canonical(wire_model.model_validate(self._converted(raw)), self.name)

        return convert_each(raw_items, wire_model.__name__, convert, self._quarantine)

    def _converted(self, raw: object) -> object:
        """``raw`` with its legacy-encoded free text converted, as ``legacy_text`` allows."""
        item, converted = convert_legacy_fields(raw, self._legacy_text)
        if converted:
            source_id = raw.get("id") if isinstance(raw, dict) else None
            log.info(
                "text.converted source=%s id=%s fields=%s charset=%s", self.name, storable_id(source_id),
                ",".join(converted), ",".join(sorted(set(converted.values()))),
            )
        return item

    def _quarantine(self, raw: object, reason: str) -> Quarantined:
        source_id = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(raw, dict):
            reason = f"item: expected a JSON object, got {type(raw).__name__}"
        item = quarantine_record(self.name, raw, reason, source_id, mask_personal(raw))
        log.warning("citizen_app.quarantined source=%s source_id=%s reason=%s", self.name, item.source_id, item.reason)
        return item

    # attachments

    @contextmanager
    def open_attachment(self, attachment: Attachment) -> Iterator[Iterator[bytes]]:
        """Stream an attachment in chunks, checking its type, size and checksum as it goes.

        A type not allowed, an empty file, one over the limit, or first bytes that are not
        the declared type (a page or a program labelled as a photo) raise ``RejectedContent``.
        """
        download = CheckedDownload(self.name, attachment, attachment.url, self.limits.max_attachment_bytes,
                                   declared_size=attachment.size, sha256=attachment.sha256)
        self._check_declared(download)
        headers: dict[str, str | None] = {}
        if not self._same_origin(attachment.url):
            headers[API_KEY_HEADER] = None  # never hand our key to another host (a CDN, a redirect target)
        response = self._http.request(
            "GET", attachment.url, operation="open_attachment", ref=attachment.url, stream=True, headers=headers
        )
        try:
            download.check_headers(response)
            yield download.chunks(response)
        finally:
            response.close()

    def _same_origin(self, url: str) -> bool:
        if not url.startswith(("http://", "https://")):
            return True
        ours, theirs = urlsplit(self._http.base_url), urlsplit(url)
        return (ours.scheme, ours.netloc) == (theirs.scheme, theirs.netloc)

    def _check_declared(self, download: CheckedDownload) -> None:
        """Refuse before any request what the report itself says we must not fetch."""
        attachment = download.attachment
        media_type = media_type_of(attachment.media_type)
        if media_type not in self.limits.allowed_media_types:
            raise download.rejected(f"type {media_type[:60]!r} is not allowed")
        if attachment.size == 0:
            raise download.rejected("the file is empty (0 bytes)")
        if attachment.size is not None and attachment.size > self.limits.max_attachment_bytes:
            raise download.rejected(f"{attachment.size} bytes, over the {self.limits.max_attachment_bytes}-byte limit")

    # outcomes

    def publish_outcome(self, outcome: Outcome) -> None:
        """Publish an agency's answer. The app ignores an identical repeat, so retrying is safe."""
        path = f"{REPORTS_PATH}/{quote(outcome.source_id, safe='')}/outcome"
        body = outcome_to_wire(outcome).model_dump(mode="json")
        headers = {"Idempotency-Key": outcome.key} if outcome.key else {}
        response = self._http.request(
            "POST", path, operation="publish_outcome", ref=outcome.source_id, json=body, ok=(200, 201), headers=headers
        )
        ack = self._parse(response, WireOutcomeAck, operation="publish_outcome", ref=outcome.source_id)
        log.info(
            "citizen_app.outcome_published source=%s source_id=%s outcome_id=%s created=%s",
            self.name, outcome.source_id, ack.outcome_id, ack.created,
        )

    # plumbing

    def _parse(self, response: requests.Response, model: type[W], *, operation: str, ref: str | None = None) -> W:
        body = self._http.json(response, operation=operation, ref=ref)
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise MalformedResponse(f"unexpected shape: {validation_summary(exc, most=None)}", system=self.name, operation=operation, ref=ref) from exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CitizenAppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
