"""Ingest: pull new and changed reports from every citizen source into the ledger.

Each page is one transaction: its reports, its quarantined items and the cursor that
covers them commit together, so a crash can repeat a page (harmless: reports are keyed
by source and id) but never skip one.

Where the deployment turns ``duplicates`` on, a new report of a problem already reported
(near in place and time, same category, similar text: ``ledger.duplicates``) is linked to
that earlier report instead of being routed: no document of its own, it follows the
earlier one's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from paht_bridge.ledger import bulk
from paht_bridge.ledger.db import encrypt
from paht_bridge.ledger.duplicates import Match, Sighting, best_match, window
from paht_bridge.ledger.models import DeliveryRow, ReportRow
from paht_bridge.steps.context import StepContext, StepResult, log, reraise_after_others
from paht_bridge.steps.status import active_delivery, refresh_status
from paht_bridge.connectors.errors import ConnectorError
from paht_bridge.steps.feed import consume_feed
from paht_bridge.ledger.store import EventBatch, record_event
from paht_bridge.normalise.admin_units import ResolvedUnits, resolve_units
from paht_bridge.canonical import CanonicalStatus, Page, Report, Routing, vietnam_now
from paht_bridge.normalise.transforms import MappingProblem, external_ref, routes

_REPORTS, _DELIVERIES = ReportRow.__table__, DeliveryRow.__table__


def ingest(ctx: StepContext) -> StepResult:
    result = StepResult(deployment=ctx.mapping.deployment, step="ingest")
    failures: list[ConnectorError] = []
    for source in ctx.mapping.sources:
        try:
            _ingest_source(ctx, source.name, source.page_size, result)
        except ConnectorError as error:  # one broken app must not hold up the others
            failures.append(error)
            result.errors.append(str(error))
            log.error("ingest stopped for source=%s error=%s", source.name, error)
    if failures:
        reraise_after_others(failures, result)
    return result


def _ingest_source(ctx: StepContext, name: str, page_size: int, result: StepResult) -> None:
    client = ctx.connectors.source(name)

    def pages(cursor: str | None) -> Iterator[Page[Report]]:
        return client.reports_since(cursor, page_size=page_size)

    consume_feed(ctx, f"{name}:reports", pages, lambda session, reports: take_page(session, ctx, reports), result, feed="reports")


def take_in(session: Session, ctx: StepContext, report: Report) -> str:
    """Store one report (new, changed or a repeat); route it if new. Returns what happened."""
    return take_page(session, ctx, [report])[0]


@dataclass
class Fresh:
    """A report first seen on this page: the row to insert, and what it is routed by."""

    index: int  # its place in the page's outcomes
    report: Report  # as first seen on the page: what it is routed by
    units: ResolvedUnits
    row: dict[str, Any]  # the ``reports`` row to insert: the newest version on the page
    changed: bool = False  # changed further down the same page
    routings: list[Routing] = field(default_factory=list)
    id: int = 0


def take_page(session: Session, ctx: StepContext, reports: list[Report]) -> list[str]:
    """Store a page of reports, each new, changed or a repeat; route the new ones. Returns what
    happened to each, in order.

    The ledger is asked once for the page's reports it already holds; the new reports and
    their deliveries go in as plain many-row INSERTs (``ledger.bulk``; no unit of work to
    track them: nothing in this transaction reads them back as objects), and the events in
    one more: a page costs a handful of statements, not several per report."""
    events = EventBatch(ctx.run_id)
    known = _known(session, reports)
    outcomes: list[str] = []
    fresh: dict[tuple[str, str], Fresh] = {}
    for report in reports:
        key = (report.source, report.source_id)
        if (row := known.get(key)) is not None:
            if report.updated_at <= row.updated_at:
                outcomes.append("repeated")
                continue
            payload = _payload(report)
            echo = _echoes(payload, row)
            row.title, row.updated_at, row.payload = report.title, report.updated_at, payload
            if echo:  # only the app's own status moved (our publish, as a rule): nothing the citizen said
                outcomes.append("repeated")
                continue
            events.add("updated", report_id=row.id)
            outcomes.append("updated")
        elif (new := fresh.get(key)) is not None:
            if report.updated_at <= new.row["updated_at"]:
                outcomes.append("repeated")
                continue
            new.row.update(title=report.title, updated_at=report.updated_at, payload=_payload(report))
            new.changed = True
            outcomes.append("updated")
        else:
            units = resolve_units(report.location.unit)
            fresh[key] = Fresh(len(outcomes), report, units, _new_row(ctx, report, units))
            outcomes.append("received")
    if fresh:
        _store_fresh(session, ctx, list(fresh.values()), outcomes, events)
    events.write(session)
    return outcomes


def _store_fresh(session: Session, ctx: StepContext, page: list[Fresh], outcomes: list[str], events: EventBatch) -> None:
    """Insert the page's new reports, routed before the INSERT (a report that cannot be routed
    goes in with its problem, for IOC review), then their deliveries."""
    for new in page:
        try:
            new.routings = routes(new.report, new.units, ctx.mapping)
        except MappingProblem as problem:
            new.row["problem"] = str(problem)
            outcomes[new.index] = "needs_review"
        new.row["status"] = CanonicalStatus.ROUTED if new.routings else CanonicalStatus.RECEIVED
    ids = bulk.insert_ids(session.connection(), _REPORTS, [new.row for new in page], ("source", "source_id"))
    deliveries: list[tuple[Fresh, dict[str, Any]]] = []
    for new in page:
        new.id = report_id = ids[(new.row["source"], new.row["source_id"])]
        report = new.report
        events.add("received", report_id=report_id, status=CanonicalStatus.RECEIVED, source=report.source, channel=report.channel,
                   category=report.category, at=new.row["received_at"])
        if not new.routings:
            events.add("needs_review", report_id=report_id, status=CanonicalStatus.RECEIVED, reason=new.row["problem"])
            log.warning("report needs IOC review report=%s reason=%s", report.key, new.row["problem"])
            continue
        if ctx.mapping.duplicates.enabled:
            insert_deliveries(session, ctx, deliveries, events)  # earlier reports of this page can lead
            row = session.get(ReportRow, report_id)
            if (found := _find_primary(session, ctx, row, report)) is not None:
                events.write(session)  # its 'received' goes before the link's events
                outcomes[new.index] = _link(session, ctx, row, *found)
                continue
        deliveries.extend((new, row) for row in first_deliveries(ctx, report_id, report, new.routings))
    for new in page:
        if new.changed:  # after its 'received'
            events.add("updated", report_id=new.id)
    insert_deliveries(session, ctx, deliveries, events)


def first_deliveries(ctx: StepContext, report_id: int, report: Report, routings: list[Routing]) -> list[dict[str, Any]]:
    """The first deliveries of a routed report: one per agency (lane), pending."""
    return [{
        "report_id": report_id, "deployment": ctx.mapping.deployment, "attempt": 1, "lane": lane,
        "external_ref": external_ref(report, 1, lane), "target": routing.target, "agency_code": routing.agency_code,
        "agency_name": routing.agency_name, "target_category": routing.target_category, "priority": routing.priority,
        "deadline": routing.deadline, "state": "pending", "tries": 0,
    } for lane, routing in enumerate(routings)]


def insert_deliveries(session: Session, ctx: StepContext, deliveries: list[tuple[Fresh, dict[str, Any]]],
                       events: EventBatch) -> None:
    """Insert the gathered deliveries (one statement), each with its 'routed' event; empties the list."""
    if not deliveries:
        return
    ids = bulk.insert_ids(session.connection(), _DELIVERIES, [row for _, row in deliveries], ("external_ref",))
    for new, row in deliveries:
        delivery_id, current = ids[(row["external_ref"],)], new.units.current
        events.add("routed", report_id=new.id, delivery_id=delivery_id, status=CanonicalStatus.ROUTED,
                   agency=row["agency_code"], agency_name=row["agency_name"], target=row["target"], lane=row["lane"],
                   deadline=row["deadline"].isoformat(), ward=current.ward if current else None)
    deliveries.clear()


def news(session: Session, reports: list[Report]) -> int:
    """How many of ``reports`` ingest would take as ``received`` or ``updated``: neither a repeat
    nor the echo of a change the app made on its own (the bridge's publish, as a rule). The
    new-reports watch counts these, so a publish does not start an ingest run that finds nothing."""
    known = _known(session, reports)
    new_keys: set[tuple[str, str]] = set()
    changed = 0
    for report in reports:
        key = (report.source, report.source_id)
        if (row := known.get(key)) is None:
            new_keys.add(key)
        elif report.updated_at > row.updated_at and not _echoes(_payload(report), row):
            changed += 1
    return len(new_keys) + changed


def _echoes(payload: dict, row: ReportRow) -> bool:
    """Whether a newer copy of a stored report changes only what its app changes on its own."""
    return _citizens_words(payload) == _citizens_words(row.payload)


def _known(session: Session, reports: list[Report]) -> dict[tuple[str, str], ReportRow]:
    """The page's reports the ledger already holds, in one query."""
    keys = {(r.source, r.source_id) for r in reports}
    found: dict[tuple[str, str], ReportRow] = {}
    for source in {source for source, _ in keys}:
        ids = [source_id for s, source_id in keys if s == source]
        for row in session.scalars(select(ReportRow).where(ReportRow.source == source, ReportRow.source_id.in_(ids))):
            found[(row.source, row.source_id)] = row
    return found


#: At most this many earlier reports are compared with a new one (a day's worth in one
#: category of a busy province is a few dozen; the bound keeps a flood of one kind cheap).
MAX_CANDIDATES = 1000

#: A candidate's lead delivery in one of these document states cannot take duplicates: the
#: agency gave it back or withdrew it (a refusal being re-routed has a new, open delivery).
_CLOSED = frozenset({CanonicalStatus.REFUSED_BY_AGENCY, CanonicalStatus.RECALLED, CanonicalStatus.REJECTED_INVALID})


def _find_primary(session: Session, ctx: StepContext, row: ReportRow, report: Report) -> tuple[ReportRow, Match] | None:
    """The earlier report this one repeats, if any: the ledger narrows by deployment, category
    and time window (indexed), then ``best_match`` compares place and text."""
    rules = ctx.mapping.duplicates
    start, end = window(report.created_at, rules)
    query = (select(ReportRow)
             .where(ReportRow.deployment == ctx.mapping.deployment, ReportRow.created_at >= start, ReportRow.created_at <= end,
                    ReportRow.duplicate_of.is_(None), ReportRow.id != row.id)
             .options(selectinload(ReportRow.deliveries))
             .order_by(ReportRow.created_at.desc()).limit(MAX_CANDIDATES))
    if rules.same_category:
        query = query.where(ReportRow.category == report.category)
    candidates = {c.id: c for c in session.scalars(query) if _can_lead(c)}
    match = best_match(_sighting(row, report.description), (_sighting(c, c.payload.get("description") or "") for c in candidates.values()),
                       rules)
    return (candidates[match.primary_id], match) if match else None


def _can_lead(candidate: ReportRow) -> bool:
    """Still open or answered at its agency: not dead-lettered, refused for good or recalled."""
    delivery = active_delivery(candidate)
    return delivery is not None and delivery.state != "dead" and delivery.doc_status not in _CLOSED


def _sighting(row: ReportRow, description: str) -> Sighting:
    return Sighting(report_id=row.id, category=row.category, created_at=row.created_at, lat=row.lat, lon=row.lon,
                    ward_code=row.ward_code, title=row.title, description=description)


def _link(session: Session, ctx: StepContext, row: ReportRow, primary: ReportRow, match: Match) -> str:
    """Link ``row`` to ``primary``'s document: no delivery of its own; both traces say so."""
    row.duplicate_of = primary.id
    primary.duplicate_count = ReportRow.duplicate_count + 1  # in SQL: two sources may link to one primary at once
    session.flush()
    why = match.model_dump(exclude={"primary_id"})
    record_event(session, "linked_duplicate", report_id=row.id, run_id=ctx.run_id, status=refresh_status(session, row, ctx.run_id),
                 primary=f"{primary.source}:{primary.source_id}", primary_id=primary.id, **why)
    record_event(session, "duplicate_linked", report_id=primary.id, run_id=ctx.run_id,
                 duplicate=f"{row.source}:{row.source_id}", duplicate_id=row.id, **why)
    log.info("report linked as a duplicate report=%s primary=%s:%s similarity=%s distance_m=%s", f"{row.source}:{row.source_id}",
             primary.source, primary.source_id, match.text_similarity, match.distance_m)
    return "linked_duplicate"


def _payload(report: Report) -> dict:
    return report.model_dump(mode="json", exclude={"reporter"})


#: What a citizen app changes on its own: the time of the last change and the status it shows
#: its citizens (both move when the bridge publishes an outcome to it).
_APP_OWN_FIELDS = frozenset({"updated_at", "source_status"})


def _citizens_words(payload: dict) -> dict:
    """A stored report without what its app changes on its own: what an ``updated`` event is about."""
    return {key: value for key, value in payload.items() if key not in _APP_OWN_FIELDS}


def _new_row(ctx: StepContext, report: Report, units: ResolvedUnits) -> dict[str, Any]:
    """The ``reports`` row of a new report (every column, as a multi-row INSERT needs)."""
    legacy, current = units.legacy, units.current
    return {
        "deployment": ctx.mapping.deployment, "source": report.source, "source_id": report.source_id,
        "channel": report.channel, "category": report.category, "title": report.title, "status": CanonicalStatus.RECEIVED,
        "created_at": report.created_at, "updated_at": report.updated_at, "received_at": vietnam_now(),
        "lat": report.location.lat, "lon": report.location.lon,
        "legacy_province_code": legacy.province_code if legacy else None,
        "legacy_district_code": legacy.district_code if legacy else None,
        "legacy_ward_code": legacy.ward_code if legacy else None,
        "province_code": current.province_code if current else None,
        "ward_code": current.ward_code if current else None,
        "locality": current.ward if current else None,
        "reporter_name_enc": encrypt(report.reporter.name.get_secret_value()) if report.reporter.name else None,
        "reporter_phone_enc": encrypt(report.reporter.phone.get_secret_value()) if report.reporter.phone else None,
        "payload": _payload(report),
        "problem": units.problem,
        "duplicate_of": None, "duplicate_count": 0, "published_at": None,
    }
