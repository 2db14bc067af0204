"""What the IOC page shows (figures, timeline, a report's detail, runs, what can be replayed) on a
ledger small enough to count by hand (tests/ioc_sample.py)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.figures import NO_LOCALITY, figures
from paht_bridge.ledger.models import ReportRow
from paht_bridge.ledger.replayable import dead_letters, quarantine
from paht_bridge.ledger.report_detail import report_detail, similar_report_ids
from paht_bridge.ledger.runs import recent_runs
from paht_bridge.ledger.timeline import timeline
from tests import ioc_sample as sample


@pytest.fixture
def ledger(ledger_url: str) -> str:
    sample.build(ledger_url)
    return ledger_url


def test_figures_per_agency_count_each_report_for_the_agency_holding_it_now(ledger: str) -> None:
    with sessions(ledger)() as session:
        tables = figures(session, now=sample.NOW)
    by_code = {a.agency_code: a for a in tables.agencies}
    assert [a.agency_code for a in tables.agencies] == [sample.SXD[0], sample.CA[0], "-"]  # waiting for review last
    sxd = by_code[sample.SXD[0]]  # QT-1, QT-2 and the re-routed QT-5
    assert (sxd.received, sxd.delivered, sxd.in_progress, sxd.answered, sxd.overdue, sxd.dead_lettered) == (3, 3, 1, 2, 1, 0)
    assert (sxd.rated, sxd.satisfied, sxd.satisfaction_rate) == (2, 1, 0.5)
    assert (sxd.published, sxd.needs_review) == (1, 0)  # QT-1's answer reached the citizen; QT-5's not yet
    assert sxd.median_days_to_answer == pytest.approx((4 + 1 / 24 + 5) / 2, abs=0.01)  # 4 d 1 h and 5 d
    ca = by_code[sample.CA[0]]  # QT-3 only: QT-5's refusal moved it away
    assert (ca.received, ca.delivered, ca.dead_lettered, ca.overdue, ca.satisfaction_rate) == (1, 0, 1, 0, None)
    assert ca.needs_review == 0  # a dead letter waits for a replay, not for a decision
    waiting = by_code["-"]  # QT-4: not routed, waits for review; not dead-lettered, not overdue (no deadline yet)
    assert (waiting.received, waiting.needs_review, waiting.dead_lettered, waiting.overdue) == (1, 1, 0, 0)
    total = tables.total
    assert (total.received, total.answered, total.overdue, total.dead_lettered, total.rated) == (5, 2, 1, 1, 2)
    assert (total.published, total.needs_review) == (1, 1)


def test_a_report_refused_again_after_re_routing_waits_for_review_with_the_agency_that_refused_it(ledger: str) -> None:
    with sessions(ledger).begin() as session:  # QT-5's second agency gives it back too: poll marks it for review
        qt5 = session.scalar(select(ReportRow).where(ReportRow.source_id == "QT-5"))
        second = max(qt5.deliveries, key=lambda d: d.attempt)
        second.doc_status, qt5.problem = "refused_by_agency", "refused by the agency it was re-routed to"
    with sessions(ledger)() as session:
        tables = figures(session, now=sample.NOW)
    sxd = next(a for a in tables.agencies if a.agency_code == sample.SXD[0])
    assert (sxd.received, sxd.needs_review, sxd.answered, sxd.dead_lettered, sxd.in_progress) == (3, 1, 1, 0, 1)
    assert tables.total.needs_review == 2 and tables.total.dead_lettered == 1


def test_figures_per_locality(ledger: str) -> None:
    with sessions(ledger)() as session:
        tables = figures(session, now=sample.NOW)
    by_place = {loc.locality: loc for loc in tables.localities}
    assert set(by_place) == {"Phường Đông Hà", "Phường Đồng Hới", NO_LOCALITY}
    dong_ha, dong_hoi = by_place["Phường Đông Hà"], by_place["Phường Đồng Hới"]
    assert (dong_ha.received, dong_ha.answered, dong_ha.overdue, dong_ha.in_progress, dong_ha.satisfaction_rate) == (2, 1, 1, 1, 1.0)
    assert (dong_hoi.received, dong_hoi.answered, dong_hoi.dead_lettered, dong_hoi.satisfaction_rate) == (2, 1, 1, 0.0)


def test_backlog_overdue_and_satisfaction_by_day_replay_the_event_log(ledger: str) -> None:
    with sessions(ledger)() as session:
        days = timeline(session, now=sample.NOW)
    assert [d.day for d in days] == [date(2026, 3, n) for n in range(1, 11)]  # empty days included
    assert [d.backlog_end for d in days] == [1, 3, 4, 5, 4, 4, 3, 3, 3, 3]
    assert days[4].backlog_peak == 5  # QT-1 answered on 05/03 after a morning of five open reports
    assert [d.overdue_end for d in days] == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]  # QT-2 from its deadline, 04/03 09:00
    assert [d.satisfaction_rate for d in days][4:8] == [None, 1.0, 1.0, 0.5]


def test_report_detail_lists_every_event_with_its_document_reference(ledger: str) -> None:
    with sessions(ledger)() as session:
        detail = report_detail(session, " qt-5 ", now=sample.NOW)
    assert detail is not None and detail.source_id == "QT-5"
    assert [e.kind for e in detail.events] == ["received", "routed", "status", "rerouted", "status", "rated"]
    assert detail.events[3].document_ref == "PAHT-quangtri_ioc-QT-5-R1"
    assert [d.external_ref for d in detail.deliveries] == ["PAHT-quangtri_ioc-QT-5", "PAHT-quangtri_ioc-QT-5-R1"]
    assert not any(d.overdue for d in detail.deliveries)  # refused in time, then answered in time
    assert sample.SAME_PERSON[1] not in detail.model_dump_json()  # the title's phone is masked


def test_outside_text_never_shows_a_phone_number(ledger: str) -> None:
    with sessions(ledger)() as session:
        shown = "".join(m.model_dump_json() for m in [
            *recent_runs(session), *dead_letters(session), *quarantine(session),
        ])
    assert "[phone]" in shown
    for phone in (sample.ERROR_PHONE, sample.QUARANTINED_PERSON[1], sample.QUARANTINED_PERSON[0]):
        assert phone not in shown


def test_recent_runs_are_grouped_by_dag_newest_first(ledger: str) -> None:
    with sessions(ledger)() as session:
        runs = {dag.dag_id: dag for dag in recent_runs(session, per_dag=1)}
    assert runs["paht_deliver"].last_state == "failed" and runs["paht_deliver"].last_success_at is None
    assert [r.run_id for r in runs["paht_ingest"].runs] == ["ingest-2"]


def test_an_unknown_id_suggests_similar_ones(ledger: str) -> None:
    with sessions(ledger)() as session:
        assert report_detail(session, "QT-") is None
        assert similar_report_ids(session, "qt-") == ["QT-1", "QT-2", "QT-3", "QT-4", "QT-5"]
