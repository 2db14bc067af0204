"""Several senders per target (``send_concurrency``) in one deliver step: still exactly once.

Each sender is a thread claiming its own batches under its own lease; with faults injected
(errors before the back end sees a call, answers held back until the client gave up after
the back end committed) every report still ends as exactly one document.
"""

from __future__ import annotations

import pytest

from paht_bridge.ledger.steps import deliver
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
