"""P4: what polling costs with 100,000 open documents of which 100 changed.

The REST stand-in holds the open documents (put in directly, not through 100,000 creates)
and the ledger holds a delivered row for each (bulk-inserted). With the change feed the
poll step reads only what changed since its cursor; without it (``change_feed: false``)
it asks documents one by one within ``poll_budget``. Requests are counted at the stand-in.
"""

from __future__ import annotations

import math
import random
import time
from datetime import timedelta
from pathlib import Path

from bench.common import context, fresh_ledger, sandbox

TARGET = "tdoffice_dienbien"


def _fill_ledger(url: str, pairs: list[list[str]], deadlines: list) -> None:  # noqa: ANN001
    """A report and a delivered, open delivery per document, in bulk."""
    from sqlalchemy import insert

    from paht_bridge.ledger.db import engine
    from paht_bridge.ledger.models import DeliveryRow, ReportRow
    from paht_bridge.canonical import vietnam_now

    now = vietnam_now()
    reports, deliveries = [], []
    for i, ((ref, doc_id), deadline) in enumerate(zip(pairs, deadlines), start=1):
        reports.append({"id": i, "deployment": "dien_bien", "source": "dienbien_smart", "source_id": ref, "channel": "app",
                        "category": "moi_truong", "title": "bench", "status": "delivered", "created_at": now, "updated_at": now,
                        "received_at": now, "payload": {}})
        deliveries.append({"id": i, "report_id": i, "deployment": "dien_bien", "attempt": 1, "lane": 0, "external_ref": ref,
                           "target": TARGET, "agency_code": "000.00.00.H00", "agency_name": "bench", "target_category": "MT",
                           "priority": 0, "deadline": deadline, "state": "delivered", "tries": 1, "document_id": doc_id,
                           "delivered_at": now, "doc_status": "delivered", "doc_raw_code": "CHO_TIEP_NHAN", "doc_status_at": now})
    with engine(url).begin() as connection:
        for start in range(0, len(reports), 5000):
            connection.execute(insert(ReportRow), reports[start:start + 5000])
            connection.execute(insert(DeliveryRow), deliveries[start:start + 5000])


def run(open_documents: int, changed: int, budget: int, home: Path, seed: int = 7) -> dict:
    from sqlalchemy import select

    from paht_bridge.ledger.db import sessions
    from paht_bridge.ledger.models import DeliveryRow
    from paht_bridge.steps import poll
    from paht_bridge.ledger.store import set_cursor
    from paht_bridge.canonical import vietnam_now

    rng = random.Random(seed)
    out: dict = {"open_documents": open_documents, "changed": changed}
    with sandbox() as box:
        # One real document through the API: the shape every bulk document copies.
        box.call("POST", "/backlog", params={"n": 2})
        url0 = fresh_ledger("sqlite", home)
        from paht_bridge.steps import deliver, ingest

        ctx0 = context(url0, "dien_bien", "template")
        ingest(ctx0)
        deliver(ctx0)
        started = time.perf_counter()
        made = box.call("POST", "/bulk_documents", params={"n": open_documents, "prefix": "PAHT-bench-"})
        pairs, feed_end = made["documents"], made["feed_end"]
        now = vietnam_now()
        deadlines = [now + timedelta(hours=rng.uniform(-48, 24 * 30)) for _ in pairs]
        url = fresh_ledger("sqlite", home)
        _fill_ledger(url, pairs, deadlines)
        out["setup_s"] = round(time.perf_counter() - started, 1)
        moved = rng.sample(range(len(pairs)), changed)
        box.call("POST", "/move_on", json=[pairs[i][0] for i in moved])

        # With the change feed: the cursor stands where the last run left it (after the creations).
        with sessions(url).begin() as session:
            set_cursor(session, f"{TARGET}:changes", str(feed_end))
        before = box.counts()[TARGET]
        started = time.perf_counter()
        result = poll(context(url, "dien_bien", "poll-feed"))
        feed_requests = box.counts()[TARGET] - before
        page = 200
        needed = math.ceil(changed / page)  # pages the changes fill (the feed's page size is 200)
        out["with_change_feed"] = {
            "requests": feed_requests, "requests_needed_by_the_changes": needed,
            "ratio": round(feed_requests / needed, 3), "changes_applied": sum(v for k, v in result.counts.items() if k in ("accepted",)),
            "seconds": round(time.perf_counter() - started, 2),
        }

        # Without it: the same 100 changes are undone in the ledger, then polled within a budget.
        with sessions(url).begin() as session:
            session.execute(DeliveryRow.__table__.update().values(doc_status="delivered", doc_raw_code="CHO_TIEP_NHAN",
                                                                  doc_status_at=now - timedelta(days=1)))
        before = box.counts()[TARGET]
        started = time.perf_counter()
        result = poll(context(url, "dien_bien", "poll-budget", change_feed=False, poll_budget=budget))
        budget_requests = box.counts()[TARGET] - before
        with sessions(url)() as session:
            earliest = set(session.scalars(select(DeliveryRow.id).order_by(DeliveryRow.deadline, DeliveryRow.id).limit((budget + 1) // 2)))
            # Every document asked got an answer newer than the ledger's (set a day back above).
            asked = set(session.scalars(select(DeliveryRow.id).where(DeliveryRow.doc_status_at >= now - timedelta(hours=1))))
        moved_ids = {i + 1 for i in moved}
        out["without_change_feed"] = {
            "budget": budget, "requests": budget_requests, "within_budget": budget_requests <= budget,
            "documents_asked": len(asked),
            "earliest_deadline_documents_asked": f"{len(earliest & asked)}/{len(earliest)}",
            "changed_documents_found": f"{len(moved_ids & asked)}/{changed}",
            "runs_for_every_open_document_to_be_asked": math.ceil((open_documents - (budget + 1) // 2) / (budget - (budget + 1) // 2)),
            "seconds": round(time.perf_counter() - started, 2),
        }
    return out
