"""Administrative units: accept legacy (63 provinces, three levels) and 2025 (34 provinces,
two levels) addresses and resolve both to the current unit that routing works on.

Uses the offline dataset of ``vietnamadminunits`` (no geocoder, no network). Its parser
can read a legacy address in 2025 mode as somewhere else entirely (a ward in Quảng Bình
becomes one in Hà Nội), so every answer is checked against the province we were given
and a mismatch is a problem with a reason, not a silent guess.
"""

from __future__ import annotations

import logging
import unicodedata
from functools import lru_cache

from vietnamadminunits import convert_address, parse_address

from paht_bridge.mappings.canonical import AdminUnit, Model, UnitScheme

log = logging.getLogger(__name__)

_PREFIXES = ("tỉnh ", "thành phố ", "tp. ", "tp ", "huyện ", "quận ", "thị xã ", "phường ", "xã ", "thị trấn ", "đặc khu ")


class ResolvedUnits(Model):
    """The current unit a place belongs to, and the legacy one it was given in, if any."""

    current: AdminUnit | None
    legacy: AdminUnit | None = None
    problem: str | None = None  # why the place could not be resolved (goes to IOC review)


def _key(name: str | None) -> str:
    text = unicodedata.normalize("NFC", (name or "").strip().lower())
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    return text


def _address_of(unit: AdminUnit) -> str:
    parts = [unit.ward, unit.district if unit.scheme is UnitScheme.LEGACY else None, unit.province]
    return ", ".join(p for p in parts if p)


def _as_unit(parsed: object, scheme: UnitScheme) -> AdminUnit:
    d = vars(parsed)
    return AdminUnit(
        scheme=scheme,
        province_code=d.get("province_code"),
        province=d.get("province"),
        district_code=d.get("district_code") if scheme is UnitScheme.LEGACY else None,
        district=d.get("district") if scheme is UnitScheme.LEGACY else None,
        ward_code=d.get("ward_code"),
        ward=d.get("ward"),
    )


@lru_cache(maxsize=4096)
def _resolve_cached(unit: AdminUnit) -> ResolvedUnits:
    address = _address_of(unit)
    if not unit.province or not unit.ward:
        return ResolvedUnits(current=None, problem=f"address lacks a province or ward: {address!r}")
    try:
        if unit.scheme is UnitScheme.LEGACY:
            legacy = _as_unit(parse_address(address, mode="LEGACY"), UnitScheme.LEGACY)
            if _key(legacy.province) != _key(unit.province) or _key(legacy.ward) != _key(unit.ward):
                return ResolvedUnits(current=None, problem=f"legacy address not found in the dataset: {address!r}")
            current = _as_unit(convert_address(address), UnitScheme.CURRENT)
            return ResolvedUnits(current=current, legacy=legacy)
        current = _as_unit(parse_address(address, mode="FROM_2025"), UnitScheme.CURRENT)
    except Exception as exc:  # the library raises bare exceptions for unknown places
        return ResolvedUnits(current=None, problem=f"address not understood ({exc.__class__.__name__}): {address!r}")
    if _key(current.province) != _key(unit.province) or _key(current.ward) != _key(unit.ward):
        return ResolvedUnits(current=None, problem=f"2025 address not found in the dataset: {address!r}")
    return ResolvedUnits(current=current)


def resolve_units(unit: AdminUnit | None) -> ResolvedUnits:
    """Resolve a report's declared unit to the current (2025) scheme."""
    if unit is None:
        return ResolvedUnits(current=None, problem="report has no administrative unit")
    return _resolve_cached(unit)
