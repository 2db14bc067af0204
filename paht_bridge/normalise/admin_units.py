"""Administrative units: accept legacy (63 provinces, three levels) and 2025 (34 provinces,
two levels) addresses and resolve both to the current unit that routing works on.

Uses the offline dataset of ``vietnamadminunits`` (no geocoder, no network). Its parser
can read a legacy address in 2025 mode as somewhere else entirely (a ward in Quảng Bình
becomes one in Hà Nội), so every answer is checked against the province, district and
ward we were given and a mismatch is a problem with a reason, not a silent guess. Names
compare whatever their form: NFC or NFD, old or new tone placement ("Hoà"/"Hòa"), and
typed without marks ("phuong Bai Chay"), which the dataset reads and we then compare
without marks too. A legacy ward that 2025 divided between several wards is a problem as
well: the converter would pick a default ward (or geocode a street online, which must
never happen here), and routing cannot rest on a pick.

Codes carry their scheme (``AdminUnit.scheme``): the dataset uses the General Statistics
Office codes, and the 2025 units reuse old numbers with new meanings: province 44 was
Quảng Bình and is Quảng Trị; a new ward takes the code of one of the wards merged into it
(2025 Xã Hòa Trạch is 19033, legacy Xã Quảng Tùng's code).
"""

from __future__ import annotations

import logging
import unicodedata
from functools import lru_cache

from vietnamadminunits import convert_address, parse_address
from vietnamadminunits.converter.converter_2025 import DICT_PROVINCE, DICT_PROVINCE_WARD_DIVIDED

from paht_bridge.canonical import AdminUnit, Model, UnitScheme

log = logging.getLogger(__name__)

_PREFIXES = ("tỉnh ", "thành phố ", "tp. ", "tp ", "huyện ", "quận ", "thị xã ", "phường ", "xã ", "thị trấn ", "đặc khu ")


class ResolvedUnits(Model):
    """The current unit a place belongs to, and the legacy one it was given in, if any."""

    current: AdminUnit | None
    legacy: AdminUnit | None = None
    problem: str | None = None  # why the place could not be resolved (goes to IOC review)


_TONES = frozenset("\u0300\u0301\u0303\u0309\u0323")


def _key(name: str | None) -> str:
    """A unit's name for comparing: lower-case, without its type ("phường "), and with each
    word's tone mark moved to its end, so the old and new tone placements ("Hoà", "Hòa") and
    NFC or NFD input compare equal while "Hòa" and "Hoa" still differ."""
    text = unicodedata.normalize("NFC", " ".join((name or "").lower().split()))
    for prefix in _PREFIXES:
        if text.startswith(prefix) or text.startswith(_folded(prefix)):
            text = text[len(prefix):]
            break
    words = []
    for word in text.split():
        decomposed = unicodedata.normalize("NFD", word)
        tones = "".join(c for c in decomposed if c in _TONES)
        words.append(unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONES)) + tones)
    return " ".join(words)


def _folded(text: str) -> str:
    """``text`` without any Vietnamese marks: what a keyboard without them types ("phuong Bai Chay")."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _same(given: str | None, found: str | None) -> bool:
    """Whether the dataset's name is the one we were given. Given without any marks, it is
    compared without them; given with marks, the marks must agree."""
    given_key, found_key = _key(given), _key(found)
    if given_key == found_key:
        return True
    return _folded(given_key) == given_key and given_key == _folded(found_key)


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


def _split_into(parsed: object) -> list[str]:
    """The 2025 wards a legacy ward was divided between (empty when it went whole into one).

    For such a ward the converter picks a "default" new ward, or geocodes a street online;
    neither is a fact we can route on."""
    d = vars(parsed)
    old_key = f"{d.get('province_key')}_{d.get('district_key')}_{d.get('ward_key')}"
    new_province = next((new for new, old in DICT_PROVINCE.items() if d.get("province_key") in old), None)
    return [ward["newWardKey"] for ward in DICT_PROVINCE_WARD_DIVIDED.get(new_province, {}).get(old_key, [])]


@lru_cache(maxsize=4096)
def _resolve_cached(unit: AdminUnit) -> ResolvedUnits:
    address = _address_of(unit)
    if not unit.province or not unit.ward:
        return ResolvedUnits(current=None, problem=f"address lacks a province or ward: {address!r}")
    try:
        if unit.scheme is UnitScheme.LEGACY:
            parsed = parse_address(address, mode="LEGACY")
            legacy = _as_unit(parsed, UnitScheme.LEGACY)
            if not (_same(unit.province, legacy.province) and _same(unit.ward, legacy.ward)) or (
                unit.district and not _same(unit.district, legacy.district)
            ):
                return ResolvedUnits(current=None, problem=f"legacy address not found in the dataset: {address!r}")
            if vars(parsed).get("street"):  # the converter would geocode it online
                return ResolvedUnits(current=None, legacy=legacy, problem=f"legacy address not understood whole: {address!r}")
            if split := _split_into(parsed):
                return ResolvedUnits(
                    current=None, legacy=legacy,
                    problem=f"legacy ward {legacy.ward!r} was divided between {len(split)} wards in 2025 "
                    f"({', '.join(split)}): a 2025 address is needed: {address!r}",
                )
            current = _as_unit(convert_address(address), UnitScheme.CURRENT)
            if not current.ward or not current.ward_code:
                return ResolvedUnits(current=None, legacy=legacy, problem=f"legacy address has no 2025 ward in the dataset: {address!r}")
            return ResolvedUnits(current=current, legacy=legacy)
        current = _as_unit(parse_address(address, mode="FROM_2025"), UnitScheme.CURRENT)
    except Exception as exc:  # the library raises bare exceptions for unknown places
        return ResolvedUnits(current=None, problem=f"address not understood ({exc.__class__.__name__}): {address!r}")
    if not (_same(unit.province, current.province) and _same(unit.ward, current.ward)):
        return ResolvedUnits(current=None, problem=f"2025 address not found in the dataset: {address!r}")
    return ResolvedUnits(current=current)


def resolve_units(unit: AdminUnit | None) -> ResolvedUnits:
    """Resolve a report's declared unit to the current (2025) scheme."""
    if unit is None:
        return ResolvedUnits(current=None, problem="report has no administrative unit")
    return _resolve_cached(unit)
