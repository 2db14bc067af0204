"""A small ledger whose IOC figures can be worked out by hand (and are, in the tests).

Quảng Trị, March 2026, Vietnam time; "now" is 10/03 12:00.

| report | agency now            | story                                                        |
|--------|-----------------------|--------------------------------------------------------------|
| QT-1   | 000.00.01.H45 Sở XD   | answered 05/03 (4 d 1 h after the citizen sent it), satisfied |
| QT-2   | 000.00.01.H45 Sở XD   | in progress, deadline 04/03 passed: overdue                   |
| QT-3   | 000.00.02.H45 Công an | dead letter (error text carries a phone number)               |
| QT-4   | none                  | waits for IOC review                                          |
| QT-5   | 000.00.01.H45 Sở XD   | refused by Công an 03/03, re-routed, answered 07/03, not sat. |

QT-1, QT-2 and QT-5 were sent by the same person (phone written two ways); QT-5's title
and QT-1's rating comment repeat her name and number. One quarantined item belongs to
another reporter.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from paht_bridge.ledger.db import encrypt, sessions
from paht_bridge.ledger.models import DeliveryRow, QuarantineRow, RatingRow, ReportRow, RunRow
from paht_bridge.ledger.store import record_event
from paht_bridge.canonical import VIETNAM_TZ

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=VIETNAM_TZ)
SAME_PERSON = ("Trần Thị Mẫu", "0912000001")
OTHER_PERSON = ("Lê Văn Khác", "0912000003")
QUARANTINED_PERSON = ("Nguyễn Văn Bảy", "0901234521")
ERROR_PHONE = "0987654321"
DEPLOYMENT, SOURCE, TARGET = "quang_tri", "quangtri_ioc", "qoffice_quangtri"
SXD = ("000.00.01.H45", "Sở Xây dựng tỉnh Quảng Trị")
CA = ("000.00.02.H45", "Công an tỉnh Quảng Trị")


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2026, 3, day, hour, 0, tzinfo=VIETNAM_TZ)


def _report(session: Session, source_id: str, received: datetime, person: tuple[str, str] | None, locality: str | None,
            title: str = "Đường hư hỏng, nhiều ổ gà", created: datetime | None = None, problem: str | None = None) -> ReportRow:
    report = ReportRow(deployment=DEPLOYMENT, source=SOURCE, source_id=source_id, channel="app", category="GT", title=title,
                       status="received", created_at=created or received, updated_at=received, received_at=received,
                       locality=locality, payload={"source_id": source_id, "description": title}, problem=problem,
                       reporter_name_enc=encrypt(person[0]) if person else None,
                       reporter_phone_enc=encrypt(person[1]) if person else None)
    session.add(report)
    session.flush()
    record_event(session, "received", report_id=report.id, run_id="ingest-1", status="received", at=received)
    return report


def _delivery(session: Session, report: ReportRow, agency: tuple[str, str], deadline: datetime, attempt: int = 1,
              **fields: object) -> DeliveryRow:
    suffix = "" if attempt == 1 else f"-R{attempt - 1}"
    delivery = DeliveryRow(report_id=report.id, deployment=DEPLOYMENT, attempt=attempt, target=TARGET,
                           external_ref=f"PAHT-{SOURCE}-{report.source_id}{suffix}", agency_code=agency[0], agency_name=agency[1],
                           target_category="GT", deadline=deadline, **fields)
    session.add(delivery)
    session.flush()
    return delivery


def build(url: str) -> None:
    with sessions(url).begin() as s:
        # QT-1: answered and satisfied.
        r1 = _report(s, "QT-1", at(1), SAME_PERSON, "Phường Đông Hà", created=at(1, 8))
        d1 = _delivery(s, r1, SXD, at(8), state="delivered", document_id="DOC-1", delivered_at=at(1, 10), doc_status="answered",
                       answered_at=at(5), answer="Đã sửa xong.", published_at=at(5, 10))
        record_event(s, "routed", report_id=r1.id, delivery_id=d1.id, run_id="ingest-1", status="routed", at=at(1))
        record_event(s, "delivered", report_id=r1.id, delivery_id=d1.id, run_id="deliver-1", status="delivered",
                     external_ref=d1.external_ref, document_id="DOC-1", at=at(1, 10))
        record_event(s, "status", report_id=r1.id, delivery_id=d1.id, run_id="poll-1", status="answered", document_id="DOC-1", at=at(5))
        s.add(RatingRow(source=SOURCE, rating_id="DG-1", report_id=r1.id, level="satisfied", rated_at=at(6, 10),
                        comment=f"Cảm ơn, {SAME_PERSON[0]} ({SAME_PERSON[1]}) rất hài lòng"))
        record_event(s, "rated", report_id=r1.id, run_id="ratings-1", status="rated", level="satisfied", at=at(6, 10))
        r1.status = "rated"
        # QT-2: same person (number written another way), in progress and overdue.
        r2 = _report(s, "QT-2", at(2), (SAME_PERSON[0], "+84 912 000 001"), "Phường Đông Hà")
        d2 = _delivery(s, r2, SXD, at(4), state="delivered", document_id="DOC-2", delivered_at=at(2, 10), doc_status="in_progress")
        record_event(s, "routed", report_id=r2.id, delivery_id=d2.id, run_id="ingest-1", status="routed", at=at(2))
        record_event(s, "status", report_id=r2.id, delivery_id=d2.id, run_id="poll-1", status="in_progress", at=at(3))
        r2.status = "in_progress"
        # QT-3: dead letter; the back end's error text carries a phone number.
        r3 = _report(s, "QT-3", at(3), OTHER_PERSON, "Phường Đồng Hới")
        d3 = _delivery(s, r3, CA, at(20), state="dead", tries=8, last_error=f"HTTP 500: liên hệ {ERROR_PHONE}")
        record_event(s, "routed", report_id=r3.id, delivery_id=d3.id, run_id="ingest-1", status="routed", at=at(3))
        record_event(s, "dead_letter", report_id=r3.id, delivery_id=d3.id, run_id="deliver-2", reason=d3.last_error, at=at(3, 10))
        r3.status = "routed"
        # QT-4: waits for IOC review, no reporter data.
        r4 = _report(s, "QT-4", at(4), None, None, problem="không xác định được địa bàn")
        record_event(s, "needs_review", report_id=r4.id, run_id="ingest-1", reason=r4.problem, at=at(4))
        # QT-5: refused, re-routed, answered late in the week, not satisfied.
        r5 = _report(s, "QT-5", at(2), SAME_PERSON, "Phường Đồng Hới", title=f"Đèn đường hỏng, gọi {SAME_PERSON[0]} {SAME_PERSON[1]}")
        d5a = _delivery(s, r5, CA, at(5), state="delivered", document_id="DOC-5", delivered_at=at(2, 10),
                        doc_status="refused_by_agency", answered_at=at(3), rerouted_at=at(3))
        d5b = _delivery(s, r5, SXD, at(12), attempt=2, state="delivered", document_id="DOC-6", delivered_at=at(3, 10),
                        doc_status="answered", answered_at=at(7), answer=f"Kính gửi bà {SAME_PERSON[0]}: đã thay bóng đèn.")
        record_event(s, "routed", report_id=r5.id, delivery_id=d5a.id, run_id="ingest-1", status="routed", at=at(2))
        record_event(s, "status", report_id=r5.id, delivery_id=d5a.id, run_id="poll-1", status="refused_by_agency", at=at(3))
        record_event(s, "rerouted", report_id=r5.id, delivery_id=d5b.id, run_id="poll-1", status="routed", agency=SXD[0], at=at(3))
        record_event(s, "status", report_id=r5.id, delivery_id=d5b.id, run_id="poll-2", status="answered", at=at(7))
        s.add(RatingRow(source=SOURCE, rating_id="DG-5", report_id=r5.id, level="not_satisfied", rated_at=at(8)))
        record_event(s, "rated", report_id=r5.id, run_id="ratings-2", status="rated", level="not_satisfied", at=at(8))
        r5.status = "rated"
        # Another reporter's payload, quarantined (display copy masked as the connector does).
        original = {"id": "QT-9", "title": "Rác thải", "reporter": {"name": QUARANTINED_PERSON[0], "phone": QUARANTINED_PERSON[1]},
                    "description": f"Liên hệ {QUARANTINED_PERSON[1]}", "attachments": [{"name": "anh.jpg"}]}
        shown = {**original, "reporter": {"name": "***", "phone": "********21"}, "description": "Liên hệ [phone]"}
        s.add(QuarantineRow(deployment=DEPLOYMENT, source=SOURCE, source_id="QT-9", reason="created_at: Field required",
                            raw=json.dumps(shown, ensure_ascii=False), raw_enc=encrypt(json.dumps(original, ensure_ascii=False)),
                            at=at(4), run_id="ingest-1"))
        # Sync runs: ingest fine twice, one deliver run failed.
        s.add_all([
            RunRow(run_id="ingest-1", dag_id="paht_ingest", step="ingest", deployment=DEPLOYMENT, started_at=at(1),
                   finished_at=at(1) + timedelta(seconds=2), state="success", counts={"received": 4}, errors=[]),
            RunRow(run_id="ingest-2", dag_id="paht_ingest", step="ingest", deployment=DEPLOYMENT, started_at=at(4),
                   finished_at=at(4) + timedelta(seconds=1), state="success", counts={"received": 1, "quarantined": 1}, errors=[]),
            RunRow(run_id="deliver-2", dag_id="paht_deliver", step="deliver", deployment=DEPLOYMENT, started_at=at(3, 10),
                   finished_at=at(3, 10) + timedelta(seconds=5), state="failed", counts={},
                   errors=[f"TransientError: gọi lại {ERROR_PHONE}"]),
        ])
