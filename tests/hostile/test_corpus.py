"""The hostile corpus through the real paths: nothing crashes, nothing expands, nothing is lost.

Each section of ``runner`` is one test; the last test gathers them all, writes
``results.json`` and ``RESULTS.md`` beside this file and asserts the numbers issue 6 asks for.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from paht_bridge.connectors.citizen_app import CitizenAppClient
from paht_bridge.ledger.db import decrypt, sessions
from paht_bridge.ledger.models import EventRow, QuarantineRow, ReportRow
from tests.hostile.cases import ReportCase, all_cases, good_item
from tests.hostile.runner import API_KEY, SECTIONS, SOURCE, Outcome, citizen_stand_in, fresh_ledger, run_ingest, run_section, summarise

HERE = Path(__file__).parent
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "RESULTS.md"
MIN_CASES = 300

_CASES: list[ReportCase] = []
_RUN: dict[str, list[Outcome]] = {}


def outcomes(section: str) -> list[Outcome]:
    """A section's outcomes, run once per session."""
    if not _CASES:
        _CASES.extend(all_cases())
    if section not in _RUN:
        _RUN[section] = run_section(section, _CASES)
    return _RUN[section]


@pytest.mark.parametrize("section", SECTIONS)
def test_every_hostile_case_ends_as_expected(section: str) -> None:
    results = outcomes(section)
    assert results, f"section {section} ran no case"
    crashes = [f"{o.case}: {o.got} {o.detail}" for o in results if o.crash]
    assert not crashes, "untyped exceptions escaped:\n" + "\n".join(crashes)
    expansions = [o.case for o in results if o.expansion]
    assert not expansions, f"entities expanded: {expansions}"
    lost = [o.case for o in results if o.lost]
    assert not lost, f"reports lost: {lost}"
    wrong = [f"{o.case}: expected {o.expected}, got {o.got}: {o.detail}" for o in results if not o.ok]
    assert not wrong, "\n".join(wrong)


def test_a_quarantined_report_keeps_its_reason_event_and_encrypted_payload_and_its_batch_goes_on(tmp_path: Path) -> None:
    """What the IOC sees of a bad report today: the quarantine row and the ``quarantined`` event."""
    bad = good_item("QT-2026-HX0001")
    bad["location"] = {**bad["location"], "lat": 48.8566, "lng": 2.3522}
    bad["description"] = "Gọi tôi: 0987 654 321. <script>alert(1)</script>"
    url = fresh_ledger(tmp_path)
    with citizen_stand_in() as (base, _state):
        control = requests.Session()
        control.post(f"{base}/_sandbox/reports", params={"verbatim": "true"}, json=good_item("QT-2026-HX0000"), timeout=10).raise_for_status()
        control.post(f"{base}/_sandbox/reports", params={"verbatim": "true"}, json=bad, timeout=10).raise_for_status()
        control.post(f"{base}/_sandbox/reports", params={"verbatim": "true"}, json=good_item("QT-2026-HX0002"), timeout=10).raise_for_status()
        assert run_ingest(url, CitizenAppClient(SOURCE, base, api_key=API_KEY), "run-hx") is None

    with sessions(url)() as session:
        (row,) = session.scalars(select(QuarantineRow)).all()
        (event,) = session.scalars(select(EventRow).where(EventRow.kind == "quarantined")).all()
        arrived = set(session.scalars(select(ReportRow.source_id)))
    assert arrived == {"QT-2026-HX0000", "QT-2026-HX0002"}
    assert row.source_id == "QT-2026-HX0001" and row.source == SOURCE and row.run_id == "run-hx"
    assert row.reason == "location: lat 48.8566, lng 2.3522 is outside Vietnam (lat 8.0–23.5, lng 102.0–110.0)"
    assert "0987 654 321" not in row.raw and "0912345678" not in row.raw and "Nguyễn Văn Bình" not in row.raw
    assert json.loads(decrypt(row.raw_enc)) == bad  # the payload as received, for a replay after a fix
    assert event.report_id is None and event.run_id == "run-hx"
    assert event.detail["source_id"] == "QT-2026-HX0001" and event.detail["reason"] == row.reason


def test_a_replayed_payload_parses_again_once_the_limit_allows_it(tmp_path: Path) -> None:
    """Replay after a fix: the stored payload, through the same parser, with a raised limit."""
    from paht_bridge.connectors.limits import ConnectorLimits

    long_title = copy.deepcopy(good_item("QT-2026-HX0003"))
    long_title["title"] = "Đường hỏng nặng " * 40  # 640 characters: over the default 500
    strict = CitizenAppClient(SOURCE, "http://unused.test")
    (_, [quarantined]) = strict.parse_reports([long_title])
    assert quarantined.reason.startswith("title: ") and quarantined.payload is not None
    relaxed = CitizenAppClient(SOURCE, "http://unused.test", limits=ConnectorLimits(max_title_chars=1000))
    reports, again = relaxed.parse_reports([json.loads(quarantined.payload.get_secret_value())])
    assert again == [] and reports[0].source_id == "QT-2026-HX0003"


def test_the_results_file_records_no_crash_no_expansion_and_no_loss() -> None:
    every = [o for section in SECTIONS for o in outcomes(section)]
    summary = summarise(every)
    summary["not_as_expected_cases"] = [f"{o.section}/{o.case}: expected {o.expected}, got {o.got}" for o in every if not o.ok]
    RESULTS_JSON.write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    RESULTS_MD.write_text(_markdown(summary, every), encoding="utf-8")

    assert summary["cases_tried"] >= MIN_CASES
    assert summary["batch_crashes"] == 0
    assert summary["entity_expansions"] == 0
    assert summary["reports_lost"] == 0
    assert summary["not_as_expected"] == 0
    assert summary["quarantined_with_reason"] == summary["quarantined_total"] > 0


EXAMPLES = (
    "009-null-island", "024-tcvn3-title", "026-utf8-as-cp1252-address", "032-nul-in-title", "035-title-too-long",
    "039-attachment-exe", "041-attachment-huge", "ids/dot-dot", "non_object/string",
    "generated/laughs-10x10:find_by_ref", "xxe-file.xml:create_document", "fault-without-code.xml:create_document",
    "html-as-jpeg", "windows-exe-as-jpeg", "declares-10-gb:soap:find_by_ref", "proxy-502.html",
)


def _markdown(summary: dict, every: list[Outcome]) -> str:
    by_case = {o.case: o for o in every}
    lines = [
        "# Hostile input corpus: results",
        "",
        "Written by `tests/hostile/test_corpus.py` (issue 6); `results.json` holds the same numbers.",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {key.replace('_', ' ')} | {summary[key]} |" for key in (
            "cases_tried", "good_reports_mixed_in", "quarantined_total", "quarantined_with_reason", "tolerated_and_kept",
            "typed_errors", "batch_crashes", "entity_expansions", "reports_lost", "not_as_expected")),
        "",
        "| section | cases | as expected |",
        "|---|---|---|",
        *(f"| {name} | {row['cases']} | {row['as_expected']} |" for name, row in summary["by_section"].items()),
        "",
        "Some of the reasons and errors recorded:",
        "",
        *(f"- `{name}` → {by_case[name].got}: {by_case[name].detail}" for name in EXAMPLES if name in by_case),
        "",
    ]
    return "\n".join(lines)
