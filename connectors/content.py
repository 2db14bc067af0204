"""What a file's first bytes say it is, checked against what its sender declared.

A citizen app's attachment labelled ``image/jpeg`` may really be a proxy's HTML login page,
a script or a Windows program; an agency's document system would store it and an officer
would open it. The first bytes (magic numbers) tell the common cases apart, cheaply, before
any of the file is passed on.
"""

from __future__ import annotations

import re

SNIFF_BYTES = 64  # enough for every signature below

_FTYP = re.compile(rb"^....ftyp", re.DOTALL)
_QUICKTIME_BOX = re.compile(rb"^....(ftyp|moov|mdat|wide|free|skip)", re.DOTALL)

#: Declared media type → a test of the first bytes. Types not listed are only checked
#: against the known-dangerous shapes below.
SIGNATURES: dict[str, re.Pattern[bytes]] = {
    "image/jpeg": re.compile(rb"^\xff\xd8"),
    "image/png": re.compile(rb"^\x89PNG"),
    "image/gif": re.compile(rb"^GIF8[79]a"),
    "image/webp": re.compile(rb"^RIFF....WEBP", re.DOTALL),
    "image/heic": _FTYP,
    "image/heif": _FTYP,
    "video/mp4": _FTYP,
    "video/3gpp": _FTYP,
    "video/quicktime": _QUICKTIME_BOX,
    "audio/mp4": _FTYP,
    "audio/mpeg": re.compile(rb"^(ID3|\xff[\xe0-\xff])"),
    "audio/aac": re.compile(rb"^(\xff[\xf0-\xff]|ADIF|ID3)"),
    "audio/amr": re.compile(rb"^#!AMR"),
    "application/pdf": re.compile(rb"^%PDF-"),
}

#: Shapes that must never travel under another label, with what to call them in a reason.
DANGEROUS: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb"^MZ"), "a Windows executable"),
    (re.compile(rb"^\x7fELF"), "a Linux executable"),
    (re.compile(rb"^(\xca\xfe\xba\xbe|\xcf\xfa\xed\xfe|\xce\xfa\xed\xfe|\xfe\xed\xfa[\xce\xcf])"), "a macOS executable"),
    (re.compile(rb"^#!"), "a script"),
    (re.compile(rb"^PK\x03\x04"), "a ZIP archive (or an APK, JAR or Office file)"),
    (re.compile(rb"^\s*<(!doctype\s+html|html|head|body|script|iframe|meta|title|div|a\s)", re.IGNORECASE), "an HTML page"),
    (re.compile(rb"^\s*<svg", re.IGNORECASE), "an SVG image (it can carry script)"),
    (re.compile(rb"^\s*<\?xml", re.IGNORECASE), "an XML document"),
    (re.compile(rb"^\s*[{\[]\s*\""), "a JSON document"),
)


def media_type_of(value: str) -> str:
    """``image/JPEG; charset=x`` → ``image/jpeg``."""
    return value.split(";", 1)[0].strip().lower()


def mismatch(declared: str, head: bytes) -> str | None:
    """Why ``head`` (a file's first bytes) does not fit the ``declared`` media type, or None."""
    head = head.removeprefix(b"\xef\xbb\xbf")[:SNIFF_BYTES]
    declared = media_type_of(declared)
    for pattern, what in DANGEROUS:
        if pattern.match(head):
            if declared in SIGNATURES or not _declared_as(declared, what):
                return f"declared {declared} but the bytes are {what}"
    expected = SIGNATURES.get(declared)
    if expected is not None and not expected.match(head):
        return f"declared {declared} but the bytes do not start like one"
    return None


def _declared_as(declared: str, what: str) -> bool:
    """An honestly labelled PDF, ZIP, HTML... is judged by the allowed types, not here."""
    return (declared, what.split()[1]) in {
        ("text/html", "HTML"), ("application/zip", "ZIP"), ("application/xml", "XML"), ("text/xml", "XML"),
        ("application/json", "JSON"), ("image/svg+xml", "SVG"),
    }
