"""End to end: the README's demo, through real Airflow (``dag.test``), against real stand-ins.

The test owns the stand-ins (so it can inspect them afterwards) and runs the real
``paht demo`` command in its own process, as a user would, pointed at them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from paht_bridge.ledger.db import sessions
from paht_bridge.sandbox.stack import SandboxStack
from tests.lifecycle_checks import assert_whole_lifecycle

pytestmark = pytest.mark.e2e


def test_the_demo_takes_every_seeded_report_round_through_airflow(tmp_path: Path) -> None:
    stack = SandboxStack()
    urls = stack.start()
    try:
        urls_file = tmp_path / "sandbox-urls.json"
        urls_file.write_text(urls.to_json())
        home = tmp_path / "demo"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PAHT_"))}
        result = subprocess.run(
            [str(Path(sys.executable).with_name("paht")), "demo", "--home", str(home), "--sandbox-urls", str(urls_file)],
            env={**env, "COLUMNS": "120"}, capture_output=True, text=True, timeout=900,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        with sessions(f"sqlite:///{home / 'ledger.sqlite'}")() as session:
            counts = assert_whole_lifecycle(session, urls)
    finally:
        stack.stop()
    assert counts["reports"] == 86  # 70 from the two citizen apps, 16 from the Open311 channel
    # What the user sees: the summary and how to trace one report.
    assert "done 86/86" in result.stdout
    assert "no drift" in result.stdout  # the daily reconciliation DAG, run once at the end
    assert "all" in result.stdout and "paht trace" in result.stdout
    # The runs were real Airflow DAG runs: their ids are in the trace.
    with sessions(f"sqlite:///{home / 'ledger.sqlite'}")() as session:
        from sqlalchemy import select

        from paht_bridge.ledger.models import EventRow

        run_ids = set(session.scalars(select(EventRow.run_id)))
    assert run_ids and all(r.startswith("manual__") for r in run_ids)
    assert (home / "airflow" / "airflow.db").exists()
    # No phone number of a seeded reporter in anything the demo printed.
    from paht_bridge.sandbox.citizen_app import load_seed_reports

    phones = [r["reporter"]["phone"] for s in ("quangtri_ioc", "dienbien_smart") for r in load_seed_reports(s)]
    assert not [p for p in phones if p in result.stdout or p in result.stderr]
