"""Consume a cursor-driven feed into the ledger, page by page.

The one place that keeps the ledger's first rule, never lose a report, for every feed (reports, status changes,
ratings): a page's items, its quarantined items and the cursor that covers them commit in
one transaction, so a crash can repeat a page but never skip one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from sqlalchemy.orm import Session

from paht_bridge.steps.context import StepContext, StepResult, log
from paht_bridge.ledger.store import get_cursor, quarantine, set_cursor
from paht_bridge.canonical import Page

T = TypeVar("T")


def consume_feed(
    ctx: StepContext,
    stream: str,
    pages: Callable[[str | None], Iterator[Page[T]]],
    take: Callable[[Session, list[T]], list[str]],
    result: StepResult,
    feed: str,
) -> None:
    """Read ``pages(cursor)`` from the stored cursor on; ``take`` stores a page's items and names
    what happened to each (``one_by_one`` makes it from a function that takes one item)."""
    with ctx.sessions() as session:
        cursor = get_cursor(session, stream)
    for page in pages(cursor):
        with ctx.sessions.begin() as session:
            for bad in page.quarantined:
                quarantine(session, ctx.mapping.deployment, bad, ctx.run_id, feed=feed)
                result.add("quarantined")
            for outcome in take(session, page.items):
                result.add(outcome)
            set_cursor(session, stream, page.next_cursor)
        log.info("feed page deployment=%s stream=%s items=%d quarantined=%d cursor=%s",
                 ctx.mapping.deployment, stream, len(page.items), len(page.quarantined), page.next_cursor)


def one_by_one(take: Callable[[Session, T], str]) -> Callable[[Session, list[T]], list[str]]:
    """A page taker that stores its items one at a time with ``take``."""
    return lambda session, items: [take(session, item) for item in items]
