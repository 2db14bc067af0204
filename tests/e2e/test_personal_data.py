"""After a whole demo, no seeded reporter's phone number or name is anywhere it should not be.

Searched: every file the demo left under its home except the encrypted ledger and the
Airflow database files (logs, Airflow task logs when there are any, the API server log
when the browser test ran first), every XCom value and every other cell of Airflow's
metadata database, the demo's own output, ``paht trace`` and ``paht stats``, every IOC page
and API answer; and the ledger itself, cell by cell, where the reporter is only encrypted.
Text is compared as NFC and NFD, JSON unescaped, phones also without their leading 0.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from paht_bridge.sandbox.citizen_app import load_seed_reports
from tests.airflow_api import AirflowApi
from tests.demo_run import DemoRun

pytestmark = pytest.mark.e2e

BINARY_SUFFIXES = (".sqlite", ".sqlite-wal", ".sqlite-shm", ".db", ".db-wal", ".db-shm", ".key")


def seeded_reporters() -> list[tuple[str, str, str]]:
    """(report id, name, phone) of every seeded report that has them."""
    found = []
    for source in ("quangtri_ioc", "dienbien_smart"):
        for report in load_seed_reports(source):
            reporter = report.get("reporter") or {}
            found.append((report["id"], reporter.get("name") or "", reporter.get("phone") or ""))
    return found


def needles() -> dict[str, str]:
    """Every string that must not be found, with what it is (for the failure message)."""
    wanted: dict[str, str] = {}
    for report_id, name, phone in seeded_reporters():
        if phone:
            wanted[phone] = f"phone of {report_id}"
            wanted[phone.lstrip("0")] = f"phone of {report_id} (without its 0: +84 …)"
        if name:
            for form in ("NFC", "NFD"):
                wanted[unicodedata.normalize(form, name)] = f"name of {report_id}"
    assert len(wanted) > 100, "the seeds have lost their reporters: nothing would be searched"
    return wanted


def unescaped(text: str) -> str:
    """JSON text as a reader would see it (``\\u01b0`` back to ``ư``); other text unchanged."""
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except (ValueError, TypeError):
        return text


def hits(where: str, text: str, wanted: dict[str, str]) -> list[str]:
    text = unescaped(text)
    return [f"{where}: {what} ({needle!r})" for needle, what in wanted.items() if needle in text]


def sqlite_cells(path: Path) -> list[tuple[str, str]]:
    """(table.column, text) of every text or blob cell of a SQLite database."""
    cells = []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            cursor = db.execute(f'SELECT * FROM "{table}"')
            columns = [c[0] for c in cursor.description]
            for row in cursor:
                for column, value in zip(columns, row):
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if isinstance(value, str):
                        cells.append((f"{table}.{column}", value))
    return cells


def run_paht(demo: DemoRun, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PAHT_"))}
    result = subprocess.run([str(Path(sys.executable).with_name("paht")), *args], capture_output=True, text=True, timeout=120,
                            env={**env, "PAHT_HOME": str(demo.home), "COLUMNS": "400"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_no_seeded_phone_or_name_in_logs_xcom_cli_or_pages(demo_run: DemoRun, airflow_api: AirflowApi,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    wanted = needles()
    found: list[str] = []

    # The demo's output and every file it left (its log holds the Airflow task logs of dag.test()).
    found += hits("demo stdout", demo_run.stdout, wanted) + hits("demo stderr", demo_run.stderr, wanted)
    files = [p for p in demo_run.home.rglob("*") if p.is_file() and not p.name.endswith(BINARY_SUFFIXES)]
    assert demo_run.home / "demo.log" in files
    for path in files:
        found += hits(str(path.relative_to(demo_run.home)), path.read_text("utf-8", "replace"), wanted)

    # XCom, and every other cell of Airflow's metadata database (rendered fields, audit log, ...).
    cells = sqlite_cells(demo_run.home / "airflow" / "airflow.db")
    assert sum(where.startswith("xcom.") for where, _ in cells) >= 100  # every task pushed its counts
    for where, text in cells:
        found += hits(where, text, wanted)

    # The CLI an operator uses.
    report_ids = [report_id for report_id, _, _ in seeded_reporters()]
    for report_id in report_ids[:2] + report_ids[-2:]:
        found += hits(f"paht trace {report_id}", run_paht(demo_run, "trace", report_id), wanted)
    found += hits("paht stats", run_paht(demo_run, "stats"), wanted)

    # Every IOC page and API answer, logged in.
    monkeypatch.setenv("PAHT_HOME", str(demo_run.home))
    monkeypatch.delenv("PAHT_LEDGER_URL", raising=False)
    client, headers = airflow_api.client, airflow_api.headers
    paths = ["/paht/", "/paht/api/runs", "/paht/api/figures", "/paht/api/timeline", "/paht/api/dead-letters", "/paht/api/quarantine"]
    paths += [f"/paht/reports?q={report_id}" for report_id in report_ids] + [f"/paht/api/reports/{report_id}" for report_id in report_ids]
    for path in paths:
        answer = client.get(path, headers=headers)
        assert answer.status_code == 200, (path, answer.status_code)
        found += hits(path, answer.text, wanted)

    # The ledger, cell by cell: the reporter is there only encrypted.
    for where, text in sqlite_cells(demo_run.home / "ledger.sqlite"):
        found += hits(f"ledger {where}", text, wanted)

    assert not found, "\n".join(found[:50])


def test_the_ledger_keeps_every_seeded_reporter_encrypted(demo_run: DemoRun) -> None:
    cipher = Fernet((demo_run.home / "ledger.key").read_text().strip().encode())
    with sqlite3.connect(f"file:{demo_run.home / 'ledger.sqlite'}?mode=ro", uri=True) as db:
        stored = {source_id: (name, phone) for source_id, name, phone in
                  db.execute("SELECT source_id, reporter_name_enc, reporter_phone_enc FROM reports")}
    for report_id, name, phone in seeded_reporters():
        if report_id not in stored:
            continue  # a hostile seed the bridge rightly refused (it is in quarantine, masked)
        name_enc, phone_enc = stored[report_id]
        assert phone_enc and phone not in phone_enc and cipher.decrypt(phone_enc.encode()).decode() == phone
        assert name_enc and name not in name_enc and cipher.decrypt(name_enc.encode()).decode() == name
