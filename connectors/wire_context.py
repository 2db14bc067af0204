"""The named fields a configured back end's mapping can put in a request.

A configured connector (SOAP or REST) turns canonical models into these flat, already
safe values (no markup, nothing XML cannot hold, cut to the mapping's text limit with
the whole text attached when it was cut), then the mapping's templates place them.
Reporter fields are present only when the deployment's privacy rules let them into the
record at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paht_bridge.connectors.outbound import FULL_TEXT_NAME, FULL_TEXT_NOTE, outbound_text, read_spooled, short_name, shorten
from paht_bridge.canonical import VIETNAM_TZ, DocumentRecord, LocalAttachment, Rating

COMMENT_LIMIT = 4000


def record_context(
    record: DocumentRecord, attachments: Sequence[LocalAttachment], *, system: str, text_limit: int | None, with_data: bool,
) -> dict[str, Any]:
    """Every field a create request may use. ``with_data`` reads each spooled file (checked
    against its size and checksum) for services that take attachments inline."""
    subject, content = outbound_text(record.subject), outbound_text(record.content)
    parts: list[dict[str, Any]] = []
    for index, attachment in enumerate(attachments, start=1):
        part: dict[str, Any] = {"index": index, "name": short_name(attachment.name), "media_type": attachment.media_type,
                                "size": attachment.size, "sha256": attachment.sha256}
        if with_data:
            part["data"] = read_spooled(attachment, system=system, operation="create", ref=record.external_ref)
        parts.append(part)
    short_content = content
    if text_limit is not None:
        subject = shorten(subject, text_limit)
        short_content = shorten(content, text_limit, FULL_TEXT_NOTE)
        if short_content != content and with_data:
            data = content.encode("utf-8")
            parts.append({"index": len(parts) + 1, "name": FULL_TEXT_NAME, "media_type": "text/plain",  # UTF-8; some schemas refuse parameters
                          "size": len(data), "sha256": None, "data": data})
    location, unit, reporter = record.location, record.location.unit, record.reporter
    return {
        "external_ref": record.external_ref, "report_key": record.report_key,
        "agency_code": record.agency_code, "agency_name": record.agency_name,
        "sender_code": record.sender_code, "sender_name": record.sender_name,
        "subject": subject, "content": short_content, "content_full": content,
        "category": record.category, "priority": record.priority,
        "issued_at": record.issued_at.astimezone(VIETNAM_TZ), "issued_date": record.issued_at.astimezone(VIETNAM_TZ).date(),
        "due_date": record.due_date,
        "lat": None if location.lat is None else round(location.lat, 7),
        "lon": None if location.lon is None else round(location.lon, 7),
        "address": outbound_text(location.address) if location.address else None,
        "ward": unit.ward if unit else None, "ward_code": unit.ward_code if unit else None,
        "province": unit.province if unit else None, "province_code": unit.province_code if unit else None,
        "reporter_name": outbound_text(reporter.name.get_secret_value()) if reporter.name else None,
        "reporter_phone": reporter.phone.get_secret_value() if reporter.phone else None,
        "attachments": parts, "attachment_count": len(parts),
    }


def rating_context(document_id: str, rating: Rating) -> dict[str, Any]:
    return {
        "document_id": document_id, "rating_id": rating.rating_id, "level": rating.level.value,
        "comment": shorten(outbound_text(rating.comment), COMMENT_LIMIT) if rating.comment else None,
        "rated_at": rating.rated_at.astimezone(VIETNAM_TZ), "source_id": rating.source_id,
    }
