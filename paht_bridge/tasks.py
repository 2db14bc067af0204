"""The entry point DAG tasks call: one lifecycle step for one deployment, as a batch.

Each call is recorded in the ledger's ``runs`` table (what IOC staff see as a sync run),
with its counts, or its error if it failed. A task that dies without a word (kill -9, a lost
worker) leaves its row *running*; the next run of the same step for the same deployment
marks it failed once its process is gone (``close_abandoned_runs``).
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import migrate, sessions
from paht_bridge.ledger.models import RunRow
from paht_bridge.steps import STEPS, StepContext
from paht_bridge.steps.context import partial_result
from paht_bridge.canonical import vietnam_now
from paht_bridge.config.deployment import deployment
from paht_bridge.privacy import install_log_masking

log = logging.getLogger(__name__)


def run_step(step: str, deployment_name: str, run_id: str, dag_id: str | None = None) -> dict:
    """Run ``step`` for one deployment; returns counts (safe for XCom: no personal data)."""
    install_log_masking()
    mapping = deployment(deployment_name)
    migrate()
    make_session = sessions()
    with make_session.begin() as session:
        close_abandoned_runs(session, step, deployment_name, vietnam_now())
        run = RunRow(run_id=run_id, dag_id=dag_id, step=step, deployment=deployment_name, started_at=vietnam_now(),
                     state="running", counts={}, errors=[], host=socket.gethostname(), pid=os.getpid())
        session.add(run)
    ctx = StepContext(mapping=mapping, sessions=make_session, connectors=AirflowConnectors(mapping), run_id=run_id)
    try:
        result = STEPS[step](ctx)
    except Exception as error:
        partial = partial_result(error)  # part of the batch may have gone through: keep its counts
        _finish(make_session, run.id, "failed", partial.counts if partial else {},
                partial.errors if partial else [f"{error.__class__.__name__}: {error}"])
        raise
    _finish(make_session, run.id, "partial" if result.errors else "success", result.counts, result.errors)
    log.info("step done step=%s deployment=%s counts=%s", step, deployment_name, result.counts)
    return result.model_dump()


#: Longer than any lifecycle task may run (their ``execution_timeout`` is 30 minutes): a run
#: on another host still *running* after this is taken as gone.
ABANDONED_AFTER = timedelta(hours=1)


def close_abandoned_runs(session: Session, step: str, deployment_name: str, now: datetime) -> int:
    """Mark failed the runs of ``step`` for ``deployment_name`` left *running* by a task that is
    gone: its process no longer exists on this host, or it started longer ago than any task may
    run. Its work is safe (deliveries it left *sending* are looked up before any new call);
    only its row said otherwise. Returns how many were closed."""
    here = socket.gethostname()
    closed = 0
    for run in session.scalars(select(RunRow).where(RunRow.step == step, RunRow.deployment == deployment_name,
                                                    RunRow.state == "running")):
        gone = run.host == here and run.pid is not None and not _alive(run.pid)
        if gone or run.started_at < now - ABANDONED_AFTER:
            run.state, run.finished_at = "failed", now
            run.errors = ["the task ended without finishing its run (killed, or its worker was lost); "
                          "what it left half done is picked up by the next run"]
            log.warning("abandoned run closed step=%s deployment=%s run_id=%s pid=%s", step, deployment_name, run.run_id, run.pid)
            closed += 1
    return closed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _finish(make_session, run_id: int, state: str, counts: dict, errors: list) -> None:  # noqa: ANN001
    with make_session.begin() as session:
        run = session.get(RunRow, run_id)
        run.finished_at, run.state, run.counts, run.errors = vietnam_now(), state, counts, errors[:20]
