"""The Open311 stand-in's wire: times and lists as clients send them in a query, answers as
a JSON list or an XML document, error documents, and the shape of an injected fault."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi.responses import JSONResponse, Response
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from paht_bridge.canonical import VIETNAM_TZ
from paht_bridge.connectors.xml import xml_text

FORMATS = ("json", "xml")
DEFAULT_DAYS = 90
NULL_WORDS = frozenset({"", "null"})


class FaultIn(BaseModel):
    """A fault for the next ``count`` API calls: an Open311 error document with ``status``, or
    a proxy's HTML page served with 200."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["error", "html"] = "error"
    count: int = Field(default=1, ge=1)
    status: int = Field(default=503, ge=400, le=599)
    description: str = "Dịch vụ tạm thời gián đoạn"


class ApiError(Exception):
    """An error the server answers as an Open311 error document."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status, self.description = status, description


def is_missing(value: object) -> bool:
    """Real servers and clients write "null" or an empty string for a value they do not have."""
    return value is None or (isinstance(value, str) and value.strip().lower() in NULL_WORDS)


def parse_time(value: object) -> datetime | None:
    """A wire time (zone-less = Vietnam time), or None when missing or unreadable."""
    if is_missing(value) or not isinstance(value, str):
        return None
    text = value.strip()
    if " " in text and "T" in text:
        text = text.replace(" ", "+")  # a '+' sent unencoded in a query string arrives as a space
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at.replace(tzinfo=VIETNAM_TZ) if at.tzinfo is None else at


def absolute_media(data: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A request with a relative ``media_url`` made absolute on this server (seeds store them relative)."""
    media = data.get("media_url")
    if isinstance(media, str) and media.startswith("/"):
        return {**data, "media_url": base_url.rstrip("/") + media}
    return data


def _fill(element: etree._Element, fields: dict[str, Any]) -> None:
    for key, value in fields.items():
        child = etree.SubElement(element, key)
        if isinstance(value, dict):
            _fill(child, value)
        elif isinstance(value, list):
            for entry in value:
                etree.SubElement(child, "value").text = xml_text(str(entry))
        elif isinstance(value, bool):
            child.text = "true" if value else "false"
        elif value is not None:
            child.text = xml_text(str(value))


def render(fmt: str, root: str, item: str, entries: list[dict[str, Any]], status: int = 200) -> Response:
    """Entries as a JSON list, or as ``<root><item>…</item></root>``."""
    if fmt == "xml":
        element = etree.Element(root)
        for entry in entries:
            _fill(etree.SubElement(element, item), entry)
        body = etree.tostring(element, xml_declaration=True, encoding="utf-8")
        return Response(body, status_code=status, media_type="text/xml; charset=utf-8")
    return JSONResponse(entries, status_code=status)


def error_response(fmt: str, status: int, description: str) -> Response:
    return render(fmt if fmt in FORMATS else "json", "errors", "error", [{"code": status, "description": description}], status)


def checked_format(fmt: str) -> str:
    """``fmt`` when it is one the server speaks, else a 404 as real servers answer."""
    if fmt not in FORMATS:
        raise ApiError(404, f"format {fmt[:10]!r} is not served (json or xml)")
    return fmt


def date_window(start_date: str | None, end_date: str | None, now: datetime) -> tuple[datetime | None, datetime | None]:
    """A query's ``[start_date, end_date]``; without either, the last ``DEFAULT_DAYS`` days."""
    start, end = parse_time(start_date), parse_time(end_date)
    if not is_missing(start_date) and start is None:
        raise ApiError(400, "start_date is not an ISO 8601 date-time")
    if not is_missing(end_date) and end is None:
        raise ApiError(400, "end_date is not an ISO 8601 date-time")
    if start is not None and end is not None and end < start:
        raise ApiError(400, "end_date is before start_date")
    if start is None and end is None:
        start = now - timedelta(days=DEFAULT_DAYS)
    return start, end


def csv_values(value: str | None) -> list[str] | None:
    """A comma-separated query value as its parts; None when it was not sent."""
    if is_missing(value):
        return None
    return [part.strip() for part in str(value).split(",") if part.strip()]
