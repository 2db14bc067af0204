"""Trial, not the product: would P1 hold if the deliver step's calls ran in a process of their own?

``python -m bench.sender_process_trial [--repetitions N]`` measures, in turn, on fresh
stand-ins, each paired with a transport floor measured just before it (as ``bench.pipeline``):

- ``current``: ingest + the deliver step as shipped;
- ``process``: ingest + a deliver in which a forked child makes the calls, chunk by chunk,
  while this process claims and marks chunk k+1 and writes the outcomes of chunk k-1.

The ``process`` deliver is the happy path only: no lease renewal, no failure, circuit or
attachment handling. It borrows the deliver step's own claim, mark and record functions, so
its ledger work is the shipped one, and it measures what that design could gain before
anyone builds it properly. Threads could not gain it: with the calls on a thread, P1 got
worse (``bench/NOTES.md``: a GIL convoy). Results: ``bench/results/sender_process_trial.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import multiprocessing
import os
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.common import RESULTS, drop_databases, fresh_ledger, private_homes, sandbox
from bench.pipeline import pipeline, transport_floor

_FORK = multiprocessing.get_context("fork")


def _calls(conn: Connection, name: str) -> None:
    """The child: its own clients (never the parent's open sessions), then each chunk's creates in order."""
    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.mappings.config import deployment

    mapping = deployment(name)
    connectors = AirflowConnectors(mapping)
    for spec in mapping.targets:
        connectors.target(spec.name)
    conn.send("ready")
    while (chunk := conn.recv()) is not None:
        conn.send([connectors.target(target).create_document(record, []) for target, record in chunk])


def _deliver_in_a_process(ctx: Any, name: str) -> float:
    """Seconds to deliver everything due, the calls in a child process; its start is not timed (once per task)."""
    steps = importlib.import_module("paht_bridge.ledger.steps.deliver")
    from paht_bridge.ledger.steps.context import report_from_row
    from paht_bridge.ledger.store import claim_deliveries
    from paht_bridge.mappings.transforms import build_document

    ours, theirs = _FORK.Pipe()
    child = _FORK.Process(target=_calls, args=(theirs, name))
    child.start()
    if ours.recv() != "ready":
        raise RuntimeError("the call process did not start")
    started = time.perf_counter()
    with ctx.sessions() as session:
        session.info[steps._HEALTHY] = set()
        in_flight: list[tuple[Any, Any]] = []
        while True:
            batch = claim_deliveries(session, deployment=ctx.mapping.deployment, owner=ctx.worker, states=steps._CLAIMED_STATES,
                                     limit=ctx.batch_size, lease=ctx.lease, now=ctx.clock())
            chunk = [(d, build_document(report_from_row(d.report, ctx.mapping.privacy), steps._routing_of(d), ctx.mapping, d.attempt))
                     for d in batch]
            held = steps._mark_chunk_sending(session, ctx, [d for d, _ in chunk])
            chunk = [(d, record) for d, record in chunk if d.id in held]
            if chunk:
                ours.send([(d.target, record) for d, record in chunk])
            if in_flight:  # the chunk before: its answers came while this one was claimed and marked
                done = [(d, receipt, False) for (d, _), receipt in zip(in_flight, ours.recv(), strict=True)]
                steps._record_delivered(session, ctx, done)
            if not chunk:
                break
            in_flight = chunk
    elapsed = time.perf_counter() - started
    ours.send(None)
    child.join()
    return elapsed


def run(reports: int, repetitions: int, ledgers: tuple[str, ...], home: Path) -> list[dict]:
    rows = []
    for rep in range(repetitions):
        for kind in ledgers:
            for variant in ("current", "process"):
                with sandbox() as box:
                    box.call("POST", "/backlog", params={"n": reports})
                    floor = transport_floor(f"{rep}{kind}{variant}")
                with sandbox() as box:
                    box.call("POST", "/backlog", params={"n": reports})
                    pipe = pipeline(fresh_ledger(kind, home), f"{rep}{variant}",
                                    _deliver_in_a_process if variant == "process" else None)
                    if box.call("GET", "/created")["created_twice"]:
                        raise AssertionError("a document was created twice")
                total = sum(v for k, v in floor.items() if k.endswith("_s"))
                row = {"repetition": rep, "ledger": kind, "variant": variant,
                       "overhead_ratio": round(sum(v for k, v in pipe.items() if k.endswith("_s")) / total, 3),
                       "deliver_vs_creates": {b: round(pipe[f"{b}_deliver_s"] / floor[f"{b}_create_s"], 3) for b in ("soap", "rest")},
                       "floor_per_report_ms": round(1000 * total / reports, 3)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sender_process_trial", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--reports", type=int, default=2000)
    args = parser.parse_args()
    import airflow.sdk  # noqa: F401 - Airflow sets up its logging on import; ours goes after it

    logging.basicConfig(filename=Path(tempfile.gettempdir()) / "paht-bench-trial.log", level=logging.INFO, force=True)
    with tempfile.TemporaryDirectory(prefix="paht-trial-") as tmp:
        private_homes(Path(tmp))
        try:
            rows = run(args.reports, args.repetitions, ("sqlite", "postgresql"), Path(tmp))
        finally:
            drop_databases()
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {variant: {kind: [r["overhead_ratio"] for r in rows if r["variant"] == variant and r["ledger"] == kind]
                         for kind in ("sqlite", "postgresql")} for variant in ("current", "process")}
    (RESULTS / "sender_process_trial.json").write_text(json.dumps(
        {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cores": os.cpu_count(), "reports": args.reports, "P1_by_variant": summary,
         "runs": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
