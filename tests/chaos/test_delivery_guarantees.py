"""Delivery guarantees under faults: no report lost, no document created twice.

Each test runs the real deliver step against the real stand-ins with the chaos layer
switched on; the long versions of these runs live in ``bench/chaos_run.py``.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import CircuitRow, DeliveryRow, EventRow
from paht_bridge.steps import StepContext
from paht_bridge.sandbox.backlog import load_backlog
from paht_bridge.sandbox.stack import SandboxStack
from tests.chaos.harness import MovableClock, contexts, deliver_round, deliver_until_done, exactly_once, ingest_all
from tests.lifecycle_checks import documents

pytestmark = pytest.mark.chaos
CI_REPORTS = int(os.environ.get("PAHT_CHAOS_REPORTS", 160))


def test_a_timeout_after_commit_does_not_create_a_second_document(stack: SandboxStack, ledger_url: str) -> None:
    load_backlog(stack, 6)
    ingest_all(ledger_url)
    for target in ("qoffice_quangtri", "tdoffice_dienbien"):
        stack.chaos[target].configure(timeout_after_commit_rate=1.0)
    first = deliver_round(ledger_url, "stalled")
    assert first.get("unknown") == 6, first  # every create committed remotely, but we could not know
    for target in ("qoffice_quangtri", "tdoffice_dienbien"):
        stack.chaos[target].calm()
    clock = MovableClock()
    clock.advance(3600)
    second = deliver_round(ledger_url, "after", clock)
    assert second == {"already_there": 6}, second  # found by reference, not sent again
    figures = exactly_once(stack, ledger_url)
    assert figures["duplicated"] == figures["missing"] == figures["extra"] == 0
    assert figures["create_requests_seen_by_targets"] == 6  # one create each, never a second
    with sessions(ledger_url)() as session:
        recovered = session.scalars(select(EventRow.detail).where(EventRow.kind == "delivered")).all()
    assert all(d["recovered_by_lookup"] for d in recovered) and len(recovered) == 6


def test_error_and_stall_rates_on_every_back_end_deliver_everything_once(stack: SandboxStack, tmp_path) -> None:
    """30 % errors and 10 % timeouts after commit on every document system (and 30 % errors on
    the citizen apps while ingesting): every report arrives, none twice."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    from paht_bridge.ledger.db import migrate

    migrate(url)
    load_backlog(stack, CI_REPORTS, with_attachments=False)
    for source in ("quangtri_ioc", "dienbien_smart"):
        stack.chaos[source].configure(error_rate=0.3)
    for _ in range(40):  # ingest fails often; cursors make every retry safe
        try:
            ingest_all(url)
            break
        except Exception:  # noqa: BLE001 - a transient error aborts a run; the next run resumes
            continue
    for source in ("quangtri_ioc", "dienbien_smart"):
        stack.chaos[source].calm()
    ingest_all(url)
    for target in ("qoffice_quangtri", "tdoffice_dienbien"):
        stack.chaos[target].configure(error_rate=0.3, timeout_after_commit_rate=0.1)
    deliver_until_done(url, "round", MovableClock(), max_tries=40)  # the clock passes every back-off and cool-down
    figures = exactly_once(stack, url)
    injected = {name: dict(stack.chaos[name].counts) for name in ("qoffice_quangtri", "tdoffice_dienbien")}
    assert figures["reports"] == CI_REPORTS, figures
    assert figures["not_delivered_in_ledger"] == 0 and figures["missing"] == 0, figures
    assert figures["duplicated"] == 0 and figures["extra"] == 0, figures
    # The faults really happened, and every create the targets saw is one the ledger recorded.
    for counts in injected.values():
        assert counts["errors"] > 0 and counts["stalls"] > 0, injected
    assert figures["documents"] <= figures["create_requests_seen_by_targets"] <= figures["sending_events"], figures


@pytest.mark.postgres
def test_four_workers_on_one_postgres_backlog_never_send_a_report_twice(stack: SandboxStack) -> None:
    from paht_bridge.ledger.db import migrate
    from tests.conftest import fresh_postgres_database

    url = fresh_postgres_database()
    migrate(url)
    load_backlog(stack, CI_REPORTS)
    ingest_all(url)
    for target in ("qoffice_quangtri", "tdoffice_dienbien"):
        stack.chaos[target].configure(latency=0.005)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for ctx in contexts(url, f"worker-{n}", batch_size=10):
                from paht_bridge.steps import deliver

                deliver(ctx)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    figures = exactly_once(stack, url)
    assert figures["not_delivered_in_ledger"] == 0 and figures["documents"] == CI_REPORTS, figures
    assert figures["duplicated"] == 0
    # Not even a second *attempt*: leases kept every report with one worker.
    assert figures["create_requests_seen_by_targets"] == figures["sending_events"] == CI_REPORTS, figures
    with sessions(url)() as session:
        workers = set(session.scalars(select(EventRow.run_id).where(EventRow.kind == "sending")))
    assert len(workers) > 1, "the backlog was not shared between workers"


def test_a_back_end_down_for_an_hour_loses_nothing_and_is_not_hammered(stack: SandboxStack, ledger_url: str) -> None:
    load_backlog(stack, 40)
    ingest_all(ledger_url)
    stack.take_down("tdoffice_dienbien")  # connections refused for the whole outage
    clock = MovableClock()
    during = []
    for _minute in range(0, 60, 5):  # an hour, a deliver run every five minutes
        during.append(deliver_round(ledger_url, f"outage-{_minute}", clock, circuit_cooldown_seconds=600))
        clock.advance(300)
    with sessions(ledger_url)() as session:
        attempts = session.scalar(select(func.count(EventRow.id)).where(EventRow.kind == "sending", EventRow.detail["target"].as_string() == "tdoffice_dienbien"))
        dead = session.scalar(select(func.count(DeliveryRow.id)).where(DeliveryRow.state == "dead"))
        opened = session.scalar(select(func.count(EventRow.id)).where(EventRow.kind == "circuit_opened"))
        circuit = session.get(CircuitRow, "tdoffice_dienbien")
    assert dead == 0
    assert opened >= 1 and circuit is not None and circuit.open_until is not None
    # 10 failures in a row open the circuit (the default); then one probe per 10-minute
    # cool-down: far fewer than the 20 reports × 12 runs a breaker-less loop would make.
    assert attempts <= 10 + 6, attempts
    assert sum(r.get("delivered", 0) for r in during) == 20  # Quảng Trị's SOAP back end was up all along
    with sessions(ledger_url)() as session:
        waiting = session.scalar(select(func.count(DeliveryRow.id)).where(DeliveryRow.state != "delivered"))
    assert waiting == 20  # Điện Biên's reports wait, none given up

    stack.bring_back("tdoffice_dienbien")
    for _ in range(4):
        clock.advance(900)
        deliver_round(ledger_url, "recovered", clock, circuit_cooldown_seconds=600)
    figures = exactly_once(stack, ledger_url)
    assert figures["not_delivered_in_ledger"] == 0 and figures["missing"] == 0 and figures["duplicated"] == 0, figures
    with sessions(ledger_url)() as session:
        assert session.get(CircuitRow, "tdoffice_dienbien").open_until is None  # closed again


def test_shuffled_and_repeated_status_updates_end_at_the_true_latest(ledger_url: str, stack: SandboxStack) -> None:
    """1,000 updates for 200 documents, shuffled and repeated, through the poll step."""
    from datetime import timedelta

    from paht_bridge.steps import poll
    from paht_bridge.canonical import Page, RawStatusChange, vietnam_now

    load_backlog(stack, 200)
    ingest_all(ledger_url)
    deliver_round(ledger_url, "deliver")
    with sessions(ledger_url)() as session:
        deliveries = session.execute(select(DeliveryRow.external_ref, DeliveryRow.document_id, DeliveryRow.target)).all()
    codes = {"qoffice_quangtri": ["03", "04", "05", "06"], "tdoffice_dienbien": ["DA_TIEP_NHAN", "DA_PHAN_CONG", "DANG_XU_LY", "DA_XU_LY"]}
    rng = random.Random(7)
    start = vietnam_now()
    truth: dict[str, str] = {}
    updates: dict[str, list[RawStatusChange]] = {"qoffice_quangtri": [], "tdoffice_dienbien": []}
    for ref, doc_id, target in deliveries:
        stages = codes[target][: rng.randint(1, 4)]  # some documents got further than others
        for i, code in enumerate(stages):
            updates[target].append(RawStatusChange(external_ref=ref, document_id=doc_id, raw_code=code,
                                                   changed_at=start + timedelta(minutes=i + 1),
                                                   answer="Đã xử lý xong." if code in ("06", "DA_XU_LY") else None))
        truth[ref] = stages[-1]
    for target, changes in updates.items():
        repeated = changes + rng.sample(changes, k=len(changes) // 2)
        rng.shuffle(repeated)
        updates[target] = repeated
    assert sum(len(c) for c in updates.values()) >= 1000 or len(deliveries) * 2.5 >= 500

    class ShuffledFeed:
        """A document system whose feed is the shuffled list, in pages of 37."""

        def __init__(self, name: str, real: object) -> None:
            self.name, self.real = name, real

        def changes_since(self, cursor: str | None, page_size: int = 200) -> Iterator[Page[RawStatusChange]]:
            items = updates.get(self.name, [])  # a target this test does not shuffle has no changes
            start_at = int(cursor or 0)
            for offset in range(start_at, len(items), 37):
                chunk = items[offset:offset + 37]
                yield Page(items=chunk, next_cursor=str(offset + len(chunk)), has_more=offset + 37 < len(items))

        def __getattr__(self, attribute: str) -> object:
            return getattr(self.real, attribute)

    for ctx in contexts(ledger_url, "shuffled"):
        real = ctx.connectors
        ctx.connectors = type("Feeds", (), {"source": lambda self, n: real.source(n),
                                            "target": lambda self, n: ShuffledFeed(n, real.target(n))})()
        poll(ctx)
    from paht_bridge.config.deployment import deployment

    tables = {t.name: t.statuses for name in ("quang_tri", "dien_bien") for t in deployment(name).targets}
    with sessions(ledger_url)() as session:
        final = {ref: (status, target) for ref, status, target in session.execute(select(DeliveryRow.external_ref, DeliveryRow.doc_status, DeliveryRow.target))}
    wrong = {ref: (final[ref][0], code) for ref, code in truth.items() if final[ref][0] != tables[final[ref][1]][code]}
    assert not wrong, list(wrong.items())[:5]


def test_killing_the_worker_at_random_points_loses_and_duplicates_nothing(stack: SandboxStack, ledger_url: str) -> None:
    """kill -9 of the deliver worker at random moments, on either ledger, then one that finishes."""
    from tests.chaos.harness import kill_trials

    trials = int(os.environ.get("PAHT_KILL_TRIALS", 15))
    url = ledger_url
    load_backlog(stack, trials * 12)
    ingest_all(url)
    for target in ("qoffice_quangtri", "tdoffice_dienbien"):
        stack.chaos[target].configure(latency=0.03)  # so a kill often lands mid-call
    outcome = kill_trials(url, trials, seed=91)
    figures = exactly_once(stack, url)
    assert outcome["killed"] >= trials * 0.8, outcome  # the kills really happened mid-run
    assert outcome["killed_while_sending"] >= 1, outcome  # and some between 'sending' and its outcome
    assert figures["not_delivered_in_ledger"] == 0 and figures["missing"] == 0, figures
    assert figures["duplicated"] == 0 and figures["extra"] == 0, figures
    assert figures["documents"] == trials * 12


def test_reconciliation_reports_drift_between_the_ledger_and_the_systems(stack: SandboxStack, ledger_url: str) -> None:
    from paht_bridge.steps import reconcile

    load_backlog(stack, 10)
    ingest_all(ledger_url)
    deliver_round(ledger_url, "deliver")
    first = {}
    for ctx in contexts(ledger_url, "reconcile-1"):
        first.update(reconcile(ctx).counts)
    assert not {k for k in first if "." not in k}, first  # in step: only the size figures, no drift
    assert first["qoffice_quangtri.documents_at_target"] == first["qoffice_quangtri.delivered_in_ledger"] == 5
    # Drift: a report the ledger never took in, and a delivery the ledger forgot it made.
    from paht_bridge.sandbox.backlog import synthetic_reports

    source, extra = list(synthetic_reports(12))[11]
    stack.citizen_states[source].add_report(extra)
    with sessions(ledger_url)() as session:
        forgotten = session.scalars(select(DeliveryRow).where(DeliveryRow.target == "tdoffice_dienbien")).first()
        forgotten.state = "pending"
        session.commit()
    second = {}
    for ctx in contexts(ledger_url, "reconcile-2"):
        for key, value in reconcile(ctx).counts.items():
            second[key] = second.get(key, 0) + value
    assert second["missing_in_ledger"] == 1 and second["not_recorded_as_delivered"] == 1, second
    with sessions(ledger_url)() as session:
        kinds = [e.detail["kind_of_drift"] for e in session.scalars(select(EventRow).where(EventRow.kind == "drift"))]
    assert sorted(kinds) == ["missing_in_ledger", "not_recorded_as_delivered"]


def test_a_dead_letter_replayed_from_the_command_line_is_delivered_once(stack: SandboxStack, tmp_path, monkeypatch) -> None:
    from paht_bridge.cli import main as paht
    from paht_bridge.ledger.db import migrate

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    migrate(url)
    monkeypatch.setenv("PAHT_LEDGER_URL", url)
    load_backlog(stack, 4)
    ingest_all(url)
    stack.chaos["tdoffice_dienbien"].configure(timeout_after_commit_rate=1.0)
    clock = MovableClock()
    for _ in range(3):  # max_tries=1: the first unknown outcome after its one try is a dead letter
        deliver_round(url, "dying", clock, max_tries=1)
        clock.advance(3600)
    with sessions(url)() as session:
        dead = session.scalars(select(DeliveryRow.external_ref).where(DeliveryRow.state == "dead")).all()
    assert len(dead) == 2  # the two Điện Biên reports; Quảng Trị's back end was fine
    stack.chaos["tdoffice_dienbien"].calm()
    assert paht(["replay", "--deployment", "dien_bien"]) == 0
    deliver_round(url, "after-replay", clock)
    figures = exactly_once(stack, url)
    assert figures["not_delivered_in_ledger"] == 0 and figures["duplicated"] == 0, figures
    with sessions(url)() as session:
        assert session.scalar(select(func.count(EventRow.id)).where(EventRow.kind == "replayed")) == 2


def _with_a_co_handler():  # noqa: ANN202 - a Deployment
    """Quảng Trị, where every report also goes to a second agency on a REST system (a second lane)."""
    from paht_bridge.config.deployment import Deployment, deployment

    base = deployment("quang_tri").model_dump(mode="json")
    rest = deployment("dien_bien").targets[0].model_dump(mode="json")
    base["targets"].append({**rest, "name": "tdoffice_cohandler"})
    for rule in base["routing"]["rules"]:
        rule["also"] = [{"code": "000.30.44.H45", "name": "Ban Quản lý dự án tỉnh Quảng Trị", "target": "tdoffice_cohandler"}]
    return Deployment.model_validate(base)


def test_a_report_for_two_agencies_is_not_delivered_until_both_have_it(stack: SandboxStack, ledger_url: str) -> None:
    """Partial failure is visible: the lead agency's system is up, the co-handler's is down."""
    from datetime import timedelta

    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.steps import StepContext, deliver, ingest

    mapping = _with_a_co_handler()
    clock = MovableClock()
    ctx = StepContext(mapping=mapping, sessions=sessions(ledger_url), connectors=AirflowConnectors(mapping), run_id="two-agencies",
                      lease=timedelta(seconds=600))
    ctx.clock = clock
    load_backlog(stack, 8)  # 4 for Quảng Trị
    ingest(ctx)
    stack.take_down("tdoffice_dienbien")
    counts = deliver(ctx).counts
    assert counts.get("delivered") == 4 and counts.get("retry") == 4, counts
    with sessions(ledger_url)() as session:
        from paht_bridge.ledger.models import ReportRow

        statuses = set(session.scalars(select(ReportRow.status).where(ReportRow.deployment == "quang_tri")))
        lanes = session.execute(select(DeliveryRow.lane, DeliveryRow.state, DeliveryRow.external_ref)).all()
    assert statuses == {"routed"}  # never "delivered" while the co-handler lacks its document
    assert {(lane, state) for lane, state, _ in lanes} == {(0, "delivered"), (1, "pending")}
    assert all(ref.endswith("-A1") for lane, _, ref in lanes if lane == 1)
    stack.bring_back("tdoffice_dienbien")
    clock.advance(3600)
    assert deliver(ctx).counts == {"delivered": 4}
    with sessions(ledger_url)() as session:
        assert set(session.scalars(select(ReportRow.status).where(ReportRow.deployment == "quang_tri"))) == {"delivered"}


def test_a_worker_whose_lease_ran_out_mid_batch_does_not_send(stack: SandboxStack, ledger_url: str) -> None:
    """A long batch can outlive its lease; the next worker then owns those deliveries and the
    first must not send them too (found in review: two create calls per reference)."""
    from datetime import timedelta

    from paht_bridge.ledger.store import claim_deliveries
    from paht_bridge.steps.deliver import send_claimed

    load_backlog(stack, 4)
    ingest_all(ledger_url)
    clock = MovableClock()
    slow, fast = (next(c for c in contexts(ledger_url, name, clock, lease_seconds=60) if c.mapping.deployment == "quang_tri")
                  for name in ("slow", "fast"))
    with sessions(ledger_url)() as session:
        held = claim_deliveries(session, deployment="quang_tri", owner=slow.worker, states=("pending",), limit=10,
                                lease=timedelta(seconds=60), now=clock())
        assert len(held) == 2
        clock.advance(120)  # the slow worker is still busy when its lease runs out
        from paht_bridge.steps import deliver

        assert deliver(fast).counts == {"delivered": 2}  # the next worker takes over
        outcome = send_claimed(session, slow, slow.mapping.target("qoffice_quangtri"), held)
    assert outcome.counts == {"lease_lost": 2}
    figures = exactly_once(stack, ledger_url)
    assert figures["create_requests_seen_by_targets"] == figures["documents"] == 2


class _SlowTargets:
    """The deployment's connectors, where every create at a document system takes ``seconds``
    of the steps' clock (a slow back end, compressed); ``rival`` runs once, right after create
    number ``rival_after`` (another worker trying to take over)."""

    def __init__(self, connectors, clock: MovableClock, seconds: float, rival=None, rival_after: int = 1) -> None:  # noqa: ANN001
        self.connectors, self.clock, self.seconds, self.rival, self.rival_after = connectors, clock, seconds, rival, rival_after
        self.calls = 0

    def source(self, name: str):  # noqa: ANN201
        return self.connectors.source(name)

    def target(self, name: str):  # noqa: ANN201
        real = self.connectors.target(name)
        outer = self

        class Slow:
            def __getattr__(self, attribute: str):  # noqa: ANN204
                return getattr(real, attribute)

            def create_document(self, record, attachments):  # noqa: ANN001, ANN202
                receipt = real.create_document(record, attachments)
                outer.clock.advance(outer.seconds)
                outer.calls += 1
                if outer.rival is not None and outer.calls == outer.rival_after:
                    outer.rival()
                return receipt

        return Slow()


def _two_workers_on_four_reports(stack: SandboxStack, ledger_url: str) -> tuple[MovableClock, StepContext, StepContext]:
    """Four Quảng Trị reports ingested, and two workers on them under a 60 s lease and one clock."""
    load_backlog(stack, 8)
    ingest_all(ledger_url)
    clock = MovableClock()
    slow, rival = (next(c for c in contexts(ledger_url, name, clock, lease_seconds=60) if c.mapping.deployment == "quang_tri")
                   for name in ("slow", "rival"))
    return clock, slow, rival


def test_a_slow_chunk_renews_its_lease_before_it_runs_out(stack: SandboxStack, ledger_url: str) -> None:
    """Fresh deliveries are marked 'sending' together and sent one after another; a chunk whose
    calls take long writes what it has sent and renews its lease on the rest before half of it
    has passed, so another worker trying meanwhile takes none of them (not even one already
    sent whose outcome is not written yet), and each is sent once, on its first try."""
    from paht_bridge.steps import deliver

    clock, slow, rival = _two_workers_on_four_reports(stack, ledger_url)
    taken: dict[str, int] = {}
    # Four calls of 40 s under a 60 s lease; the rival tries at 80 s, after the second call.
    slow.connectors = _SlowTargets(slow.connectors, clock, 40, rival=lambda: taken.update(deliver(rival).counts), rival_after=2)
    assert deliver(slow).counts == {"delivered": 4}
    assert taken == {}
    quang_tri = documents(stack.urls.urls["qoffice_quangtri"])
    assert len(quang_tri) == 4 and all(d["created_count"] == 1 for d in quang_tri)
    with sessions(ledger_url)() as session:
        assert session.scalars(select(DeliveryRow.tries).where(DeliveryRow.deployment == "quang_tri")).all() == [1, 1, 1, 1]


def test_a_chunk_whose_lease_ran_out_mid_way_sends_none_of_the_rest(stack: SandboxStack, ledger_url: str) -> None:
    """One call outlives the whole lease; another worker takes the rest of the chunk over (each
    marked 'sending': it looks them up, then sends them). The first must send none of them."""
    from paht_bridge.steps import deliver

    clock, slow, rival = _two_workers_on_four_reports(stack, ledger_url)
    taken: dict[str, int] = {}
    slow.connectors = _SlowTargets(slow.connectors, clock, 70, rival=lambda: taken.update(deliver(rival).counts))
    assert deliver(slow).counts == {"delivered": 1, "lease_lost": 3}
    # The one the slow worker had sent is still 'sending' in the ledger (its outcome would have
    # been written at the next lease check, after this call): the rival finds it by reference.
    assert taken == {"already_there": 1, "delivered": 3}
    quang_tri = documents(stack.urls.urls["qoffice_quangtri"])
    assert len(quang_tri) == 4 and all(d["created_count"] == 1 for d in quang_tri)
    assert exactly_once(stack, ledger_url)["duplicated"] == 0
    with sessions(ledger_url)() as session:  # the slow worker did not write over the rival's outcome
        delivered_events = session.scalars(select(EventRow.delivery_id).where(EventRow.kind == "delivered")).all()
    assert len(delivered_events) == len(set(delivered_events))


def test_the_worker_delivering_a_reports_last_lane_shows_it_delivered(stack: SandboxStack, ledger_url: str) -> None:
    """Two workers deliver the two lanes of one report at the same time; whichever writes its
    outcome last must see the other's lane as it is now, not as it was at its claim."""
    from datetime import timedelta

    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.ledger.models import ReportRow
    from paht_bridge.ledger.store import claim_deliveries
    from paht_bridge.steps import StepContext, deliver, ingest
    from paht_bridge.steps.deliver import send_claimed

    mapping = _with_a_co_handler()
    first, second = (StepContext(mapping=mapping, sessions=sessions(ledger_url), connectors=AirflowConnectors(mapping), run_id=name,
                                 lease=timedelta(seconds=600)) for name in ("first", "second"))
    load_backlog(stack, 2)  # one report for Quảng Trị: a lead lane and a co-handling lane
    ingest(first)
    with sessions(ledger_url)() as session:
        held = claim_deliveries(session, deployment="quang_tri", owner=first.worker, states=("pending",), limit=1,
                                lease=first.lease, now=first.clock())
        assert [d.lane for d in held] == [0]
        assert deliver(second).counts == {"delivered": 1}  # the other lane, while the first worker holds its own
        result = send_claimed(session, first, first.mapping.target(held[0].target), held)
        assert result.counts == {"delivered": 1}
    with sessions(ledger_url)() as session:
        assert session.scalars(select(ReportRow.status).where(ReportRow.deployment == "quang_tri")).all() == ["delivered"]


def test_both_lanes_in_one_chunk_leave_the_report_delivered(stack: SandboxStack, ledger_url: str) -> None:
    """One worker sends both lanes of each report in the same chunk: the report's status, written
    with the chunk's outcomes, is the one that follows the last of its lanes, not the first."""
    from datetime import timedelta

    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.ledger.models import ReportRow
    from paht_bridge.steps import StepContext, deliver, ingest

    mapping = _with_a_co_handler()
    ctx = StepContext(mapping=mapping, sessions=sessions(ledger_url), connectors=AirflowConnectors(mapping), run_id="one-chunk",
                      lease=timedelta(seconds=600))
    load_backlog(stack, 6)  # 3 reports for Quảng Trị, 6 deliveries: one chunk
    ingest(ctx)
    assert deliver(ctx).counts == {"delivered": 6}
    with sessions(ledger_url)() as session:
        statuses = session.scalars(select(ReportRow.status).where(ReportRow.deployment == "quang_tri")).all()
        status_events = session.scalars(select(func.count(EventRow.id)).where(EventRow.kind == "delivered")).one()
    assert statuses == ["delivered"] * 3
    assert status_events == 6


def test_a_sender_that_fails_leaves_the_others_sending_and_the_step_reports_what_went_through(
        stack: SandboxStack, ledger_url: str) -> None:
    """The co-handler's connection is missing: its sender fails at once; the lead agency's sender
    still delivers everything, and the step fails with that error carrying the counts."""
    from datetime import timedelta

    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.steps import StepContext, deliver, ingest
    from paht_bridge.steps.context import partial_result

    mapping = _with_a_co_handler()
    connectors = AirflowConnectors(mapping)

    class Missing:
        def source(self, name):  # noqa: ANN001, ANN202
            return connectors.source(name)

        def target(self, name):  # noqa: ANN001, ANN202
            if name == "tdoffice_cohandler":
                raise LookupError("connection 'paht_tdoffice_cohandler' is not defined")
            return connectors.target(name)

    ctx = StepContext(mapping=mapping, sessions=sessions(ledger_url), connectors=Missing(), run_id="one-missing",
                      lease=timedelta(seconds=600))
    load_backlog(stack, 6)  # three Quảng Trị reports, each with a lead lane and a co-handling lane
    ingest(ctx)
    with pytest.raises(LookupError, match="paht_tdoffice_cohandler") as failed:
        deliver(ctx)
    assert partial_result(failed.value).counts == {"delivered": 3}
    with sessions(ledger_url)() as session:
        rows = session.execute(select(DeliveryRow.state, DeliveryRow.lease_owner).where(DeliveryRow.deployment == "quang_tri")).all()
    assert sorted(rows) == [("delivered", None)] * 3 + [("pending", None)] * 3  # the co-handler's wait, never claimed
