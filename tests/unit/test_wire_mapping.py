"""Wire mappings: requests built from value specs, and broken mappings caught with file and line."""

from __future__ import annotations

from datetime import date

import pytest
from lxml import etree

from paht_bridge.connectors.answers import JsonAnswer, XmlAnswer
from paht_bridge.config.folders import shipped_mappings
from paht_bridge.config.validate import validate_text
from paht_bridge.config.wire import (
    Each,
    Lookup,
    MissingCode,
    Raw,
    build,
    template_fields,
)

MAPPINGS = shipped_mappings()


def with_own_rest_section() -> str:
    """dien_bien.yaml with the ``tdoffice_rest`` preset's ``rest:`` section written in the
    target itself (a deployment's own section replaces the preset's whole)."""
    preset = (MAPPINGS / "presets" / "tdoffice_rest.yaml").read_text(encoding="utf-8")
    section = preset[preset.index("rest:\n"):preset.index("statuses:")]
    own = "".join(f"    {line}\n" if line.strip() else "\n" for line in section.splitlines())
    text = (MAPPINGS / "dien_bien.yaml").read_text(encoding="utf-8")
    return text.replace("    max_tries: 8\n", "    max_tries: 8\n" + own, 1)


def test_dotted_keys_nest_and_empty_values_are_left_out() -> None:
    request = build(
        {"VanBan.TrichYeu": "{subject}", "VanBan.HanXuLy": "{due_date:%d/%m/%Y}", "VanBan.ViTri.DiaChi": "{address}",
         "VanBan.DoKhan": Lookup(lookup="priority", table={"0": "THUONG", "1": "KHAN"}), "Loai": "Phiếu chuyển"},
        {"subject": "Ổ gà", "due_date": date(2026, 11, 27), "address": None, "priority": 1},
    )
    assert request == {"VanBan": {"TrichYeu": "Ổ gà", "HanXuLy": "27/11/2026", "DoKhan": "KHAN"}, "Loai": "Phiếu chuyển"}


def test_each_builds_one_entry_per_attachment_and_raw_keeps_bytes() -> None:
    spec = {"Tep": Each(each="attachments", item={"Ten": "att-{index:02d} {name}", "Du": Raw(value="data")})}
    assert build(spec, {"attachments": [{"index": 1, "name": "a.jpg", "data": b"\xff\xd8"}]}) == {"Tep": [{"Ten": "att-01 a.jpg", "Du": b"\xff\xd8"}]}
    assert build(spec, {"attachments": []}) == {"Tep": []}


def test_a_value_missing_from_a_table_is_named() -> None:
    with pytest.raises(MissingCode, match="priority='4'"):
        build({"DoKhan": Lookup(lookup="priority", table={"0": "THUONG"})}, {"priority": 4})


@pytest.mark.parametrize("template", ["{record.subject}", "{0}", "{subject[0]}", "{subject!r}"])
def test_templates_only_name_plain_fields(template: str) -> None:
    with pytest.raises(ValueError):
        template_fields(template)


def test_answers_are_read_by_local_name_and_json_path() -> None:
    xml = etree.fromstring(b'<r:Resp xmlns:r="urn:a" xmlns:k="urn:b"><k:KetQua><k:MaVanBan>VB-1</k:MaVanBan></k:KetQua>'
                           b'<k:BienDong><k:Ma>1</k:Ma></k:BienDong><k:BienDong><k:Ma>2</k:Ma></k:BienDong></r:Resp>')
    answer = XmlAnswer(xml)
    assert answer.get("KetQua.MaVanBan") == "VB-1" and answer.get("KetQua.Nope") is None
    assert [item.get("Ma") for item in answer.all("BienDong")] == ["1", "2"]
    data = JsonAnswer({"items": [{"id": "x", "don_vi": {"ten": "Sở"}}]})
    assert data.get("items.0.don_vi.ten") == "Sở" and [i.get("id") for i in data.all("items")] == ["x"]


def _broken(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def test_validate_points_at_the_line_of_a_misspelt_field_in_a_configured_back_end() -> None:
    text = with_own_rest_section()
    assert validate_text(text, str(MAPPINGS / "dien_bien.yaml")) == []
    broken = _broken(text, 'trich_yeu: "{subject}"', 'trich_yeu: "{subjct}"')
    problems = validate_text(broken, str(MAPPINGS / "dien_bien.yaml"))
    line = next(n for n, row in enumerate(broken.splitlines(), start=1) if "{subjct}" in row)
    assert [(p.file, p.line, p.path) for p in problems] == [(str(MAPPINGS / "dien_bien.yaml"), line, "targets[0].rest.operations.create.request.trich_yeu")]
    assert "unknown field 'subjct'" in problems[0].message


def test_validate_names_a_missing_answer_path_and_a_section_of_the_wrong_kind() -> None:
    text = (MAPPINGS / "quang_ninh.yaml").read_text(encoding="utf-8")
    broken = _broken(text, "response: {document_id: KetQua.MaVanBan, already_exists: KetQua.DaTonTai}", "response: {already_exists: KetQua.DaTonTai}")
    problems = validate_text(broken, "quang_ninh.yaml")
    assert [p.path for p in problems] == ["targets[0].soap.operations.create.response"]
    assert problems[0].message == "missing document_id"
    wrong_kind = _broken(text, "    kind: soap\n", "    kind: rest\n")
    assert "a 'soap' section only belongs to a target of kind 'soap' (this one is 'rest')" in " ".join(p.message for p in validate_text(wrong_kind, "quang_ninh.yaml"))


def test_every_edxml_processing_status_is_mapped_and_an_unassigned_code_is_reported_not_guessed() -> None:
    """QCVN 102:2016 defines 01–06, 13, 15 and 16 (07–12 and 14 are unassigned in every public
    implementation found): each has a meaning in the mapping; anything else raises."""
    from datetime import datetime

    from paht_bridge.canonical import VIETNAM_TZ, RawStatusChange
    from paht_bridge.config.deployment import deployment
    from paht_bridge.normalise.transforms import UnknownStatus, map_status

    mapping = deployment("quang_tri")
    assert set(mapping.target("qoffice_quangtri").statuses) == {"01", "02", "03", "04", "05", "06", "13", "15", "16"}
    raw = RawStatusChange(external_ref="PAHT-x", document_id="D1", raw_code="07", changed_at=datetime(2026, 11, 1, tzinfo=VIETNAM_TZ))
    with pytest.raises(UnknownStatus, match="07"):
        map_status(raw, "qoffice_quangtri", mapping)
    assert map_status(raw.model_copy(update={"raw_code": "06"}), "qoffice_quangtri", mapping).status == "answered"
