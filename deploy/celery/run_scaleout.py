"""Scale-out on one machine: Airflow with CeleryExecutor, two workers, PostgreSQL, Redis.

``deploy/celery/run_scaleout.sh [--output bench/results/scaleout.txt]`` (or ``.venv/bin/python deploy/celery/run_scaleout.py``)

Starts, each in its own process group under a private AIRFLOW_HOME: the stand-ins (seeded
reports, agency desks and citizens moving on a clock), an Airflow metadata database and a
ledger database (both fresh, on the PostgreSQL server at 127.0.0.1:5432), the scheduler,
the dag-processor, the api-server (which also serves the task execution API the workers
use) and two Celery workers taking tasks from Redis (127.0.0.1:6379, a database index of
its own). It triggers the lifecycle DAGs round after round through the REST API until
every seeded report has been delivered, answered, published and rated (``paht_deliver``
runs on the ``reports-routed`` Asset that ``paht_ingest`` updates), then checks every
document in both stand-in document systems: ``created_count == 1``, nothing delivered
twice. It stops everything it started and drops both databases (``--keep`` keeps them).

Exit status 0 when the lifecycle completed with no duplicate; the report goes to stdout
and to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
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
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
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

    def run_states(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for dag_id in ALL_DAGS:
            for run in self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]:
                out.setdefault(dag_id, {}).setdefault(run["state"], 0)
                out[dag_id][run["state"]] += 1
        return out

    def hosts(self) -> tuple[dict[str, int], dict[str, float]]:
        """Which Celery worker ran how many task instances (their hostname is the worker's), and
        the mean seconds a task instance spent queued and running."""
        from datetime import datetime

        counts: dict[str, int] = {}
        queued, running = [], []
        for dag_id in ALL_DAGS:
            for run in self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]:
                tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances", params={"limit": 100}).json()
                for ti in tis["task_instances"]:
                    counts[ti.get("hostname") or "?"] = counts.get(ti.get("hostname") or "?", 0) + 1
                    if ti.get("queued_when") and ti.get("start_date") and ti.get("duration") is not None:
                        at = [datetime.fromisoformat(ti[k].replace("Z", "+00:00")) for k in ("queued_when", "start_date")]
                        queued.append((at[1] - at[0]).total_seconds())
                        running.append(float(ti["duration"]))
        timing = {"task_instances_timed": len(running), "mean_queued_s": round(sum(queued) / len(queued), 2) if queued else None,
                  "mean_running_s": round(sum(running) / len(running), 2) if running else None}
        return counts, timing

    # -- the ledger

    def ledger_counts(self) -> dict[str, int]:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.ledger_db}") as conn:
            rows = conn.execute("select status, count(*) from reports group by status").fetchall()
        return {status: n for status, n in rows}

    def finished(self) -> tuple[int, int]:
        """(reports whose life has ended, reports): rated, or published where the channel takes no ratings."""
        from paht_bridge.mappings.config import deployment

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.ledger_db}") as conn:
            rows = conn.execute("select deployment, status, count(*) from reports group by deployment, status").fetchall()
        final = {name: deployment(name).final_status for name, _, _ in rows}
        return sum(n for name, status, n in rows if status == final[name]), sum(n for _, _, n in rows)

    def cycle_seconds(self, ingest_run: str) -> float | None:
        """From a triggered ingest run's start to the end of the deliver run its Asset event started."""
        ingest = self.api("GET", f"/dags/paht_ingest/dagRuns/{ingest_run}").json()
        runs = self.api("GET", "/dags/paht_deliver/dagRuns", params={"limit": 100}).json()["dag_runs"]
        asset_runs = [r for r in runs if r["run_type"] == "asset_triggered" and r["end_date"] and r["state"] == "success"]
        if not asset_runs:
            return None
        from datetime import datetime

        def at(value: str) -> datetime:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))

        end = min(at(r["end_date"]) for r in asset_runs if at(r["end_date"]) >= at(ingest["end_date"]))
        return (end - at(ingest["start_date"])).total_seconds()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/celery/run_scaleout.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "scaleout.txt")
    parser.add_argument("--summary", type=Path, default=REPO / "bench" / "results" / "scaleout.json", help="the figures, as JSON")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-rounds", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the databases and the Airflow home (printed)")
    args = parser.parse_args(argv)
    lines: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="paht-scaleout-"))
    run = Scaleout(home, args.workers, args.keep, lines)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what was started, drop the databases
    ok = False
    try:
        ok = _run(run, args.max_rounds, args.summary)
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


def _run(run: Scaleout, max_rounds: int, summary_file: Path) -> bool:
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
    for n in range(1, run.workers + 1):
        run.start(f"worker-{n}", [airflow, "celery", "worker", "--celery-hostname", f"paht-worker-{n}@%h", "--concurrency", "2"],
                  {**env, "PAHT_WORKER_NAME": f"paht-worker-{n}"})
    run.wait_for_api_and_dags()

    # Round 0: ingest alone, so the Asset-triggered deliver it starts can be timed (P6's cycle).
    ingest_run = run.trigger("paht_ingest")
    run.wait_idle()
    cycle = run.cycle_seconds(ingest_run)
    run.say(f"cycle: triggered paht_ingest -> Asset-triggered paht_deliver done: {cycle} s; ledger {run.ledger_counts()}")
    done = total = 0
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
    hosts, timing = run.hosts()
    run.say(f"task instances per worker: {hosts}; per task instance: {timing}")
    failed = {dag: s.get('failed', 0) for dag, s in states.items() if s.get("failed")}

    from tests.lifecycle_checks import documents

    docs = [d for url in run.urls.document_systems for d in documents(url)]
    twice = [d["external_ref"] for d in docs if d["created_count"] != 1]
    run.say(f"documents in the stand-ins: {len(docs)}; created more than once: {len(twice)} {twice[:5]}")
    run.say(f"reports at the end of their life (rated, or published for Open311): {done}/{total}")
    both_worked = sum(1 for host in hosts if host.startswith("paht-worker-")) == run.workers
    ok = not twice and not failed and total > 0 and done == total and len(docs) >= total and both_worked
    summary = {"passed": ok, "reports": total, "finished": done, "documents": len(docs), "created_twice": len(twice),
               "failed_runs": failed, "rounds": round_no, "cycle_ingest_to_delivered_s": cycle, "workers": run.workers,
               "task_instances_per_worker": hosts, "task_instance_timing": timing,
               "seconds": round(time.monotonic() - run.started, 1)}
    summary_file.parent.mkdir(parents=True, exist_ok=True)
    summary_file.write_text(json.dumps(summary, indent=1))
    run.say(f"summary: {json.dumps(summary)}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
