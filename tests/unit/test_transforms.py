"""The pure transforms: routing by category × place, document building, status mapping."""

from __future__ import annotations

import unicodedata
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from paht_bridge.normalise.admin_units import resolve_units
from paht_bridge.canonical import (
    VIETNAM_TZ,
    AdminUnit,
    CanonicalStatus,
    Location,
    RawStatusChange,
    Report,
    Reporter,
)
from paht_bridge.config.deployment import Deployment, deployment
from paht_bridge.normalise.transforms import (
    MappingProblem,
    UnknownStatus,
    build_document,
    external_ref,
    map_status,
    reroute,
    route,
)

QUANG_TRI = deployment("quang_tri")
DIEN_BIEN = deployment("dien_bien")
CREATED = datetime(2026, 11, 2, 8, 30, tzinfo=VIETNAM_TZ)


def report(category: str = "DT", unit: AdminUnit | None = None, source: str = "quangtri_ioc", **extra: object) -> Report:
    unit = unit or AdminUnit(scheme="2025", province="Tỉnh Quảng Trị", ward="Phường Đồng Hới")
    return Report(
        source=source, source_id="QT-2026-000042", category=category, title="Đèn chiếu sáng hỏng",
        description="Cả dãy đèn đường trên phố Trần Hưng Đạo tắt từ ba hôm nay.",
        created_at=CREATED, updated_at=CREATED,
        location=Location(lat=17.47, lon=106.62, address="Trần Hưng Đạo, phường Đồng Hới", unit=unit),
        reporter=Reporter(name="Nguyễn Văn An", phone="0912345678"), **extra,
    )


def test_a_ward_specific_rule_wins_over_the_province_wide_one() -> None:
    r = report("DT")
    routing = route(r, resolve_units(r.location.unit), QUANG_TRI)
    assert routing.agency_name == "UBND phường Đồng Hới"
    assert routing.agency_code == "000.20.44.H45"
    assert routing.target == "qoffice_quangtri"
    assert routing.deadline == CREATED + timedelta(days=7)


def test_a_category_without_a_ward_rule_goes_to_the_province_department() -> None:
    r = report("XD")
    assert route(r, resolve_units(r.location.unit), QUANG_TRI).agency_name == "Sở Xây dựng tỉnh Quảng Trị"


def test_a_legacy_quang_binh_address_routes_in_quang_tri_after_the_merger() -> None:
    unit = AdminUnit(scheme="legacy", province="tỉnh Quảng Bình", district="huyện Quảng Trạch", ward="xã Cảnh Dương")
    units = resolve_units(unit)
    assert units.legacy is not None and units.legacy.province_code == "44"  # legacy 44 = Quảng Bình
    assert units.current is not None and units.current.province == "Tỉnh Quảng Trị"
    assert units.current.province_code == "44"  # 2025 44 = Quảng Trị: same code, other meaning
    routing = route(report("GT", unit), units, QUANG_TRI)
    assert routing.agency_name == "Sở Xây dựng tỉnh Quảng Trị"


def test_legacy_muong_thanh_ward_resolves_to_the_2025_dien_bien_phu_ward() -> None:
    units = resolve_units(AdminUnit(scheme="legacy", province="tỉnh Điện Biên", district="thành phố Điện Biên Phủ", ward="phường Mường Thanh"))
    assert units.current is not None
    assert (units.current.ward, units.current.ward_code) == ("Phường Điện Biên Phủ", "03127")
    assert units.legacy is not None and units.legacy.district == "Thành phố Điện Biên Phủ"


def test_an_unknown_ward_is_a_problem_with_a_reason_not_a_guess() -> None:
    units = resolve_units(AdminUnit(scheme="2025", province="Tỉnh Quảng Trị", ward="Phường Không Có Thật"))
    assert units.current is None
    assert "Không Có Thật" in (units.problem or "")
    with pytest.raises(MappingProblem, match="place not resolved"):
        route(report("GT", AdminUnit(scheme="2025", province="Tỉnh Quảng Trị", ward="Phường Không Có Thật")), units, QUANG_TRI)


def test_a_report_from_another_province_is_not_routed() -> None:
    unit = AdminUnit(scheme="2025", province="Tỉnh Điện Biên", ward="Phường Điện Biên Phủ")
    with pytest.raises(MappingProblem, match="outside quang_tri"):
        route(report("GT", unit), resolve_units(unit), QUANG_TRI)


def test_an_unknown_category_is_a_mapping_problem() -> None:
    r = report("ZZ")
    with pytest.raises(MappingProblem, match="category 'ZZ'"):
        route(r, resolve_units(r.location.unit), QUANG_TRI)


def test_the_document_carries_no_reporter_identity_unless_the_mapping_allows_it() -> None:
    r = report("XD")
    routing = route(r, resolve_units(r.location.unit), QUANG_TRI)
    record = build_document(r, routing, QUANG_TRI)
    assert record.reporter.name is None and record.reporter.phone is None
    assert "0912345678" not in record.model_dump_json()
    open_mapping = QUANG_TRI.model_copy(update={"privacy": QUANG_TRI.privacy.model_copy(update={"send_reporter_phone": True})})
    record = build_document(r, routing, open_mapping)
    assert record.reporter.phone is not None and record.reporter.phone.get_secret_value() == "0912345678"
    assert record.reporter.name is None


def test_the_document_subject_and_content_follow_the_templates() -> None:
    r = report("XD")
    record = build_document(r, route(r, resolve_units(r.location.unit), QUANG_TRI), QUANG_TRI)
    assert record.subject == "[PAHT QT-2026-000042] Đèn chiếu sáng hỏng"
    assert "Trần Hưng Đạo" in record.content and "08:30 12/11/2026" in record.content  # the 10-day deadline, day first
    assert record.sender_code == QUANG_TRI.ioc.code
    assert record.due_date == (CREATED + timedelta(days=10)).date()


def test_every_field_a_document_template_may_use_is_filled() -> None:
    from paht_bridge.config.deployment import DOCUMENT_FIELDS, Templates

    every = " ".join(f"<{{{name}}}>" for name in sorted(DOCUMENT_FIELDS))
    mapping = QUANG_TRI.model_copy(update={"templates": Templates(subject=every, content=every)})
    r = report("XD")
    record = build_document(r, route(r, resolve_units(r.location.unit), mapping), mapping)
    assert record.content.count("<>") == 0 and record.content.count("<") == len(DOCUMENT_FIELDS)


def test_the_external_reference_is_deterministic_and_reroutes_get_their_own() -> None:
    r = report()
    assert external_ref(r) == external_ref(r.model_copy()) == "PAHT-quangtri_ioc-QT-2026-000042"
    assert external_ref(r, attempt=2) == "PAHT-quangtri_ioc-QT-2026-000042-R1"
    rerouted = reroute(r, QUANG_TRI, rerouted_at=CREATED + timedelta(days=3))
    assert rerouted.agency_code == QUANG_TRI.routing.on_refusal.code
    assert rerouted.deadline == CREATED + timedelta(days=3 + 7)  # the new agency's own deadline


def test_edxml_and_tdoffice_status_codes_map_to_canonical_statuses() -> None:
    raw = RawStatusChange(external_ref="PAHT-x-1", document_id="D1", raw_code="06", changed_at=CREATED, answer="Đã xử lý")
    assert map_status(raw, "qoffice_quangtri", QUANG_TRI).status is CanonicalStatus.ANSWERED
    raw = raw.model_copy(update={"raw_code": "TRA_LAI"})
    assert map_status(raw, "tdoffice_dienbien", DIEN_BIEN).status is CanonicalStatus.REFUSED_BY_AGENCY


def test_an_unknown_status_code_is_reported_never_guessed() -> None:
    raw = RawStatusChange(external_ref="PAHT-x-1", document_id="D1", raw_code="99", changed_at=CREATED)
    with pytest.raises(UnknownStatus, match="'99'"):
        map_status(raw, "qoffice_quangtri", QUANG_TRI)


def test_decomposed_vietnamese_text_is_stored_precomposed() -> None:
    decomposed = unicodedata.normalize("NFD", "Rác thải ùn ứ")
    assert decomposed != "Rác thải ùn ứ"
    r = Report.model_validate({**report().model_dump(), "title": decomposed, "reporter": {}})
    assert r.title == "Rác thải ùn ứ"


def test_personal_data_does_not_show_in_a_report_repr() -> None:
    r = report()
    assert "0912345678" not in repr(r) and "Nguyễn Văn An" not in str(r)


def test_a_mapping_that_routes_to_an_unknown_target_is_rejected_with_the_path() -> None:
    data = QUANG_TRI.model_dump(mode="json")
    data["routing"]["rules"][0]["target"] = "nowhere"
    with pytest.raises(ValidationError, match=r"routing.rules\[0\].target 'nowhere' is not a target"):
        Deployment.model_validate(data)


def test_an_organisation_code_outside_decision_20_2020_is_rejected() -> None:
    data = QUANG_TRI.model_dump(mode="json")
    data["ioc"]["code"] = "h45-ioc"
    with pytest.raises(ValidationError, match="not an organisation code"):
        Deployment.model_validate(data)
