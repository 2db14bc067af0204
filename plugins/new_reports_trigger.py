"""Event-driven ingest: a trigger that tells Airflow when a citizen source has new reports.

``dags/paht_lifecycle.py`` watches the Asset ``paht://citizen-apps/new-reports`` with one
``AssetWatcher`` per deployment, each running a ``NewReportsTrigger`` in the triggerer.
Every ``poll_seconds`` the trigger asks each citizen source of its deployment for what lies
after the cursor the ledger holds for that source (``<source>:reports``, the cursor ingest
commits) — the very read ingest makes, stopped at the first page that holds anything ingest
would take — and fires only when there is something. A request whose only change is the
outcome the bridge published to it (an Open311 app moves its ``updated_datetime``) is no
news. Its event becomes an asset event, the asset event a ``paht_ingest`` run; the 5-minute
cron stays as a safety net. A report posted in a citizen app (phản ánh hiện trường, field
report) so reaches ingest within seconds, not minutes.

How it fits the triggerer (Airflow 3.3):

- A watcher's ``run()`` lives as long as the watch: every event it yields becomes an asset
  event and the generator goes on (one that returns is started again by the triggerer).
  Until ingest has moved the cursor, every poll would see the same reports again and queue
  one more ``paht_ingest`` run; so after firing it stays quiet while its deployment's
  cursors are those it fired at, for at most ``refire_seconds`` (a failed ingest is then
  announced again; the cron retries it meanwhile).
- The triggerer's event loop is shared by every trigger: the HTTP calls (requests) and the
  ledger read (SQLAlchemy) run in worker threads; Airflow Connections are read with the
  async getter (``aget_connection``), as a trigger should.
- A source that is down, a missing connection or a ledger that cannot be read is logged once
  per outage (the error, never a report's content) and polling goes on.
- The event's payload holds counts only: it is stored with the asset event and shown in the UI.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

log = logging.getLogger(__name__)

#: How often each deployment's sources are asked, by default (P6 of issue 7: posted → document ≤ 60 s at p95).
DEFAULT_POLL_SECONDS = 15.0
#: How long to stay quiet after firing while the ledger's cursors have not moved.
DEFAULT_REFIRE_SECONDS = 300.0


def reports_stream(source: str) -> str:
    """The ledger cursor's stream for a source's reports (the one ingest commits: ``steps/ingest.py``)."""
    return f"{source}:reports"


class NewReportsTrigger(BaseEventTrigger):
    """Fires when any citizen source of ``deployment`` holds reports past the ledger's cursor.

    Reads the deployment mapping (its sources), the ledger (``PAHT_LEDGER_URL``, else
    ``$PAHT_HOME/ledger.sqlite``, as tasks do) and each source's Airflow Connection (through
    the source's hook: host, password, extra). Payload: ``{"deployment", "new_reports": {source: n}}``
    where ``n`` counts what ingest would take on the first page past the cursor that holds any
    (at least that many).
    """

    def __init__(self, deployment: str, poll_seconds: float = DEFAULT_POLL_SECONDS,
                 refire_seconds: float = DEFAULT_REFIRE_SECONDS) -> None:
        super().__init__()
        self.deployment = deployment
        self.poll_seconds = float(poll_seconds)
        self.refire_seconds = float(refire_seconds)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"deployment": self.deployment, "poll_seconds": self.poll_seconds, "refire_seconds": self.refire_seconds})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = await asyncio.to_thread(_Watch, self.deployment)  # reads the mapping file
        fired_at_cursors: dict[str, str | None] | None = None
        fired_at = 0.0
        try:
            while True:
                cursors = await asyncio.to_thread(watch.cursors)
                quiet = (fired_at_cursors is not None and cursors == fired_at_cursors
                         and time.monotonic() - fired_at < self.refire_seconds)
                if cursors is not None and not quiet:
                    pending = await watch.peek_all(cursors)
                    if pending:
                        fired_at_cursors, fired_at = cursors, time.monotonic()
                        log.info("new reports deployment=%s new_reports=%s", self.deployment, pending)
                        yield TriggerEvent({"deployment": self.deployment, "new_reports": pending})
                await asyncio.sleep(self.poll_seconds)
        finally:
            await asyncio.to_thread(watch.close)


class _Watch:
    """One deployment's sources, their clients (reused between polls) and what is down."""

    def __init__(self, deployment: str) -> None:
        from paht_bridge.config.deployment import deployment as load

        self.mapping = load(deployment)
        self.deployment = deployment
        self._clients: dict[str, Any] = {}
        self._sessions: Any = None
        self._down: set[str] = set()  # what is failing now: logged when it starts and when it ends

    @property
    def sources(self) -> list[str]:
        return [source.name for source in self.mapping.sources]

    def cursors(self) -> dict[str, str | None] | None:
        """Each source's ledger cursor, or None when the ledger cannot be read (logged)."""
        from sqlalchemy.exc import SQLAlchemyError

        from paht_bridge.ledger.db import sessions
        from paht_bridge.ledger.store import get_cursor

        try:
            if self._sessions is None:
                self._sessions = sessions()
            with self._sessions() as session:
                found = {name: get_cursor(session, reports_stream(name)) for name in self.sources}
        except SQLAlchemyError as error:
            self._failed("ledger", error)
            return None
        self._back("ledger")
        return found

    async def peek_all(self, cursors: dict[str, str | None]) -> dict[str, int]:
        """How many items each source has past its cursor (sources with none left out), asked side by side."""
        counts = await asyncio.gather(*(self._peek(name, cursors.get(name)) for name in self.sources))
        return {name: n for name, n in zip(self.sources, counts, strict=True) if n}

    async def _peek(self, name: str, cursor: str | None) -> int:
        try:
            client = self._clients.get(name) or await self._client(name)
            found = await asyncio.to_thread(_first_news, client, cursor, self.mapping.source(name).page_size, self._news)
        except Exception as error:  # noqa: BLE001 - a source that fails must not end the watch
            self._failed(name, error)
            self._drop(name)  # the next poll reads its connection again (a rotated key, a moved host)
            return 0
        self._back(name)
        return found

    def _news(self, reports: list[Any]) -> int:
        """What ingest would take of ``reports`` (``steps.ingest.news``), asked of the ledger."""
        from paht_bridge.steps.ingest import news

        with self._sessions() as session:
            return news(session, reports)

    async def _client(self, name: str) -> Any:
        from paht_bridge.connectors.hooks import SOURCE_HOOKS

        spec = self.mapping.source(name)
        hook = SOURCE_HOOKS[spec.kind](spec.connection_id)
        # The async getter, then the hook's own client building (it reads no more I/O than this).
        hook.connection = await hook.aget_connection(spec.connection_id)
        self._clients[name] = await asyncio.to_thread(hook.get_client, name, spec)
        return self._clients[name]

    def _failed(self, what: str, error: BaseException) -> None:
        if what not in self._down:
            self._down.add(what)
            log.warning("new-reports watch cannot read deployment=%s system=%s error=%s: %s; polling goes on",
                        self.deployment, what, error.__class__.__name__, _short(error))

    def _back(self, what: str) -> None:
        if what in self._down:
            self._down.discard(what)
            log.info("new-reports watch reads again deployment=%s system=%s", self.deployment, what)

    def _drop(self, name: str) -> None:
        client = self._clients.pop(name, None)
        if client is not None and hasattr(client, "close"):
            client.close()

    def close(self) -> None:
        for name in list(self._clients):
            self._drop(name)


#: Pages holding only what ingest would not take (echoes of the bridge's own publishes) that a
#: poll reads before it fires anyway, so that ingest moves the cursor past them and polls stay short.
MAX_ECHO_PAGES = 3


def _first_news(client: Any, cursor: str | None, page_size: int, news: Callable[[list[Any]], int]) -> int:
    """Items ingest would take (new, changed by the citizen, or to be quarantined) on the first
    page past ``cursor`` that holds any; 0 if none.

    Goes through ``reports_since`` exactly as ingest does, so what counts as new is what ingest
    would take: for Open311 that includes its boundary rules (requests at the cursor's instant
    already taken are not new; empty windows are walked to the present). A request whose only
    change is the outcome the bridge published to it is not news (``news``, asked of the
    ledger): without that every publish to an Open311 app would start an ingest run that
    finds nothing. Past ``MAX_ECHO_PAGES`` pages of such echoes it returns their count, so
    ingest walks the cursor past them."""
    echoes = echo_pages = 0
    for page in client.reports_since(cursor, page_size=page_size):
        found = len(page.quarantined) + (news(page.items) if page.items else 0)
        if found:
            return found
        if page.items:
            echoes, echo_pages = echoes + len(page.items), echo_pages + 1
            if page.has_more and echo_pages >= MAX_ECHO_PAGES:
                return echoes
        if not page.has_more:
            return 0
    return 0


def _short(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
