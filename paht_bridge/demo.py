"""The demo: every seeded report's whole life, through real Airflow, against the sandbox.

It starts the stand-ins in a separate process, points Airflow Connections at them, migrates
a throw-away Airflow metadata DB and ledger (SQLite, under ``$PAHT_HOME``), then runs the
lifecycle DAGs with ``dag.test()`` round after round (one agency-desk step and one round
of citizen ratings between rounds) until every report has been rated or nothing moves.

Everything it leaves under its home (ledger, Airflow's database, ``demo.log``, the URLs file)
is created readable by its owner alone (umask 077, for it and the processes it starts): the
ledger holds reporters' data, however well encrypted, and a log is no place to share.
Connection passwords reach Airflow through the environment only, never a file.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from paht_bridge.config.folders import shipped_mappings
from paht_bridge.sandbox.stack import SandboxUrls

REPO = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO / "dags"
PLUGINS_FOLDER = REPO / "plugins"
LIFECYCLE = ("paht_ingest", "paht_deliver", "paht_poll_publish", "paht_ratings")
RECONCILE = "paht_reconcile"


def airflow_env(home: Path) -> dict[str, str]:
    """A private, quiet Airflow on SQLite under ``home`` (nothing else on the machine is touched)."""
    return {
        "PAHT_HOME": str(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        # The demo runs on its own deployments (the shipped samples), whatever the operator's are.
        "AIRFLOW__PAHT__DEPLOYMENTS_FOLDER": str(shipped_mappings()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
    }


@contextmanager
def sandbox_process(home: Path, log_file: Path) -> Iterator[SandboxUrls]:
    """The stand-ins in their own process, so the bridge talks to them only over loopback."""
    urls_file = home / "sandbox-urls.json"
    urls_file.unlink(missing_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "paht_bridge.sandbox", "--urls-file", str(urls_file)],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not urls_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start; see {log_file}")
            time.sleep(0.1)
        yield SandboxUrls.from_json(urls_file.read_text())
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def migrate_airflow(env: dict[str, str], log_file: Path) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    with open(log_file, "ab") as log:
        subprocess.run([str(airflow), "db", "migrate"], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, check=True)


class DagRunner:
    """Runs the lifecycle DAGs in this process with ``dag.test()`` (real Airflow task runs)."""

    def __init__(self, log_file: Path) -> None:
        from airflow.dag_processing.dagbag import DagBag

        self.log_file = log_file
        # One handle for the whole demo: Airflow's loggers keep the stream they first saw.
        self._log = open(log_file, "a", buffering=1)  # noqa: SIM115 - closed in close()
        with self._quiet():
            bag = DagBag(str(DAGS_FOLDER))
        for handler in logging.getLogger().handlers:  # Airflow's console handlers write to the log file instead
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setStream(self._log)
        if bag.import_errors:
            raise RuntimeError(f"DAG import errors: {bag.import_errors}")
        self.dags = {dag_id: bag.get_dag(dag_id) for dag_id in (*LIFECYCLE, RECONCILE)}

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        with redirect_stdout(self._log), redirect_stderr(self._log):
            yield

    def close(self) -> None:
        self._log.close()

    def run(self, dag_id: str) -> str:
        with self._quiet():
            run = self.dags[dag_id].test()
        if run.state != "success":
            raise RuntimeError(f"{dag_id} run {run.run_id} ended {run.state}; see {self.log_file}")
        return run.state


def drive(runner: DagRunner, urls: SandboxUrls, done: Callable[[], tuple[int, int]], console: Console, max_rounds: int = 20) -> int:
    """Rounds of the lifecycle until every report is rated (or nothing moves for a while)."""
    still = 0
    for round_no in range(1, max_rounds + 1):
        for dag_id in LIFECYCLE[:3]:
            runner.run(dag_id)
        moved = urls.tick_desks()
        rated_now = urls.citizens_rate()
        runner.run("paht_ratings")
        rated, total = done()
        console.print(f"  round {round_no:2d}: desks moved {moved:3d} documents, citizens rated {rated_now:3d}; "
                      f"done {rated}/{total}")
        if total and rated == total:
            return round_no
        still = still + 1 if moved == 0 and rated_now == 0 else 0
        if still >= 3:
            break
    return max_rounds


@contextmanager
def existing_sandbox(urls_file: Path) -> Iterator[SandboxUrls]:
    """Stand-ins someone else started (``python -m paht_bridge.sandbox --urls-file F``)."""
    yield SandboxUrls.from_json(urls_file.read_text())


@contextmanager
def private_files() -> Iterator[None]:
    """Files and folders created meanwhile (here and by child processes) are the owner's alone."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def run_demo(home: Path, console: Console | None = None, max_rounds: int = 20, sandbox_urls: Path | None = None) -> Path:
    """The whole demo; returns the ledger's home. ``home`` is wiped first."""
    with private_files():
        return _run_demo(home, console or Console(), max_rounds, sandbox_urls)


def _run_demo(home: Path, console: Console, max_rounds: int, sandbox_urls: Path | None) -> Path:
    if home.exists():
        shutil.rmtree(home)
    (home / "airflow").mkdir(parents=True)
    env = airflow_env(home)
    os.environ.update(env)
    log_file = home / "demo.log"
    console.print(f"[bold]PAHT bridge demo[/bold] — state and logs in {home}")
    stand_ins = existing_sandbox(sandbox_urls) if sandbox_urls else sandbox_process(home, log_file)
    with stand_ins as urls:
        os.environ.update(urls.connection_env())
        for name, url in urls.urls.items():
            console.print(f"  stand-in {name:18s} {url}")
        console.print("  migrating Airflow's metadata database (SQLite)…")
        migrate_airflow(env, log_file)
        from paht_bridge.ledger.db import migrate, sessions
        from paht_bridge.config.deployment import deployment

        migrate()
        runner = DagRunner(log_file)
        console.print("  running the lifecycle DAGs through Airflow (dag.test), one agency-desk step per round:")

        def done() -> tuple[int, int]:
            from paht_bridge.ledger.stats import status_counts

            with sessions()() as session:
                counts = status_counts(session)
            total = sum(sum(c.values()) for c in counts.values())
            # A report's life ends rated, or published where its channel takes no ratings (Open311).
            final = {name: deployment(name).final_status for name in counts}
            return sum(c.get(final[name], 0) for name, c in counts.items()), total

        try:
            drive(runner, urls, done, console, max_rounds)
            runner.run(RECONCILE)
        finally:
            runner.close()
        console.print(f"  reconciliation (ledger vs every app and document system): {drift_summary()}")
        console.print(f"  alerts raised: {alert_summary()} (the seeded reports are weeks old; details in {log_file.name})")
    print_summary(console)
    return home


def drift_summary() -> str:
    from sqlalchemy import func, select

    from paht_bridge.ledger.db import sessions
    from paht_bridge.ledger.models import EventRow

    with sessions()() as session:
        drift = session.scalar(select(func.count(EventRow.id)).where(EventRow.kind == "drift"))
    return "no drift" if not drift else f"{drift} drift finding(s): see the events of kind 'drift'"


def alert_summary() -> str:
    from sqlalchemy import func, select

    from paht_bridge.ledger.db import sessions
    from paht_bridge.ledger.models import EventRow

    with sessions()() as session:
        counts = dict(session.execute(select(EventRow.kind, func.count(EventRow.id))
                                      .where(EventRow.kind.in_(("overdue", "backend_alert"))).group_by(EventRow.kind)).all())
    return f"{counts.get('overdue', 0)} report(s) past their deadline, {counts.get('backend_alert', 0)} failing back end(s)"


#: ``paht stats``'s columns: a short heading and the ``Figures`` field it shows (each defined there).
STATS_COLUMNS = (("recv", "received"), ("deliv", "delivered"), ("prog", "in_progress"), ("answ", "answered"),
                 ("publ", "published"), ("late", "overdue"), ("dead", "dead_lettered"), ("review", "needs_review"),
                 ("rated", "rated"), ("sat.", "satisfaction_rate"))


def print_summary(console: Console) -> None:
    """The figures per province and agency (``ledger.figures``, as the IOC page shows them) and a report to trace."""
    from sqlalchemy import select

    from paht_bridge.ledger.db import sessions
    from paht_bridge.ledger.figures import Figures, figures
    from paht_bridge.ledger.models import ReportRow

    with sessions()() as session:
        tables = figures(session)
        sample = session.scalar(select(ReportRow.source_id).order_by(ReportRow.id).limit(1))
    # Eleven columns in 80 characters: no borders or padding between them, so the agency's name keeps its room.
    table = Table(title="PAHT bridge: reports per province and agency", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0),
                  pad_edge=False, collapse_padding=True)
    table.add_column("province / agency", overflow="fold", ratio=1, min_width=20)
    for heading, _ in STATS_COLUMNS:
        table.add_column(heading, justify="right", no_wrap=True)

    def cells(row: Figures) -> list[str]:
        shown = {**row.model_dump(), "satisfaction_rate": "–" if row.satisfaction_rate is None else f"{100 * row.satisfaction_rate:.0f}%"}
        return [str(shown[field]) for _, field in STATS_COLUMNS]

    for row in tables.agencies:
        table.add_row(f"{row.deployment}: {row.agency_name}", *cells(row))
    table.add_row("all", *cells(tables.total), style="bold")
    console.print(table)
    console.print("late: past the deadline, not answered; dead: sending given up, replay with `paht replay`; "
                  "review: waits for a decision at the IOC", style="dim", highlight=False)
    if sample:
        console.print(f"Trace one report's whole life:  [bold]PAHT_HOME={os.environ.get('PAHT_HOME')} .venv/bin/paht trace {sample}[/bold]")
