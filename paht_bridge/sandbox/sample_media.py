"""Attachment files for the stand-ins: photos and videos made from an attachment's id.

The bytes are a pure function of the id and the media type, so a report's declared size
and SHA-256 always match what is downloaded, in every run, without storing any file. The
stand-ins call these through the module (``sample_media.attachment_bytes(...)``), so a
benchmark can swap in files of the size it measures.
"""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from collections.abc import Mapping
from functools import lru_cache

from fastapi.responses import StreamingResponse

CHUNK = 1024  # small on purpose: even a few-KB file arrives in several chunks, as a large one would


def _rng(attachment_id: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(attachment_id.encode()).digest()[:8], "big"))


def _png(rng: random.Random) -> bytes:
    """A valid RGB PNG of noise: noise does not compress, so the file stays a few KB."""
    width = height = rng.randint(28, 40)
    rows = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _jpeg_like(rng: random.Random) -> bytes:
    """JPEG markers around random bytes: enough for content sniffing, not a decodable image."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return b"\xff\xd8" + app0 + rng.randbytes(rng.randint(3000, 7000)) + b"\xff\xd9"


def _mp4_like(rng: random.Random) -> bytes:
    """An ``ftyp`` box and an ``mdat`` box of random bytes."""
    ftyp = b"ftyp" + b"isom" + struct.pack(">I", 0x200) + b"isomiso2avc1mp41"
    payload = rng.randbytes(rng.randint(8000, 14000))
    return struct.pack(">I", len(ftyp) + 4) + ftyp + struct.pack(">I", len(payload) + 8) + b"mdat" + payload


@lru_cache(maxsize=256)
def attachment_bytes(attachment_id: str, media_type: str) -> bytes:
    """The bytes of an attachment, a pure function of its id and media type."""
    rng = _rng(attachment_id)
    if media_type == "image/png":
        return _png(rng)
    if media_type.startswith("video/"):
        return _mp4_like(rng)
    return _jpeg_like(rng)


@lru_cache(maxsize=65536)
def attachment_digest(attachment_id: str, media_type: str) -> tuple[int, str]:
    """(size, sha256) of an attachment: every page render lists them, so they are kept apart
    from the bytes and cached longer."""
    data = attachment_bytes(attachment_id, media_type)
    return len(data), hashlib.sha256(data).hexdigest()


def streamed(data: bytes, media_type: str, headers: Mapping[str, str]) -> StreamingResponse:
    """``data`` answered in ``CHUNK``-byte pieces, as a server streams a file from disk."""
    chunks = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
    return StreamingResponse(chunks, media_type=media_type, headers=headers)
