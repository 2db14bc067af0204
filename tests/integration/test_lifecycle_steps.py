"""The lifecycle steps against the real stand-ins, on a SQLite and on a PostgreSQL ledger.

No Airflow here (the end-to-end test has it): this checks the ledger's behaviour on both
engines, including that running every step again changes nothing.
"""

from __future__ import annotations

from sqlalchemy import func, select

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import CursorRow, EventRow
from paht_bridge.steps import StepContext, deliver, ingest, poll, publish, ratings
from paht_bridge.config.deployment import deployment, deployment_names
from paht_bridge.sandbox.stack import SandboxStack
from tests.lifecycle_checks import assert_whole_lifecycle


def contexts(url: str, run_id: str) -> list[StepContext]:
    return [StepContext(mapping=deployment(name), sessions=sessions(url), connectors=AirflowConnectors(deployment(name)), run_id=run_id)
            for name in deployment_names()]


def one_round(url: str, run_id: str) -> None:
    for ctx in contexts(url, run_id):
        for step in (ingest, deliver, poll, publish, ratings):
            step(ctx)


def test_every_seeded_report_goes_round_once_on_this_ledger(ledger_url: str, seeded_stack: SandboxStack) -> None:
    urls = seeded_stack.urls
    for round_no in range(12):
        one_round(ledger_url, f"round-{round_no}")
        urls.tick_desks()
        urls.citizens_rate()
    one_round(ledger_url, "final")  # take in the last ratings and push them on

    with sessions(ledger_url)() as session:
        counts = assert_whole_lifecycle(session, urls)
        events_before = session.scalar(select(func.count(EventRow.id)))
        cursors = {c.stream: c.value for c in session.scalars(select(CursorRow))}
    assert counts["reports"] == 86 and counts["rerouted"] > 0  # 70 from the two apps, 16 from Open311
    assert set(cursors) >= {"quangtri_ioc:reports", "dienbien_smart:ratings", "qoffice_quangtri:changes", "tdoffice_dienbien:changes",
                            "quangninh_open311:reports", "ioffice_quangninh:changes"}

    one_round(ledger_url, "again")  # nothing new anywhere: a repeat run must change nothing
    with sessions(ledger_url)() as session:
        assert_whole_lifecycle(session, urls)
        new_kinds = session.scalars(select(EventRow.kind).where(EventRow.run_id == "again")).all()
    assert not new_kinds, f"a repeat run did something: {set(new_kinds)}"
    assert events_before > 86 * 6
