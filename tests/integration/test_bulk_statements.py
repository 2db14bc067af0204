"""The ledger's many-rows statements (``ledger.bulk``) write exactly what row-by-row would.

On PostgreSQL they send the rows as one JSON document that the server unpacks, so each
column type is checked on its way through JSON: aware datetimes, JSON columns holding
Vietnamese text, floats, NULLs, and a row left alone by an update.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from paht_bridge.ledger import bulk
from paht_bridge.ledger.db import engine
from paht_bridge.ledger.models import DeliveryRow, EventRow, ReportRow

_REPORTS, _DELIVERIES, _EVENTS = ReportRow.__table__, DeliveryRow.__table__, EventRow.__table__
_HANOI = timezone(timedelta(hours=7))


def _report(source_id: str, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "deployment": "quang_tri", "source": "app", "source_id": source_id, "channel": "app", "category": "giao_thong",
        "title": "Ổ gà trên đường Hùng Vương", "status": "received",
        "created_at": datetime(2026, 12, 7, 8, 30, tzinfo=_HANOI), "updated_at": datetime(2026, 12, 7, 8, 31, tzinfo=_HANOI),
        "received_at": datetime(2026, 12, 7, 1, 32, 5, 123456, tzinfo=timezone.utc), "lat": 16.8163, "lon": 107.1003,
        "legacy_province_code": "45", "legacy_district_code": None, "legacy_ward_code": None, "province_code": "45",
        "ward_code": "19300", "locality": "Phường Đông Hà", "reporter_name_enc": None, "reporter_phone_enc": "gAAAA-token",
        "payload": {"description": "Đường có ổ gà sâu", "photos": ["a.jpg"], "nested": {"n": 1, "none": None}},
        "problem": None, "duplicate_of": None, "duplicate_count": 0, "published_at": None,
    }
    row.update(changes)
    return row


def test_inserted_rows_read_back_as_written(ledger_url: str) -> None:
    rows = [_report("r-1"), _report("r-2", lat=None, lon=None, payload={"description": "Rác \"thải\" \\ ở chợ"})]
    with engine(ledger_url).begin() as connection:
        ids = bulk.insert_ids(connection, _REPORTS, rows, ("source", "source_id"))
        stored = {row.source_id: row for row in connection.execute(select(_REPORTS))}
    assert set(ids) == {("app", "r-1"), ("app", "r-2")} and ids[("app", "r-1")] != ids[("app", "r-2")]
    for written in rows:
        read = stored[written["source_id"]]
        assert read.id == ids[("app", written["source_id"])]
        for name, value in written.items():
            got = getattr(read, name)
            if isinstance(value, datetime):  # the same instant, read back in UTC
                assert got == value and got.utcoffset() == timedelta(0), name
            else:
                assert got == value, name


def test_an_update_by_key_touches_only_the_rows_it_names(ledger_url: str) -> None:
    deadline = datetime(2026, 12, 17, 17, 0, tzinfo=_HANOI)
    with engine(ledger_url).begin() as connection:
        bulk.insert(connection, _REPORTS, [_report("r-1")])
        report_id = connection.scalar(select(_REPORTS.c.id))
        bulk.insert(connection, _DELIVERIES, [
            {"report_id": report_id, "deployment": "quang_tri", "attempt": 1, "lane": lane, "external_ref": f"REF-{lane}",
             "target": "qoffice", "agency_code": "000.00.31.H45", "agency_name": "Sở Xây dựng", "target_category": "XD",
             "priority": 0, "deadline": deadline, "state": "sending", "tries": 1, "lease_owner": "worker-1",
             "lease_until": deadline} for lane in range(3)])
        ids = dict(connection.execute(select(_DELIVERIES.c.lane, _DELIVERIES.c.id)).all())
        delivered_at = datetime(2026, 12, 7, 9, 0, 0, 654321, tzinfo=_HANOI)
        bulk.update_by_key(connection, _DELIVERIES, [
            {"delivery_id": ids[lane], "state": "delivered", "document_id": f"DOC-{lane}", "delivered_at": delivered_at,
             "lease_owner": None, "lease_until": None} for lane in (0, 2)], key="delivery_id")
        stored = {row.lane: row for row in connection.execute(select(_DELIVERIES))}
    for lane in (0, 2):
        row = stored[lane]
        assert (row.state, row.document_id, row.lease_owner, row.lease_until) == ("delivered", f"DOC-{lane}", None, None)
        assert row.delivered_at == delivered_at and row.tries == 1 and row.deadline == deadline
    untouched = stored[1]
    assert (untouched.state, untouched.document_id, untouched.lease_owner) == ("sending", None, "worker-1")


def test_events_keep_their_detail(ledger_url: str) -> None:
    at = datetime(2026, 12, 7, 9, 15, tzinfo=_HANOI)
    detail = {"agency_name": "UBND phường Đông Hà", "deadline": "2026-12-17T17:00:00+07:00", "lane": 0, "created": True,
              "ward": None}
    with engine(ledger_url).begin() as connection:
        bulk.insert(connection, _EVENTS, [{"report_id": None, "delivery_id": None, "at": at, "kind": "routed", "status": "routed",
                                           "run_id": "run-1", "detail": detail}])
        row = connection.execute(select(_EVENTS)).one()
    assert (row.kind, row.at, row.detail) == ("routed", at, detail)


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        bulk.dumps([{"at": datetime(2026, 12, 7, 9, 0)}])
