"""Hardened XML settings: no DTDs, no entity expansion, no network, bounded size.

Used for every XML we read (SOAP answers, Open311 XML) so an XML bomb or an XXE from a
back end cannot expand, fetch or read anything.
"""

from __future__ import annotations

from lxml import etree
from zeep.settings import Settings

MAX_XML_BYTES = 20 * 1024 * 1024


def safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False, remove_comments=True
    )


def parse_xml(data: bytes, max_bytes: int = MAX_XML_BYTES) -> etree._Element:
    """Parse untrusted XML safely; refuse a DOCTYPE outright (no legitimate answer needs one)."""
    if len(data) > max_bytes:
        raise ValueError(f"XML of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    head = data[:4096].lstrip()
    if b"<!DOCTYPE" in head.upper() or b"<!ENTITY" in data.upper():
        raise ValueError("XML with a DOCTYPE or entity declaration is refused")
    return etree.fromstring(data, parser=safe_parser())


def zeep_settings() -> Settings:
    """zeep's own hardening (it uses defusedxml-style checks when these are set)."""
    return Settings(strict=True, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True, forbid_external=True, raw_response=False)
