"""What "every report went round" means, checked against the ledger AND the stand-ins.

Shared by the step-level lifecycle test (SQLite and PostgreSQL) and the end-to-end test
through Airflow, so both assert the same story.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from paht_bridge.ledger.models import DeliveryRow, EventRow, QuarantineRow, RatingRow, ReportRow
from paht_bridge.sandbox.citizen_app import load_seed_reports
from paht_bridge.sandbox.desk import refuses
from paht_bridge.sandbox.open311 import load_open311_seeds
from paht_bridge.sandbox.stack import SandboxUrls

SOURCE_TARGET = {"quangtri_ioc": "qoffice_quangtri", "dienbien_smart": "tdoffice_dienbien", "quangninh_open311": "ioffice_quangninh"}
#: Open311 (GeoReport v2) has no ratings: a report's life there ends published.
UNRATED = {"quangninh_open311"}

#: The order a report's trace must tell, whatever else happens between.
LIFE = ["received", "routed", "sending", "delivered", "status", "published", "rated", "rating_pushed"]
LIFE_UNRATED = LIFE[:-2]


def seeds_of(source: str) -> list[dict]:
    """Each stand-in's seeded reports, with their id under ``id`` whatever the wire calls it."""
    if source in UNRATED:
        return [{**r, "id": str(r["service_request_id"]), "attachments": [r["media_url"]] if r.get("media_url") not in (None, "", "null") else []}
                for r in load_open311_seeds(source)]
    return load_seed_reports(source)


def documents(url: str) -> list[dict]:
    """Every document a stand-in document system holds, in one shape for both kinds."""
    data = requests.get(f"{url}/_sandbox/documents", timeout=30).json()
    docs = data["documents"] if isinstance(data, dict) else data
    return [{"external_ref": d["external_ref"], "agency": d["agency"], "created_count": d["created_count"],
             "send_calls": d.get("send_calls", d.get("create_calls")), "ratings": d["ratings"],
             "attachments": d["attachments"]} for d in docs]


def citizen_reports(url: str) -> dict[str, dict]:
    return {r["id"]: r for r in requests.get(f"{url}/_sandbox/reports", timeout=30).json()["reports"]}


def is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    it = iter(seen)
    return all(kind in it for kind in wanted)


def assert_whole_lifecycle(session: Session, urls: SandboxUrls, sources: tuple[str, ...] = tuple(SOURCE_TARGET)) -> dict[str, int]:
    """Every seeded report reached the right system exactly once, was answered, published and
    rated, and its event log says so. Returns a few counts for the caller's own checks."""
    assert session.scalar(select(QuarantineRow.id)) is None, "a seeded report was quarantined"
    reports = {(r.source, r.source_id): r for r in session.scalars(select(ReportRow).options(selectinload(ReportRow.deliveries)))}
    events: dict[int, list[str]] = defaultdict(list)
    for event in session.scalars(select(EventRow).order_by(EventRow.at, EventRow.id)):
        if event.report_id is not None:
            events[event.report_id].append(event.kind)
    rated = {r.report_id: r for r in session.scalars(select(RatingRow))}
    counts: Counter[str] = Counter()

    for source, target in ((s, SOURCE_TARGET[s]) for s in sources):
        seeds = seeds_of(source)
        unrated = source in UNRATED
        docs = {d["external_ref"]: d for d in documents(urls.urls[target])}
        citizen = citizen_reports(urls.urls[source])
        ledger_refs = set()
        for seed in seeds:
            row = reports.get((source, seed["id"]))
            assert row is not None, f"{source}:{seed['id']} never reached the ledger"
            assert row.status == ("published" if unrated else "rated"), f"{row.source_id} ended {row.status}"
            for delivery in row.deliveries:
                ledger_refs.add(delivery.external_ref)
                doc = docs.get(delivery.external_ref)
                assert doc is not None, f"{delivery.external_ref} is not in {target}"
                assert doc["created_count"] == 1, f"{delivery.external_ref} created {doc['created_count']} times"
                assert doc["agency"] == delivery.agency_code
                assert delivery.state == "delivered"
            first = min(row.deliveries, key=lambda d: d.attempt)
            active = max(row.deliveries, key=lambda d: d.attempt)
            expected_attempts = 2 if refuses(first.external_ref) else 1
            assert len(row.deliveries) == expected_attempts, f"{row.source_id}: {len(row.deliveries)} deliveries"
            counts["rerouted"] += expected_attempts - 1
            assert active.doc_status == "answered" and active.answer, f"{row.source_id} not answered"
            assert active.published_at is not None
            assert len(docs[active.external_ref]["attachments"]) >= len(seed.get("attachments", []))
            if not unrated:
                assert [r["rating_id"] for r in docs[active.external_ref]["ratings"]] == [rated[row.id].rating_id]
                assert rated[row.id].pushed_at is not None
            side = citizen[seed["id"]]
            assert side["publish_calls"] == 1 and len(side["outcomes"]) == 1, f"{seed['id']} published {side['publish_calls']} times"
            assert (side["rating"] is None) if unrated else (side["rating"] is not None)
            assert is_subsequence(LIFE_UNRATED if unrated else LIFE, events[row.id]), f"{row.source_id} trace: {events[row.id]}"
            if expected_attempts == 2:
                assert is_subsequence(["delivered", "status", "rerouted", "sending", "delivered", "published"], events[row.id])
            counts["reports"] += 1
        assert set(docs) == ledger_refs, f"{target} holds documents the ledger does not know: {set(docs) - ledger_refs}"
        counts["documents"] += len(docs)
    assert counts["reports"] == len(reports), "the ledger holds reports that were never seeded"
    assert session.scalar(select(DeliveryRow.id).where(DeliveryRow.state != "delivered")) is None
    return dict(counts)
