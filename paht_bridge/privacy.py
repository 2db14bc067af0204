"""Reporters' personal data: what it is, and how it is kept out of logs, task output, pages
and, when a reporter asks to be forgotten, out of the ledger.

A name or a phone number is personal data (Decree 13/2023/NĐ-CP, Law 91/2025/QH15). The
ledger keeps reporters' names and phones encrypted; this module is the one place that says
which fields of a payload are personal (``PERSONAL_KEYS``, read by the connectors that mask
quarantined payloads too) and covers what can still leak around the encryption:

* ``mask_phones`` masks Vietnamese phone numbers (``0`` + 9 or 10 digits, ``+84``/``84``
  + 9 or 10 digits, with spaces, dots or dashes between digits) in any text, and
  ``mask_phones_in`` in every text of a JSON value;
* ``install_log_masking`` masks them in every log record of the bridge's loggers
  (``paht_bridge.*``), whatever handlers Airflow or anyone else configures;
* ``hide_from_airflow_logs`` teaches Airflow's secrets masker the decrypted name and phone
  of a report a task is working on, so Airflow's own log lines (tracebacks included) mask
  them too, even where our pattern would not recognise them (a name);
* ``erase``, ``erase_in_text`` and ``erase_in_json_text`` remove a reporter's names and
  numbers for good (``operations.forget``), blanking personal fields so that a payload kept
  for replay still parses.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from pydantic import SecretStr

#: A digit must not come right before: ``2026-000192`` is a report id, not a phone.
PHONE_PATTERN = re.compile(r"(?<!\d)(?:\+84|84|0)(?:[ .-]?\d){9,10}(?!\d)")
PHONE_MASK = "[phone]"
#: Keys whose values are a reporter's identity wherever they appear in a raw payload, in every
#: source's spelling: the citizen apps' (``reporter`` with its ``name`` and ``phone``,
#: ``full_name``, ``phone_number``, ``mobile``, ``email``, ``citizen_id``) and Open311
#: GeoReport v2's (``first_name``, ``last_name``, ``phone``, ``email``, ``device_id``,
#: ``account_id``). Compared in lower case.
PERSONAL_KEYS = frozenset({
    "reporter", "name", "full_name", "first_name", "last_name", "phone", "phone_number", "mobile", "email", "citizen_id",
    "device_id", "account_id",
})
#: The personal keys that are personal wherever they sit. A bare ``name`` is personal only
#: under one of them (``reporter.name``): elsewhere it names a thing (``attachments[].name``,
#: a file), and blanking it would break the payload a replay parses again.
IDENTITY_KEYS = PERSONAL_KEYS - {"name"}
#: What a forgotten name or number becomes ("deleted").
FORGOTTEN = "[đã xoá]"
BRIDGE_LOGGERS = "paht_bridge"


def mask_phones(text: str) -> str:
    return PHONE_PATTERN.sub(PHONE_MASK, text)


def mask_phones_in(value: object) -> object:
    """``value`` (JSON: an event's detail, say, which holds outside text) with phones masked in every string."""
    if isinstance(value, str):
        return mask_phones(value)
    if isinstance(value, dict):
        return {k: mask_phones_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_phones_in(v) for v in value]
    return value


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


# -- forgetting a reporter ----------------------------------------------------------------------


def erase_in_text(text: str, names: Iterable[str]) -> str:
    """``text`` without these names (each becomes ``FORGOTTEN``) or any phone number."""
    for name in names:
        text = text.replace(name, FORGOTTEN)
    return mask_phones(text)


def erase(value: object, names: Iterable[str], blank_identity: bool = True, personal: bool = False) -> object:
    """A JSON value without these names or any phone number in its texts; with ``blank_identity``,
    every value under a personal key (``IDENTITY_KEYS``, and ``name`` beneath one) becomes ``FORGOTTEN``."""
    if isinstance(value, dict):
        return {k: erase(v, names, blank_identity, personal or (blank_identity and str(k).lower() in IDENTITY_KEYS))
                for k, v in value.items()}
    if isinstance(value, list):
        return [erase(v, names, blank_identity, personal) for v in value]
    if personal and value is not None:
        return FORGOTTEN
    if isinstance(value, str):
        return erase_in_text(value, names)
    return value


def erase_in_json_text(text: str, names: set[str]) -> str:
    """``erase`` on a payload kept as JSON text; text that is not JSON (a clipped display copy) gets ``erase_in_text``."""
    try:
        return json.dumps(erase(json.loads(text), names), ensure_ascii=False)
    except ValueError:
        return erase_in_text(text, names)


def identity_values(payload: str | None) -> set[str]:
    """The names under personal keys of a payload kept as JSON text, so that its free text loses them too.

    Phone numbers are left to ``mask_phones``, and values of one or two letters (``Lê``) are
    not taken: removed from the whole text, they would cut up unrelated words."""
    found: set[str] = set()

    def walk(value: object, personal: bool = False) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, personal or str(k).lower() in IDENTITY_KEYS)
        elif isinstance(value, list):
            for v in value:
                walk(v, personal)
        elif personal and isinstance(value, str) and not PHONE_PATTERN.fullmatch(value.strip()) and len(value.strip()) > 2:
            found.add(value.strip())

    if payload:
        try:
            walk(json.loads(payload))
        except ValueError:
            pass
    return found
