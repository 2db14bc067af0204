"""Hardened XML: no DTDs, no entity expansion, no network, bounded size and depth.

Used for every XML we read (SOAP answers, Open311 XML) so an XML bomb or an XXE from a
back end cannot expand, fetch or read anything, and for every XML we write, so a stray
control character in a citizen's text cannot stop a message from being built.
"""

from __future__ import annotations

import io
import re

from lxml import etree
from zeep.settings import Settings

MAX_XML_BYTES = 20 * 1024 * 1024
MAX_XML_DEPTH = 64

#: ``<!DOCTYPE`` or ``<!ENTITY`` anywhere, with or without spaces after ``<!``.
DTD_OR_ENTITY = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
#: Characters XML 1.0 cannot carry at all (not even escaped).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class XmlRefused(ValueError):
    """Untrusted XML we will not read: too big, too deep, a DTD or entities, or not well formed."""


def safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False, remove_comments=True
    )


def check_untrusted(data: bytes, *, max_bytes: int = MAX_XML_BYTES, max_depth: int = MAX_XML_DEPTH) -> None:
    """Refuse ``data`` before any parser builds a tree from it (raises ``XmlRefused``).

    The byte scan catches a DTD in UTF-8 or any ASCII-compatible encoding; a document in
    UTF-16/32 is scanned after decoding. The depth is measured with a streaming parser that
    resolves nothing, so a deep document never becomes a deep tree. A document that is not
    well formed passes: the parser that reads it next refuses it in its own terms.
    """
    if len(data) > max_bytes:
        raise XmlRefused(f"XML of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    if DTD_OR_ENTITY.search(data) or DTD_OR_ENTITY.search(_as_utf8(data)):
        raise XmlRefused("XML declaring a DTD or entities is refused")
    depth = 0
    try:
        for event, _ in etree.iterparse(
            io.BytesIO(data), events=("start", "end"), resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        ):
            depth += 1 if event == "start" else -1
            if depth > max_depth:
                raise XmlRefused(f"XML nested deeper than {max_depth} levels")
    except etree.XMLSyntaxError:
        return  # not well formed: the parser that reads it next says so, in its own terms


def _as_utf8(data: bytes) -> bytes:
    """The document re-encoded as UTF-8 when it starts like UTF-16/32, else nothing to scan again."""
    head = data[:4]
    for bom, codec in ((b"\xff\xfe\x00\x00", "utf-32-le"), (b"\x00\x00\xfe\xff", "utf-32-be"),
                       (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"),
                       (b"<\x00\x00\x00", "utf-32-le"), (b"\x00\x00\x00<", "utf-32-be"),
                       (b"<\x00", "utf-16-le"), (b"\x00<", "utf-16-be")):
        if head.startswith(bom):
            return data.decode(codec, errors="replace").encode("utf-8")
    return b""


def parse_xml(data: bytes, max_bytes: int = MAX_XML_BYTES, max_depth: int = MAX_XML_DEPTH) -> etree._Element:
    """Parse untrusted XML safely; refuse a DOCTYPE outright (no legitimate answer needs one).

    Raises ``XmlRefused`` (a ``ValueError``) for anything it will not read, never expands an
    entity and never fetches anything.
    """
    check_untrusted(data, max_bytes=max_bytes, max_depth=max_depth)
    try:
        root = etree.fromstring(data, parser=safe_parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRefused(f"XML is not well formed: {str(exc)[:200]}") from exc
    if root.getroottree().docinfo.doctype:  # belt and braces: an encoding the scan did not foresee
        raise XmlRefused("XML declaring a DTD or entities is refused")
    return root


def xml_text(value: str) -> str:
    """``value`` without the characters XML 1.0 cannot hold (NUL, most C0 controls, U+FFFE…)."""
    return _NOT_XML.sub("", value)


def zeep_settings() -> Settings:
    """zeep's own hardening (it uses defusedxml-style checks when these are set)."""
    return Settings(strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True, forbid_external=True, raw_response=False)
