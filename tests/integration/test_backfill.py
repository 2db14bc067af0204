"""``paht backfill``: a date range of reports taken in from the citizen app stand-in, once,
without moving the ingest cursor; on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from datetime import date

import pytest
from sqlalchemy import func, select

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.operations.backfill import PageDone, backfill
from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import CursorRow, QuarantineRow, ReportRow
from paht_bridge.steps import StepContext
from paht_bridge.ledger.store import get_cursor, set_cursor
from paht_bridge.config.deployment import Deployment, deployment
from paht_bridge.sandbox.citizen_app import load_seed_reports
from paht_bridge.sandbox.stack import SandboxStack

STREAM = "quangtri_ioc:reports"
START, END = date(2026, 10, 6), date(2026, 10, 10)


def context(url: str) -> StepContext:
    """Quảng Trị with small pages, so a backfill walks several of them."""
    data = deployment("quang_tri").model_dump(mode="json")
    data["sources"][0]["page_size"] = 5
    mapping = Deployment.model_validate(data)
    return StepContext(mapping=mapping, sessions=sessions(url), connectors=AirflowConnectors(mapping), run_id="test-backfill")


def test_backfill_takes_in_only_the_range_once_and_leaves_the_cursor_alone(stack: SandboxStack, ledger_url: str) -> None:
    seeds = load_seed_reports("quangtri_ioc")
    for report in seeds:
        stack.citizen_states["quangtri_ioc"].add_report(report)
    # Created 06:23 on 6 October in Vietnam, still 5 October in UTC: in the range.
    in_range = {r["id"] for r in seeds if START.isoformat() <= r["created_at"][:10] <= END.isoformat()}
    assert len(in_range) == 4 and "2026-10-06T06:23:11+07:00" in {r["created_at"] for r in seeds if r["id"] in in_range}
    bad = copy.deepcopy(seeds[0]) | {"id": "QT-2026-BAD001", "created_at": "2026-10-08T09:00:00+07:00"}
    del bad["title"]
    stack.citizen_states["quangtri_ioc"].add_report(bad, verbatim=True)
    with sessions(ledger_url).begin() as session:
        set_cursor(session, STREAM, "cursor-the-ingest-left")

    pages: list[PageDone] = []
    first = backfill(context(ledger_url), START, END, progress=pages.append)

    assert first.counts.get("received", 0) + first.counts.get("needs_review", 0) == 4, first.counts
    assert (first.counts["outside_range"], first.counts["quarantined"]) == (len(seeds) - 4, 1), first.counts
    assert len(pages) == 8 and sum(p.reports + p.quarantined for p in pages) == len(seeds) + 1  # 36 items, 5 a page
    with sessions(ledger_url)() as session:
        assert set(session.scalars(select(ReportRow.source_id))) == in_range
        assert session.scalar(select(QuarantineRow.source_id)) == "QT-2026-BAD001"
        assert get_cursor(session, STREAM) == "cursor-the-ingest-left"
        assert session.scalar(select(func.count()).select_from(CursorRow)) == 1

    again = backfill(context(ledger_url), START, END)

    assert again.counts == {"repeated": 4, "already_quarantined": 1, "outside_range": len(seeds) - 4}
    with sessions(ledger_url)() as session:
        assert session.scalar(select(func.count()).select_from(ReportRow)) == 4
        assert session.scalar(select(func.count()).select_from(QuarantineRow)) == 1
        assert get_cursor(session, STREAM) == "cursor-the-ingest-left"


def test_a_range_that_ends_before_it_starts_is_refused(ledger_url: str) -> None:
    with pytest.raises(ValueError, match="before it starts"):
        backfill(StepContext(mapping=deployment("quang_tri"), sessions=sessions(ledger_url), connectors=None), END, START)  # type: ignore[arg-type]
