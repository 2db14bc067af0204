"""Scale-out on one machine: Airflow with CeleryExecutor, two workers, PostgreSQL, Redis.

``deploy/celery/run_scaleout.sh [--output bench/results/scaleout.txt]`` (or ``.venv/bin/python deploy/celery/run_scaleout.py``)

Starts, each in its own process group under a private AIRFLOW_HOME: the stand-ins (seeded
reports, agency desks and citizens moving on a clock), an Airflow metadata database and a
ledger database (both fresh, on the PostgreSQL server at 127.0.0.1:5432), the scheduler,
the dag-processor, the triggerer (it runs the new-reports watchers that start
``paht_ingest``), the api-server (which also serves the task execution API the workers
use) and two Celery workers taking tasks from Redis (127.0.0.1:6379, a database index of
its own). Nothing is triggered until the watchers have started ``paht_ingest`` for the
seeded backlog and its ``reports-routed`` Asset event has started ``paht_deliver`` (the
cycle P6's estimate uses when it has not been measured). Then it triggers the lifecycle
DAGs round after round through the REST API until every seeded report has been delivered,
answered, published and rated, and checks every document in the stand-in document systems:
``created_count == 1``, nothing delivered twice. It stops everything it started and drops
both databases (``--keep`` keeps them).

``--latency-reports N`` measures P6 instead of the rounds: once the backlog is delivered it
posts N new reports to the stand-in citizen apps at random moments over ``--latency-span``
seconds, triggers nothing, and times each from its post to its document's first appearance
at the stand-in document system (``/_sandbox/documents``, read twice a second). The figures
go to ``--latency-output`` (``bench/results/latency.json``), which ``bench/run.py`` reports as P6.

Exit status 0 when the lifecycle completed (or every posted report was delivered) with no
duplicate and the watchers started ``paht_ingest``; the report goes to stdout and to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

# The cluster (processes, databases, the REST API, the ledger) is in the module beside this script.
from scaleout_cluster import REPO, Scaleout, failed_runs

sys.path.insert(0, str(REPO))  # run as a script: the bridge and the test helpers import from the checkout
LIFECYCLE = ("paht_ingest", "paht_poll_publish", "paht_ratings")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/celery/run_scaleout.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=None,
                        help="the log (default bench/results/scaleout.txt, or latency.txt with --latency-reports)")
    parser.add_argument("--summary", type=Path, default=REPO / "bench" / "results" / "scaleout.json", help="the figures, as JSON")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-rounds", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the databases and the Airflow home (printed)")
    parser.add_argument("--latency-reports", type=int, default=0, metavar="N",
                        help="measure P6 over N reports posted after the backlog (instead of the lifecycle rounds)")
    parser.add_argument("--latency-span", type=float, default=240, metavar="SECONDS", help="post them at random moments over this long")
    parser.add_argument("--latency-seed", type=int, default=7, help="seed of those random moments")
    parser.add_argument("--latency-output", type=Path, default=REPO / "bench" / "results" / "latency.json")
    parser.add_argument("--compare-baseline", type=int, default=0, metavar="SAMPLE",
                        help="P2 on this scheduler: the bridge clears a --backlog of reports, then the one-task-per-report "
                             "baseline (bench/dags) runs on SAMPLE of them (instead of the lifecycle rounds)")
    parser.add_argument("--backlog", type=int, default=1000, help="reports posted for --compare-baseline")
    parser.add_argument("--compare-output", type=Path, default=REPO / "bench" / "results" / "comparison_live.json")
    args = parser.parse_args(argv)
    mode = "latency" if args.latency_reports else "comparison_live" if args.compare_baseline else "scaleout"
    args.output = args.output or REPO / "bench" / "results" / f"{mode}.txt"
    lines: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="paht-scaleout-"))
    run = Scaleout(home, args.workers, args.keep, lines)
    if args.compare_baseline:  # the shipped DAGs and the baseline side by side
        run.dags_folder = home / "dags"
        run.dags_folder.mkdir()
        for dag_file in (REPO / "dags" / "paht_lifecycle.py", REPO / "bench" / "dags" / "paht_baseline_per_report.py"):
            shutil.copy(dag_file, run.dags_folder / dag_file.name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what was started, drop the databases
    ok = False
    try:
        ok = _run(run, args)
    except Exception as error:  # noqa: BLE001 - reported, then everything is stopped
        run.say(f"FAILED: {error.__class__.__name__}: {error}")
        for name in run.processes:
            log = home / f"{name}.log"
            tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
            run.say(f"--- last lines of {name}.log:\n" + "\n".join(tail))
    finally:
        run.stop_all()
        if not args.keep:
            run.drop_databases()
            shutil.rmtree(home, ignore_errors=True)
        else:
            run.say(f"kept: AIRFLOW_HOME={home / 'airflow'} databases {run.airflow_db}, {run.ledger_db}")
        run.say(f"{'PASSED' if ok else 'FAILED'} in {time.monotonic() - run.started:.0f} s")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(lines) + "\n")
    return 0 if ok else 1


def _run(run: Scaleout, args: argparse.Namespace) -> bool:
    run.start_cluster()

    # Round 0: nothing triggered. The watchers in the triggerer find the seeded backlog past the
    # ledger's (empty) cursors and start paht_ingest; its Asset event starts paht_deliver. (A new
    # DAG also gets one cron run at once, for the last 5-minute tick: the watchers' run may queue
    # behind it and find that one took the backlog.)
    first = run.first_run("paht_ingest", "asset_triggered")
    if first is None:
        run.say("no paht_ingest run started by the watchers within 180 s: triggering one through the API")
        first = run.api("GET", f"/dags/paht_ingest/dagRuns/{run.trigger('paht_ingest')}").json()
    run.wait_idle()
    cycle = run.cycle_seconds(first["dag_run_id"])
    run.say(f"cycle: paht_ingest ({first['run_type']}) -> Asset-triggered paht_deliver done: {cycle} s; ledger {run.ledger_counts()}")
    if args.latency_reports:
        return _latency(run, args, cycle)
    if args.compare_baseline:
        return _compare(run, args)
    done = total = 0
    max_rounds, summary_file = args.max_rounds, args.summary
    for round_no in range(1, max_rounds + 1):
        for dag_id in LIFECYCLE:
            run.trigger(dag_id)
        run.wait_idle()
        done, total = run.finished()
        run.say(f"round {round_no:2d}: {done}/{total} reports at the end of their life; statuses {dict(sorted(run.ledger_counts().items()))}")
        if total and done == total:
            break
        time.sleep(4)  # one desk step and one round of citizens' ratings
    states = run.run_states()
    run.say(f"DAG runs by state: {states}")
    hosts, not_taken, timing = run.hosts()
    run.say(f"task instances per worker: {hosts}; not taken by a worker yet, by state: {not_taken}; per task instance: {timing}")
    failed = failed_runs(states)
    watcher_runs = run.runs_by_type("paht_ingest").get("asset_triggered", 0)
    run.say(f"paht_ingest runs started by the new-reports watchers (triggerer): {watcher_runs}")

    docs, twice = _documents(run)
    run.say(f"reports at the end of their life (rated, or published for Open311): {done}/{total}")
    both_worked = sum(1 for host in hosts if host.startswith("paht-worker-")) == run.workers
    ok = not twice and not failed and total > 0 and done == total and len(docs) >= total and both_worked and watcher_runs > 0
    summary = {"passed": ok, "reports": total, "finished": done, "documents": len(docs), "created_twice": len(twice),
               "failed_runs": failed, "rounds": round_no, "cycle_ingest_to_delivered_s": cycle, "cycle_started_by": first["run_type"],
               "ingest_runs_started_by_watchers": watcher_runs, "workers": run.workers,
               "task_instances_per_worker": hosts, "task_instances_not_taken": not_taken, "task_instance_timing": timing,
               "seconds": round(time.monotonic() - run.started, 1)}
    summary_file.parent.mkdir(parents=True, exist_ok=True)
    summary_file.write_text(json.dumps(summary, indent=1))
    run.say(f"summary: {json.dumps(summary)}")
    return ok


def _documents(run: Scaleout) -> tuple[list[dict], list[str]]:
    """Every document in the stand-in document systems, and the references created more than once."""
    from tests.lifecycle_checks import documents

    docs = [d for url in run.urls.document_systems for d in documents(url)]
    twice = [d["external_ref"] for d in docs if d["created_count"] != 1]
    run.say(f"documents in the stand-ins: {len(docs)}; created more than once: {len(twice)} {twice[:5]}")
    return docs, twice


# -- P6: posted -> document, over reports actually posted ------------------------------------


def _new_report(source: str, n: int, tag: str) -> tuple[str, dict]:
    """A new report for ``source`` in the stand-in's own shape (a seed's, with a new id, stamped now),
    and the reference its document will carry (``external_ref``: ``PAHT-<source>-<id>``)."""
    from paht_bridge.canonical import VIETNAM_TZ
    from paht_bridge.sandbox.citizen_app import load_seed_reports
    from paht_bridge.sandbox.open311 import load_open311_seeds
    from tests.lifecycle_checks import UNRATED

    now = datetime.now(VIETNAM_TZ).isoformat(timespec="seconds")
    report_id = f"LAT-{tag}-{n:04d}"
    if source in UNRATED:  # Open311 (GeoReport v2) wire shape
        seeds = load_open311_seeds(source)
        body = {**seeds[n % len(seeds)], "service_request_id": report_id, "requested_datetime": now, "updated_datetime": now}
    else:
        seeds = load_seed_reports(source)
        body = {**seeds[n % len(seeds)], "id": report_id, "created_at": now}
    return f"PAHT-{source}-{report_id}", body


def _latency(run: Scaleout, args: argparse.Namespace, cycle: float | None) -> bool:
    """Post ``args.latency_reports`` reports at random moments, trigger nothing, and time each to its document."""
    from paht_bridge.plugins.new_reports_trigger import DEFAULT_POLL_SECONDS
    from tests.lifecycle_checks import SOURCE_TARGET, documents

    n, span = args.latency_reports, args.latency_span
    rng = random.Random(args.latency_seed)
    moments = sorted(rng.uniform(0, span) for _ in range(n))
    sources = list(SOURCE_TARGET)
    tag = secrets.token_hex(2)
    targets = sorted({run.urls.urls[target] for target in SOURCE_TARGET.values()})
    run.say(f"latency: posting {n} reports to {sources} at random moments over {span:.0f} s; nothing is triggered through the API")
    window_start, load_at_start = datetime.now(timezone.utc), os.getloadavg()[0]
    posted: dict[str, dict] = {}
    seen: dict[str, float] = {}
    started, next_post, give_up = time.time(), 0, None
    while True:
        while next_post < n and time.time() - started >= moments[next_post]:
            source = sources[next_post % len(sources)]
            ref, body = _new_report(source, next_post, tag)
            at = time.time()
            run.post_report(source, body)
            posted[ref] = {"source": source, "posted_at": at}
            next_post += 1
        for url in targets:
            refs = {d["external_ref"] for d in documents(url)}
            now = time.time()  # after the answer: a document is counted no earlier than it was seen
            for ref in refs & posted.keys() - seen.keys():
                seen[ref] = now
        if next_post == n:
            if len(seen) == n:
                break
            give_up = give_up or time.time() + 600
            if time.time() > give_up:
                break
        time.sleep(0.5)

    per_report = sorted(({"external_ref": ref, "source": p["source"],
                          "posted_at": datetime.fromtimestamp(p["posted_at"], timezone.utc).isoformat(timespec="milliseconds"),
                          "document_seen_at": datetime.fromtimestamp(seen[ref], timezone.utc).isoformat(timespec="milliseconds") if ref in seen else None,
                          "latency_s": round(seen[ref] - p["posted_at"], 2) if ref in seen else None} for ref, p in posted.items()),
                        key=lambda r: r["posted_at"])
    latencies = [r["latency_s"] for r in per_report if r["latency_s"] is not None]
    p95 = statistics.quantiles(latencies, n=100, method="inclusive")[94] if len(latencies) >= 2 else (latencies or [None])[0]
    docs, twice = _documents(run)
    states = run.run_states()
    failed = failed_runs(states)
    ingest_runs, deliver_runs = run.runs_by_type("paht_ingest", window_start), run.runs_by_type("paht_deliver", window_start)
    result = {
        "figure": "P6: from a report posted in a citizen app to its document existing at the back end",
        "setup": f"deploy/celery/run_scaleout.py: scheduler + triggerer (AssetWatcher, NewReportsTrigger polling every "
                 f"{DEFAULT_POLL_SECONDS:g} s) + dag-processor + api-server + {run.workers} Celery workers, PostgreSQL + Redis; "
                 "shipped schedules, nothing triggered through the API",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, load {load_at_start:.1f} at the first post, {os.getloadavg()[0]:.1f} at the end",
        "reports_posted": n, "documents_seen": len(latencies), "span_s": span, "seed": args.latency_seed,
        "p50_s": round(statistics.median(latencies), 1) if latencies else None, "p95_s": round(p95, 1) if p95 is not None else None,
        "max_s": round(max(latencies), 1) if latencies else None, "mean_s": round(statistics.fmean(latencies), 1) if latencies else None,
        "measured_how": "posted = just before POST /_sandbox/reports; document = first /_sandbox/documents answer (read every 0.5 s) "
                        "holding its external_ref, i.e. an upper bound within about 0.5 s",
        "runs_in_window": {"paht_ingest": ingest_runs, "paht_deliver": deliver_runs},
        "scheduler_heartbeat_sec": run.env()["AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC"],
        "cycle_ingest_to_delivered_s": cycle, "created_twice": len(twice), "failed_runs": failed,
        "per_report": per_report,
    }
    args.latency_output.parent.mkdir(parents=True, exist_ok=True)
    args.latency_output.write_text(json.dumps(result, indent=1))
    run.say(f"latency over {len(latencies)}/{n} posted reports: p50 {result['p50_s']} s, p95 {result['p95_s']} s, max {result['max_s']} s; "
            f"runs meanwhile: paht_ingest {ingest_runs}, paht_deliver {deliver_runs}")
    manual = ingest_runs.get("manual", 0)
    return len(latencies) == n and not twice and not failed and manual == 0 and ingest_runs.get("asset_triggered", 0) > 0


# -- P2: the bridge against one mapped task per report, on this scheduler ----------------------


def _wait_for_refs(run: Scaleout, refs: set[str], timeout: float) -> float | None:
    """Seconds until every reference in ``refs`` is a document at the stand-ins (None: not in time)."""
    from tests.lifecycle_checks import documents

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        present = {d["external_ref"] for url in run.urls.document_systems for d in documents(url)}
        if refs <= present:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


def _compare(run: Scaleout, args: argparse.Namespace) -> bool:
    """Post a backlog; time the bridge (one paht_ingest run triggered through the API, paht_deliver
    on its Asset) until every report is a document; then time ``paht_baseline_per_report`` (one
    mapped task per report, bench/dags) on a sample of the same backlog, triggered the same way."""
    from paht_bridge.sandbox.backlog import synthetic_reports

    n, sample = args.backlog, args.compare_baseline
    backlog = list(synthetic_reports(n))
    for source, body in backlog:
        run.post_report(source, body)
    refs = {f"PAHT-{source}-{body['id']}" for source, body in backlog}
    run.say(f"P2: {n} reports posted to the citizen apps; triggering paht_ingest (paht_deliver follows on its Asset)")
    started = time.monotonic()
    run.trigger("paht_ingest")
    bridge_s = _wait_for_refs(run, refs, timeout=1800)
    run.wait_idle()
    run.say(f"bridge: {n} reports are documents after {bridge_s} s")
    run.say(f"baseline: triggering paht_baseline_per_report on {sample} of them (one mapped task each)")
    started = time.monotonic()
    baseline_run = run.api("POST", "/dags/paht_baseline_per_report/dagRuns", json={"logical_date": None, "conf": {"limit": sample}}).json()
    deadline = started + 3600
    while True:
        state = run.api("GET", f"/dags/paht_baseline_per_report/dagRuns/{baseline_run['dag_run_id']}").json()["state"]
        if state in ("success", "failed") or time.monotonic() > deadline:
            break
        time.sleep(1)
    baseline_s = time.monotonic() - started
    tis = run.api("GET", f"/dags/paht_baseline_per_report/dagRuns/{baseline_run['dag_run_id']}/taskInstances",
                  params={"limit": 1}).json()["total_entries"]
    docs, twice = _documents(run)
    baseline_docs = sum(1 for d in docs if d["external_ref"].startswith("BASE-"))
    per_report = baseline_s / sample
    result = {
        "figure": "P2 on a real scheduler: the bridge's batch DAGs against one mapped task per report",
        "setup": f"deploy/celery/run_scaleout.py --compare-baseline {sample}: scheduler + triggerer + dag-processor + api-server + "
                 f"{run.workers} Celery workers (2 slots each), PostgreSQL + Redis; both triggered through the REST API",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end",
        "reports": n, "bridge_s": round(bridge_s, 1) if bridge_s else None,
        "baseline": {"sample": sample, "state": state, "seconds_on_sample": round(baseline_s, 1), "task_instances": tis,
                     "documents": baseline_docs, "seconds_per_report": round(per_report, 2),
                     "seconds_for_backlog": round(per_report * n, 1), "extrapolated": sample != n},
        "speedup": round(per_report * n / bridge_s, 1) if bridge_s else None,
        "created_twice": len(twice),
    }
    args.compare_output.parent.mkdir(parents=True, exist_ok=True)
    args.compare_output.write_text(json.dumps(result, indent=1))
    run.say(f"P2: bridge {result['bridge_s']} s for {n}; baseline {result['baseline']['seconds_on_sample']} s for {sample} "
            f"({tis} task instances, {per_report:.2f} s per report, {result['baseline']['seconds_for_backlog']} s for {n}): "
            f"{result['speedup']}x")
    return bool(bridge_s) and state == "success" and baseline_docs == sample and not twice


if __name__ == "__main__":
    sys.exit(main())
