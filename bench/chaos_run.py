"""The long chaos run: ``.venv/bin/python -m bench.chaos_run``.

Same harness as ``tests/chaos`` at full size: 200 kill -9 trials of a deliver worker on a
PostgreSQL ledger, a 10,000-report backlog at 30 % errors and 10 % timeouts after commit
(four workers on PostgreSQL), and an hour-long outage of a back end. Writes
``bench/results/chaos.json`` (and ``bench/README.md`` from it). About 45 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console

RESULTS = Path(__file__).parent / "results"


def _stack(timeout: float = 0.5):  # noqa: ANN202
    from paht_bridge.sandbox.stack import SandboxStack

    stack = SandboxStack(seed_reports=False)
    urls = stack.start()
    os.environ.update(urls.connection_env(timeout=timeout))
    for chaos in stack.chaos.values():
        chaos.configure(stall_seconds=1.0, seed=20261123)
    return stack


def _ledger(kind: str, home: Path) -> str:
    from paht_bridge.ledger.db import migrate

    if kind == "postgresql":
        from tests.conftest import fresh_postgres_database

        url = fresh_postgres_database()
    else:
        url = f"sqlite:///{home / f'ledger-{time.time_ns()}.sqlite'}"
    migrate(url)
    return url


def kill_run(trials: int, home: Path) -> dict:
    from paht_bridge.sandbox.backlog import load_backlog
    from tests.chaos.harness import exactly_once, ingest_all, kill_trials

    stack = _stack()
    try:
        url = _ledger("postgresql", home)  # the production ledger; the test suite kills on both
        load_backlog(stack, trials * 12)
        ingest_all(url)
        for target in ("qoffice_quangtri", "tdoffice_dienbien"):
            stack.chaos[target].configure(latency=0.03)
        outcome = kill_trials(url, trials, seed=91)
        return {"ledger": "postgresql", **outcome, **exactly_once(stack, url)}
    finally:
        stack.stop()


def error_rate_run(reports: int, workers: int, home: Path) -> dict:
    from paht_bridge.steps import deliver
    from paht_bridge.sandbox.backlog import load_backlog
    from tests.chaos.harness import MovableClock, contexts, exactly_once, ingest_all, undelivered

    stack = _stack()
    try:
        url = _ledger("postgresql", home)
        load_backlog(stack, reports)
        ingest_all(url)
        for target in ("qoffice_quangtri", "tdoffice_dienbien"):
            stack.chaos[target].configure(error_rate=0.3, timeout_after_commit_rate=0.1)
        clock = MovableClock()
        rounds, started = 0, time.monotonic()
        while undelivered(url) and rounds < 300:
            threads = [threading.Thread(target=lambda n=n: [deliver(c) for c in contexts(url, f"r{rounds}-w{n}", clock, batch_size=20, max_tries=60)])
                       for n in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            clock.advance(3600)
            rounds += 1
        figures = exactly_once(stack, url)
        injected = {name: dict(stack.chaos[name].counts) for name in ("qoffice_quangtri", "tdoffice_dienbien")}
        return {**figures, "workers": workers, "rounds": rounds, "seconds": round(time.monotonic() - started, 1), "injected": injected}
    finally:
        stack.stop()


def outage_run(home: Path) -> dict:
    from sqlalchemy import func, select

    from paht_bridge.ledger.db import sessions
    from paht_bridge.ledger.models import DeliveryRow, EventRow
    from paht_bridge.sandbox.backlog import load_backlog
    from tests.chaos.harness import MovableClock, deliver_round, exactly_once, ingest_all

    stack = _stack()
    try:
        url = _ledger("sqlite", home)
        load_backlog(stack, 400)
        ingest_all(url)
        stack.take_down("tdoffice_dienbien")
        clock = MovableClock()
        for minute in range(0, 60, 5):
            deliver_round(url, f"outage-{minute}", clock, circuit_cooldown_seconds=600)
            clock.advance(300)
        with sessions(url)() as session:
            attempts = session.scalar(select(func.count(EventRow.id)).where(EventRow.kind == "sending", EventRow.detail["target"].as_string() == "tdoffice_dienbien"))
            dead = session.scalar(select(func.count(DeliveryRow.id)).where(DeliveryRow.state == "dead"))
            waiting = session.scalar(select(func.count(DeliveryRow.id)).where(DeliveryRow.state != "delivered"))
        stack.bring_back("tdoffice_dienbien")
        for _ in range(6):
            clock.advance(900)
            deliver_round(url, "recovered", clock, circuit_cooldown_seconds=600)
        return {"backlog": 400, "waiting_during_outage": waiting, "calls_to_the_down_back_end": attempts,
                "dead_letters": dead, **exactly_once(stack, url)}
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kill-trials", type=int, default=200)
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--only", choices=("outage", "kill", "errors"), action="append",
                        help="run only these (repeatable); other figures already in chaos.json are kept")
    args = parser.parse_args()
    console = Console()
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="paht-chaos-") as tmp:
        home = Path(tmp)
        os.environ["PAHT_HOME"] = str(home)
        os.environ.setdefault("AIRFLOW_HOME", str(home / "airflow"))
        previous = RESULTS / "chaos.json"
        results: dict = json.loads(previous.read_text()) if args.only and previous.exists() else {}
        results.update({"machine": f"{os.cpu_count()} cores", "python": sys.version.split()[0],
                        "when": datetime.now().isoformat(timespec="seconds")})
        runs = (("outage", "outage_one_hour", lambda: outage_run(home)),
                ("kill", "kill_9_trials", lambda: kill_run(args.kill_trials, home)),
                ("errors", "error_30pct_timeout_10pct", lambda: error_rate_run(args.reports, args.workers, home)))
        for key, name, run in runs:
            if args.only and key not in args.only:
                continue
            console.print(f"[bold]{name}[/bold] …")
            started = time.monotonic()
            results[name] = run()
            results[name]["wall_seconds"] = round(time.monotonic() - started, 1)
            results[name]["when"] = datetime.now().isoformat(timespec="seconds")
            console.print(results[name])
            (RESULTS / "chaos.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    from bench import report

    console.print(f"bench/README.md rewritten: {report.write()}")
    _drop_databases()


def _drop_databases() -> None:
    import psycopg

    from tests.conftest import POSTGRES_ADMIN, _created_databases

    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        for name in _created_databases:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
