"""A feed's next pages fetched by a forked child while the step stores the one before.

Reading a citizen app's pages has no effect there, so the child may run ahead: at most
``depth`` pages, so memory stays that of a few pages. The pages, a failure (the typed error
as raised) and the end come back in order; whatever the step does not take is dropped when
it stops, and the same pages are read again from the stored cursor next time (DESIGN §4:
a page's items and its cursor commit together). ``steps.forked`` says what the child
inherits and must not do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from paht_bridge.steps import forked
from paht_bridge.canonical import Page

T = TypeVar("T")
_MORE, _PAGE, _FAILED, _END = "more", "page", "failed", "end"


def read_ahead(pages: Callable[[], Iterator[Page[T]]], depth: int = 2) -> Iterator[Page[T]]:
    """``pages()``'s pages, fetched in a child process up to ``depth`` ahead of the caller."""
    pid, conn = forked.start(lambda theirs, records: _serve(theirs, records, pages))
    try:
        for _ in range(depth):
            conn.send(_MORE)
        while True:
            try:
                kind, value, logs = conn.recv()
            except (EOFError, OSError) as error:
                raise RuntimeError(f"the page reader (pid {pid}) ended unexpectedly: {error.__class__.__name__}") from error
            forked.relog(logs)
            if kind == _END:
                return
            if kind == _FAILED:
                raise value
            conn.send(_MORE)
            items, quarantined, next_cursor, has_more = value  # a parametrized Page class does not pickle by name
            yield Page.model_construct(items=items, quarantined=quarantined, next_cursor=next_cursor, has_more=has_more)
    finally:
        forked.stop(pid, conn, wait=5.0)


def _serve(conn: Connection, records: list[dict[str, Any]], pages: Callable[[], Iterator[Page[Any]]]) -> None:
    """One page per ``more``; after the end or a failure it waits for the step's ``None``
    (a child gone with a request unread would reset the pipe before its last answer is read)."""
    feed: Iterator[Page[Any]] | None = pages()
    while (message := conn.recv()) is not None:
        if message != _MORE or feed is None:
            continue
        try:
            page = next(feed, None)
        except Exception as error:  # noqa: BLE001 - the step decides by its type, as when reading itself
            conn.send((_FAILED, forked.sendable(error), forked.taken(records)))
            feed = None
            continue
        if page is None:
            conn.send((_END, None, forked.taken(records)))
            feed = None
            continue
        conn.send((_PAGE, (page.items, page.quarantined, page.next_cursor, page.has_more), forked.taken(records)))
