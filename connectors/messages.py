"""Text from outside systems made fit for an error message, a log line or a quarantine reason.

A back end's error text or an answer that failed validation may hold control characters,
megabytes or personal data: every connector shows them through these two functions.
"""

from __future__ import annotations

from pydantic import ValidationError

#: Of an outside system's text in an error: enough to act on, never a megabyte.
MESSAGE_CHARS = 300


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with every control or unprintable character a space, cut to ``limit`` characters."""
    clean = "".join(c if c.isprintable() else " " for c in text)
    return clean if limit is None else clean[:limit]


def validation_summary(exc: ValidationError, root: str = "item", most: int | None = 5, prefix: str = "") -> str:
    """Where a shape was wrong and why, field by field, without echoing the values (they may
    hold personal data). ``most`` None names every error (a quarantine reason is read by the
    person fixing the item); ``prefix`` goes before each field path."""
    errors = exc.errors(include_input=False)[:most]
    return "; ".join(f"{prefix}{'.'.join(map(str, e['loc'])) or root}: {e['msg']}" for e in errors)
