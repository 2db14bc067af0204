"""How a source's bad item becomes a quarantine record, for every citizen source.

One item that cannot become a report (or a rating) must never stop its page: it is kept
with the reason, a masked copy people may read, and the payload as received (encrypted by
the ledger) for a replay after a fix. The citizen-app and Open311 clients both quarantine
through ``convert_each`` and ``quarantine_record``; each masks its own personal fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import SecretStr, ValidationError

from paht_bridge.connectors.citizen_wire import ID_PATTERN
from paht_bridge.connectors.messages import printable, validation_summary
from paht_bridge.canonical import Quarantined

C = TypeVar("C")


def payload_text(raw: object) -> str | None:
    """The item as received, as JSON text, for the encrypted replay copy (None if unprintable)."""
    try:
        text = json.dumps(raw, ensure_ascii=False)
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(raw, ensure_ascii=True)  # unpaired surrogates: escaped, still the same JSON
    except (RecursionError, ValueError, TypeError):
        return None
    return text


def clean_reason(reason: str, limit: int = 2000) -> str:
    """A reason safe to store and show: printable, bounded."""
    text = printable(reason)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def storable_id(value: object) -> str | None:
    """``value`` when it can be a ledger key, else None (the masked text still shows it)."""
    return value if isinstance(value, str) and re.match(ID_PATTERN, value) else None


def quarantine_record(source: str, raw: object, reason: str, source_id: object, masked: str) -> Quarantined:
    """The record for ``raw``: ``source_id`` when storable, ``reason`` cleaned, ``masked`` the
    text people may read, the payload kept for replay when it prints."""
    payload = payload_text(raw)
    return Quarantined(
        source=source, source_id=storable_id(source_id), reason=clean_reason(reason), raw=masked,
        payload=SecretStr(payload) if payload is not None else None,
    )


def convert_each(
    raw_items: list[Any],
    wire_name: str,
    convert: Callable[[Any], C],
    quarantine: Callable[[object, str], Quarantined],
) -> tuple[list[C], list[Quarantined]]:
    """Each item on its own: whatever one item holds, it ends as an item or a quarantined one.

    ``convert`` raises ``ValidationError`` for a shape (named as the wire names it when the
    model is ``wire_name``, else as the canonical model's) and ``ValueError`` for a check
    that failed, its message the reason.
    """
    items: list[C] = []
    bad: list[Quarantined] = []
    for raw in raw_items:
        try:
            items.append(convert(raw))
        except ValidationError as exc:
            prefix = "" if exc.title == wire_name else "canonical "
            bad.append(quarantine(raw, validation_summary(exc, most=None, prefix=prefix)))
        except ValueError as exc:
            bad.append(quarantine(raw, str(exc)))
        except Exception as exc:  # noqa: BLE001 - one unreadable item must not stop its page
            bad.append(quarantine(raw, f"item: could not be read ({exc.__class__.__name__})"))
    return items, bad
