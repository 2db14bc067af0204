"""The one-machine Airflow cluster ``run_scaleout.py`` starts, drives and stops.

``Scaleout`` starts each piece in its own process group under a private AIRFLOW_HOME (the
stand-ins, the scheduler, the dag-processor, the triggerer, the api-server, the Celery
workers) against two fresh PostgreSQL databases (Airflow's metadata, the ledger) and a
Redis database index of its own; it triggers and reads DAG runs through the REST API,
counts the ledger, and stops everything it started. What a run measures is in
``run_scaleout.py``; this module imports the bridge lazily, once the script has put the
checkout on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psycopg
import requests

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
POSTGRES_ADMIN = os.environ.get("PAHT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("PAHT_SCALEOUT_REDIS", "redis://127.0.0.1:6379/13")
ALL_DAGS = ("paht_ingest", "paht_deliver", "paht_poll_publish", "paht_ratings", "paht_reconcile")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_time(value: str) -> datetime:
    """A time as Airflow's REST API writes it (``Z`` for UTC, which older Pythons do not read)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def failed_runs(states: dict[str, dict[str, int]]) -> dict[str, int]:
    """The DAGs with failed runs, and how many, from ``Scaleout.run_states``."""
    return {dag: s.get("failed", 0) for dag, s in states.items() if s.get("failed")}


class Scaleout:
    """One run's cluster: its processes, databases, ports and REST API token; ``lines`` collects
    what ``say`` prints, for the report file."""

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


    def start_cluster(self) -> None:
        """Everything up, in order, until the api-server answers and the DAGs are parsed."""
        self.say(f"scale-out: CeleryExecutor, {self.workers} workers, broker {REDIS}, PostgreSQL metadata and ledger")
        import redis

        redis.Redis.from_url(REDIS).flushdb()  # this run's own database index: no stale Celery messages
        self.create_databases()
        conns = self.start_sandbox()
        env = {**self.env(), **conns}
        (self.home / "passwords.json").write_text(json.dumps({"admin": "admin"}))
        airflow = str(VENV_BIN / "airflow")
        started = time.monotonic()
        migrated = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, cwd=REPO)
        if migrated.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed: {migrated.stdout[-1500:]}{migrated.stderr[-1500:]}")
        self.say(f"airflow db migrate: {time.monotonic() - started:.0f} s")
        from paht_bridge.ledger.db import migrate

        migrate(env["PAHT_LEDGER_URL"])
        self.start("api-server", [airflow, "api-server", "--port", str(self.port)], env)
        self.start("scheduler", [airflow, "scheduler"], env)
        self.start("dag-processor", [airflow, "dag-processor"], env)
        self.start("triggerer", [airflow, "triggerer"], env)
        for n in range(1, self.workers + 1):
            self.start(f"worker-{n}", [airflow, "celery", "worker", "--celery-hostname", f"paht-worker-{n}@%h", "--concurrency", "2"],
                       {**env, "PAHT_WORKER_NAME": f"paht-worker-{n}"})
        self.wait_for_api_and_dags()

    def post_report(self, source: str, body: dict) -> None:
        """A report posted to a stand-in citizen app, as a citizen would."""
        requests.post(f"{self.urls.urls[source]}/_sandbox/reports", json=body, timeout=30).raise_for_status()

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

    def latest_runs(self, dag_id: str) -> list[dict]:
        """Up to 100 runs of ``dag_id``, in the API's default order."""
        return self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]

    def run_states(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for dag_id in ALL_DAGS:
            for run in self.latest_runs(dag_id):
                out.setdefault(dag_id, {}).setdefault(run["state"], 0)
                out[dag_id][run["state"]] += 1
        return out

    def hosts(self) -> tuple[dict[str, int], dict[str, int], dict[str, float]]:
        """Which Celery worker ran how many task instances (their hostname is the worker's); the
        task instances no worker has taken yet, by state (a run the watchers started after the
        last round may still be queued when we count); and the mean seconds a task instance
        spent queued and running."""
        counts: dict[str, int] = {}
        not_taken: dict[str, int] = {}
        queued, running = [], []
        for dag_id in ALL_DAGS:
            for run in self.latest_runs(dag_id):
                tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances", params={"limit": 100}).json()
                for ti in tis["task_instances"]:
                    if not ti.get("hostname"):
                        state = ti.get("state") or "none"
                        not_taken[state] = not_taken.get(state, 0) + 1
                        continue
                    counts[ti["hostname"]] = counts.get(ti["hostname"], 0) + 1
                    if ti.get("queued_when") and ti.get("start_date") and ti.get("duration") is not None:
                        at = [api_time(ti[k]) for k in ("queued_when", "start_date")]
                        queued.append((at[1] - at[0]).total_seconds())
                        running.append(float(ti["duration"]))
        timing = {"task_instances_timed": len(running), "mean_queued_s": round(sum(queued) / len(queued), 2) if queued else None,
                  "mean_running_s": round(sum(running) / len(running), 2) if running else None}
        return counts, not_taken, timing

    # -- the ledger

    def ledger(self) -> psycopg.Connection:
        return psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.ledger_db}")

    def ledger_counts(self) -> dict[str, int]:
        with self.ledger() as conn:
            rows = conn.execute("select status, count(*) from reports group by status").fetchall()
        return {status: n for status, n in rows}

    def finished(self) -> tuple[int, int]:
        """(reports whose life has ended, reports): rated, or published where the channel takes no ratings."""
        from paht_bridge.config.deployment import deployment

        with self.ledger() as conn:
            rows = conn.execute("select deployment, status, count(*) from reports group by deployment, status").fetchall()
        final = {name: deployment(name).final_status for name, _, _ in rows}
        return sum(n for name, status, n in rows if status == final[name]), sum(n for _, _, n in rows)

    def cycle_seconds(self, ingest_run: str, timeout: float = 120) -> float | None:
        """From an ingest run's start to the end of the first deliver run an Asset event started
        after it ended (waited for: the scheduler creates that run a moment after the ingest run
        ends, and the system can look idle in between). None when there is none in time."""
        deadline = time.monotonic() + timeout
        while True:
            ingest = self.api("GET", f"/dags/paht_ingest/dagRuns/{ingest_run}").json()
            runs = self.latest_runs("paht_deliver")
            ends = [api_time(r["end_date"]) for r in runs if r["run_type"] == "asset_triggered" and r["end_date"] and r["state"] == "success"
                    and ingest["end_date"] and api_time(r["end_date"]) >= api_time(ingest["end_date"])]
            if ends:
                return (min(ends) - api_time(ingest["start_date"])).total_seconds()
            if time.monotonic() > deadline:
                return None
            time.sleep(1)
