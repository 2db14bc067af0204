"""How much a connector accepts from the system it talks to: sizes, types, depths, lengths.

Every outside answer is bounded before it is read (a page of reports, a SOAP answer, an
attachment), so a broken or hostile system cannot exhaust a worker's memory or time.
The defaults suit the provinces' apps and document systems; a deployment changes them per
connection in the Airflow Connection's extra, e.g. ``{"limits": {"max_attachment_bytes":
104857600, "allowed_media_types": ["image/jpeg", "image/png", "video/mp4"]}}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MIB = 1024 * 1024

#: What citizens attach in the apps: photos, short videos, voice notes, the odd PDF.
DEFAULT_MEDIA_TYPES = frozenset({
    "image/jpeg", "image/png", "image/gif", "image/webp", "image/heic", "image/heif",
    "video/mp4", "video/quicktime", "video/3gpp",
    "audio/mpeg", "audio/mp4", "audio/aac", "audio/amr",
    "application/pdf",
})


class ConnectorLimits(BaseModel):
    """Bounds one connector applies to what it receives. Lengths count characters after NFC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(default=16 * MIB, ge=1024)  # one JSON answer (a page of reports)
    max_answer_seconds: float = Field(default=120.0, gt=0)  # reading one JSON/XML answer, in total (a slow drip)
    max_attachment_bytes: int = Field(default=100 * MIB, ge=1)
    max_attachments: int = Field(default=20, ge=0)  # per report
    allowed_media_types: frozenset[str] = DEFAULT_MEDIA_TYPES
    #: Host names besides the source's own that attachment URLs may point at (an Open311
    #: server's media on a CDN); empty: the source's host only.
    allowed_media_hosts: frozenset[str] = frozenset()
    max_xml_bytes: int = Field(default=8 * MIB, ge=1024)
    max_xml_depth: int = Field(default=64, ge=8)
    max_title_chars: int = Field(default=500, ge=1)
    max_description_chars: int = Field(default=20_000, ge=1)
    max_address_chars: int = Field(default=1_000, ge=1)
    max_name_chars: int = Field(default=200, ge=1)  # people, units, categories
    max_comment_chars: int = Field(default=4_000, ge=1)  # ratings
    max_file_name_chars: int = Field(default=255, ge=1)
    max_clock_skew_seconds: float = Field(default=600.0, ge=0)  # how far in the future a time may be

    @field_validator("allowed_media_types", "allowed_media_hosts", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        if isinstance(value, (list, tuple, set, frozenset)):
            return frozenset(str(v).strip().lower() for v in value)
        return value

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any] | None, *, conn_id: str = "?") -> ConnectorLimits:
        """The ``limits`` object of a connection's extra (a dict, or JSON text); defaults when absent."""
        value = (extra or {}).get("limits")
        if value in (None, "", {}):
            return cls()
        try:
            if isinstance(value, str):
                value = json.loads(value)
            return cls.model_validate(value)
        except (ValueError, ValidationError) as exc:
            # A typo in a limit must stop the task with the field named, not fall back silently.
            raise ValueError(f"connection {conn_id}: extra.limits is invalid: {exc}") from exc


DEFAULT_LIMITS = ConnectorLimits()
