"""Recent sync runs as IOC staff see them: each DAG's newest step runs, with counts and errors.

Read from the ledger's own run log (``RunRow``), never from Airflow's metadata database.
Errors came from outside systems: phone numbers are masked on the way out.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paht_bridge.canonical import in_vietnam
from paht_bridge.ledger.models import RunRow
from paht_bridge.privacy import mask_phones


class SyncRun(BaseModel):
    run_id: str
    dag_id: str | None
    step: str
    deployment: str
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None
    state: str
    counts: dict[str, int]
    errors: list[str]


class DagRuns(BaseModel):
    dag_id: str
    last_state: str
    last_started_at: datetime
    last_success_at: datetime | None
    failed_recently: int  # runs that failed or partly failed among those shown
    runs: list[SyncRun]


def recent_runs(session: Session, per_dag: int = 10) -> list[DagRuns]:
    """The newest step runs of every DAG, newest first."""
    ranked = (select(RunRow.id, func.row_number().over(partition_by=RunRow.dag_id, order_by=(RunRow.started_at.desc(), RunRow.id.desc()))
                     .label("rank")).subquery())
    rows = session.scalars(select(RunRow).join(ranked, ranked.c.id == RunRow.id).where(ranked.c.rank <= per_dag)
                           .order_by(RunRow.dag_id, RunRow.started_at.desc(), RunRow.id.desc()))
    by_dag: dict[str, list[SyncRun]] = defaultdict(list)
    for row in rows:
        seconds = (row.finished_at - row.started_at).total_seconds() if row.finished_at else None
        by_dag[row.dag_id or "(không rõ DAG)"].append(SyncRun(
            run_id=row.run_id, dag_id=row.dag_id, step=row.step, deployment=row.deployment, started_at=in_vietnam(row.started_at),
            finished_at=in_vietnam(row.finished_at), seconds=seconds, state=row.state,
            counts={str(k): int(v) for k, v in (row.counts or {}).items()}, errors=[mask_phones(str(e)) for e in row.errors or []]))
    last_success = dict(session.execute(select(RunRow.dag_id, func.max(RunRow.started_at)).where(RunRow.state == "success")
                                        .group_by(RunRow.dag_id)).all())
    return [DagRuns(dag_id=dag_id, last_state=runs[0].state, last_started_at=runs[0].started_at,
                    last_success_at=in_vietnam(last_success.get(runs[0].dag_id)),
                    failed_recently=sum(r.state in ("failed", "partial") for r in runs), runs=runs)
            for dag_id, runs in sorted(by_dag.items())]
