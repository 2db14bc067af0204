"""Legacy (63 provinces, three levels) and 2025 (34 provinces, two levels) addresses resolved
to the current unit, with real places from the articles in shared/seeds and FACTS.md.

The expected answers are the facts, checked against the dataset rather than taken from it:
the 2025 province of a merged province (FACTS.md), and ward mergers as the National
Assembly Standing Committee's 2025 resolutions on each province's communes set them out
(Quảng Trị: xã Hòa Trạch from Quảng Châu, Quảng Tùng and Cảnh Dương; Điện Biên: phường
Điện Biên Phủ from Him Lam, Thanh Bình, Tân Thanh, Mường Thanh, Thanh Trường and xã Thanh
Minh; the new phường Mường Thanh from Noong Bua, Nam Thanh and xã Thanh Xương).
"""

from __future__ import annotations

import unicodedata

import pytest

import vietnamadminunits.converter.converter_2025 as converter
from paht_bridge.normalise.admin_units import resolve_units
from paht_bridge.canonical import AdminUnit, UnitScheme


def legacy(province: str, district: str, ward: str) -> AdminUnit:
    return AdminUnit(scheme="legacy", province=province, district=district, ward=ward)


def current(province: str, ward: str) -> AdminUnit:
    return AdminUnit(scheme="2025", province=province, ward=ward)


@pytest.fixture(autouse=True)
def no_geocoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The converter geocodes a divided ward's street online; that must never happen here."""
    def refuse(address: str) -> None:
        raise AssertionError(f"tried to geocode {address!r}")
    monkeypatch.setattr(converter, "get_geo_location", refuse)


def test_a_quang_binh_commune_becomes_a_commune_of_quang_tri_and_code_44_changes_meaning() -> None:
    units = resolve_units(legacy("tỉnh Quảng Bình", "huyện Quảng Trạch", "xã Cảnh Dương"))
    assert units.problem is None and units.legacy is not None and units.current is not None
    assert (units.legacy.scheme, units.legacy.province, units.legacy.province_code) == (UnitScheme.LEGACY, "Tỉnh Quảng Bình", "44")
    assert (units.legacy.district, units.legacy.district_code, units.legacy.ward_code) == ("Huyện Quảng Trạch", "454", "19036")
    assert (units.current.scheme, units.current.province, units.current.province_code) == (UnitScheme.CURRENT, "Tỉnh Quảng Trị", "44")
    assert (units.current.ward, units.current.ward_code) == ("Xã Hòa Trạch", "19033")
    assert units.current.district is None and units.current.district_code is None  # two levels now


def test_code_44_is_quang_binh_in_the_legacy_scheme_and_quang_tri_in_2025() -> None:
    old = resolve_units(legacy("tỉnh Quảng Bình", "thành phố Đồng Hới", "phường Đồng Phú"))
    new = resolve_units(current("Tỉnh Quảng Trị", "Phường Đồng Hới"))
    assert old.legacy is not None and new.current is not None and old.current is not None
    assert (old.legacy.province_code, old.legacy.province) == ("44", "Tỉnh Quảng Bình")
    assert (new.current.province_code, new.current.province) == ("44", "Tỉnh Quảng Trị")
    assert old.current == new.current  # Đồng Phú is now part of phường Đồng Hới
    quang_tri_before = resolve_units(legacy("tỉnh Quảng Trị", "thành phố Đông Hà", "Phường 1"))
    assert quang_tri_before.legacy is not None and quang_tri_before.legacy.province_code == "45"
    assert quang_tri_before.current is not None and quang_tri_before.current.province_code == "44"


def test_muong_thanh_of_the_legacy_map_is_now_in_phuong_dien_bien_phu() -> None:
    units = resolve_units(legacy("tỉnh Điện Biên", "thành phố Điện Biên Phủ", "phường Mường Thanh"))
    assert units.legacy is not None and (units.legacy.ward, units.legacy.ward_code) == ("Phường Mường Thanh", "03136")
    assert units.current is not None
    assert (units.current.province, units.current.ward, units.current.ward_code) == ("Tỉnh Điện Biên", "Phường Điện Biên Phủ", "03127")


def test_the_2025_phuong_muong_thanh_is_another_place_than_the_legacy_one() -> None:
    """Same name, two schemes, two places: why a unit always says which map it is on."""
    units = resolve_units(current("Tỉnh Điện Biên", "Phường Mường Thanh"))
    assert units.current is not None and (units.current.ward, units.current.ward_code) == ("Phường Mường Thanh", "03334")
    assert resolve_units(legacy("tỉnh Điện Biên", "huyện Điện Biên", "xã Thanh Xương")).current == units.current


@pytest.mark.parametrize(("district", "ward", "now"), [
    ("thành phố Điện Biên Phủ", "phường Him Lam", "Phường Điện Biên Phủ"),
    ("huyện Điện Biên", "xã Noong Hẹt", "Xã Thanh An"),
    ("huyện Điện Biên", "xã Phu Luông", "Xã Mường Nhà"),
])
def test_places_named_in_the_dien_bien_article_resolve(district: str, ward: str, now: str) -> None:
    units = resolve_units(legacy("tỉnh Điện Biên", district, ward))
    assert units.problem is None and units.current is not None
    assert (units.current.province, units.current.province_code, units.current.ward) == ("Tỉnh Điện Biên", "11", now)


def test_quang_ninh_bai_chay_in_both_schemes() -> None:
    old = resolve_units(legacy("tỉnh Quảng Ninh", "thành phố Hạ Long", "phường Bãi Cháy"))
    new = resolve_units(current("Tỉnh Quảng Ninh", "Phường Bãi Cháy"))
    assert old.legacy is not None and (old.legacy.district, old.legacy.province_code) == ("Thành phố Hạ Long", "22")
    assert new.current is not None and (new.current.ward, new.current.ward_code, new.current.province_code) == ("Phường Bãi Cháy", "06673", "22")
    assert old.current == new.current
    hung_thang = resolve_units(legacy("tỉnh Quảng Ninh", "thành phố Hạ Long", "phường Hùng Thắng"))
    assert hung_thang.current == new.current  # merged into Bãi Cháy


def test_a_legacy_ward_divided_between_2025_wards_is_a_problem_not_a_pick() -> None:
    units = resolve_units(legacy("tỉnh Quảng Ninh", "thành phố Hạ Long", "phường Hà Khẩu"))
    assert units.current is None and units.legacy is not None
    assert "divided between 2 wards" in (units.problem or "")


def test_a_legacy_quang_nam_address_resolves_in_da_nang() -> None:
    units = resolve_units(legacy("tỉnh Quảng Nam", "huyện Bắc Trà My", "thị trấn Trà My"))
    assert units.current is not None and (units.current.province, units.current.province_code) == ("Thành phố Đà Nẵng", "48")


@pytest.mark.parametrize("unit", [
    current("tinh Quang Ninh", "phuong Bai Chay"),
    current("Quang Ninh", "Bai Chay"),
    current(unicodedata.normalize("NFD", "Tỉnh Quảng Ninh"), unicodedata.normalize("NFD", "Phường Bãi Cháy")),
    current("TỈNH QUẢNG NINH", "PHƯỜNG BÃI CHÁY"),
    legacy("tinh Quang Ninh", "thanh pho Ha Long", "phuong Bai Chay"),
    legacy(*(unicodedata.normalize("NFD", s) for s in ("tỉnh Quảng Ninh", "thành phố Hạ Long", "phường Bãi Cháy"))),
], ids=["no-marks", "no-marks-no-type", "nfd", "capitals", "legacy-no-marks", "legacy-nfd"])
def test_names_typed_without_marks_or_decomposed_resolve(unit: AdminUnit) -> None:
    units = resolve_units(unit)
    assert units.problem is None and units.current is not None
    assert (units.current.ward, units.current.ward_code) == ("Phường Bãi Cháy", "06673")


def test_old_and_new_tone_placement_compare_equal_but_a_missing_mark_does_not() -> None:
    assert resolve_units(current("Tỉnh Quảng Trị", "Xã Hoà Trạch")).current is not None
    wrong = resolve_units(current("Tỉnh Quảng Trị", "Xã Hoa Trạch"))  # marks given, and one is wrong
    assert wrong.current is None and "Hoa Trạch" in (wrong.problem or "")


def test_legacy_names_without_marks_resolve_to_the_same_commune() -> None:
    units = resolve_units(legacy("tinh Quang Binh", "huyen Quang Trach", "xa Canh Duong"))
    assert units.current is not None and units.current.ward_code == "19033"


def test_an_unknown_ward_is_a_problem_with_a_reason() -> None:
    units = resolve_units(current("Tỉnh Quảng Ninh", "Phường Không Có Thật"))
    assert units.current is None and "not found" in (units.problem or "") and "Không Có Thật" in (units.problem or "")
    units = resolve_units(legacy("tỉnh Quảng Bình", "huyện Quảng Trạch", "xã Không Có Thật"))
    assert units.current is None and "not found" in (units.problem or "")


def test_a_ward_of_another_province_is_a_problem() -> None:
    units = resolve_units(current("Tỉnh Quảng Ninh", "Phường Điện Biên Phủ"))
    assert units.current is None and "Quảng Ninh" in (units.problem or "")
    units = resolve_units(legacy("tỉnh Quảng Bình", "huyện Quảng Trạch", "xã Mường Thanh"))
    assert units.current is None and units.problem


def test_a_ward_in_the_wrong_district_is_a_problem() -> None:
    units = resolve_units(legacy("tỉnh Quảng Bình", "huyện Bố Trạch", "xã Cảnh Dương"))
    assert units.current is None and "Bố Trạch" in (units.problem or "")


def test_a_legacy_address_given_as_2025_is_not_read_as_somewhere_else() -> None:
    """The dataset's parser reads this in 2025 mode as Xã Quảng Bị, Hà Nội, without a word."""
    units = resolve_units(current("Tỉnh Quảng Bình", "Phường Bãi Cháy"))
    assert units.current is None and units.problem


def test_a_city_given_as_the_province_is_a_problem() -> None:
    units = resolve_units(legacy("TP Hạ Long", "thành phố Hạ Long", "phường Bãi Cháy"))
    assert units.current is None and units.problem


def test_no_unit_or_no_ward_is_a_problem() -> None:
    assert resolve_units(None).problem == "report has no administrative unit"
    assert "lacks a province or ward" in (resolve_units(AdminUnit(scheme="2025", province="Tỉnh Quảng Trị")).problem or "")
