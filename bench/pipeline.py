"""P1 (overhead against the transport floor) and P3 (delivery throughput per back end).

The *floor* is what the outside systems force: the same calls to the same stand-ins with
the same clients in a bare loop: list every page of reports from each citizen app, create
each document at the REST and SOAP stand-ins. The *pipeline* is the bridge's ingest
(pull, normalise, route, ledger writes) and deliver (claim, record sending, create, record
the outcome) steps on a fresh ledger. Both run in this process against the stand-ins in
their own process, each on a fresh one loaded with the same backlog. Both build their
clients before the clock starts (zeep reads a WSDL once per process), and the pipeline
configures SQLAlchemy's mappers first: once-per-process set-up is not a cost per report.
Both start, as a task's step does, by hiding what the process already holds from the
garbage collector (``paht_bridge.tasks.settle_heap``).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any

from bench.common import RESULTS, context, cpu_seconds, cpu_spent, fresh_ledger, sandbox

DEPLOYMENTS = {"quang_tri": "soap", "dien_bien": "rest"}


def transport_floor(tag: str, cpu: Meter | None = None) -> dict[str, float]:
    """Seconds for the bare calls, per deployment: listing all pages, creating all documents
    (``cpu``: adds up the CPU time of every process over the timed parts)."""
    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.normalise.admin_units import resolve_units
    from paht_bridge.config.deployment import deployment
    from paht_bridge.normalise.transforms import build_document, routes
    from paht_bridge.tasks import settle_heap

    settle_heap()  # as in ``pipeline``: whichever runs first in the process settles it for both
    out: dict[str, float] = {}
    for name, kind in DEPLOYMENTS.items():
        mapping = deployment(name)
        connectors = AirflowConnectors(mapping)
        spec = mapping.sources[0]
        source = connectors.source(spec.name)
        with _counted(cpu):
            started = time.perf_counter()
            reports = [report for page in source.reports_since(None, page_size=spec.page_size) for report in page.items]
            out[f"{kind}_list_s"] = time.perf_counter() - started
        # Documents are prepared outside the timing: the floor is the wire, not our transforms.
        work = []
        for report in reports:
            routing = routes(report, resolve_units(report.location.unit), mapping)[0]
            record = build_document(report, routing, mapping)
            work.append((connectors.target(routing.target), record.model_copy(update={"external_ref": f"FLOOR{tag}-{record.external_ref}"})))
        with _counted(cpu):
            started = time.perf_counter()
            for target, record in work:
                target.create_document(record, [])
            out[f"{kind}_create_s"] = time.perf_counter() - started
        out[f"{kind}_reports"] = len(reports)
    return out


def pipeline(url: str, tag: str, deliver_with: Callable[[Any, str], float] | None = None, cpu: Meter | None = None) -> dict[str, float]:
    """Seconds for the bridge's ingest and deliver steps, per deployment, on ledger ``url``
    (``deliver_with(ctx, deployment)``: another way to deliver, timing itself; a trial's;
    ``cpu``: adds up the CPU time of every process over the timed parts)."""
    from paht_bridge.steps import deliver, ingest

    from sqlalchemy.orm import configure_mappers

    from paht_bridge.tasks import settle_heap

    configure_mappers()  # once per process, like the floor's clients below: not a cost per report
    settle_heap()  # what ``run_step`` does first in every task process
    out: dict[str, float] = {}
    for name, kind in DEPLOYMENTS.items():
        ctx = context(url, name, f"bench-{tag}")
        # The clients are built before the clock starts, as the floor's are (zeep reads its WSDL once).
        for spec in ctx.mapping.sources:
            ctx.connectors.source(spec.name)
        for spec in ctx.mapping.targets:
            ctx.connectors.target(spec.name)
        with _counted(cpu):
            started = time.perf_counter()
            ingested = ingest(ctx)
            out[f"{kind}_ingest_s"] = time.perf_counter() - started
        out[f"{kind}_received"] = ingested.counts.get("received", 0)
        if deliver_with is not None:
            out[f"{kind}_deliver_s"] = deliver_with(ctx, name)
            continue
        with _counted(cpu):
            started = time.perf_counter()
            delivered = deliver(ctx)
            out[f"{kind}_deliver_s"] = time.perf_counter() - started
        out[f"{kind}_delivered"] = delivered.counts.get("delivered", 0)
    return out


def concurrent_throughput(reports: int, ledger: str, concurrency: int, home: Path, latency: float = 0.0) -> dict[str, float]:
    """P3 with ``send_concurrency`` senders per target: reports/s the deliver step reaches
    (``latency``: seconds the document systems add to every answer)."""
    from paht_bridge.steps import deliver, ingest

    with sandbox() as box:
        box.call("POST", "/backlog", params={"n": reports})
        box.call("POST", "/latency", params={"seconds": latency})
        url = fresh_ledger(ledger, home)
        out: dict[str, float] = {}
        for name, kind in DEPLOYMENTS.items():
            ctx = context(url, name, "bench-concurrent", send_concurrency=concurrency)
            ingest(ctx)
            started = time.perf_counter()
            delivered = deliver(ctx).counts.get("delivered", 0)
            out[f"{kind}_reports_per_s"] = round(delivered / (time.perf_counter() - started), 1)
        if box.call("GET", "/created")["created_twice"]:
            raise AssertionError("a document was created twice")
    return out


def with_latency(reports: int, latency: float, concurrency: int, home: Path) -> dict:
    """P1 and P3 where every document-system call takes ``latency`` longer, as a real one does."""
    with sandbox() as box:
        box.call("POST", "/backlog", params={"n": reports})
        box.call("POST", "/latency", params={"seconds": latency})
        floor = transport_floor("lat")
    with sandbox() as box:  # a fresh stand-in for each, as in ``run``
        box.call("POST", "/backlog", params={"n": reports})
        box.call("POST", "/latency", params={"seconds": latency})
        pipe = pipeline(fresh_ledger("sqlite", home), "lat")
    floor_total = sum(v for k, v in floor.items() if k.endswith("_s"))
    pipe_total = sum(v for k, v in pipe.items() if k.endswith("_s"))
    parallel = concurrent_throughput(reports, "sqlite", concurrency, home, latency)
    return {"latency_s": latency, "reports": reports, "overhead_ratio": round(pipe_total / floor_total, 3),
            "per_report_ms": round(1000 * pipe_total / reports, 2), "floor_per_report_ms": round(1000 * floor_total / reports, 2),
            "one_sender": {"rest_reports_per_s": round(pipe["rest_delivered"] / pipe["rest_deliver_s"], 1),
                           "soap_reports_per_s": round(pipe["soap_delivered"] / pipe["soap_deliver_s"], 1)},
            "send_concurrency": concurrency, "concurrent": parallel}


def run(reports: int, repetitions: int, ledgers: tuple[str, ...], home: Path, profile: bool = True, concurrency: int = 4,
        latency: float = 0.02, latency_concurrency: int = 16) -> dict:
    """The floor and the pipeline on each ledger engine, ``repetitions`` times each: the fastest
    of each, the median of each, and each pipeline run against the floor measured just before it."""
    floors: list[dict[str, float]] = []
    pipes: dict[str, list[dict[str, float]]] = {kind: [] for kind in ledgers}
    floors_cpu: list[Meter] = []
    pipes_cpu: dict[str, list[Meter]] = {kind: [] for kind in ledgers}
    for rep in range(repetitions):
        for kind in ledgers:
            # Each on a fresh stand-in holding the same backlog: a stand-in slows a little as it
            # stores documents (3-9 % over four floors in a row), so whichever ran second paid for it.
            with sandbox() as box:
                box.call("POST", "/backlog", params={"n": reports})
                floors_cpu.append(Meter(box))
                floors.append(transport_floor(f"{rep}{kind[0]}", floors_cpu[-1]))
            with sandbox() as box:
                box.call("POST", "/backlog", params={"n": reports})
                url = fresh_ledger(kind, home)
                pipes_cpu[kind].append(Meter(box, url))
                pipes[kind].append(pipeline(url, f"{rep}", cpu=pipes_cpu[kind][-1]))
                if box.call("GET", "/created")["created_twice"]:
                    raise AssertionError("a document was created twice")
    floor = {key: min(f[key] for f in floors) for key in floors[0]}
    result: dict = {"reports": reports, "repetitions": repetitions, "floor_s": _rounded(floor), "runs": {}}
    floor_total = sum(v for k, v in floor.items() if k.endswith("_s"))
    floor_median = median(_seconds(f) for f in floors)
    for kind, runs in pipes.items():
        best = {key: min(r[key] for r in runs) for key in runs[0]}
        total = sum(v for k, v in best.items() if k.endswith("_s"))
        result["runs"][kind] = {
            "pipeline_s": _rounded(best),
            "overhead_ratio": round(total / floor_total, 3),
            # The middle run of each against the middle floor: what a run of either is like on this machine.
            "median_ratio": round(median(_seconds(r) for r in runs) / floor_median, 3),
            "per_report_ms": round(1000 * total / reports, 3),
            "floor_per_report_ms": round(1000 * floor_total / reports, 3),
            "rest_reports_per_s": round(best["rest_delivered"] / best["rest_deliver_s"], 1),
            "soap_reports_per_s": round(best["soap_delivered"] / best["soap_deliver_s"], 1),
            "all_ratios": [round(sum(v for k, v in r.items() if k.endswith("_s")) / sum(v for k, v in f.items() if k.endswith("_s")), 3)
                           for r, f in zip(runs, floors[ledgers.index(kind)::len(ledgers)])],
            # CPU time moves far less with the machine than wall time does: what each report costs
            # every process, in the middle run of each (PostgreSQL's server counted on either ledger).
            "cpu_ms_per_report": _cpu_per_report(pipes_cpu[kind], reports),
            "floor_cpu_ms_per_report": _cpu_per_report(floors_cpu, reports),
        }
    result["floor_rest_reports_per_s"] = round(floor["rest_reports"] / floor["rest_create_s"], 1)
    result["floor_soap_reports_per_s"] = round(floor["soap_reports"] / floor["soap_create_s"], 1)
    result["concurrent"] = {"send_concurrency": concurrency,
                            **{kind: concurrent_throughput(reports, kind, concurrency, home) for kind in ledgers}}
    result["with_latency"] = with_latency(reports, latency, latency_concurrency, home)
    if profile:
        result["profile"] = profile_pipeline(reports, home)
    return result


def profile_pipeline(reports: int, home: Path) -> str:
    """cProfile of one pipeline run (SQLite ledger); the top functions go to a text file."""
    with sandbox() as box:
        box.call("POST", "/backlog", params={"n": reports})
        url = fresh_ledger("sqlite", home)
        profiler = cProfile.Profile()
        profiler.enable()
        pipeline(url, "profile")
        profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    text.write(f"cProfile of ingest+deliver, {reports} reports, SQLite ledger, stand-ins in another process\n\n== by own time\n")
    stats.sort_stats("tottime").print_stats(35)
    text.write("\n== by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(45)
    path = RESULTS / "profile_pipeline.txt"
    path.write_text(text.getvalue())
    return str(path.relative_to(RESULTS.parent.parent))


class Meter:
    """The CPU time of every process (``bench.common.cpu_seconds``), added up over the timed
    parts of one floor or pipeline run."""

    def __init__(self, box: Any, ledger: str | None = None) -> None:
        self.box, self.ledger = box, ledger
        self.spent: dict[str, float] = {}


@contextmanager
def _counted(cpu: Meter | None) -> Iterator[None]:
    """Add what the block costs every process to ``cpu`` (nothing without one)."""
    if cpu is None:
        yield
        return
    before = cpu_seconds(cpu.box, cpu.ledger)
    yield
    for key, value in cpu_spent(before, cpu_seconds(cpu.box, cpu.ledger)).items():
        cpu.spent[key] = round(cpu.spent.get(key, 0.0) + value, 3)


def _cpu_per_report(meters: list[Meter], reports: int) -> dict[str, float]:
    """Milliseconds of CPU per report, per process class and in all, of the run whose total is the median."""
    totals = sorted(meters, key=lambda m: sum(v for k, v in m.spent.items() if k != "wall"))
    middle = totals[len(totals) // 2].spent
    out = {key: round(1000 * value / reports, 3) for key, value in middle.items() if key != "wall"}
    out["all"] = round(sum(out.values()), 3)
    return out


def _seconds(run: dict[str, float]) -> float:
    return sum(v for k, v in run.items() if k.endswith("_s"))


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in values.items()}
