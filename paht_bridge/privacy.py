"""Reporters' personal data kept out of logs, task output and pages.

A phone number is personal data (Decree 13/2023/NĐ-CP, Law 91/2025/QH15). The ledger keeps
reporters' names and phones encrypted; this module covers what can still leak around it:

* ``mask_phones`` masks Vietnamese phone numbers (``0`` + 9 or 10 digits, ``+84``/``84``
  + 9 or 10 digits, with spaces, dots or dashes between digits) in any text;
* ``install_log_masking`` masks them in every log record of the bridge's loggers
  (``paht_bridge.*``), whatever handlers Airflow or anyone else configures;
* ``hide_from_airflow_logs`` teaches Airflow's secrets masker the decrypted name and phone
  of a report a task is working on, so Airflow's own log lines (tracebacks included) mask
  them too, even where our pattern would not recognise them (a name).
"""

from __future__ import annotations

import logging
import re
from contextlib import suppress
from typing import Any

from pydantic import SecretStr

#: A digit must not come right before: ``2026-000192`` is a report id, not a phone.
PHONE_PATTERN = re.compile(r"(?<!\d)(?:\+84|84|0)(?:[ .-]?\d){9,10}(?!\d)")
PHONE_MASK = "[phone]"
#: Keys whose values are a reporter's identity wherever they appear in a raw payload.
PERSONAL_KEYS = frozenset({"reporter", "full_name", "name", "phone", "phone_number", "mobile", "email", "citizen_id"})
BRIDGE_LOGGERS = "paht_bridge"


def mask_phones(text: str) -> str:
    return PHONE_PATTERN.sub(PHONE_MASK, text)


def normalise_phone(phone: str) -> str:
    """One spelling per number: ``+84 912.345.678``, ``84912345678`` and ``0912345678`` are the same."""
    digits = re.sub(r"\D", "", phone)
    if digits.startswith("0084"):
        digits = digits[4:]
    elif digits.startswith("84") and len(digits) >= 11:
        digits = digits[2:]
    return digits if digits.startswith("0") else "0" + digits


def phones_in(text: str) -> set[str]:
    """Every phone number written in ``text``, normalised."""
    return {normalise_phone(m.group()) for m in PHONE_PATTERN.finditer(text)}


def mask_record(record: logging.LogRecord) -> None:
    """Mask phone numbers in a record's message and traceback, in place."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is the logging module's error to report, not ours
        return
    masked = mask_phones(message)
    if masked != message:
        record.msg, record.args = masked, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        masked_exc = mask_phones(record.exc_text)
        if masked_exc != record.exc_text:
            # Formatters that render exc_info again (structlog's do) would bring the number back:
            # the masked traceback moves into the message, where every formatter shows it.
            record.msg, record.args = f"{masked}\n{masked_exc}", ()
            record.exc_info = record.exc_text = None
    if record.stack_info:
        record.stack_info = mask_phones(record.stack_info)


class PhoneMaskingFilter(logging.Filter):
    """A filter for any handler or logger that must never show a phone number."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


def install_log_masking() -> None:
    """Mask phones in every record a ``paht_bridge`` logger creates from now on (idempotent).

    A record factory rather than a logger filter: a filter on ``paht_bridge`` does not see
    records of its children (``paht_bridge.steps``), and handlers are Airflow's to configure.
    """
    current = logging.getLogRecordFactory()
    if getattr(current, "paht_masks_phones", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        name = record.name or ""  # logging.makeLogRecord() makes a nameless record first
        if name == BRIDGE_LOGGERS or name.startswith(BRIDGE_LOGGERS + "."):
            mask_record(record)
        return record

    factory.paht_masks_phones = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def hide_from_airflow_logs(*values: str | SecretStr | None) -> None:
    """Register decrypted personal data with Airflow's secrets masker (task and supervisor).

    Outside a task (tests, the CLI) this only feeds the in-process masker, which is harmless.
    """
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # the bridge's pure parts run without Airflow too
        return
    for value in values:
        plain = value.get_secret_value() if isinstance(value, SecretStr) else value
        if plain:
            with suppress(Exception):  # masking must never fail a delivery
                mask_secret(plain)
