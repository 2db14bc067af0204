"""Matching duplicate reports (phản ánh trùng): place, time, category and text, on plain values."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from paht_bridge.ledger.duplicates import Sighting, best_match, compare, distance_m, text_similarity, window, words
from paht_bridge.canonical import VIETNAM_TZ
from paht_bridge.config.deployment import Deployment, Duplicates, deployment

ON = Duplicates(enabled=True)
T0 = datetime(2026, 11, 16, 11, 49, tzinfo=VIETNAM_TZ)

FIRST = Sighting(
    report_id=1, category="GT", created_at=T0, lat=16.824032, lon=107.118908, ward_code="19360",
    title="Ổ gà lớn trước cổng trường",
    description="Trước cổng trường tiểu học có ổ gà rất lớn, học sinh đi xe đạp dễ bị ngã. Đề nghị sửa chữa sớm.",
)


def again(**changes: object) -> Sighting:
    """Another citizen reporting the same pothole an hour later from 40 m away, in their own words."""
    base = FIRST.model_copy(update={
        "report_id": 2, "created_at": T0 + timedelta(hours=1), "lat": 16.824300, "lon": 107.119100,
        "title": "Ổ gà trước cổng trường tiểu học",
        "description": "Đường trước cổng trường tiểu học có ổ gà lớn, học sinh đi xe đạp rất dễ ngã.",
    })
    return base.model_copy(update=changes)


def test_the_same_pothole_reported_nearby_soon_after_is_a_duplicate() -> None:
    match = compare(again(), FIRST, ON)
    assert match is not None and match.primary_id == 1 and match.by == "position"
    assert 20 < match.distance_m < 60
    assert match.hours_apart == 1.0
    assert match.text_similarity >= ON.min_text_similarity


def test_a_similar_report_far_away_is_not_a_duplicate() -> None:
    far = again(lat=16.8420, lon=107.1189)  # about 2 km north: another school's gate
    assert compare(far, FIRST, ON) is None
    assert compare(far, FIRST, ON.model_copy(update={"max_distance_m": 2500})) is not None


def test_the_time_window_holds_in_both_directions() -> None:
    assert compare(again(created_at=T0 + timedelta(hours=71)), FIRST, ON) is not None
    assert compare(again(created_at=T0 + timedelta(hours=73)), FIRST, ON) is None
    # A report from a slower app may arrive after a later one: an earlier report can still link.
    assert compare(again(created_at=T0 - timedelta(hours=5)), FIRST, ON) is not None
    start, end = window(T0, ON)
    assert (end - start) == timedelta(hours=144)


def test_different_text_at_the_same_place_is_not_a_duplicate() -> None:
    sign = again(title="Biển báo giao thông bị đổ", description="Biển báo tại ngã tư bị đổ nghiêng từ hôm qua, đề nghị dựng lại.")
    assert text_similarity(sign, FIRST) < 0.2
    assert compare(sign, FIRST, ON) is None


def test_text_without_accents_or_in_capitals_reads_the_same() -> None:
    plain = again(title="O GA LON TRUOC CONG TRUONG", description="truoc cong truong tieu hoc co o ga rat lon, hoc sinh di xe dap de bi nga")
    assert words(plain.title) == words(FIRST.title)
    assert compare(plain, FIRST, ON) is not None


def test_petition_formulas_do_not_make_two_reports_alike() -> None:
    # Only syllables whose other accented forms tell something stay ("quán" a shop, "nặng" heavy).
    assert words("Kính đề nghị cơ quan chức năng sớm xử lý, giải quyết dứt điểm tình trạng này") == {"quan", "nang", "dut", "diem"}
    a = again(title="Rác thải ùn ứ", description="Đề nghị cơ quan chức năng xử lý.")
    b = again(title="Đèn đường không sáng", description="Đề nghị cơ quan chức năng xử lý.")
    assert text_similarity(a, b) < 0.5


def test_another_category_is_not_a_duplicate_unless_the_deployment_says_so() -> None:
    drainage = again(category="DT")
    assert compare(drainage, FIRST, ON) is None
    assert compare(drainage, FIRST, ON.model_copy(update={"same_category": False})) is not None


def test_without_a_position_the_same_ward_counts_as_near() -> None:
    no_position = again(lat=None, lon=None)
    match = compare(no_position, FIRST, ON)
    assert match is not None and match.by == "ward" and match.distance_m is None
    assert compare(no_position.model_copy(update={"ward_code": "19363"}), FIRST, ON) is None
    assert compare(no_position, FIRST, ON.model_copy(update={"same_ward_when_no_position": False})) is None
    assert compare(no_position.model_copy(update={"ward_code": None}), FIRST.model_copy(update={"ward_code": None}), ON) is None


def test_the_most_similar_candidate_wins_and_a_report_never_matches_itself() -> None:
    other = FIRST.model_copy(update={"report_id": 3, "title": "Ổ gà", "description": "Có ổ gà gần trường."})
    assert best_match(again(), [other, FIRST], ON).primary_id == 1
    assert best_match(FIRST, [FIRST], ON) is None
    assert best_match(again(), [FIRST.model_copy(update={"report_id": None})], ON) is None
    assert best_match(again(), [], ON) is None


def test_haversine_distance() -> None:
    assert distance_m(16.0, 107.0, 16.0, 107.0) == 0
    assert distance_m(16.0, 107.0, 17.0, 107.0) == pytest.approx(111_195, rel=1e-3)  # one degree of latitude


def test_duplicates_are_off_by_default_and_strictly_configured() -> None:
    assert deployment("quang_tri").duplicates.enabled is False
    with pytest.raises(ValidationError):
        Duplicates(min_text_similarity=1.5)
    with pytest.raises(ValidationError):
        Duplicates(max_km=1)  # type: ignore[call-arg]
    data = deployment("dien_bien").model_dump(mode="json")
    data["duplicates"] = {"enabled": True, "max_distance_m": 80, "max_hours": 24}
    turned_on = Deployment.model_validate(data).duplicates
    assert turned_on.enabled and turned_on.max_distance_m == 80 and turned_on.min_text_similarity == 0.5
