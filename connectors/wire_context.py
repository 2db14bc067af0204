"""The named fields a configured back end's mapping can put in a request.

A configured connector (SOAP or REST) turns canonical models into these flat, already
safe values (no markup, nothing XML cannot hold, cut to the mapping's text limits with
the whole text attached when it was cut), then the mapping's templates place them.
Reporter fields are present only when the deployment's privacy rules let them into the
record at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paht_bridge.connectors.outbound import FULL_TEXT_NAME, FULL_TEXT_NOTE, outbound_text, read_spooled, short_name, shorten
from paht_bridge.canonical import VIETNAM_TZ, DocumentRecord, LocalAttachment, Rating



def record_context(
    record: DocumentRecord, attachments: Sequence[LocalAttachment], *, system: str, text_limit: int | None, with_data: bool,
    subject_limit: int | None = None,
) -> dict[str, Any]:
    """Every field a create request may use. ``with_data`` reads each spooled file (checked
    against its size and checksum) for services that take attachments inline; the full text
    of content cut to ``text_limit`` is always a part with its bytes (it is small), so a
    service that streams files sends it too."""
    subject, content = outbound_text(record.subject), outbound_text(record.content)
    parts: list[dict[str, Any]] = []
    for index, attachment in enumerate(attachments, start=1):
        part: dict[str, Any] = {"index": index, "name": short_name(attachment.name), "media_type": attachment.media_type,
                                "size": attachment.size, "sha256": attachment.sha256}
        if with_data:
            part["data"] = read_spooled(attachment, system=system, operation="create", ref=record.external_ref)
        parts.append(part)
    short_content = content
    if subject_limit or text_limit:
        subject = shorten(subject, subject_limit or text_limit)
    if text_limit is not None:
        short_content = shorten(content, text_limit, FULL_TEXT_NOTE)
        if short_content != content:
            data = content.encode("utf-8")
            parts.append({"index": len(parts) + 1, "name": FULL_TEXT_NAME, "media_type": "text/plain",  # UTF-8; some schemas refuse parameters
                          "size": len(data), "sha256": None, "data": data})
    location, unit, reporter = record.location, record.location.unit, record.reporter
    unit_name = ", ".join(part for part in (unit.ward, unit.district, unit.province) if part) if unit else ""
    return {
        # The report's id in its source app (the key is "<source>:<id>"): a number for vendors' registers.
        "external_ref": record.external_ref, "report_key": record.report_key, "source_id": record.report_key.partition(":")[2],
        "agency_code": record.agency_code, "agency_name": record.agency_name,
        "sender_code": record.sender_code, "sender_name": record.sender_name,
        "subject": subject, "content": short_content, "content_full": content,
        "category": record.category, "priority": record.priority,
        "issued_at": record.issued_at.astimezone(VIETNAM_TZ), "issued_date": record.issued_at.astimezone(VIETNAM_TZ).date(),
        "due_date": record.due_date,
        "lat": None if location.lat is None else round(location.lat, 7),
        "lon": None if location.lon is None else round(location.lon, 7),
        "address": outbound_text(location.address) if location.address else None,
        "ward": unit.ward if unit else None, "ward_code": unit.ward_code if unit else None, "unit_name": unit_name or None,
        "province": unit.province if unit else None, "province_code": unit.province_code if unit else None,
        "reporter_name": outbound_text(reporter.name.get_secret_value()) if reporter.name else None,
        "reporter_phone": reporter.phone.get_secret_value() if reporter.phone else None,
        "attachments": parts, "attachment_count": len(parts),
    }


def rating_context(document_id: str, rating: Rating, comment_limit: int) -> dict[str, Any]:
    return {
        "document_id": document_id, "rating_id": rating.rating_id, "level": rating.level.value,
        "comment": shorten(outbound_text(rating.comment), comment_limit) if rating.comment else None,
        "rated_at": rating.rated_at.astimezone(VIETNAM_TZ), "source_id": rating.source_id,
    }
