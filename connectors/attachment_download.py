"""An attachment streamed from a citizen source, checked as it arrives.

The file comes from a server the bridge does not control: it may be an HTML error page
labelled as a photo, a program, larger than it said or than the limit, or cut off half-way.
Each chunk is checked as it passes, so nothing large is held and a bad file is refused
before it reaches a document system. The citizen-app and Open311 clients both stream
through ``CheckedDownload``; each decides what it fetches and how the first bytes are judged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import requests

from paht_bridge.connectors.content import SNIFF_BYTES, mismatch
from paht_bridge.connectors.errors import MalformedResponse, RejectedContent, TransientError
from paht_bridge.canonical import Attachment

STREAM_CHUNK = 64 * 1024
OPERATION = "open_attachment"


@dataclass(frozen=True)
class CheckedDownload:
    """One attachment's download. ``ref`` is the URL the errors name; ``limit`` the connector's
    ``max_attachment_bytes``; ``declared_size`` and ``sha256``, when the source declares them,
    must match what arrives."""

    system: str
    attachment: Attachment
    ref: str
    limit: int
    declared_size: int | None = None
    sha256: str | None = None

    def rejected(self, why: str) -> RejectedContent:
        """A file the bridge must not forward (type, size, content): no retry will change it."""
        return RejectedContent(f"attachment {self.attachment.name}: {why}", system=self.system, operation=OPERATION, ref=self.ref)

    def bad_file(self, why: str) -> MalformedResponse:
        """A file that is not what the report declared (size, checksum)."""
        return MalformedResponse(f"attachment {self.attachment.name}: {why}", system=self.system, operation=OPERATION, ref=self.ref)

    def sniff(self, head: bytes) -> None:
        """Refuse a file whose first bytes are not its declared type (a page or a program labelled as a photo)."""
        why = mismatch(self.attachment.media_type, head)
        if why:
            raise self.rejected(why)

    def check_headers(self, response: requests.Response) -> None:
        """Refuse an HTML error page or a file of the wrong size before streaming any of it."""
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type and "html" not in self.attachment.media_type:
            raise MalformedResponse(f"expected {self.attachment.media_type}, got {content_type}", system=self.system,
                                    operation=OPERATION, ref=self.ref)
        length = response.headers.get("Content-Length", "")
        if self.declared_size is not None and length.isdigit() and int(length) != self.declared_size:
            raise MalformedResponse(f"Content-Length {length} but the report says {self.declared_size} bytes", system=self.system,
                                    operation=OPERATION, ref=self.ref)
        if length.isdigit() and int(length) > self.limit:
            raise self.rejected(f"Content-Length {length}, over the {self.limit}-byte limit")

    def chunks(self, response: requests.Response, sniff: Callable[[bytes], None] | None = None) -> Iterator[bytes]:
        """The body in chunks; ``sniff`` (default ``self.sniff``) sees the first ``SNIFF_BYTES``,
        held back until then, and raises when they are not the declared type."""
        sniff = sniff or self.sniff
        digest = hashlib.sha256()
        size = 0
        head = b""  # held back until the first bytes show what the file really is
        sniffed = False
        try:
            for chunk in response.iter_content(chunk_size=STREAM_CHUNK):
                size += len(chunk)
                if self.declared_size is not None and size > self.declared_size:
                    raise self.bad_file(f"more than the {self.declared_size} bytes the report declares")
                if size > self.limit:
                    raise self.rejected(f"more than the {self.limit}-byte limit")
                digest.update(chunk)
                if not sniffed:
                    head += chunk
                    if len(head) < SNIFF_BYTES:
                        continue
                    sniff(head)
                    sniffed, chunk, head = True, head, b""
                yield chunk
        except requests.RequestException as exc:
            # A download cut half-way is safe to repeat.
            raise TransientError(f"download interrupted: {exc.__class__.__name__}", system=self.system, operation=OPERATION,
                                 ref=self.ref) from exc
        if size == 0:
            raise self.rejected("the file is empty (0 bytes)")
        if self.declared_size is not None and size != self.declared_size:
            raise self.bad_file(f"{size} bytes but the report declares {self.declared_size}")
        if self.sha256 and digest.hexdigest() != self.sha256.lower():
            raise self.bad_file("sha256 does not match the report")
        if not sniffed:  # a file shorter than the sniffing window
            sniff(head)
            yield head
