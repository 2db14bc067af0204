"""What the benchmarks share: the stand-ins in their own process, fresh ledgers, step contexts."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import requests

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
POSTGRES_ADMIN = os.environ.get("PAHT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
#: Attachments up to 256 MiB for the memory figure (the default limit is 100 MiB).
BENCH_LIMITS = {"max_attachment_bytes": 256 * 1024 * 1024}


class Sandbox:
    """``bench.sandbox_proc`` running in a child process; its URLs and its control server."""

    def __init__(self, refuse_one_in: int = 0) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="paht-bench-sandbox-")
        urls_file = Path(self._dir.name) / "urls.json"
        self.process = subprocess.Popen([sys.executable, "-m", "bench.sandbox_proc", "--urls-file", str(urls_file),
                                         "--refuse-one-in", str(refuse_one_in)], cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + 60
        while not urls_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the sandbox process did not start")
            time.sleep(0.1)
        self.urls: dict[str, str] = json.loads(urls_file.read_text())["urls"]
        self.control = self.urls.pop("control")
        self.http = requests.Session()

    def connection_env(self, timeout: float = 30) -> dict[str, str]:
        from paht_bridge.sandbox.stack import SandboxUrls

        env = SandboxUrls(urls=self.urls).connection_env(timeout=timeout)
        for key, value in env.items():
            conn = json.loads(value)
            conn.setdefault("extra", {})["limits"] = BENCH_LIMITS
            env[key] = json.dumps(conn)
        return env

    def use(self) -> None:
        """Point this process's Airflow Connections at these stand-ins."""
        os.environ.update(self.connection_env())

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.control}{path}", timeout=600, **kwargs)
        response.raise_for_status()
        return response.json()

    def counts(self) -> dict[str, int]:
        return self.call("GET", "/counts")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._dir.cleanup()


@contextmanager
def sandbox(refuse_one_in: int = 0) -> Iterator[Sandbox]:
    box = Sandbox(refuse_one_in)
    try:
        box.use()
        yield box
    finally:
        box.stop()


_databases: list[str] = []


def fresh_ledger(kind: str, home: Path) -> str:
    """A fresh, migrated ledger: SQLite in ``home`` or a new PostgreSQL database."""
    from paht_bridge.ledger.db import migrate

    if kind == "postgresql":
        import psycopg

        name = f"paht_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        _databases.append(name)
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    else:
        url = f"sqlite:///{home / f'ledger-{uuid.uuid4().hex[:8]}.sqlite'}"
    migrate(url)
    return url


def drop_databases() -> None:
    if not _databases:
        return
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        for name in _databases:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _databases.clear()


def context(url: str, name: str, run_id: str, batch_size: int = 100, **target_changes: Any):  # noqa: ANN201
    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.ledger.db import sessions
    from paht_bridge.steps import StepContext
    from paht_bridge.config.deployment import deployment
    from paht_bridge.tasks import call_process_wanted

    mapping = deployment(name)
    if target_changes:
        targets = tuple(t.model_copy(update=target_changes) for t in mapping.targets)
        mapping = mapping.model_copy(update={"targets": targets})
    return StepContext(mapping=mapping, sessions=sessions(url), connectors=AirflowConnectors(mapping), run_id=run_id,
                       batch_size=batch_size, lease=timedelta(seconds=600), call_process=call_process_wanted())


def cpu_seconds(box: Sandbox, ledger: str | None = None) -> dict[str, Any]:
    """CPU time so far, per process class: this process (the step), its children that have
    ended, the stand-ins, and the PostgreSQL server processes serving the ledger's database
    (``ledger``; by process id, so the server's work for anything else on the machine is not
    counted); and the wall clock. Two snapshots bracket a phase (``cpu_spent``)."""
    import psutil

    own, standins = psutil.Process().cpu_times(), psutil.Process(box.process.pid).cpu_times()
    backends: dict[int, float] = {}
    if ledger and ledger.startswith("postgresql"):
        import psycopg

        database = ledger.rsplit("/", 1)[1]
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            pids = [row[0] for row in admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]
        for pid in pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:  # a backend that ended meanwhile
                continue
            backends[pid] = times.user + times.system
    return {"step": own.user + own.system, "children": own.children_user + own.children_system,
            "stand_ins": standins.user + standins.system, "postgresql": backends, "wall": time.perf_counter()}


def cpu_spent(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """What each process class spent between two ``cpu_seconds`` snapshots (a server process
    that started in between counts from zero)."""
    spent = {key: round(after[key] - before[key], 3) for key in before if key != "postgresql"}
    spent["postgresql"] = round(sum(cpu - before["postgresql"].get(pid, 0.0) for pid, cpu in after["postgresql"].items()), 3)
    return spent


def private_homes(home: Path) -> None:
    os.environ["PAHT_HOME"] = str(home)
    os.environ.setdefault("AIRFLOW_HOME", str(home / "airflow"))
    os.environ.pop("PAHT_LEDGER_URL", None)


@contextmanager
def trial_home(log_name: str = "paht-bench.log") -> Iterator[Path]:
    """An A/B script's set-up: Airflow's logging first, the bridge's log lines to a file in the
    temporary directory (off the terminal), private homes in a fresh directory, and every
    PostgreSQL database the trial made dropped afterwards."""
    import airflow.sdk  # noqa: F401 - Airflow sets up its logging on import; ours goes after it

    logging.basicConfig(filename=Path(tempfile.gettempdir()) / log_name, filemode="w", level=logging.INFO, force=True)
    with tempfile.TemporaryDirectory(prefix="paht-bench-") as tmp:
        home = Path(tmp)
        private_homes(home)
        try:
            yield home
        finally:
            drop_databases()
