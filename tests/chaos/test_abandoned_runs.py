"""A task killed mid-run leaves no run *running* for ever: the next run of its step closes it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

from sqlalchemy import select

from paht_bridge.canonical import vietnam_now
from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import RunRow
from paht_bridge.sandbox.backlog import load_backlog
from paht_bridge.sandbox.stack import SandboxStack
from paht_bridge.tasks import close_abandoned_runs, run_step
from tests.chaos.harness import REPO, ingest_all

RUN_DELIVER = "import sys; from paht_bridge.tasks import run_step; run_step('deliver', 'quang_tri', sys.argv[1])"


def _run(session, run_id: str, host: str, pid: int | None, started_ago: timedelta, step: str = "deliver") -> None:  # noqa: ANN001
    session.add(RunRow(run_id=run_id, step=step, deployment="quang_tri", started_at=vietnam_now() - started_ago, state="running",
                       counts={}, errors=[], host=host, pid=pid))


def test_runs_whose_task_is_gone_are_closed_and_live_ones_left_alone(ledger_url: str) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    alive = subprocess.Popen(["sleep", "60"])
    here = socket.gethostname()
    try:
        with sessions(ledger_url).begin() as session:
            _run(session, "dead-process", here, ended.pid, timedelta(minutes=2))
            _run(session, "live-process", here, alive.pid, timedelta(minutes=2))
            _run(session, "elsewhere-long-ago", "another-worker", 4242, timedelta(hours=2))
            _run(session, "elsewhere-just-now", "another-worker", 4242, timedelta(minutes=5))
            _run(session, "other-step", here, ended.pid, timedelta(minutes=2), step="poll")
        with sessions(ledger_url).begin() as session:
            assert close_abandoned_runs(session, "deliver", "quang_tri", vietnam_now()) == 2
        with sessions(ledger_url)() as session:
            states = dict(session.execute(select(RunRow.run_id, RunRow.state)).all())
            closed = session.scalars(select(RunRow).where(RunRow.run_id == "dead-process")).one()
    finally:
        alive.kill()
    assert states == {"dead-process": "failed", "live-process": "running", "elsewhere-long-ago": "failed",
                      "elsewhere-just-now": "running", "other-step": "running"}
    assert closed.finished_at is not None and "ended without finishing" in closed.errors[0]


def test_a_deliver_task_killed_mid_run_is_shown_failed_after_the_next_run(stack: SandboxStack, ledger_url: str,
                                                                         monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("PAHT_LEDGER_URL", ledger_url)
    monkeypatch.setenv("PAHT_LEASE_SECONDS", "2")  # what the killed task held is free again soon
    load_backlog(stack, 40)
    ingest_all(ledger_url)
    stack.chaos["qoffice_quangtri"].configure(latency=0.2)  # 20 calls: about 4 s of sending
    task = subprocess.Popen([sys.executable, "-c", RUN_DELIVER, "killed"], cwd=REPO, env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    with sessions(ledger_url)() as session:
        while not session.scalars(select(RunRow).where(RunRow.run_id == "killed")).first():
            assert time.monotonic() < deadline and task.poll() is None, "the task never started its run"
            time.sleep(0.1)
    time.sleep(1.0)  # mid-run: some documents sent, most not
    os.kill(task.pid, signal.SIGKILL)
    task.wait()
    with sessions(ledger_url)() as session:
        assert session.scalars(select(RunRow.state).where(RunRow.run_id == "killed")).one() == "running"
    stack.chaos["qoffice_quangtri"].configure(latency=0)
    time.sleep(2.1)
    counts = run_step("deliver", "quang_tri", "next")["counts"]
    with sessions(ledger_url)() as session:
        states = dict(session.execute(select(RunRow.run_id, RunRow.state)).all())
    assert states == {"killed": "failed", "next": "success"}
    assert counts.get("delivered", 0) + counts.get("already_there", 0) >= 1  # it finished what the killed one left
