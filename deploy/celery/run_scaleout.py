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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a script: the bridge and the test helpers import from the checkout
VENV_BIN = Path(sys.executable).parent
POSTGRES_ADMIN = os.environ.get("PAHT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("PAHT_SCALEOUT_REDIS", "redis://127.0.0.1:6379/13")
LIFECYCLE = ("paht_ingest", "paht_poll_publish", "paht_ratings")
ALL_DAGS = ("paht_ingest", "paht_deliver", "paht_poll_publish", "paht_ratings", "paht_reconcile")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Scaleout:
    def __init__(self, home: Path, workers: int, keep: bool, lines: list[str]) -> None:
        self.home = home
        self.workers = workers
        self.keep = keep
        self.lines = lines
        self.processes: dict[str, subprocess.Popen] = {}
        suffix = secrets.token_hex(4)
        self.airflow_db = f"paht_airflow_scale_{suffix}"
        self.ledger_db = f"paht_ledger_scale_{suffix}"
        self.port = free_port()
        self.started = time.monotonic()
        self.token: str | None = None
        self.dags_folder = REPO / "dags"

    # -- output

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:7.1f}s] {text}"
        print(line, flush=True)
        self.lines.append(line)

    # -- set-up

    def env(self) -> dict[str, str]:
        pg = "postgresql+psycopg://postgres@127.0.0.1:5432"
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'deploy' / 'celery'}",
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "paht_scaleout_hostname.hostname",
            "AIRFLOW_HOME": str(self.home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{pg}/{self.airflow_db}",
            # psycopg 3 also drives the async engine (Airflow would pick asyncpg, not installed).
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"{pg}/{self.airflow_db}",
            "AIRFLOW__CELERY__BROKER_URL": REDIS,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{pg}/{self.airflow_db}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "PAHT_HOME": str(self.home / "paht"),
            "PAHT_LEDGER_URL": f"{pg}/{self.ledger_db}",
        }
        return env

    def create_databases(self) -> None:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            for name in (self.airflow_db, self.ledger_db):
                admin.execute(f'CREATE DATABASE "{name}"')
        self.say(f"created databases {self.airflow_db} (Airflow metadata) and {self.ledger_db} (ledger)")

    def drop_databases(self) -> None:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            for name in (self.airflow_db, self.ledger_db):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        self.processes[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)

    def start_sandbox(self) -> dict[str, str]:
        urls_file = self.home / "sandbox-urls.json"
        self.start("sandbox", [sys.executable, "-m", "paht_bridge.sandbox", "--urls-file", str(urls_file), "--desk-interval", "4"],
                   {**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 60
        while not urls_file.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.2)
        from paht_bridge.sandbox.stack import SandboxUrls

        urls = SandboxUrls.from_json(urls_file.read_text())
        self.urls = urls
        self.say(f"stand-ins up: {', '.join(f'{k}={v}' for k, v in urls.urls.items())}")
        return urls.connection_env()

    def stop_all(self) -> None:
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 30
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()

    # -- the REST API

    def api(self, method: str, path: str, **kwargs) -> requests.Response:  # noqa: ANN003
        if self.token is None:
            answer = requests.post(f"http://127.0.0.1:{self.port}/auth/token", json={"username": "admin", "password": "admin"}, timeout=30)
            answer.raise_for_status()
            self.token = answer.json()["access_token"]
        response = requests.request(method, f"http://127.0.0.1:{self.port}/api/v2{path}",
                                    headers={"Authorization": f"Bearer {self.token}"}, timeout=60, **kwargs)
        response.raise_for_status()
        return response

    def wait_for_api_and_dags(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}; see {self.home / (name + '.log')}")
            try:
                dags = {d["dag_id"] for d in self.api("GET", "/dags", params={"limit": 100}).json()["dags"]}
                if set(ALL_DAGS) <= dags:
                    self.say(f"api-server up on :{self.port}; the dag-processor has parsed {sorted(dags)}")
                    return
            except requests.RequestException:
                pass
            time.sleep(2)
        raise RuntimeError("the DAGs did not appear in time")

    def trigger(self, dag_id: str) -> str:
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None}).json()
        return run["dag_run_id"]

    def active_runs(self) -> int:
        runs = self.api("GET", "/dags/~/dagRuns", params={"state": ["queued", "running"], "limit": 100}).json()
        return runs["total_entries"]

    def wait_idle(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        time.sleep(2)
        while self.active_runs():
            if time.monotonic() > deadline:
                raise RuntimeError("DAG runs still active after the time limit")
            time.sleep(2)

    def runs(self, dag_id: str, since: datetime | None = None, run_type: str | None = None) -> list[dict]:
        params: dict[str, object] = {"limit": 100, "order_by": "-run_after"}
        if since is not None:
            params["run_after_gte"] = since.isoformat()
        if run_type is not None:
            params["run_type"] = [run_type]
        return self.api("GET", f"/dags/{dag_id}/dagRuns", params=params).json()["dag_runs"]

    def first_run(self, dag_id: str, run_type: str, timeout: float = 180) -> dict | None:
        """The first run of ``dag_id`` of that type, once it exists (None after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.runs(dag_id, run_type=run_type)
            if found:
                return min(found, key=lambda r: r["run_after"])
            time.sleep(1)
        return None

    def runs_by_type(self, dag_id: str, since: datetime | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self.runs(dag_id, since):
            counts[run["run_type"]] = counts.get(run["run_type"], 0) + 1
        return counts

    def run_states(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for dag_id in ALL_DAGS:
            for run in self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]:
                out.setdefault(dag_id, {}).setdefault(run["state"], 0)
                out[dag_id][run["state"]] += 1
        return out

    def hosts(self) -> tuple[dict[str, int], dict[str, int], dict[str, float]]:
        """Which Celery worker ran how many task instances (their hostname is the worker's); the
        task instances no worker has taken yet, by state (a run the watchers started after the
        last round may still be queued when we count); and the mean seconds a task instance
        spent queued and running."""
        from datetime import datetime

        counts: dict[str, int] = {}
        not_taken: dict[str, int] = {}
        queued, running = [], []
        for dag_id in ALL_DAGS:
            for run in self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]:
                tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances", params={"limit": 100}).json()
                for ti in tis["task_instances"]:
                    if not ti.get("hostname"):
                        state = ti.get("state") or "none"
                        not_taken[state] = not_taken.get(state, 0) + 1
                        continue
                    counts[ti["hostname"]] = counts.get(ti["hostname"], 0) + 1
                    if ti.get("queued_when") and ti.get("start_date") and ti.get("duration") is not None:
                        at = [datetime.fromisoformat(ti[k].replace("Z", "+00:00")) for k in ("queued_when", "start_date")]
                        queued.append((at[1] - at[0]).total_seconds())
                        running.append(float(ti["duration"]))
        timing = {"task_instances_timed": len(running), "mean_queued_s": round(sum(queued) / len(queued), 2) if queued else None,
                  "mean_running_s": round(sum(running) / len(running), 2) if running else None}
        return counts, not_taken, timing

    # -- the ledger

    def ledger_counts(self) -> dict[str, int]:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.ledger_db}") as conn:
            rows = conn.execute("select status, count(*) from reports group by status").fetchall()
        return {status: n for status, n in rows}

    def finished(self) -> tuple[int, int]:
        """(reports whose life has ended, reports): rated, or published where the channel takes no ratings."""
        from paht_bridge.config.deployment import deployment

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.ledger_db}") as conn:
            rows = conn.execute("select deployment, status, count(*) from reports group by deployment, status").fetchall()
        final = {name: deployment(name).final_status for name, _, _ in rows}
        return sum(n for name, status, n in rows if status == final[name]), sum(n for _, _, n in rows)

    def cycle_seconds(self, ingest_run: str, timeout: float = 120) -> float | None:
        """From an ingest run's start to the end of the first deliver run an Asset event started
        after it ended (waited for: the scheduler creates that run a moment after the ingest run
        ends, and the system can look idle in between). None when there is none in time."""
        from datetime import datetime

        def at(value: str) -> datetime:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))

        deadline = time.monotonic() + timeout
        while True:
            ingest = self.api("GET", f"/dags/paht_ingest/dagRuns/{ingest_run}").json()
            runs = self.api("GET", "/dags/paht_deliver/dagRuns", params={"limit": 100}).json()["dag_runs"]
            ends = [at(r["end_date"]) for r in runs if r["run_type"] == "asset_triggered" and r["end_date"] and r["state"] == "success"
                    and ingest["end_date"] and at(r["end_date"]) >= at(ingest["end_date"])]
            if ends:
                return (min(ends) - at(ingest["start_date"])).total_seconds()
            if time.monotonic() > deadline:
                return None
            time.sleep(1)


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
    run.say(f"scale-out: CeleryExecutor, {run.workers} workers, broker {REDIS}, PostgreSQL metadata and ledger")
    import redis

    redis.Redis.from_url(REDIS).flushdb()  # this run's own database index: no stale Celery messages
    run.create_databases()
    conns = run.start_sandbox()
    env = {**run.env(), **conns}
    (run.home / "passwords.json").write_text(json.dumps({"admin": "admin"}))
    airflow = str(VENV_BIN / "airflow")
    started = time.monotonic()
    migrated = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, cwd=REPO)
    if migrated.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed: {migrated.stdout[-1500:]}{migrated.stderr[-1500:]}")
    run.say(f"airflow db migrate: {time.monotonic() - started:.0f} s")
    from paht_bridge.ledger.db import migrate

    migrate(env["PAHT_LEDGER_URL"])
    run.start("api-server", [airflow, "api-server", "--port", str(run.port)], env)
    run.start("scheduler", [airflow, "scheduler"], env)
    run.start("dag-processor", [airflow, "dag-processor"], env)
    run.start("triggerer", [airflow, "triggerer"], env)
    for n in range(1, run.workers + 1):
        run.start(f"worker-{n}", [airflow, "celery", "worker", "--celery-hostname", f"paht-worker-{n}@%h", "--concurrency", "2"],
                  {**env, "PAHT_WORKER_NAME": f"paht-worker-{n}"})
    run.wait_for_api_and_dags()

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
    failed = {dag: s.get('failed', 0) for dag, s in states.items() if s.get("failed")}
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
            requests.post(f"{run.urls.urls[source]}/_sandbox/reports", json=body, timeout=30).raise_for_status()
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
    failed = {dag: s.get("failed", 0) for dag, s in states.items() if s.get("failed")}
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
        requests.post(f"{run.urls.urls[source]}/_sandbox/reports", json=body, timeout=30).raise_for_status()
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
