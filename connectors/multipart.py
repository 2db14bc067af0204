"""A multipart/form-data request body that streams spooled files from disk.

requests' own ``files=`` builds the whole body in memory; a 200 MB video must not be. Sizes
are known up front, so the request carries a Content-Length rather than chunked encoding,
which some gateways in front of document systems refuse.
"""

from __future__ import annotations

import io
import re
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from paht_bridge.canonical import LocalAttachment

MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(; *charset=[\w-]+)?$")
CHUNK = 64 * 1024


class MultipartBody:
    """A body requests sends as the socket takes it: ``fields`` are in-memory parts
    ``(name, media type, bytes)``; ``files`` are spooled attachments read from disk as they
    go; ``blobs`` are small in-memory files ``(name, file name, media type, bytes)`` (the
    full text of a report cut to the vendor's limit)."""

    def __init__(
        self,
        fields: Sequence[tuple[str, str, bytes]],
        files: Sequence[tuple[str, LocalAttachment]],
        blobs: Sequence[tuple[str, str, str, bytes]] = (),
    ) -> None:
        self.boundary = uuid.uuid4().hex
        self._segments: deque[bytes | tuple[Path, int]] = deque()
        for name, media_type, data in fields:
            self._segments += [self._head(name, media_type), data, b"\r\n"]
        for name, attachment in files:
            size = attachment.path.stat().st_size  # a missing spool file fails here, before any request
            if size != attachment.size:
                raise ValueError(f"spool file for {attachment.name!r} holds {size} bytes, expected {attachment.size}")
            self._segments += [self._head(name, attachment.media_type, attachment.name), (attachment.path, size), b"\r\n"]
        for name, filename, media_type, data in blobs:
            self._segments += [self._head(name, media_type, filename), data, b"\r\n"]
        self._segments.append(f"--{self.boundary}--\r\n".encode())
        self._length = sum(len(s) if isinstance(s, bytes) else s[1] for s in self._segments)
        self._current: BinaryIO | None = None
        self._left = 0  # bytes still owed by the current segment, so Content-Length always holds

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _head(self, name: str, media_type: str, filename: str | None = None) -> bytes:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            # Raw UTF-8 in a quoted string with backslash escapes, as Go's and .NET's writers do;
            # line breaks could inject headers, so they become spaces.
            safe = filename.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
            disposition += f'; filename="{safe}"'
        media_type = media_type if MEDIA_TYPE.match(media_type) else "application/octet-stream"
        return f"--{self.boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {media_type}\r\n\r\n".encode()

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk

    def _next_segment(self) -> bool:
        if not self._segments:
            return False
        segment = self._segments.popleft()
        if isinstance(segment, bytes):
            self._current, self._left = io.BytesIO(segment), len(segment)
        else:
            self._current, self._left = segment[0].open("rb"), segment[1]
        return True

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while size < 0 or len(out) < size:
            if self._current is None and not self._next_segment():
                break
            assert self._current is not None
            want = self._left if size < 0 else min(self._left, size - len(out))
            chunk = self._current.read(want) if want else b""
            if want and not chunk:
                raise OSError("an attachment's spool file shrank while it was being sent")
            out += chunk
            self._left -= len(chunk)
            if self._left == 0:
                self._current.close()
                self._current = None
        return bytes(out)

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
