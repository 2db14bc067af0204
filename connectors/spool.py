"""Attachments from a citizen app to local files, for a document system to send on.

Streamed in 64 KiB chunks and hashed on the way (P5: memory does not grow with the file);
a checksum that does not match what the app declared is a transient error of the app.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from paht_bridge.connectors.base import CitizenSource
from paht_bridge.connectors.errors import TransientError
from paht_bridge.canonical import LocalAttachment, Report


@contextmanager
def spooled_attachments(source: CitizenSource, report: Report) -> Iterator[list[LocalAttachment]]:
    """Fetch every attachment into a temporary file (streamed, hashed on the way) for the target."""
    if not report.attachments:  # most reports: no spool folder to make and remove
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="paht-att-") as folder:
        files: list[LocalAttachment] = []
        for index, attachment in enumerate(report.attachments):
            path = Path(folder) / f"{index:03d}"
            digest, size = hashlib.sha256(), 0
            with source.open_attachment(attachment) as chunks, open(path, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            if attachment.sha256 and attachment.sha256 != digest.hexdigest():
                raise TransientError(f"attachment {attachment.name!r} checksum mismatch", system=source.name,
                                     operation="open_attachment", ref=report.source_id)
            files.append(LocalAttachment(name=attachment.name, media_type=attachment.media_type, size=size,
                                         sha256=digest.hexdigest(), path=path))
        yield files
