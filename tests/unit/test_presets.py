"""Presets: a target names a known kind of document system and takes its keys, its own over them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from paht_bridge.config.deployment import Deployment, Target, load_deployment
from paht_bridge.config.folders import presets_folder, shipped_mappings
from paht_bridge.config.presets import available_presets
from paht_bridge.config.validate import json_schema, validate_file

SHIPPED = shipped_mappings()


def province(tmp_path: Path, name: str = "quang_tri", target_lines: str = "") -> Path:
    """A copy of a shipped deployment in its own folder, with ``target_lines`` added to its target."""
    text = (SHIPPED / f"{name}.yaml").read_text(encoding="utf-8")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace("    max_tries: 8\n", "    max_tries: 8\n" + target_lines, 1), encoding="utf-8")
    return path


def test_every_shipped_preset_is_a_whole_target_once_named_and_connected() -> None:
    assert available_presets() == ["edxml_soap", "tdoffice_rest"]
    for name in available_presets():
        target = Target.model_validate({"name": "x", "connection_id": "c", "preset": name})
        assert target.kind in ("soap", "rest") and target.statuses


def test_a_target_takes_its_presets_keys_and_its_own_replace_them_whole(tmp_path: Path) -> None:
    plain = load_deployment(SHIPPED / "quang_tri.yaml").target("qoffice_quangtri")
    assert plain.kind == "soap" and plain.soap is not None and plain.soap.text_limit == 500 and len(plain.statuses) == 9
    assert plain.max_tries == 8  # the deployment's own key
    own = load_deployment(province(tmp_path, target_lines='    statuses: {"01": delivered, "06": answered}\n')).target("qoffice_quangtri")
    assert own.statuses == {"01": "delivered", "06": "answered"}  # not merged with the preset's nine
    assert own.soap == plain.soap


def test_a_preset_beside_the_deployment_wins_over_the_shipped_one_of_that_name(tmp_path: Path) -> None:
    (tmp_path / "presets").mkdir()
    variant = (presets_folder() / "edxml_soap.yaml").read_text(encoding="utf-8").replace("text_limit: 500", "text_limit: 300")
    (tmp_path / "presets" / "edxml_soap.yaml").write_text(variant, encoding="utf-8")
    mapping = load_deployment(province(tmp_path))
    assert mapping.target("qoffice_quangtri").soap.text_limit == 300
    # The variant's ../wsdl/ is read from its own folder: a province keeps its WSDL beside it.
    assert mapping.target("qoffice_quangtri").soap.wsdl == str(tmp_path / "wsdl" / "edxml_docsys.wsdl")
    # A preset not found beside the deployment comes from the shipped ones.
    assert load_deployment(province(tmp_path, "dien_bien")).target("tdoffice_dienbien").rest is not None


def test_a_relative_wsdl_is_read_from_the_folder_of_the_file_naming_it(tmp_path: Path) -> None:
    (tmp_path / "vendor").mkdir()
    shutil.copy(SHIPPED / "wsdl" / "ioffice_quangninh.wsdl", tmp_path / "vendor" / "ioffice.wsdl")
    text = (SHIPPED / "quang_ninh.yaml").read_text(encoding="utf-8").replace("wsdl: wsdl/ioffice_quangninh.wsdl", "wsdl: vendor/ioffice.wsdl")
    (tmp_path / "quang_ninh.yaml").write_text(text, encoding="utf-8")
    target = load_deployment(tmp_path / "quang_ninh.yaml").target("ioffice_quangninh")
    assert target.soap.wsdl == str(tmp_path / "vendor" / "ioffice.wsdl")  # not the shipped mappings/ folder
    shipped = load_deployment(SHIPPED / "quang_tri.yaml").target("qoffice_quangtri")
    assert Path(shipped.soap.wsdl) == SHIPPED / "wsdl" / "edxml_docsys.wsdl" and Path(shipped.soap.wsdl).is_file()


def test_an_unknown_preset_names_the_presets_there_are(tmp_path: Path) -> None:
    path = province(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("preset: edxml_soap", "preset: edxml"), encoding="utf-8")
    with pytest.raises(ValidationError, match=r"unknown preset 'edxml' \(available: edxml_soap, tdoffice_rest\)"):
        load_deployment(path)
    [problem] = validate_file(path)
    line = next(n for n, row in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if "preset: edxml" in row)
    assert (problem.file, problem.line, problem.path) == (str(path), line, "targets[0].preset")


def test_a_problem_in_a_preset_is_reported_in_the_preset_file_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "presets").mkdir()
    variant = (presets_folder() / "edxml_soap.yaml").read_text(encoding="utf-8").replace('"06": answered ', '"06": finished ')
    preset = tmp_path / "presets" / "edxml_soap.yaml"
    preset.write_text(variant, encoding="utf-8")
    path = province(tmp_path, target_lines="    colour: red\n")
    problems = validate_file(path)
    line = next(n for n, row in enumerate(variant.splitlines(), start=1) if '"06": finished' in row)
    assert [(p.file, p.line, p.path) for p in problems] == [
        (str(preset), line, "targets[0].statuses.06"),
        (str(path), next(n for n, row in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if "colour" in row), "targets[0].colour"),
    ]
    assert str(problems[0]).startswith(f"{preset}:{line}: targets[0].statuses.06: Input should be")


def test_a_preset_cannot_name_the_system_or_its_connection(tmp_path: Path) -> None:
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "edxml_soap.yaml").write_text("kind: soap\nconnection_id: paht_somewhere\n", encoding="utf-8")
    [problem] = validate_file(province(tmp_path))
    assert problem.path == "targets[0].preset" and "connection_id belong(s) in the deployment" in problem.message


def test_a_deployment_read_back_from_its_dump_is_the_same() -> None:
    mapping = load_deployment(SHIPPED / "dien_bien.yaml")
    assert Deployment.model_validate(mapping.model_dump(mode="json")) == mapping


def test_the_editors_schema_lets_a_preset_supply_kind_and_statuses() -> None:
    target = json_schema()["$defs"]["Target"]
    assert "preset" in target["properties"] and set(target["required"]) == {"name", "connection_id"}
