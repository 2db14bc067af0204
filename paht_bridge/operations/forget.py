"""Forget a reporter on request (Law 91/2025/QH15: the right to deletion).

The ledger keeps a reporter's name and phone only encrypted, and Fernet tokens are salted,
so the only way to find "every report of 0912 345 678" is to decrypt each phone and
compare the normalised numbers. What is forgotten: the encrypted name and phone (set to
NULL), any copy of the name or number in the reports' own text (title, description, the
agency's answer, the citizen's rating comment, event details), and the reporter's quarantined
payloads (personal fields blanked, phones masked, re-encrypted so they can still be
replayed). What is personal, and how it is erased, is ``paht_bridge.privacy``'s to say. The
reports themselves stay: the province must still account for them.

Not reached from here: the citizen app (the source) and any agency that the deployment
allowed to receive the reporter's identity; those need their own request.
"""

from __future__ import annotations

import logging

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from paht_bridge.ledger.db import decrypt, encrypt
from paht_bridge.ledger.models import DeliveryRow, EventRow, QuarantineRow, RatingRow, ReportRow
from paht_bridge.ledger.store import record_event
from paht_bridge.privacy import erase, erase_in_json_text, erase_in_text, identity_values, normalise_phone, phones_in

log = logging.getLogger(__name__)


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


def _forget_in_report(session: Session, report: ReportRow, names: set[str], run_id: str) -> None:
    report.reporter_name_enc = report.reporter_phone_enc = None
    report.title = erase_in_text(report.title, names)
    report.payload = erase(report.payload, names, blank_identity=False)  # stored without the reporter already
    for delivery in session.scalars(select(DeliveryRow).where(DeliveryRow.report_id == report.id)):
        if delivery.answer:
            delivery.answer = erase_in_text(delivery.answer, names)
    for rating in session.scalars(select(RatingRow).where(RatingRow.report_id == report.id)):
        if rating.comment:
            rating.comment = erase_in_text(rating.comment, names)
    for event in session.scalars(select(EventRow).where(EventRow.report_id == report.id)):
        scrubbed = erase(event.detail or {}, names, blank_identity=False)
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
        item_names = names | identity_values(original)
        item.raw = erase_in_text(erase_in_json_text(item.raw, item_names), item_names)
        if original is not None:
            item.raw_enc = encrypt(erase_in_json_text(original, item_names))
        record_event(session, "reporter_forgotten", report_id=None, run_id=run_id, source=item.source,
                     source_id=item.source_id, quarantine_id=item.id)
        count += 1
    return count
