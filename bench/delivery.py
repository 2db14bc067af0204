"""What delivering costs against the bare calls: CPU per delivered report, and throughput
against document systems that answer in 20 ms and in 200 ms.

- **CPU**: the deliver step's CPU per delivered report (its process, every sender thread,
  and the PostgreSQL server processes serving the ledger) against the CPU per call of a
  bare loop that creates the same documents with the same client (its process only). The
  stand-ins' CPU is in neither. Goal: at most 1.5×.
- **Throughput**: documents created per second by the deliver step with ``send_concurrency``
  N against a bare loop of N threads calling the same client, with the stand-ins answering
  each call ``latency`` later (a back end tens to hundreds of milliseconds away). Goal: at
  least 90 % of the bare loop's, where the back end is the bound (with 16 senders 20 ms away
  both loops are bound by the two cores they share with the stand-ins instead: that row is
  shown, and it is P1 again).

Each run gets a fresh stand-in (``bench.sandbox_proc``, its own process) loaded with the same
backlog, and a fresh ledger into which the backlog is ingested before the clock starts; the
clients are built before the clock starts in both (zeep reads its WSDL once per process).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median
from typing import Any

from bench.common import context, cpu_seconds, cpu_spent, fresh_ledger, sandbox

#: Deployment → the kind of its one document system.
DEPLOYMENTS = {"quang_tri": "soap", "dien_bien": "rest"}


def _records(name: str, tag: str) -> list[tuple[Any, Any]]:
    """(client, record) for every report of the deployment's backlog, routed and built as the
    bridge would, under references of their own (the bare loop's documents are not the bridge's)."""
    from paht_bridge.config.deployment import deployment
    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.normalise.admin_units import resolve_units
    from paht_bridge.normalise.transforms import build_document, routes

    mapping = deployment(name)
    connectors = AirflowConnectors(mapping)
    source = connectors.source(mapping.sources[0].name)
    work = []
    for page in source.reports_since(None, page_size=mapping.sources[0].page_size):
        for report in page.items:
            routing = routes(report, resolve_units(report.location.unit), mapping)[0]
            record = build_document(report, routing, mapping)
            work.append((connectors.target(routing.target), record.model_copy(update={"external_ref": f"BARE{tag}-{record.external_ref}"})))
    return work


def bare_loop(box: Any, name: str, callers: int) -> dict[str, float]:
    """Create every backlog document of ``name`` with ``callers`` threads: seconds, calls, CPU of this process."""
    work = _records(name, f"{callers}")
    before = cpu_seconds(box)
    if callers == 1:
        for target, record in work:
            target.create_document(record, [])
    else:
        with ThreadPoolExecutor(max_workers=callers) as pool:
            list(pool.map(lambda item: item[0].create_document(item[1], []), work))
    spent = cpu_spent(before, cpu_seconds(box))
    return {"calls": len(work), "seconds": spent["wall"], "cpu_s": spent["step"]}


def bridge(box: Any, url: str, name: str, senders: int) -> dict[str, float]:
    """The deliver step on ``name``'s ingested backlog with ``senders`` per target: seconds,
    documents delivered, CPU of this process and of the ledger's database server."""
    from paht_bridge.steps import deliver, ingest

    ctx = context(url, name, f"bench-{senders}", send_concurrency=senders)
    ingest(ctx)
    for spec in ctx.mapping.targets:
        ctx.connectors.target(spec.name)
    before = cpu_seconds(box, url)
    counts = deliver(ctx).counts
    spent = cpu_spent(before, cpu_seconds(box, url))
    if box.call("GET", "/created")["created_twice"]:
        raise AssertionError("a document was created twice")
    return {"delivered": counts.get("delivered", 0), "seconds": spent["wall"], "cpu_s": spent["step"],
            "postgresql_cpu_s": spent["postgresql"]}


def cpu_per_report(reports: int, repetitions: int, ledgers: tuple[str, ...], home: Path) -> dict:
    """CPU per delivered report against CPU per bare call, per ledger and back end (median of runs)."""
    out: dict[str, Any] = {"reports": reports, "repetitions": repetitions, "goal": "<= 1.5x", "by_ledger": {}}
    rows: dict[str, list[dict]] = {}
    for _ in range(repetitions):
        for ledger in ledgers:
            with sandbox() as box:
                box.call("POST", "/backlog", params={"n": reports})
                bare = {kind: bare_loop(box, name, 1) for name, kind in DEPLOYMENTS.items()}
            with sandbox() as box:
                box.call("POST", "/backlog", params={"n": reports})
                url = fresh_ledger(ledger, home)
                ours = {kind: bridge(box, url, name, 1) for name, kind in DEPLOYMENTS.items()}
            for kind in DEPLOYMENTS.values():
                bare_ms = 1000 * bare[kind]["cpu_s"] / bare[kind]["calls"]
                ours_ms = 1000 * (ours[kind]["cpu_s"] + ours[kind]["postgresql_cpu_s"]) / ours[kind]["delivered"]
                rows.setdefault(f"{ledger}/{kind}", []).append(
                    {"bare_cpu_ms_per_call": round(bare_ms, 3), "bridge_cpu_ms_per_report": round(ours_ms, 3),
                     "of_which_postgresql_ms": round(1000 * ours[kind]["postgresql_cpu_s"] / ours[kind]["delivered"], 3),
                     "ratio": round(ours_ms / bare_ms, 3)})
    for key, runs in rows.items():
        out["by_ledger"][key] = {"ratio": median(r["ratio"] for r in runs), "runs": runs}
    out["met"] = all(v["ratio"] <= 1.5 for v in out["by_ledger"].values())
    return out


#: Latency (s) → senders → reports per deployment: about ten seconds of calls for the bare loop.
THROUGHPUT_SIZES = {0.02: {1: 400, 4: 1200, 16: 2000}, 0.2: {1: 50, 16: 640}}
#: Calls per second this machine's two cores serve, the stand-ins' answers included (about
#: 2.5-3 ms of CPU per call in all): past it, N senders no longer wait on the back end but on
#: the CPU, and both loops measure CPU per call, which is P1.
CPU_BOUND_CALLS_PER_S = 250


def throughput(ledger: str, home: Path, sizes: dict[float, dict[int, int]] = THROUGHPUT_SIZES) -> dict:
    """Documents per second, the deliver step against a bare loop with as many callers."""
    out: dict[str, Any] = {"ledger": ledger, "goal": ">= 90% of the bare loop with as many callers", "runs": []}
    for latency, by_senders in sizes.items():
        for senders, reports in by_senders.items():
            with sandbox() as box:
                box.call("POST", "/backlog", params={"n": 2 * reports})  # about half for each deployment
                box.call("POST", "/latency", params={"seconds": latency})  # the document systems only
                bare = {kind: bare_loop(box, name, senders) for name, kind in DEPLOYMENTS.items()}
            with sandbox() as box:
                box.call("POST", "/backlog", params={"n": 2 * reports})
                box.call("POST", "/latency", params={"seconds": latency})  # the document systems only
                url = fresh_ledger(ledger, home)
                ours = {kind: bridge(box, url, name, senders) for name, kind in DEPLOYMENTS.items()}
            for kind in DEPLOYMENTS.values():
                bare_rate = bare[kind]["calls"] / bare[kind]["seconds"]
                our_rate = ours[kind]["delivered"] / ours[kind]["seconds"]
                out["runs"].append({"latency_ms": round(latency * 1000), "senders": senders, "backend": kind,
                                    "bare_per_s": round(bare_rate, 1), "bridge_per_s": round(our_rate, 1),
                                    "share": round(our_rate / bare_rate, 3),
                                    "cpu_bound": senders / latency > CPU_BOUND_CALLS_PER_S})
                print(out["runs"][-1], flush=True)
    out["met"] = all(r["share"] >= 0.9 for r in out["runs"] if not r["cpu_bound"])
    return out
