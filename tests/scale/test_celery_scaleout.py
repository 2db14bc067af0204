"""The Celery scale-out end to end: ``deploy/celery/run_scaleout.sh`` as an operator runs it.

Real processes: PostgreSQL (metadata and ledger, fresh databases), Redis, the scheduler,
the dag-processor, the api-server, two Celery workers and the stand-ins. The whole
lifecycle must complete and every document exist exactly once at its back end. Takes a
few minutes, so it is marked ``scaleout`` (``pytest -m scaleout``); it needs the PostgreSQL
server at 127.0.0.1:5432 and Redis at 127.0.0.1:6379, and fails (never skips) without them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.scaleout
def test_two_celery_workers_take_every_report_through_its_life_with_no_document_created_twice(tmp_path: Path) -> None:
    output = tmp_path / "scaleout.txt"
    summary_file = tmp_path / "scaleout.json"
    done = subprocess.run([str(REPO / "deploy" / "celery" / "run_scaleout.sh"), "--output", str(output), "--summary", str(summary_file)], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    report = output.read_text() if output.exists() else done.stdout + done.stderr
    assert done.returncode == 0, report[-4000:]
    summary = json.loads(summary_file.read_text())
    assert summary["passed"] and summary["created_twice"] == 0 and summary["finished"] == summary["reports"] > 0, summary
    assert "created more than once: 0" in report
    # Both workers took tasks, and nothing else ran one. Task instances of a run the watchers
    # started after the last round may still wait for a worker; they are counted apart.
    workers = summary["task_instances_per_worker"]
    assert sorted(workers) == ["paht-worker-1", "paht-worker-2"] and min(workers.values()) > 0, summary
