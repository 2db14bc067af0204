"""``paht validate``: every problem in a mapping file, with the file and the line to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paht_bridge.cli import main
from paht_bridge.config.folders import shipped_mappings
from paht_bridge.config.validate import Problem, deployment_files, validate_file

QUANG_TRI = (shipped_mappings() / "quang_tri.yaml").read_text(encoding="utf-8")


def broken_copy(tmp_path: Path, old: str, new: str) -> tuple[Path, int]:
    """quang_tri.yaml with ``old`` replaced by ``new``; returns the file and the (1-based) line of ``new``."""
    assert QUANG_TRI.count(old) == 1, old
    text = QUANG_TRI.replace(old, new)
    path = tmp_path / "quang_tri.yaml"
    path.write_text(text, encoding="utf-8")
    return path, text[: text.index(new)].count("\n") + 1


def test_the_shipped_mappings_validate_clean() -> None:
    files = deployment_files()
    assert {f.name for f in files} >= {"quang_tri.yaml", "dien_bien.yaml"}
    for path in files:
        assert validate_file(path) == [], path


def test_an_unknown_target_in_a_routing_rule_is_reported_on_its_line(tmp_path: Path) -> None:
    old = "      agency: {code: 000.07.44.H45, name: Sở Nội vụ tỉnh Quảng Trị}\n"
    path, line = broken_copy(tmp_path, old, old + "      target: qoffice_nowhere\n")
    assert validate_file(path) == [
        Problem(file=str(path), line=line + 1, path="routing.rules[8].target", message="'qoffice_nowhere' is not a target"),
    ]


def test_a_bad_organisation_code_is_reported_on_its_line(tmp_path: Path) -> None:
    path, line = broken_copy(tmp_path, "{code: 000.05.44.H45, name: Công an tỉnh Quảng Trị}",
                             "{code: 000.05.44.h45, name: Công an tỉnh Quảng Trị}")
    [problem] = validate_file(path)
    assert (problem.line, problem.path) == (line, "routing.rules[6].agency.code")
    assert "'000.05.44.h45' is not an organisation code" in problem.message


#: Quảng Trị's target with its own statuses table (replacing its preset's whole), one of them wrong.
OWN_STATUSES = ("    max_tries: 8\n", '    max_tries: 8\n    statuses: {"01": delivered, "06": finished}\n')


def test_a_status_mapped_to_no_canonical_status_is_reported_on_its_line(tmp_path: Path) -> None:
    path, line = broken_copy(tmp_path, *OWN_STATUSES)
    line += 1  # the statuses line, after max_tries
    [problem] = validate_file(path)
    assert (problem.line, problem.path) == (line, "targets[0].statuses.06")
    assert "'answered'" in problem.message  # the message lists the statuses there are


def test_a_yaml_syntax_error_is_reported_with_the_line_yaml_gives(tmp_path: Path) -> None:
    path, line = broken_copy(tmp_path, "target_category: XAY_DUNG,", "target_category: [XAY_DUNG,")
    [problem] = validate_file(path)
    assert (problem.line, problem.path) == (line, "yaml")
    assert "flow sequence" in problem.message


def test_every_field_problem_in_a_file_is_reported_each_on_its_own_line(tmp_path: Path) -> None:
    text = QUANG_TRI.replace("deadline_days: 3,", "deadline_days: 0,").replace("    max_tries: 8\n", "    max_tries: 8\n    colour: red\n")
    path = tmp_path / "two.yaml"
    path.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    assert [(p.line, p.path) for p in validate_file(path)] == [
        (lines.index("    colour: red") + 1, "targets[0].colour"),
        (next(i for i, t in enumerate(lines) if "deadline_days: 0," in t) + 1, "categories.AN.deadline_days"),
    ]


def test_a_category_without_a_province_wide_rule_points_at_the_category(tmp_path: Path) -> None:
    rule = "    - category: CB\n      agency: {code: 000.07.44.H45, name: Sở Nội vụ tỉnh Quảng Trị}\n"
    path = tmp_path / "no_rule.yaml"
    path.write_text(QUANG_TRI.replace(rule, ""), encoding="utf-8")
    line = next(i for i, text in enumerate(QUANG_TRI.splitlines()) if text.startswith("  CB:")) + 1  # before the rules: unmoved
    assert [(p.line, p.path, p.message) for p in validate_file(path)] == [
        (line, "categories.CB", "category 'CB' has no province-wide routing rule"),
    ]


def test_the_command_prints_file_line_field_message_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, line = broken_copy(tmp_path, *OWN_STATUSES)
    line += 1
    assert main(["validate", str(path), str(shipped_mappings() / "dien_bien.yaml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:{line}: targets[0].statuses.06: Input should be")
    assert out[1] == f"{shipped_mappings() / 'dien_bien.yaml'}: ok"
    assert main(["validate"]) == 0


def test_the_json_schema_for_editors_is_written(tmp_path: Path) -> None:
    out = tmp_path / "deployment.schema.json"
    assert main(["validate", "--schema", str(out)]) == 0
    schema = json.loads(out.read_text(encoding="utf-8"))
    assert {"deployment", "sources", "targets", "routing"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_a_misspelt_document_template_field_is_a_problem_on_its_line(tmp_path: Path) -> None:
    path, line = broken_copy(tmp_path, 'subject: "[PAHT {source_id}] {title}"', 'subject: "[PAHT {source_id}] {titel}"')
    problems = validate_file(path)
    assert [(p.line, p.path) for p in problems] == [(line, "templates.subject")]
    assert "unknown field(s) 'titel'" in problems[0].message

