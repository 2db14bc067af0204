"""Shared pieces of the chaos suite (and of bench/chaos_run.py): a stand-in stack with a
short client timeout, a movable clock, tuned mappings, and the exactly-once check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from random import Random

from sqlalchemy import func, select

from paht_bridge.connectors.hooks import AirflowConnectors
from paht_bridge.ledger.db import sessions
from paht_bridge.ledger.models import DeliveryRow, EventRow, ReportRow
from paht_bridge.steps import StepContext, deliver, ingest
from paht_bridge.canonical import vietnam_now
from paht_bridge.config.deployment import Deployment, deployment, deployment_names
from paht_bridge.sandbox.stack import SandboxStack
from tests.lifecycle_checks import documents

TARGETS = ("qoffice_quangtri", "tdoffice_dienbien")


@dataclass
class MovableClock:
    """The steps' clock; an hour of outage passes in a moment."""

    now: datetime = field(default_factory=vietnam_now)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def tuned(mapping: Deployment, **target_changes: object) -> Deployment:
    targets = tuple(t.model_copy(update=target_changes) for t in mapping.targets)
    return mapping.model_copy(update={"targets": targets})


def contexts(url: str, run_id: str, clock: MovableClock | None = None, lease_seconds: float = 600, batch_size: int = 100,
             **target_changes: object) -> list[StepContext]:
    out = []
    for name in deployment_names():
        mapping = tuned(deployment(name), **target_changes)
        ctx = StepContext(mapping=mapping, sessions=sessions(url), connectors=AirflowConnectors(mapping), run_id=run_id,
                          lease=timedelta(seconds=lease_seconds), batch_size=batch_size)
        if clock is not None:
            ctx.clock = clock
        out.append(ctx)
    return out


def ingest_all(url: str) -> None:
    for ctx in contexts(url, "ingest"):
        ingest(ctx)


def deliver_round(url: str, run_id: str, clock: MovableClock | None = None, lease_seconds: float = 600,
                  **target_changes: object) -> dict[str, int]:
    totals: dict[str, int] = {}
    for ctx in contexts(url, run_id, clock, lease_seconds=lease_seconds, batch_size=5, **target_changes):
        for key, value in deliver(ctx).counts.items():
            totals[key] = totals.get(key, 0) + value
    return totals


def deliver_until_done(url: str, run_id: str, clock: MovableClock | None = None, rounds: int = 60, advance: float = 3600,
                       lease_seconds: float = 600, **target_changes: object) -> int:
    """Deliver rounds until every delivery is delivered or ``rounds`` are spent; between rounds
    the clock moves ``advance`` seconds (past back-offs and cool-downs). The rounds it took."""
    done = 0
    while undelivered(url) and done < rounds:
        deliver_round(url, f"{run_id}-{done}", clock, lease_seconds=lease_seconds, **target_changes)
        if clock is not None:
            clock.advance(advance)
        done += 1
    return done


def undelivered(url: str) -> int:
    with sessions(url)() as session:
        return session.scalar(select(func.count(DeliveryRow.id)).where(DeliveryRow.state != "delivered"))


def exactly_once(stack: SandboxStack, url: str) -> dict[str, int]:
    """Every delivery in the ledger is one document in its target, created once; no extra documents."""
    with sessions(url)() as session:
        refs = dict(session.execute(select(DeliveryRow.external_ref, DeliveryRow.state)).all())
        reports = session.scalar(select(func.count(ReportRow.id)))
        sending_events = session.scalar(select(func.count(EventRow.id)).where(EventRow.kind == "sending"))
    docs = [d for target in TARGETS for d in documents(stack.urls.urls[target])]
    duplicated = [d["external_ref"] for d in docs if d["created_count"] != 1]
    by_ref = {d["external_ref"]: d for d in docs}
    missing = [ref for ref in refs if ref not in by_ref]
    extra = [ref for ref in by_ref if ref not in refs]
    return {
        "reports": reports,
        "deliveries": len(refs),
        "documents": len(docs),
        "duplicated": len(duplicated),
        "missing": len(missing),
        "extra": len(extra),
        "not_delivered_in_ledger": sum(1 for state in refs.values() if state != "delivered"),
        "create_requests_seen_by_targets": sum(d["send_calls"] or 0 for d in docs),
        "sending_events": sending_events,
    }


REPO = Path(__file__).resolve().parents[2]


def kill_trials(url: str, trials: int, seed: int, lease_seconds: float = 0.3) -> dict[str, int]:
    """Start a deliver worker, kill -9 it at a random moment, repeat; then let one finish.

    Each worker holds its claims for ``lease_seconds``; the next one takes over what a killed
    one left (in 'sending' it looks the document up by reference first)."""
    rng = Random(seed)
    killed = killed_while_sending = 0
    for _ in range(trials):
        worker = subprocess.Popen([sys.executable, "-m", "tests.chaos.worker", url, str(lease_seconds)], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        worker.stdout.readline()  # READY: imports done, about to claim work
        time.sleep(rng.uniform(0.0, 2.0))  # the first claim comes about a second after READY
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            killed += 1
        worker.wait()
        worker.stdout.close()
        with sessions(url)() as session:
            killed_while_sending += session.scalar(select(func.count(DeliveryRow.id)).where(DeliveryRow.state == "sending")) > 0
        time.sleep(lease_seconds + 0.05)  # the dead worker's leases run out
    deliver_until_done(url, "after-the-kills", rounds=10, lease_seconds=lease_seconds)
    return {"trials": trials, "killed": killed, "killed_while_sending": killed_while_sending}
