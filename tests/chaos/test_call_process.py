"""The deliver step with its creates made by a child process (``call_process``, on in every
task): the same guarantees as inline, across the process boundary (DESIGN §4).

Real stand-ins, real fork; the chaos layer injects the faults. The slow tests of the inline
path that move the step's clock from inside a call cannot drive a child (its clock is a
copy), so the lease is tested here on real time: a one-second lease and slow answers.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import signal
import time

import pytest
from sqlalchemy import func, select

from paht_bridge.connectors.errors import AmbiguousError, MalformedResponse, TransientError
from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import DeliveryRow, EventRow
from paht_bridge.steps import deliver
from paht_bridge.steps.call_process import CallProcessDied
from paht_bridge.sandbox.backlog import load_backlog
from paht_bridge.sandbox.stack import SandboxStack
from tests.chaos.harness import MovableClock, contexts, deliver_round, deliver_until_done, exactly_once, ingest_all

pytestmark = pytest.mark.chaos


def test_connector_errors_cross_a_pipe_as_raised() -> None:
    for cls in (TransientError, AmbiguousError, MalformedResponse):
        error = cls("HTTP 503: busy", system="tdoffice_dienbien", operation="create_document", ref="PAHT-1")
        error.child_traceback = "Traceback ..."
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is cls and str(back) == str(error)
        assert (back.system, back.operation, back.ref, back.child_traceback) == ("tdoffice_dienbien", "create_document", "PAHT-1",
                                                                                "Traceback ...")


def test_the_calls_run_in_a_child_and_every_report_arrives_once_with_its_attachments(
        stack: SandboxStack, ledger_url: str, caplog: pytest.LogCaptureFixture) -> None:
    load_backlog(stack, 60, with_attachments=True)
    ingest_all(ledger_url)
    caplog.set_level(logging.INFO)
    totals: dict[str, int] = {}
    for ctx in contexts(ledger_url, "in-a-child", batch_size=7, call_process=True):
        for key, value in deliver(ctx).counts.items():
            totals[key] = totals.get(key, 0) + value
    figures = exactly_once(stack, ledger_url)
    assert totals == {"delivered": 60} and figures["documents"] == 60, (totals, figures)
    assert figures["duplicated"] == 0 and figures["create_requests_seen_by_targets"] == 60, figures
    # The connectors' own records of each create (REST "document sent", SOAP "edxml.send")
    # came back from the child and were logged here.
    sent = [r for r in caplog.records if r.getMessage().startswith(("document sent", "edxml.send"))]
    assert len(sent) == 60 and {r.process for r in sent} - {os.getpid()}, {r.process for r in sent}
    assert not any(r.process == os.getpid() for r in sent)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_the_step_builds_each_create_without_attachments_and_the_child_only_sends_it(
        stack: SandboxStack, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a request (zeep's envelope, the REST body) is off the calls' path: the step
    builds the next chunk's while the child sends the chunk before. Here a create the child
    had to build itself fails, so every report arriving once shows each was built ahead."""
    from paht_bridge.connectors.edxml_soap import EdxmlSoapClient
    from paht_bridge.connectors.rest_docs import RestDocsClient

    load_backlog(stack, 40, with_attachments=False)
    ingest_all(ledger_url)
    built: list[tuple[int, str]] = []
    for cls in (EdxmlSoapClient, RestDocsClient):
        def counted(self, record, real=cls.prepare_create):  # noqa: ANN001, ANN202
            built.append((os.getpid(), record.external_ref))
            return real(self, record)

        def refused(self, record, attachments):  # noqa: ANN001, ANN202
            raise RuntimeError("the child built a request")

        monkeypatch.setattr(cls, "prepare_create", counted)
        monkeypatch.setattr(cls, "create_document", refused)
    totals: dict[str, int] = {}
    for ctx in contexts(ledger_url, "built-ahead", batch_size=7, call_process=True):
        for key, value in deliver(ctx).counts.items():
            totals[key] = totals.get(key, 0) + value
    figures = exactly_once(stack, ledger_url)
    assert totals == {"delivered": 40} and figures["documents"] == 40 and figures["duplicated"] == 0, (totals, figures)
    assert len({ref for _, ref in built}) == 40 and {pid for pid, _ in built} == {os.getpid()}


def test_a_request_that_cannot_be_built_ahead_is_left_to_the_child() -> None:
    """Building ahead is only a head start: a target that cannot, a failure to build (the child
    then builds it and fails as that call, typed, in order) and a wrapper that merely forwards
    attributes (its own ``create_document`` must not be bypassed) all leave the record to the child."""
    dl = importlib.import_module("paht_bridge.steps.deliver")

    class Builds:
        def prepare_create(self, record):  # noqa: ANN001, ANN202
            return ("built", record)

    class Fails:
        def prepare_create(self, record):  # noqa: ANN001, ANN202
            raise ValueError("no")

    class Forwards:
        def __getattr__(self, attribute: str) -> object:
            return getattr(Builds(), attribute)

    assert dl._prepared(Builds(), "r") == ("built", "r")
    assert dl._prepared(Fails(), "r") is None
    assert dl._prepared(Forwards(), "r") is None
    assert dl._prepared(object(), "r") is None


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_error_and_stall_rates_through_a_child_deliver_everything_once(stack: SandboxStack, ledger_url: str) -> None:
    """30 % errors and 10 % timeouts after commit: the child stops at each failure, the step
    writes it in order and hands the rest over again; nothing is lost or sent twice."""
    load_backlog(stack, 120, with_attachments=False)
    ingest_all(ledger_url)
    for target in ("qoffice_quangtri", "tdoffice_dienbien"):
        stack.chaos[target].configure(error_rate=0.3, timeout_after_commit_rate=0.1)
    deliver_until_done(ledger_url, "round", MovableClock(), call_process=True, max_tries=40)
    figures = exactly_once(stack, ledger_url)
    assert figures["not_delivered_in_ledger"] == 0 and figures["missing"] == 0, figures
    assert figures["duplicated"] == 0 and figures["extra"] == 0, figures
    for name in ("qoffice_quangtri", "tdoffice_dienbien"):
        assert stack.chaos[name].counts["errors"] > 0 and stack.chaos[name].counts["stalls"] > 0
    assert figures["documents"] <= figures["create_requests_seen_by_targets"] <= figures["sending_events"], figures


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_back_end_down_is_not_hammered_through_a_child(stack: SandboxStack, ledger_url: str) -> None:
    """As inline: ten failures open the circuit, then one probe per cool-down."""
    load_backlog(stack, 40)
    ingest_all(ledger_url)
    stack.take_down("tdoffice_dienbien")
    clock = MovableClock()
    delivered = 0
    for minute in range(0, 60, 5):
        delivered += deliver_round(ledger_url, f"outage-{minute}", clock, call_process=True, circuit_cooldown_seconds=600).get("delivered", 0)
        clock.advance(300)
    with sessions(ledger_url)() as session:
        attempts = session.scalar(select(func.count(EventRow.id)).where(
            EventRow.kind == "sending", EventRow.detail["target"].as_string() == "tdoffice_dienbien"))
        dead = session.scalar(select(func.count(DeliveryRow.id)).where(DeliveryRow.state == "dead"))
    assert dead == 0 and delivered == 20
    assert attempts <= 10 + 6, attempts
    stack.bring_back("tdoffice_dienbien")
    for _ in range(4):
        clock.advance(900)
        deliver_round(ledger_url, "recovered", clock, call_process=True, circuit_cooldown_seconds=600)
    figures = exactly_once(stack, ledger_url)
    assert figures["not_delivered_in_ledger"] == 0 and figures["duplicated"] == 0, figures


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_chunk_longer_than_half_the_lease_is_renewed_before_its_next_call(
        stack: SandboxStack, ledger_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A one-second lease and 0.1 s per create: the child stops at half the lease, the step
    renews the lease on the rest and hands it over again; no call is made past it."""
    load_backlog(stack, 24, with_attachments=False)
    ingest_all(ledger_url)
    stack.chaos["qoffice_quangtri"].configure(latency=0.1)
    caplog.set_level(logging.INFO)
    ctx = next(c for c in contexts(ledger_url, "slow", lease_seconds=1.0, batch_size=12, call_process=True)
               if c.mapping.deployment == "quang_tri")
    counts = deliver(ctx).counts
    assert counts == {"delivered": 12}, counts
    assert any(r.getMessage().startswith("lease renewed mid-chunk") for r in caplog.records)
    with sessions(ledger_url)() as session:
        tries = session.scalars(select(DeliveryRow.tries).where(DeliveryRow.target == "qoffice_quangtri")).all()
    assert sorted(tries) == [1] * 12  # renewed, never given up and taken again


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_child_killed_mid_chunk_fails_the_step_and_the_next_run_finds_what_it_sent(
        stack: SandboxStack, ledger_url: str) -> None:
    """The child dies right after its fourth create: the step fails with a clear error, the
    chunk stays *sending*, and the next run looks each up by reference: one document each."""
    load_backlog(stack, 20, with_attachments=False)
    ingest_all(ledger_url)
    ctx = next(c for c in contexts(ledger_url, "doomed", lease_seconds=0.5, batch_size=10, call_process=True)
               if c.mapping.deployment == "dien_bien")
    target = ctx.connectors.target("tdoffice_dienbien")
    parent, created = os.getpid(), []
    real_send = target.send_prepared  # the step builds each create; the child sends it

    def send_then_die(prepared):  # noqa: ANN001, ANN202
        receipt = real_send(prepared)
        created.append(prepared.external_ref)
        if os.getpid() != parent and len(created) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return receipt

    target.send_prepared = send_then_die  # the child is forked with it
    with pytest.raises(CallProcessDied, match="ended mid-chunk"):
        deliver(ctx)
    del target.send_prepared
    with sessions(ledger_url)() as session:
        sending = session.scalar(select(func.count(DeliveryRow.id)).where(DeliveryRow.state == "sending"))
    assert sending >= 4  # what the child sent, and what was marked with it, waits for a lookup
    time.sleep(0.6)  # the lease runs out
    deliver_round(ledger_url, "after", call_process=True)
    figures = exactly_once(stack, ledger_url)
    assert figures["not_delivered_in_ledger"] == 0 and figures["duplicated"] == 0 and figures["documents"] == 20, figures
    with sessions(ledger_url)() as session:
        looked_up = session.scalars(select(EventRow.detail).where(EventRow.kind == "delivered")).all()
    assert sum(1 for d in looked_up if d["recovered_by_lookup"]) == 4


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_ingest_reading_ahead_in_a_child_takes_every_page_once_and_fails_with_the_apps_own_error(
        stack: SandboxStack, ledger_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Pages are read in a child and stored here. A citizen app that is down fails the run
    with the connector's own typed error, raised in the child, after the other app's pages
    are stored; once it is back, the next run takes the rest: every report once."""
    from paht_bridge.connectors.errors import TransientError
    from paht_bridge.ledger.models import ReportRow
    from paht_bridge.steps import ingest

    load_backlog(stack, 450, with_attachments=False)
    stack.take_down("dienbien_smart")
    caplog.set_level(logging.INFO)
    by_name = {c.mapping.deployment: c for c in contexts(ledger_url, "ingest", call_process=True)}
    quang_tri, dien_bien = by_name["quang_tri"], by_name["dien_bien"]
    assert ingest(quang_tri).counts["received"] > 100  # several pages
    with pytest.raises(TransientError, match="dienbien_smart.*connection failed|dienbien_smart.*could not connect") as raised:
        ingest(dien_bien)
    assert "Traceback" in raised.value.child_traceback  # it was raised over there
    stack.bring_back("dienbien_smart")
    ingest(dien_bien)
    with sessions(ledger_url)() as session:
        stored = session.scalar(select(func.count(ReportRow.id)))
        distinct = session.scalar(select(func.count(func.distinct(ReportRow.source_id))))
    assert stored == distinct == 450
    pages = [r for r in caplog.records if r.getMessage().startswith("feed page")]
    assert len(pages) >= 5 and all(r.process == os.getpid() for r in pages)  # stored here, read there:
    assert any(r.name.startswith("paht_bridge.connectors") and r.process != os.getpid() for r in caplog.records)


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_several_senders_per_target_stay_threads_without_a_call_process(
        stack: SandboxStack, ledger_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """``send_concurrency`` above 1 is for a slow back end: threads waiting on it. Forking a
    call process from each would fork a threaded process; none is started."""
    load_backlog(stack, 30, with_attachments=False)
    ingest_all(ledger_url)
    caplog.set_level(logging.INFO)
    totals = 0
    for ctx in contexts(ledger_url, "senders", batch_size=5, call_process=True, send_concurrency=3):
        totals += deliver(ctx).counts.get("delivered", 0)
    assert totals == 30 and exactly_once(stack, ledger_url)["duplicated"] == 0
    assert not any(r.getMessage().startswith("calls go through a process") for r in caplog.records)
    assert {r.process for r in caplog.records if r.getMessage().startswith(("document sent", "edxml.send"))} == {os.getpid()}


@pytest.mark.parametrize("switch", ["unset", "off"])
def test_a_task_step_uses_the_call_process_unless_switched_off(stack: SandboxStack, tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture, switch: str) -> None:
    """What every DAG task runs (``tasks.run_step``): the creates are made in a child by
    default; ``PAHT_CALL_PROCESS=off`` keeps them in the task's own process."""
    from paht_bridge.tasks import run_step

    monkeypatch.setenv("PAHT_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    if switch == "off":
        monkeypatch.setenv("PAHT_CALL_PROCESS", "off")
    else:
        monkeypatch.delenv("PAHT_CALL_PROCESS", raising=False)
    load_backlog(stack, 12, with_attachments=False)
    caplog.set_level(logging.INFO)
    run_step("ingest", "dien_bien", "task-ingest")
    assert run_step("deliver", "dien_bien", "task-deliver")["counts"].get("delivered", 0) > 0
    senders = {r.process for r in caplog.records if r.getMessage().startswith("document sent")}
    started = any(r.getMessage().startswith("calls go through a process") for r in caplog.records)
    if switch == "off":
        assert senders == {os.getpid()} and not started
    else:
        assert senders and os.getpid() not in senders and started


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_step_that_fails_with_chunks_in_flight_stops_its_child_at_once(stack: SandboxStack, ledger_url: str) -> None:
    """The ledger fails as the first chunk's outcomes are written, while the child works on
    the second: the child is stopped then, not left to send the second chunk; the next run
    looks up what was sent and creates the rest, each once."""
    dl = importlib.import_module("paht_bridge.steps.deliver")
    load_backlog(stack, 60, with_attachments=False)
    ingest_all(ledger_url)
    stack.chaos["tdoffice_dienbien"].configure(latency=0.02)
    ctx = next(c for c in contexts(ledger_url, "failing", lease_seconds=2.0, batch_size=10, call_process=True)
               if c.mapping.deployment == "dien_bien")
    real = dl._record_delivered

    def ledger_gone(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("the ledger went away")

    dl._record_delivered = ledger_gone
    try:
        with pytest.raises(RuntimeError, match="ledger went away"):
            deliver(ctx)
    finally:
        dl._record_delivered = real
    sent_before = exactly_once(stack, ledger_url)["create_requests_seen_by_targets"]
    assert 10 <= sent_before < 20, sent_before  # the first chunk, and at most a little of the second
    time.sleep(2.1)  # the leases run out
    deliver_round(ledger_url, "after", call_process=True)
    figures = exactly_once(stack, ledger_url)
    assert figures["documents"] == 60 and figures["duplicated"] == 0 and figures["not_delivered_in_ledger"] == 0, figures


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_page_reader_that_dies_fails_ingest_clearly_and_the_next_run_takes_every_page(stack: SandboxStack, ledger_url: str) -> None:
    """The page reader is killed after handing over its first page: ingest fails with a clear
    error after storing what it was given; the next run goes on from the stored cursor."""
    from paht_bridge.ledger.models import ReportRow
    from paht_bridge.steps import ingest

    load_backlog(stack, 400, with_attachments=False)
    ctx = next(c for c in contexts(ledger_url, "reader", call_process=True) if c.mapping.deployment == "dien_bien")
    client = ctx.connectors.source("dienbien_smart")
    parent, real = os.getpid(), client.reports_since

    def dies_after_one_page(cursor, page_size=100):  # noqa: ANN001, ANN202
        for number, page in enumerate(real(cursor, page_size=page_size)):
            if number == 1 and os.getpid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)
            yield page

    client.reports_since = dies_after_one_page  # the reader is forked with it
    try:
        with pytest.raises(RuntimeError, match="page reader .* ended unexpectedly"):
            ingest(ctx)
    finally:
        del client.reports_since
    with sessions(ledger_url)() as session:
        first = session.scalar(select(func.count(ReportRow.id)))
    assert first == 100  # the page it handed over, with its cursor
    ingest(ctx)
    with sessions(ledger_url)() as session:
        stored = session.scalar(select(func.count(ReportRow.id)))
        distinct = session.scalar(select(func.count(func.distinct(ReportRow.source_id))))
    assert stored == distinct > 100
