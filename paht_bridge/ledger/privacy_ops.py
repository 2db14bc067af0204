"""Forget a reporter on request (Law 91/2025/QH15: the right to deletion).

The ledger keeps a reporter's name and phone only encrypted, and Fernet tokens are salted,
so the only way to find "every report of 0912 345 678" is to decrypt each phone and
compare the normalised numbers. What is forgotten: the encrypted name and phone (set to
NULL), any copy of the name or number in the reports' own text (title, description, the
agency's answer, the citizen's rating comment, event details), and the reporter's quarantined
payloads (personal fields blanked, phones masked, re-encrypted so they can still be
replayed). The reports themselves stay: the province must still account for them.

Not reached from here: the citizen app (the source) and any agency that the deployment
allowed to receive the reporter's identity; those need their own request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from paht_bridge.ledger.db import decrypt, encrypt
from paht_bridge.ledger.models import DeliveryRow, EventRow, QuarantineRow, RatingRow, ReportRow
from paht_bridge.ledger.store import record_event
from paht_bridge.privacy import PERSONAL_KEYS, PHONE_PATTERN, mask_phones, normalise_phone, phones_in

log = logging.getLogger(__name__)

FORGOTTEN = "[đã xoá]"  # "deleted", shown where a forgotten name or number was
#: A bare ``name`` is personal only under a personal parent (``reporter.name``), not ``attachments[].name``.
IDENTITY_KEYS = PERSONAL_KEYS - {"name"}


def forget_reporter(session: Session, phone: str, *, run_id: str = "forget") -> int:
    """Forget every report of the reporter with this phone; returns how many reports. Commits.

    ``phone`` may be written ``0912345678``, ``+84 912 345 678``, ``84912345678``... An
    event ``reporter_forgotten`` (with no personal data) goes into each report's trace.
    """
    wanted = normalise_phone(phone)
    if len(wanted) < 10:
        raise ValueError("not a Vietnamese phone number")
    reports = [r for r in session.scalars(select(ReportRow).where(ReportRow.reporter_phone_enc.is_not(None)))
               if normalise_phone(decrypt(r.reporter_phone_enc) or "") == wanted]
    names = {n for r in reports if (n := decrypt(r.reporter_name_enc))}
    for report in reports:
        _forget_in_report(session, report, names, run_id)
    quarantined = _forget_in_quarantine(session, wanted, {(r.source, r.source_id) for r in reports}, names, run_id)
    session.commit()
    log.info("reporter forgotten reports=%d quarantine_items=%d run=%s", len(reports), quarantined, run_id)
    return len(reports)


def _scrub_text(text: str, names: Iterable[str]) -> str:
    for name in names:
        text = text.replace(name, FORGOTTEN)
    return mask_phones(text)


def _scrub(value: object, names: Iterable[str], personal: bool = False, blank_keys: bool = True) -> object:
    """A JSON value with names and phone numbers removed from text and, if ``blank_keys``, identity fields blanked."""
    if isinstance(value, dict):
        return {k: _scrub(v, names, personal or (blank_keys and str(k).lower() in IDENTITY_KEYS), blank_keys) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, names, personal, blank_keys) for v in value]
    if personal and value is not None:
        return FORGOTTEN
    if isinstance(value, str):
        return _scrub_text(value, names)
    return value


def _forget_in_report(session: Session, report: ReportRow, names: set[str], run_id: str) -> None:
    report.reporter_name_enc = report.reporter_phone_enc = None
    report.title = _scrub_text(report.title, names)
    report.payload = _scrub(report.payload, names, blank_keys=False)  # stored without the reporter already
    for delivery in session.scalars(select(DeliveryRow).where(DeliveryRow.report_id == report.id)):
        if delivery.answer:
            delivery.answer = _scrub_text(delivery.answer, names)
    for rating in session.scalars(select(RatingRow).where(RatingRow.report_id == report.id)):
        if rating.comment:
            rating.comment = _scrub_text(rating.comment, names)
    for event in session.scalars(select(EventRow).where(EventRow.report_id == report.id)):
        scrubbed = _scrub(event.detail or {}, names, blank_keys=False)
        if scrubbed != event.detail:
            event.detail = scrubbed
    record_event(session, "reporter_forgotten", report_id=report.id, run_id=run_id, fields=["reporter_name", "reporter_phone"])


def _forget_in_quarantine(session: Session, phone: str, report_keys: set[tuple[str, str]], names: set[str], run_id: str) -> int:
    """Quarantined payloads that carry this phone, or belong to one of the forgotten reports."""
    same_report = [(QuarantineRow.source == source) & (QuarantineRow.source_id == source_id) for source, source_id in report_keys]
    query = select(QuarantineRow).where(or_(QuarantineRow.raw_enc.is_not(None), *same_report))
    count = 0
    for item in session.scalars(query):
        original = decrypt(item.raw_enc) if item.raw_enc else None
        theirs = (item.source, item.source_id) in report_keys or (original is not None and phone in phones_in(original))
        if not theirs:
            continue
        item_names = names | _names_in(original)
        item.raw = _scrub_text(_rewrite_json(item.raw, item_names), item_names)
        if original is not None:
            item.raw_enc = encrypt(_rewrite_json(original, item_names))
        record_event(session, "reporter_forgotten", report_id=None, run_id=run_id, source=item.source,
                     source_id=item.source_id, quarantine_id=item.id)
        count += 1
    return count


def _rewrite_json(text: str, names: set[str]) -> str:
    try:
        return json.dumps(_scrub(json.loads(text), names), ensure_ascii=False)
    except ValueError:  # not JSON (a truncated display copy): text rules only
        return _scrub_text(text, names)


def _names_in(original: str | None) -> set[str]:
    """Names under personal keys of a raw payload, so they are also removed from its free text."""
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

    if original:
        try:
            walk(json.loads(original))
        except ValueError:
            pass
    return found
