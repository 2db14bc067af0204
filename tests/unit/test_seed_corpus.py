"""The citizen-app seed corpus is realistic enough to demo and test with, and safe to grep."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from vietnamadminunits import parse_address

import paht_bridge.sandbox

SEED_FILE = Path(paht_bridge.sandbox.__file__).parent / "seeds" / "citizen_reports.json"
SOURCES = {"quangtri_ioc", "dienbien_smart"}
CATEGORIES = {"XD", "MT", "GT", "DT", "AN", "DV", "CB"}
VIETNAM_BOX = {"lat": (8.1, 23.4), "lon": (102.1, 109.5)}
MOBILE = re.compile(r"^0[35789]\d{8}$")
MEDIA_TYPES = {"image/jpeg", "image/png", "video/mp4"}


@pytest.fixture(scope="module")
def reports() -> list[dict]:
    return json.loads(SEED_FILE.read_text(encoding="utf-8"))["reports"]


def _strings(value: object):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _admin_address(admin: dict) -> str:
    return ", ".join(part for part in (admin["ward"], admin.get("district"), admin["province"]) if part)


def test_the_corpus_holds_at_least_64_reports_from_both_sources(reports):
    assert len(reports) >= 64
    per_source = Counter(r["source"] for r in reports)
    assert set(per_source) == SOURCES
    assert min(per_source.values()) >= 28


def test_every_category_appears_several_times_in_each_source(reports):
    for source in SOURCES:
        counts = Counter(r["category"] for r in reports if r["source"] == source)
        assert set(counts) == CATEGORIES, source
        assert min(counts.values()) >= 3, (source, counts)


def test_report_ids_are_unique(reports):
    ids = [r["id"] for r in reports]
    assert len(ids) == len(set(ids))


def test_reporter_phones_and_names_are_unique_mobile_numbers_and_names(reports):
    phones = [r["reporter"]["phone"] for r in reports]
    names = [r["reporter"]["name"] for r in reports]
    assert len(set(phones)) == len(phones)
    assert len(set(names)) == len(names)
    assert all(MOBILE.match(phone) for phone in phones)


def test_all_text_is_nfc(reports):
    raw = SEED_FILE.read_text(encoding="utf-8")
    assert unicodedata.is_normalized("NFC", raw)
    for text in _strings(reports):
        assert unicodedata.is_normalized("NFC", text), text


def test_coordinates_lie_inside_vietnam(reports):
    for report in reports:
        location = report["location"]
        assert VIETNAM_BOX["lat"][0] <= location["lat"] <= VIETNAM_BOX["lat"][1], report["id"]
        assert VIETNAM_BOX["lon"][0] <= location["lon"] <= VIETNAM_BOX["lon"][1], report["id"]


def test_each_admin_unit_parses_in_its_declared_scheme_to_the_declared_units(reports):
    for report in reports:
        admin = report["location"]["admin"]
        mode = {"legacy": "LEGACY", "2025": "FROM_2025"}[admin["scheme"]]
        unit = parse_address(_admin_address(admin), mode=mode)
        # The library has been seen to misread a ward silently, so every level is compared.
        assert (unit.province or "").casefold() == admin["province"].casefold(), report["id"]
        assert (unit.ward or "").casefold() == admin["ward"].casefold(), report["id"]
        if admin["scheme"] == "legacy":
            assert (unit.district or "").casefold() == admin["district"].casefold(), report["id"]
        else:
            assert "district" not in admin, report["id"]


def test_coordinates_lie_near_the_declared_ward(reports):
    for report in reports:
        admin = report["location"]["admin"]
        unit = parse_address(_admin_address(admin), mode={"legacy": "LEGACY", "2025": "FROM_2025"}[admin["scheme"]])
        assert abs(unit.latitude - report["location"]["lat"]) < 0.05, report["id"]
        assert abs(unit.longitude - report["location"]["lon"]) < 0.05, report["id"]


def test_address_text_ends_with_the_declared_units(reports):
    for report in reports:
        assert report["location"]["address"].endswith(_admin_address(report["location"]["admin"])), report["id"]


def test_both_sources_mix_legacy_and_2025_addresses(reports):
    for source in SOURCES:
        schemes = Counter(r["location"]["admin"]["scheme"] for r in reports if r["source"] == source)
        assert schemes["legacy"] >= 5 and schemes["2025"] >= 3, (source, schemes)


def test_quang_tri_carries_merged_quang_binh_legacy_addresses(reports):
    provinces = {r["location"]["admin"]["province"] for r in reports if r["source"] == "quangtri_ioc"}
    assert {"tỉnh Quảng Bình", "tỉnh Quảng Trị"} <= provinces


def test_reports_are_timestamped_in_vietnam_time_in_october_and_november_2026(reports):
    for report in reports:
        created = datetime.fromisoformat(report["created_at"])
        assert created.utcoffset() == timedelta(hours=7), report["id"]
        assert (created.year, created.month) in {(2026, 10), (2026, 11)}, report["id"]


def test_attachments_are_few_typed_and_uniquely_named(reports):
    ids = [a["id"] for r in reports for a in r["attachments"]]
    assert len(ids) == len(set(ids))
    for report in reports:
        assert len(report["attachments"]) <= 3, report["id"]
        assert {a["media_type"] for a in report["attachments"]} <= MEDIA_TYPES, report["id"]
    media = Counter(a["media_type"] for r in reports for a in r["attachments"])
    assert media["video/mp4"] >= 1 and media["image/png"] >= 1 and media["image/jpeg"] >= 1


def test_channels_are_the_known_ones_and_mostly_app(reports):
    channels = Counter(r["channel"] for r in reports)
    assert set(channels) <= {"app", "portal", "hotline", "fanpage"}
    assert channels["app"] > len(reports) / 2
