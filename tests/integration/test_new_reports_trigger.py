"""The new-reports trigger (event-driven ingest) against the real stand-ins, on loopback.

Its ``run()`` is driven here as the triggerer drives it (an async generator in an event
loop), with a poll of a tenth of a second, against a ledger on SQLite and on PostgreSQL
that real ingest steps have filled. The scale-out run (``deploy/celery/run_scaleout.sh``)
runs it in a real triggerer process.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from importlib import import_module
from pathlib import Path

import pytest
import requests

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import sessions
from paht_bridge.steps import StepContext, ingest
from paht_bridge.canonical import VIETNAM_TZ, CanonicalStatus, Outcome, Page
from paht_bridge.config.deployment import deployment, deployment_names
from paht_bridge.plugins.new_reports_trigger import NewReportsTrigger
from paht_bridge.sandbox.citizen_app import load_seed_reports
from paht_bridge.sandbox.open311 import load_open311_seeds
from paht_bridge.sandbox.stack import SandboxStack

POLL = 0.1
SOURCES = {"quang_tri": "quangtri_ioc", "dien_bien": "dienbien_smart", "quang_ninh": "quangninh_open311"}


@pytest.fixture
def ledger(ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The trigger finds the ledger as tasks do: through the environment."""
    monkeypatch.setenv("PAHT_LEDGER_URL", ledger_url)
    return ledger_url


def ingest_all(url: str, names: list[str] | None = None) -> None:
    for name in names or deployment_names():
        mapping = deployment(name)
        ingest(StepContext(mapping=mapping, sessions=sessions(url), connectors=AirflowConnectors(mapping), run_id="test-ingest"))


def watch(trigger: NewReportsTrigger, seconds: float, *, until: int = 1, meanwhile: Callable[[], object] | None = None) -> list:
    """The events ``trigger.run()`` yields within ``seconds`` (stopping at ``until`` of them);
    ``meanwhile`` runs in a thread once the trigger has polled a few times."""

    async def scenario() -> list:
        events: list = []
        stream = trigger.run()

        async def consume() -> None:
            async for event in stream:
                events.append(event)
                if len(events) >= until:
                    return

        consuming = asyncio.ensure_future(consume())
        if meanwhile is not None:
            await asyncio.sleep(POLL * 5)
            await asyncio.to_thread(meanwhile)
        try:
            await asyncio.wait_for(consuming, seconds)
        except TimeoutError:
            pass
        finally:
            await stream.aclose()
        return events

    return asyncio.run(scenario())


def post_citizen_report(stack: SandboxStack, source: str, report_id: str) -> None:
    body = {**load_seed_reports(source)[0], "id": report_id, "created_at": datetime.now(VIETNAM_TZ).isoformat(timespec="seconds")}
    requests.post(f"{stack.urls.urls[source]}/_sandbox/reports", json=body, timeout=10).raise_for_status()


def post_open311_request(stack: SandboxStack, request_id: str) -> None:
    now = datetime.now(VIETNAM_TZ).isoformat(timespec="seconds")
    body = {**load_open311_seeds("quangninh_open311")[0], "service_request_id": request_id, "requested_datetime": now,
            "updated_datetime": now}
    requests.post(f"{stack.urls.urls['quangninh_open311']}/_sandbox/reports", json=body, timeout=10).raise_for_status()


def test_fires_for_the_seeded_backlog_before_anything_was_ingested(ledger: str, seeded_stack: SandboxStack) -> None:
    for name, source in SOURCES.items():
        events = watch(NewReportsTrigger(deployment=name, poll_seconds=POLL), seconds=10)
        assert len(events) == 1, name
        assert events[0].payload["deployment"] == name
        assert events[0].payload["new_reports"][source] > 0


def test_stays_quiet_while_the_ledger_cursor_is_at_the_end_of_every_source(
    ledger: str, seeded_stack: SandboxStack, caplog: pytest.LogCaptureFixture
) -> None:
    ingest_all(ledger)
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    for name in SOURCES:  # Open311 included: requests at the cursor's instant are not new, the empty stretch to now is walked
        assert watch(NewReportsTrigger(deployment=name, poll_seconds=POLL), seconds=1.5) == [], name
    assert not [r for r in caplog.records if r.name == "paht_bridge.plugins.new_reports_trigger"]  # quiet because nothing is new, not because a read failed
    pages = [r for r in caplog.records if r.getMessage().startswith(("citizen_app.reports_page", "open311.reports_page"))]
    assert len(pages) > 3 * 10 and all("items=0 quarantined=0" in r.getMessage() for r in pages)  # it did ask, every poll
    assert {r.levelno for r in pages} == {logging.DEBUG}  # and a quiet province stays out of the triggerer's INFO log


def test_fires_when_a_report_is_posted_after_the_ledger_cursor(ledger: str, seeded_stack: SandboxStack) -> None:
    ingest_all(ledger)
    events = watch(NewReportsTrigger(deployment="quang_tri", poll_seconds=POLL), seconds=10,
                   meanwhile=lambda: post_citizen_report(seeded_stack, "quangtri_ioc", "QT-TRIGGER-000001"))
    assert [e.payload for e in events] == [{"deployment": "quang_tri", "new_reports": {"quangtri_ioc": 1}}]


def test_fires_when_an_open311_request_is_posted_after_the_ledger_cursor(ledger: str, seeded_stack: SandboxStack) -> None:
    ingest_all(ledger, ["quang_ninh"])
    events = watch(NewReportsTrigger(deployment="quang_ninh", poll_seconds=POLL), seconds=10,
                   meanwhile=lambda: post_open311_request(seeded_stack, "LAT-311-000001"))
    assert [e.payload for e in events] == [{"deployment": "quang_ninh", "new_reports": {"quangninh_open311": 1}}]


def test_an_outcome_the_bridge_published_to_an_open311_app_is_no_news(ledger: str, seeded_stack: SandboxStack) -> None:
    """Publishing moves a request's ``updated_datetime`` past the cursor; ingest would find
    nothing to take, so the watch must not start a run for it. A request posted afterwards fires."""
    ingest_all(ledger, ["quang_ninh"])
    mapping = deployment("quang_ninh")
    app = AirflowConnectors(mapping).source("quangninh_open311")
    requests_ = [str(r["service_request_id"]) for r in load_open311_seeds("quangninh_open311")]
    for request_id in requests_:
        app.publish_outcome(Outcome(source_id=request_id, status=CanonicalStatus.ANSWERED, answer="Đã xử lý xong.",
                                    answered_by="UBND phường", answered_at=datetime.now(VIETNAM_TZ)))
    # The app now lists every request again, past the cursor ...
    assert sum(len(page.items) for page in app.reports_since(_cursor(ledger, "quangninh_open311"))) == len(requests_)
    # ... and the watch stays quiet: ingest would record them all as repeats.
    assert watch(NewReportsTrigger(deployment="quang_ninh", poll_seconds=POLL), seconds=1.5) == []
    events = watch(NewReportsTrigger(deployment="quang_ninh", poll_seconds=POLL), seconds=10,
                   meanwhile=lambda: post_open311_request(seeded_stack, "LAT-311-ECHO-01"))
    assert [e.payload["new_reports"] for e in events] == [{"quangninh_open311": 1}]
    result = ingest(StepContext(mapping=mapping, sessions=sessions(ledger), connectors=AirflowConnectors(mapping), run_id="after-publish"))
    assert result.counts.get("received") == 1 and not result.counts.get("updated"), result.counts


def _cursor(url: str, source: str) -> str | None:
    from paht_bridge.ledger.store import get_cursor

    with sessions(url)() as session:
        return get_cursor(session, f"{source}:reports")


def test_after_firing_it_waits_for_ingest_to_move_the_cursor(ledger: str, seeded_stack: SandboxStack) -> None:
    ingest_all(ledger, ["quang_tri"])
    post_citizen_report(seeded_stack, "quangtri_ioc", "QT-TRIGGER-000002")
    # Nothing ingested the new report: one event, then quiet (not one paht_ingest run per poll).
    assert len(watch(NewReportsTrigger(deployment="quang_tri", poll_seconds=POLL), seconds=1.5, until=5)) == 1
    # ... unless ingest stays behind for refire_seconds (a failed run is announced again).
    assert len(watch(NewReportsTrigger(deployment="quang_tri", poll_seconds=POLL, refire_seconds=0.5), seconds=1.6, until=5)) >= 2
    # Once ingest has taken the report the next post fires again, at once.
    ingest_all(ledger, ["quang_tri"])
    events = watch(NewReportsTrigger(deployment="quang_tri", poll_seconds=POLL), seconds=10,
                   meanwhile=lambda: post_citizen_report(seeded_stack, "quangtri_ioc", "QT-TRIGGER-000003"))
    assert [e.payload["new_reports"] for e in events] == [{"quangtri_ioc": 1}]


def test_keeps_polling_while_the_source_is_down_and_fires_once_it_is_back(
    ledger: str, seeded_stack: SandboxStack, caplog: pytest.LogCaptureFixture
) -> None:
    ingest_all(ledger, ["quang_tri"])
    seeded_stack.take_down("quangtri_ioc")
    caplog.set_level(logging.INFO, logger="paht_bridge.plugins.new_reports_trigger")

    def come_back_with_a_report() -> None:
        seeded_stack.bring_back("quangtri_ioc")
        post_citizen_report(seeded_stack, "quangtri_ioc", "QT-TRIGGER-000004")

    events = watch(NewReportsTrigger(deployment="quang_tri", poll_seconds=POLL), seconds=10, meanwhile=come_back_with_a_report)
    assert [e.payload["new_reports"] for e in events] == [{"quangtri_ioc": 1}]
    lines = [r.getMessage() for r in caplog.records if r.name == "paht_bridge.plugins.new_reports_trigger"]
    down = [line for line in lines if "cannot read" in line]
    assert len(down) == 1 and "system=quangtri_ioc" in down[0] and "TransientError" in down[0]  # once per outage, not per poll
    assert any("reads again" in line and "system=quangtri_ioc" in line for line in lines)
    phones = [r["reporter"]["phone"] for r in load_seed_reports("quangtri_ioc")]
    assert not [p for p in phones if any(p in line for line in lines)]


def test_keeps_polling_while_the_ledger_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch, seeded_stack: SandboxStack, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PAHT_LEDGER_URL", "postgresql+psycopg://nobody@127.0.0.1:1/nothing")
    caplog.set_level(logging.INFO, logger="paht_bridge.plugins.new_reports_trigger")
    # Without the ledger's cursors it cannot tell new from old: it waits rather than fire blind.
    assert watch(NewReportsTrigger(deployment="quang_tri", poll_seconds=POLL), seconds=1) == []
    down = [r.getMessage() for r in caplog.records if "cannot read" in r.getMessage()]
    assert len(down) == 1 and "system=ledger" in down[0]


def test_its_payload_holds_counts_only(ledger: str, seeded_stack: SandboxStack) -> None:
    events = watch(NewReportsTrigger(deployment="dien_bien", poll_seconds=POLL), seconds=10)
    text = json.dumps(events[0].payload, ensure_ascii=False)
    assert all(isinstance(n, int) for n in events[0].payload["new_reports"].values())
    for report in load_seed_reports("dienbien_smart"):
        assert report["reporter"]["phone"] not in text and report["reporter"]["name"] not in text and report["title"] not in text


def test_serialize_round_trips_as_the_triggerer_rebuilds_it() -> None:
    from airflow.serialization.decoders import smart_decode_trigger_kwargs
    from airflow.serialization.encoders import encode_trigger
    from airflow.triggers.base import BaseEventTrigger

    trigger = NewReportsTrigger(deployment="quang_ninh", poll_seconds=7, refire_seconds=120)
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs) == (
        "paht_bridge.plugins.new_reports_trigger.NewReportsTrigger", {"deployment": "quang_ninh", "poll_seconds": 7.0, "refire_seconds": 120.0})
    # The dag-processor stores the encoded form; the triggerer decodes it and calls the class with it.
    encoded = encode_trigger(trigger)
    again = NewReportsTrigger(**{k: smart_decode_trigger_kwargs(v) for k, v in encoded["kwargs"].items()})
    assert again.serialize() == trigger.serialize()
    assert BaseEventTrigger.hash(*again.serialize()) == BaseEventTrigger.hash(classpath, kwargs)


def test_paht_ingest_is_scheduled_on_the_watched_asset_with_one_watcher_per_deployment() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import Asset, AssetOrTimeSchedule

    bag = DagBag(str(Path(__file__).resolve().parents[2] / "dags"))
    assert not bag.import_errors
    schedule = bag.dags["paht_ingest"].timetable
    assert isinstance(schedule, AssetOrTimeSchedule)
    assert schedule.timetable.summary == "*/5 * * * *"  # the cron stays as a safety net
    assets = [a for a in schedule.asset_condition.objects if isinstance(a, Asset)]
    watched = [a for a in assets if a.uri == "paht://citizen-apps/new-reports"]
    assert len(watched) == 1
    triggers = [w.trigger for w in watched[0].watchers]
    assert all(isinstance(t, NewReportsTrigger) for t in triggers)
    assert sorted(t.deployment for t in triggers) == deployment_names()
    assert len({w.name for w in watched[0].watchers}) == len(deployment_names())


class _Pages:
    """A source whose feed is the given pages (of Reports), as ``reports_since`` yields them."""

    def __init__(self, pages: list[Page]) -> None:
        self.pages, self.read = pages, 0

    def reports_since(self, cursor: str | None, page_size: int = 100):  # noqa: ANN201 - a generator of Page
        for page in self.pages:
            self.read += 1
            yield page


def test_a_long_run_of_echoes_fires_so_that_ingest_walks_the_cursor_past_them() -> None:
    from paht_bridge.plugins.new_reports_trigger import MAX_ECHO_PAGES, _first_news

    echo = object()  # what ``news`` is told holds nothing ingest would take
    def page(n: int, more: bool) -> Page:
        return Page.model_construct(items=[echo] * n, quarantined=[], next_cursor=None, has_more=more)

    def news(items: list) -> int:
        return sum(item is not echo for item in items)

    # Echoes then news within the cap: the news is counted, echoes are not.
    source = _Pages([page(2, True), Page.model_construct(items=[echo, "new"], quarantined=[], next_cursor=None, has_more=False)])
    assert _first_news(source, None, 2, news) == 1
    # Echoes only, to the end of the feed: no news, nothing to fire for.
    assert _first_news(_Pages([page(2, True), page(1, False)]), None, 2, news) == 0
    # Empty windows (Open311 walks them to the present) do not count towards the cap.
    assert _first_news(_Pages([page(0, True)] * (MAX_ECHO_PAGES + 2) + [Page.model_construct(
        items=["new"], quarantined=[], next_cursor=None, has_more=False)]), None, 2, news) == 1
    # More pages of echoes than the cap: their count, so that ingest moves the cursor past them; no more read.
    many = _Pages([page(2, True)] * (MAX_ECHO_PAGES + 5))
    assert _first_news(many, None, 2, news) == 2 * MAX_ECHO_PAGES and many.read == MAX_ECHO_PAGES
