"""A back end without a change feed is polled document by document, within a budget.

Polling cost grows with the budget, not with the number of open documents; the
budget goes to the documents nearest their deadline first, and the rest to the ones polled
longest ago, so every open document is asked in turn. Requests are counted at the stand-in.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import CursorRow, DeliveryRow
from paht_bridge.steps import StepContext, deliver, ingest, poll
from paht_bridge.canonical import CanonicalStatus, vietnam_now
from paht_bridge.config.deployment import Deployment, deployment
from paht_bridge.sandbox.backlog import load_backlog
from paht_bridge.sandbox.stack import SandboxStack

TARGET = "tdoffice_dienbien"
OPEN = 40  # documents delivered to the REST back end
BUDGET = 10


def without_feed(budget: int) -> Deployment:
    mapping = deployment("dien_bien")
    targets = tuple(t.model_copy(update={"change_feed": False, "poll_budget": budget}) for t in mapping.targets)
    return mapping.model_copy(update={"targets": targets})


def context(url: str, run_id: str, budget: int = BUDGET) -> StepContext:
    mapping = without_feed(budget)
    return StepContext(mapping=mapping, sessions=sessions(url), connectors=AirflowConnectors(mapping), run_id=run_id)


def requests_seen(stack: SandboxStack) -> int:
    return stack.chaos[TARGET].counts["requests"]


def status_of(url: str) -> dict[int, str]:
    with sessions(url)() as session:
        return dict(session.execute(select(DeliveryRow.id, DeliveryRow.doc_status).where(DeliveryRow.target == TARGET, DeliveryRow.attempt == 1)).all())


@pytest.fixture
def delivered(stack: SandboxStack, tmp_path) -> tuple[str, list[int]]:  # noqa: ANN001
    """OPEN documents delivered to the REST stand-in, each with its own deadline (shuffled
    against the delivery order), then moved one stage on by the agency desk."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    from paht_bridge.ledger.db import migrate

    migrate(url)
    load_backlog(stack, 2 * OPEN)  # alternating provinces: OPEN for Điện Biên
    ctx = context(url, "setup")
    ingest(ctx)
    deliver(ctx)
    now = vietnam_now()
    with sessions(url).begin() as session:
        ids = list(session.scalars(select(DeliveryRow.id).where(DeliveryRow.target == TARGET, DeliveryRow.state == "delivered").order_by(DeliveryRow.id)))
        assert len(ids) == OPEN
        for rank, delivery_id in enumerate(reversed(ids)):  # the last delivered is due first
            session.execute(update(DeliveryRow).where(DeliveryRow.id == delivery_id).values(deadline=now + timedelta(hours=rank + 1)))
    by_deadline = list(reversed(ids))
    stack.urls.tick_desks()  # every document at the agency moves on: no feed tells us
    return url, by_deadline


def test_a_poll_makes_exactly_the_budget_of_requests_and_covers_the_nearest_deadlines(stack: SandboxStack, delivered) -> None:  # noqa: ANN001
    url, by_deadline = delivered
    before = requests_seen(stack)
    result = poll(context(url, "poll-1"))
    assert requests_seen(stack) - before == BUDGET
    assert result.counts["status_requests"] == BUDGET
    statuses = status_of(url)
    nearest = by_deadline[: BUDGET // 2]
    assert all(statuses[d] != CanonicalStatus.DELIVERED for d in nearest), "the documents due first were not asked"
    assert sum(1 for s in statuses.values() if s != CanonicalStatus.DELIVERED) == BUDGET


def test_every_open_document_is_asked_in_turn_and_none_twice_before_the_others(stack: SandboxStack, delivered) -> None:  # noqa: ANN001
    url, by_deadline = delivered
    runs_needed = -(-(OPEN - BUDGET // 2) // (BUDGET - BUDGET // 2))  # the urgent half repeats; the rotation covers the rest
    before = requests_seen(stack)
    for run in range(runs_needed):
        poll(context(url, f"poll-{run}"))
    assert requests_seen(stack) - before == runs_needed * BUDGET
    statuses = status_of(url)
    assert [d for d in by_deadline if statuses[d] == CanonicalStatus.DELIVERED] == []
    with sessions(url)() as session:
        assert session.get(CursorRow, f"{TARGET}:status-rotation") is not None


def test_settled_documents_are_not_asked_and_a_small_backlog_costs_less_than_the_budget(stack: SandboxStack, delivered) -> None:  # noqa: ANN001
    url, _ = delivered
    with sessions(url).begin() as session:
        session.execute(update(DeliveryRow).where(DeliveryRow.target == TARGET).values(doc_status=CanonicalStatus.ANSWERED))
    before = requests_seen(stack)
    result = poll(context(url, "poll-settled", budget=500))
    assert requests_seen(stack) - before == 0
    assert result.counts.get("status_requests", 0) == 0


def test_a_target_with_a_change_feed_is_read_through_the_feed(stack: SandboxStack, delivered) -> None:  # noqa: ANN001
    url, _ = delivered
    mapping = deployment("dien_bien")  # change_feed: true by default
    assert all(t.change_feed for t in mapping.targets)
    before = requests_seen(stack)
    result = poll(StepContext(mapping=mapping, sessions=sessions(url), connectors=AirflowConnectors(mapping), run_id="feed"))
    assert "status_requests" not in result.counts
    assert requests_seen(stack) - before == 1  # one page of the feed holds every change
