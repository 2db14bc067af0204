"""Several senders per target (``send_concurrency``) in one deliver step: still exactly once.

Each sender is a thread claiming its own batches under its own lease; with faults injected
(errors before the back end sees a call, answers held back until the client gave up after
the back end committed) every report still ends as exactly one document.
"""

from __future__ import annotations

import pytest

from paht_bridge.steps import deliver
from paht_bridge.sandbox.backlog import load_backlog
from paht_bridge.sandbox.stack import SandboxStack
from tests.chaos.harness import TARGETS, MovableClock, contexts, exactly_once, ingest_all, undelivered


@pytest.fixture
def short_timeouts(stack: SandboxStack, monkeypatch: pytest.MonkeyPatch) -> SandboxStack:
    for key, value in stack.urls.connection_env(timeout=0.5, citizen_timeout=30).items():
        monkeypatch.setenv(key, value)
    for name in TARGETS:
        stack.chaos[name].configure(stall_seconds=1.0, seed=7)
    return stack


def test_four_senders_per_target_create_every_document_once_under_faults(ledger_url: str, short_timeouts: SandboxStack) -> None:
    stack = short_timeouts
    load_backlog(stack, 160)
    ingest_all(ledger_url)
    for name in TARGETS:
        stack.chaos[name].configure(error_rate=0.2, timeout_after_commit_rate=0.05)
    clock, rounds = MovableClock(), 0
    while undelivered(ledger_url) and rounds < 40:
        for ctx in contexts(ledger_url, f"round-{rounds}", clock, batch_size=10, max_tries=60, send_concurrency=4):
            deliver(ctx)
        clock.advance(3600)
        rounds += 1
    figures = exactly_once(stack, ledger_url)
    assert figures["not_delivered_in_ledger"] == 0, figures
    assert figures["duplicated"] == 0 and figures["missing"] == 0 and figures["extra"] == 0, figures


def test_senders_share_the_work_and_report_one_result(ledger_url: str, stack: SandboxStack) -> None:
    load_backlog(stack, 80)
    ingest_all(ledger_url)
    delivered = sum(deliver(ctx).counts.get("delivered", 0) for ctx in contexts(ledger_url, "calm", send_concurrency=3))
    assert delivered == 80
    assert exactly_once(stack, ledger_url)["duplicated"] == 0


def test_claimers_started_together_each_get_their_own_deliveries(ledger_url: str, stack: SandboxStack) -> None:
    """Eight workers claim at the same moment: each takes five different deliveries of the
    forty due. (With a SELECT before the leasing UPDATE, SQLite let them pick the same five,
    and the losers came back with nothing, as if nothing were due.)"""
    import threading
    from datetime import timedelta

    from paht_bridge.ledger.db import sessions
    from paht_bridge.ledger.store import claim_deliveries
    from paht_bridge.canonical import vietnam_now

    load_backlog(stack, 80)  # 40 deliveries for each deployment
    ingest_all(ledger_url)
    start, taken = threading.Barrier(8), {}

    def claim(n: int) -> None:
        with sessions(ledger_url)() as session:
            start.wait()
            batch = claim_deliveries(session, deployment="dien_bien", owner=f"worker-{n}", states=("pending",), limit=5,
                                     lease=timedelta(minutes=10), now=vietnam_now())
            taken[n] = [d.id for d in batch]

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(len(ids) for ids in taken.values()) == [5] * 8
    assert len({i for ids in taken.values() for i in ids}) == 40


def test_each_sender_gets_a_share_of_a_small_backlog(ledger_url: str, stack: SandboxStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forty due and four senders per target: each claims ten at a time, so all four send
    (batches of 100 would leave three idle)."""
    import importlib

    from paht_bridge.ledger import store

    deliver_module = importlib.import_module("paht_bridge.steps.deliver")  # the package exports a function of that name
    claims: list[tuple[str, int]] = []
    real = store.claim_deliveries

    def spy(session, **kwargs):  # noqa: ANN001, ANN202
        batch = real(session, **kwargs)
        if batch:
            claims.append((kwargs["owner"], len(batch)))
        return batch

    monkeypatch.setattr(deliver_module, "claim_deliveries", spy)
    load_backlog(stack, 80)
    ingest_all(ledger_url)
    ctx = next(c for c in contexts(ledger_url, "shares", send_concurrency=4) if c.mapping.deployment == "dien_bien")
    assert deliver(ctx).counts == {"delivered": 40}
    assert sorted(size for _, size in claims) == [10] * 4
    assert len({owner for owner, _ in claims}) == 4
    assert exactly_once(stack, ledger_url)["duplicated"] == 0
