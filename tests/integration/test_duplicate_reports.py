"""Several citizens report one pothole: one document at the agency, every reporter answered.

The steps run against the real stand-ins, on a SQLite and on a PostgreSQL ledger, for a
Quảng Trị deployment with ``duplicates`` turned on.
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from paht_bridge.cli import main as paht
from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.figures import figures
from paht_bridge.ledger.report_detail import report_detail
from paht_bridge.ledger.models import DeliveryRow, EventRow, RatingRow, ReportRow
from paht_bridge.steps import StepContext, deliver, ingest, poll, publish, ratings, reconcile
from paht_bridge.config.deployment import Duplicates, deployment
from paht_bridge.sandbox.citizen_app import load_seed_reports
from paht_bridge.sandbox.desk import refuses
from paht_bridge.sandbox.stack import SandboxStack
from tests.lifecycle_checks import citizen_reports, documents

SOURCE, TARGET = "quangtri_ioc", "qoffice_quangtri"
POTHOLE = next(r for r in load_seed_reports(SOURCE) if r["id"] == "QT-2026-000277")  # "Ổ gà lớn trước cổng trường"


def reported(number: int, minutes_later: float, north_m: float, title: str, description: str, phone: str) -> dict:
    """The pothole as another citizen reports it: their own id, time, position and words."""
    report = copy.deepcopy(POTHOLE)
    created = datetime.fromisoformat(POTHOLE["created_at"]) + timedelta(minutes=minutes_later)
    report.update(id=f"QT-2026-{number:06d}", created_at=created.isoformat(), title=title, description=description, attachments=[])
    report["location"]["lat"] += north_m / 111_195
    report["reporter"] = {"name": "Người dân", "phone": phone}
    return report


def pothole_reports(first: int) -> list[dict]:
    """Three reports of one pothole (the first and two near-identical ones) and one of another
    pothole like it 3 km away."""
    return [
        reported(first, 0, 0, POTHOLE["title"], POTHOLE["description"], "0905000001"),
        reported(first + 1, 45, 30, "Ổ gà lớn trước cổng trường tiểu học",
                 "Trước cổng trường tiểu học có nhiều ổ gà sâu, mưa xuống đọng nước, học sinh đi xe đạp bị ngã. Đề nghị vá lại mặt đường.",
                 "0905000002"),
        reported(first + 2, 26 * 60, -60, "O ga truoc cong truong",
                 "Doan duong truoc cong truong tieu hoc co nhieu o ga sau, hoc sinh di xe dap bi nga. De nghi som va lai mat duong.",
                 "0905000003"),
        reported(first + 3, 90, 3000, POTHOLE["title"], POTHOLE["description"], "0905000004"),
    ]


@pytest.fixture
def ctx(ledger_url: str) -> StepContext:
    mapping = deployment("quang_tri").model_copy(update={"duplicates": Duplicates(enabled=True)})
    return StepContext(mapping=mapping, sessions=sessions(ledger_url), connectors=AirflowConnectors(mapping), run_id="dup")


def one_round(ctx: StepContext, run_id: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for step in (ingest, deliver, poll, publish, ratings):
        counts.update(step(StepContext(mapping=ctx.mapping, sessions=ctx.sessions, connectors=ctx.connectors, run_id=run_id)).counts)
    return counts


def go_round(ctx: StepContext, stack: SandboxStack, rounds: int = 10) -> Counter[str]:
    counts: Counter[str] = Counter()
    for n in range(rounds):
        counts.update(one_round(ctx, f"round-{n}"))
        stack.urls.tick_desks()
        stack.urls.citizens_rate()
    counts.update(one_round(ctx, "final"))
    return counts


def kinds(session, report_id: int) -> list[str]:
    return list(session.scalars(select(EventRow.kind).where(EventRow.report_id == report_id).order_by(EventRow.at, EventRow.id)))


def test_three_reports_of_one_pothole_make_one_document_and_three_answered_citizens(
    stack: SandboxStack, ctx: StepContext, ledger_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, third, far = pothole_reports(9001)
    assert not any(refuses(f"PAHT-{SOURCE}-{r['id']}") for r in (first, far))  # this story has no refusal
    for report in (first, second, third, far):
        stack.citizen_states[SOURCE].add_report(report)

    assert ingest(ctx).counts == {"received": 2, "linked_duplicate": 2}
    one_round(ctx, "round-0")
    with sessions(ledger_url)() as session:
        rows = {r.source_id: r for r in session.scalars(select(ReportRow))}
        primary = rows[first["id"]]
        assert primary.duplicate_count == 2 and primary.duplicate_of is None
        assert rows[second["id"]].duplicate_of == rows[third["id"]].duplicate_of == primary.id
        assert rows[far["id"]].duplicate_of is None  # as alike, but 3 km away: another pothole
        assert session.scalars(select(DeliveryRow.report_id)).all().count(primary.id) == 1
        assert session.scalar(select(DeliveryRow).where(DeliveryRow.report_id.in_([rows[second["id"]].id, rows[third["id"]].id]))) is None
        assert rows[second["id"]].status == rows[third["id"]].status == primary.status == "delivered"  # they follow its document
        linked = session.scalar(select(EventRow).where(EventRow.kind == "linked_duplicate", EventRow.report_id == rows[third["id"]].id))
        assert linked.detail["primary"] == f"{SOURCE}:{first['id']}" and linked.detail["distance_m"] < 150
        assert linked.detail["text_similarity"] >= 0.5 and linked.detail["hours_apart"] == 26.0

    go_round(ctx, stack)

    docs = {d["external_ref"]: d for d in documents(stack.urls.urls[TARGET])}
    assert sorted(docs) == [f"PAHT-{SOURCE}-{first['id']}", f"PAHT-{SOURCE}-{far['id']}"]
    assert all(d["created_count"] == 1 for d in docs.values())
    citizen = citizen_reports(stack.urls.urls[SOURCE])
    answers = {citizen[r["id"]]["outcomes"][0]["answer"] for r in (first, second, third)}
    assert len(answers) == 1  # every reporter got the agency's one answer
    assert all(citizen[r["id"]]["publish_calls"] == 1 and len(citizen[r["id"]]["outcomes"]) == 1 for r in (first, second, third))
    ratings_at_doc = sorted(r["rating_id"] for r in docs[f"PAHT-{SOURCE}-{first['id']}"]["ratings"])
    expected = sorted(citizen[r["id"]]["rating"]["id"] for r in (first, second, third))
    assert ratings_at_doc == expected  # every reporter's rating reached the one document, once

    with sessions(ledger_url)() as session:
        rows = {r.source_id: r for r in session.scalars(select(ReportRow))}
        assert {rows[r["id"]].status for r in (first, second, third, far)} == {"rated"}
        primary_agency = rows[first["id"]].deliveries[0].agency_code
        assert session.scalar(select(RatingRow).where(RatingRow.pushed_at.is_(None))) is None
        trail = kinds(session, rows[second["id"]].id)
        assert trail[:2] == ["received", "linked_duplicate"] and "routed" not in trail and "sending" not in trail
        assert [k for k in trail if k in ("status", "published", "rated", "rating_pushed")][-3:] == ["published", "rated", "rating_pushed"]
        assert kinds(session, primary.id).count("duplicate_linked") == 2
        answered = session.scalar(select(EventRow).where(EventRow.report_id == rows[second["id"]].id, EventRow.kind == "status",
                                                         EventRow.status == "answered"))
        assert answered.detail["followed"] == f"{SOURCE}:{first['id']}" and answered.run_id.startswith("round-")

        tables = figures(session, "quang_tri")
        assert [(a.agency_code, a.received, a.answered, a.rated) for a in tables.agencies if a.received] == [
            (primary_agency, 4, 4, 4)]  # the duplicates count with the agency answering them, not as waiting for review

        detail = report_detail(session, second["id"])
        assert detail.linked_to is not None and detail.linked_to.source_id == first["id"]
        assert [d.source_id for d in report_detail(session, first["id"]).duplicates] == [second["id"], third["id"]]

    # Nothing new anywhere: a repeat round publishes and pushes nothing again.
    one_round(ctx, "again")
    with sessions(ledger_url)() as session:
        again = set(session.scalars(select(EventRow.kind).where(EventRow.run_id == "again")))
    assert not again, again

    # Reconciliation sees the linked reports as intended, not as drift.
    counts = reconcile(ctx).counts
    assert counts[f"{SOURCE}.linked_duplicates"] == 2
    assert not {k for k in counts if "." not in k}, counts
    with sessions(ledger_url)() as session:
        assert session.scalar(select(EventRow).where(EventRow.kind == "drift")) is None

    # The operator's trace says who follows whom.
    monkeypatch.setenv("PAHT_LEDGER_URL", ledger_url)
    monkeypatch.setenv("COLUMNS", "250")
    capsys.readouterr()
    assert paht(["trace", third["id"]]) == 0
    out = capsys.readouterr().out
    assert f"linked to {first['id']} ({SOURCE})" in out and "linked_duplicate" in out
    assert paht(["trace", first["id"]]) == 0
    assert f"duplicates linked to it (2): {second['id']} ({SOURCE}), {third['id']} ({SOURCE})" in capsys.readouterr().out


def test_duplicates_follow_their_primary_when_the_agency_refuses_it_and_it_is_re_routed(
    stack: SandboxStack, ctx: StepContext, ledger_url: str
) -> None:
    first, second, third, _ = pothole_reports(9014)
    assert refuses(f"PAHT-{SOURCE}-{first['id']}")  # the desk gives the first report back
    for report in (first, second, third):
        stack.citizen_states[SOURCE].add_report(report)

    counts = go_round(ctx, stack)
    assert counts["linked_duplicate"] == 2 and counts["published_duplicate"] == 2

    rerouted = f"PAHT-{SOURCE}-{first['id']}-R1"
    docs = {d["external_ref"]: d for d in documents(stack.urls.urls[TARGET])}
    assert sorted(docs) == [f"PAHT-{SOURCE}-{first['id']}", rerouted]
    assert all(d["created_count"] == 1 for d in docs.values())
    assert len(docs[rerouted]["ratings"]) == 3 and not docs[f"PAHT-{SOURCE}-{first['id']}"]["ratings"]
    citizen = citizen_reports(stack.urls.urls[SOURCE])
    with sessions(ledger_url)() as session:
        rows = {r.source_id: r for r in session.scalars(select(ReportRow))}
        answer = max(rows[first["id"]].deliveries, key=lambda d: d.attempt).answer
        for report in (second, third):
            assert [o["answer"] for o in citizen[report["id"]]["outcomes"]] == [answer]  # the re-routed agency's answer
            followed = [(e.status, e.detail["external_ref"]) for e in session.scalars(
                select(EventRow).where(EventRow.report_id == rows[report["id"]].id, EventRow.kind == "status").order_by(EventRow.at, EventRow.id))]
            # Delivered with the first document; back to routed when the refusal re-routed it; then the new document's life.
            assert followed[:3] == [("delivered", f"PAHT-{SOURCE}-{first['id']}"), ("routed", rerouted), ("delivered", rerouted)]
            assert followed[-1] == ("answered", rerouted)
            assert rows[report["id"]].status == "rated"


def test_a_link_found_wrong_is_undone_and_the_report_gets_its_own_document(
    stack: SandboxStack, ctx: StepContext, ledger_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """IOC staff find that a linked report is another problem: ``paht unlink`` routes it as if
    it had just arrived, the next deliver run creates its document, and its citizen hears back
    about it, not about the report it was linked to. One already answered cannot be unlinked."""
    first, second, third, _ = pothole_reports(9021)
    for report in (first, second, third):
        stack.citizen_states[SOURCE].add_report(report)
    assert ingest(ctx).counts == {"received": 1, "linked_duplicate": 2}
    assert deliver(ctx).counts == {"delivered": 1}
    monkeypatch.setenv("PAHT_LEDGER_URL", ledger_url)
    monkeypatch.setenv("COLUMNS", "250")
    capsys.readouterr()

    assert paht(["unlink", first["id"], "--reason", "not linked"]) == 1
    assert "is not linked to another report" in capsys.readouterr().out
    assert paht(["unlink", second["id"], "--reason", "Ổ gà khác, cách 200 m; người báo gọi 0905 123 456"]) == 0
    assert f"PAHT-{SOURCE}-{second['id']}" in capsys.readouterr().out
    assert paht(["unlink", second["id"], "--reason", "twice"]) == 1  # nothing left to undo
    with sessions(ledger_url)() as session:
        rows = {r.source_id: r for r in session.scalars(select(ReportRow))}
        assert rows[second["id"]].duplicate_of is None and rows[second["id"]].status == "routed"
        assert rows[first["id"]].duplicate_count == 1 and rows[third["id"]].duplicate_of == rows[first["id"]].id
        assert [(d.external_ref, d.state) for d in rows[second["id"]].deliveries] == [(f"PAHT-{SOURCE}-{second['id']}", "pending")]
        undone = session.scalar(select(EventRow).where(EventRow.kind == "unlinked_duplicate"))
        assert undone.report_id == rows[second["id"]].id and undone.detail["primary"] == f"{SOURCE}:{first['id']}"
        assert "123 456" not in undone.detail["reason"] and undone.detail["reason"].startswith("Ổ gà khác")
        assert kinds(session, rows[second["id"]].id)[-2:] == ["unlinked_duplicate", "routed"]
        assert "duplicate_unlinked" in kinds(session, rows[first["id"]].id)

    go_round(ctx, stack)

    docs = {d["external_ref"]: d for d in documents(stack.urls.urls[TARGET])}
    assert sorted(docs) == sorted(f"PAHT-{SOURCE}-{r['id']}" for r in (first, second))
    assert all(d["created_count"] == 1 for d in docs.values())
    citizen = citizen_reports(stack.urls.urls[SOURCE])
    assert citizen[second["id"]]["publish_calls"] == 1 and citizen[third["id"]]["publish_calls"] == 1
    with sessions(ledger_url)() as session:
        answers = {r.source_id: r.deliveries[0].answer for r in session.scalars(select(ReportRow).where(ReportRow.duplicate_of.is_(None)))}
    assert answers[first["id"]] != answers[second["id"]]
    assert [o["answer"] for o in citizen[second["id"]]["outcomes"]] == [answers[second["id"]]]  # its own document's answer
    assert [o["answer"] for o in citizen[third["id"]]["outcomes"]] == [answers[first["id"]]]  # still linked: the first's
    capsys.readouterr()
    assert paht(["unlink", third["id"], "--reason", "too late"]) == 1  # its citizen was answered with the first report's outcome
    assert "already answered" in capsys.readouterr().out


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)  # SQLite runs one writer at a time anyway
def test_two_people_undoing_one_link_at_once_route_it_once(stack: SandboxStack, ctx: StepContext, ledger_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The second unlink reads the link before the first commits, and is refused at its
    conditional UPDATE, not by a duplicate key: one set of deliveries, one pair of events."""
    from paht_bridge.operations import unlink as unlink_module
    from paht_bridge.operations.unlink import UnlinkRefused, unlink_duplicate

    first, second, _, _ = pothole_reports(9041)
    for report in (first, second):
        stack.citizen_states[SOURCE].add_report(report)
    assert ingest(ctx).counts == {"received": 1, "linked_duplicate": 1}
    with sessions(ledger_url)() as session:
        linked = session.scalar(select(ReportRow.id).where(ReportRow.source_id == second["id"]))
    real_routes, raced = unlink_module.routes, []

    def routes_while_someone_else_unlinks(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if not raced:  # the outer call has read the link; another operator's unlink commits now
            raced.append(None)
            raced[0] = unlink_duplicate(ctx, linked, "the other operator")
        return real_routes(*args, **kwargs)

    monkeypatch.setattr(unlink_module, "routes", routes_while_someone_else_unlinks)
    with pytest.raises(UnlinkRefused) as refused:
        unlink_duplicate(ctx, linked, "this operator")
    assert refused.value.code == "not_linked" and raced == [[f"PAHT-{SOURCE}-{second['id']}"]]
    with sessions(ledger_url)() as session:
        assert session.scalar(select(func.count(DeliveryRow.id)).where(DeliveryRow.report_id == linked)) == 1
        assert session.scalar(select(func.count(EventRow.id)).where(EventRow.kind == "unlinked_duplicate")) == 1
        assert session.scalar(select(ReportRow.duplicate_count).where(ReportRow.source_id == first["id"])) == 0
