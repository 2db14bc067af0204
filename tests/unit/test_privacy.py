"""Reporters' personal data: masked in logs, forgotten on request (Law 91/2025)."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import select

from paht_bridge.connectors.open311 import Open311Client
from paht_bridge.ledger.db import decrypt, sessions
from paht_bridge.ledger.models import DeliveryRow, EventRow, QuarantineRow, RatingRow, ReportRow
from paht_bridge.ledger.store import quarantine
from paht_bridge.operations.forget import forget_reporter
from paht_bridge.privacy import FORGOTTEN, PhoneMaskingFilter, install_log_masking, mask_phones, normalise_phone
from paht_bridge.sandbox.open311 import load_open311_seeds
from tests import ioc_sample as sample


@pytest.mark.parametrize("text", ["0912345678", "+84 912 345 678", "84912345678", "0912.345.678", "0912-345-678",
                                  "02333 123 456", "gọi 0912345678."])
def test_phone_numbers_are_masked(text: str) -> None:
    assert not any(ch.isdigit() for ch in mask_phones(text))


@pytest.mark.parametrize("text", ["DB-2026-000192", "QT-2026-1000145", "manual__2026-11-23T11:49:47.350031+00:00",
                                  "VBD-000036", "000.00.11.H18", "counts={'received': 35}"])
def test_ids_and_times_are_not_taken_for_phone_numbers(text: str) -> None:
    assert mask_phones(text) == text


def test_spellings_of_one_number_normalise_alike() -> None:
    assert {normalise_phone(p) for p in ("0912345678", "+84 912 345 678", "84912345678", "0084912345678")} == {"0912345678"}


def test_bridge_log_records_never_carry_a_phone_number(caplog: pytest.LogCaptureFixture) -> None:
    install_log_masking()
    install_log_masking()  # idempotent
    with caplog.at_level(logging.INFO):
        logging.getLogger("paht_bridge.steps").info("delivered report=%s phone=%s", "QT-1", "0912345678")
        try:
            raise RuntimeError("backend said: call +84 912 345 678")
        except RuntimeError:
            logging.getLogger("paht_bridge.connectors.configured").exception("failed report=%s", "QT-1")
        logging.getLogger("someone.else").info("0912345678")  # not ours: left to Airflow's masker
    text = caplog.text
    assert "report=QT-1 phone=[phone]" in text and "call [phone]" in text
    assert "912 345 678" not in text
    assert [r.getMessage() for r in caplog.records if r.name == "someone.else"] == ["0912345678"]


def test_the_filter_can_guard_any_handler() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "sđt %s", ("0912345678",), None)
    assert PhoneMaskingFilter().filter(record) and record.getMessage() == "sđt [phone]"


@pytest.fixture
def ledger(ledger_url: str) -> str:
    sample.build(ledger_url)
    return ledger_url


def _everything_stored(url: str) -> str:
    """Every text column of every table (encrypted columns decrypted), as one string."""
    with sessions(url)() as s:
        parts = []
        for r in s.scalars(select(ReportRow)):
            parts += [r.title, json.dumps(r.payload, ensure_ascii=False), decrypt(r.reporter_name_enc) or "",
                      decrypt(r.reporter_phone_enc) or ""]
        parts += [d.answer or "" for d in s.scalars(select(DeliveryRow))]
        parts += [r.comment or "" for r in s.scalars(select(RatingRow))]
        parts += [json.dumps(e.detail, ensure_ascii=False) for e in s.scalars(select(EventRow))]
        for q in s.scalars(select(QuarantineRow)):
            parts += [q.raw, decrypt(q.raw_enc) or ""]
    return "\n".join(parts)


def test_forgetting_a_reporter_removes_her_name_and_number_everywhere(ledger: str) -> None:
    name, phone = sample.SAME_PERSON
    assert name in _everything_stored(ledger) and phone in _everything_stored(ledger)
    with sessions(ledger)() as session:
        assert forget_reporter(session, "+84 912 000 001") == 3  # QT-1, QT-2 (written +84 …) and QT-5
    stored = _everything_stored(ledger)
    assert name not in stored and phone not in stored and "912 000 001" not in stored
    with sessions(ledger)() as session:
        forgotten = session.scalars(select(ReportRow).where(ReportRow.source_id.in_(["QT-1", "QT-2", "QT-5"]))).all()
        assert all(r.reporter_name_enc is None and r.reporter_phone_enc is None for r in forgotten)
        other = session.scalar(select(ReportRow).where(ReportRow.source_id == "QT-3"))
        assert decrypt(other.reporter_phone_enc) == sample.OTHER_PERSON[1]  # nobody else is touched
        events = session.scalars(select(EventRow).where(EventRow.kind == "reporter_forgotten")).all()
        assert len(events) == 3 and all(e.report_id for e in events)
        assert name not in json.dumps([e.detail for e in events], ensure_ascii=False)
        answer = session.scalar(select(DeliveryRow.answer).where(DeliveryRow.answer.contains("bóng đèn")))
        assert answer == "Kính gửi bà [đã xoá]: đã thay bóng đèn."  # the agency's answer survives, without her name


def test_forgetting_a_quarantined_reporter_masks_the_kept_payload(ledger: str) -> None:
    name, phone = sample.QUARANTINED_PERSON
    with sessions(ledger)() as session:
        assert forget_reporter(session, phone) == 0  # no report of hers made it into the ledger
        item = session.scalar(select(QuarantineRow))
        original = json.loads(decrypt(item.raw_enc))
    assert name not in _everything_stored(ledger) and phone not in _everything_stored(ledger)
    assert "********21" not in item.raw  # even the masked display copy loses its last digits
    assert original["reporter"] == {"name": "[đã xoá]", "phone": "[đã xoá]"}
    assert original["attachments"] == [{"name": "anh.jpg"}]  # still replayable after a fix


def test_forgetting_an_open311_requester_blanks_her_first_and_last_name_in_the_replay_copy(ledger: str) -> None:
    """Open311 spells a requester ``first_name``/``last_name``/``phone``, not ``reporter.name``/``phone``."""
    client = Open311Client("quangninh_open311", "http://127.0.0.1:9", clock=lambda: sample.NOW)
    request = {**load_open311_seeds()[0], "service_request_id": "2611999", "service_code": None, "last_name": "Phạm",
               "first_name": "Thị Hoa", "phone": "0983 417 265", "email": "hoa.pham@example.vn",
               "description": "Đèn đường hỏng. Gọi chị Phạm Thị Hoa, 0983 417 265."}
    _, [bad] = client.parse_reports([request])  # no service_code: quarantined, the request kept encrypted for replay
    with sessions(ledger).begin() as session:
        quarantine(session, "quang_ninh", bad, "ingest-311")
    with sessions(ledger)() as session:
        assert forget_reporter(session, "+84 983 417 265") == 0
        item = session.scalar(select(QuarantineRow).where(QuarantineRow.source_id == "2611999"))
        kept = json.loads(decrypt(item.raw_enc))
    assert [kept[k] for k in ("first_name", "last_name", "phone", "email")] == [FORGOTTEN] * 4
    assert kept["description"] == f"Đèn đường hỏng. Gọi chị {FORGOTTEN} {FORGOTTEN}, [phone]."
    assert "Hoa" not in item.raw and "Phạm" not in item.raw and "417" not in item.raw
    _, [again] = client.parse_reports([kept])  # still replayable: quarantined again for its own reason only
    assert again.reason == bad.reason and again.source_id == "2611999"


def test_forgetting_an_unknown_number_changes_nothing(ledger: str) -> None:
    before = _everything_stored(ledger)
    with sessions(ledger)() as session:
        assert forget_reporter(session, "0999999999") == 0
    assert _everything_stored(ledger) == before


def test_forgetting_refuses_what_is_not_a_phone_number(ledger: str) -> None:
    with sessions(ledger)() as session, pytest.raises(ValueError):
        forget_reporter(session, "12")
