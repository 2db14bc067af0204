"""What every document-system connector does to what it sends and to what it reads back.

Text an agency receives carries no markup and nothing XML cannot hold; long text is cut
at a word with a note; a spooled attachment is checked against the size and checksum the
source described before it leaves; a vendor's time without a zone is Vietnam time.
"""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import datetime
from typing import Any

from paht_bridge.connectors.errors import PermanentError
from paht_bridge.connectors.xml import xml_text
from paht_bridge.canonical import VIETNAM_TZ, LocalAttachment
from paht_bridge.normalise.text import strip_markup

NAME_LIMIT = 200  # an attachment's file name
FULL_TEXT_NAME = "noi_dung_day_du.txt"  # "full content": the report text when the content field had to be cut
FULL_TEXT_NOTE = " … (toàn văn trong tệp đính kèm noi_dung_day_du.txt)"  # "full text in the attached file"


def shorten(text: str, limit: int, note: str = "…") -> str:
    """Cut ``text`` to ``limit`` characters, at a space when one is near, ending with ``note``."""
    if len(text) <= limit:
        return text
    head = text[: limit - len(note)]
    space = head.rfind(" ")
    if space > len(head) - 40:  # a Vietnamese syllable is short: never cut one in half
        head = head[:space]
    return head.rstrip() + note


def short_name(name: str, limit: int = NAME_LIMIT) -> str:
    """Cut a file name to ``limit`` characters, keeping its extension."""
    if len(name) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext) > 10:
        return name[:limit]
    return stem[: limit - len(ext) - 1] + "." + ext


def outbound_text(text: str) -> str:
    """Plain text an agency's viewer can show safely: no markup, nothing XML cannot carry."""
    return strip_markup(xml_text(text))


def xml_safe(value: Any) -> Any:
    """Every string in a zeep message without the characters XML cannot hold (lxml refuses them)."""
    if isinstance(value, str):
        return xml_text(value)
    if isinstance(value, dict):
        return {key: xml_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [xml_safe(item) for item in value]
    return value


def nfc(value: Any) -> str | None:
    return None if value is None else unicodedata.normalize("NFC", str(value)).strip()


def aware(value: datetime) -> datetime:
    """A time without a zone from a Vietnamese system is Vietnam time; all are given in it."""
    return value.replace(tzinfo=VIETNAM_TZ) if value.tzinfo is None else value.astimezone(VIETNAM_TZ)


def read_spooled(attachment: LocalAttachment, *, system: str, operation: str, ref: str) -> bytes:
    """A spooled file's bytes, checked to be the file the source described (size and SHA-256)."""
    try:
        data = attachment.path.read_bytes()
    except OSError as exc:
        raise PermanentError(
            f"spooled attachment {attachment.name!r} cannot be read: {exc.__class__.__name__}", system=system, operation=operation, ref=ref,
        ) from exc
    if len(data) != attachment.size or hashlib.sha256(data).hexdigest() != attachment.sha256:
        raise PermanentError(
            f"spooled attachment {attachment.name!r} does not match its size or checksum", system=system, operation=operation, ref=ref,
        )
    return data
