"""The performance figures: ``.venv/bin/python -m bench.run [--quick] [--only P1 …]``.

Each figure is a ratio or a count measured within this one run, so a busy machine moves
numerator and denominator together. Raw figures go to ``bench/results/bench.json``; the
table in ``bench/README.md`` is generated from the results (``bench.report``).

- P1 CPU per delivered report (the deliver step's process and the ledger's database server)
  against the CPU per call of a bare loop making the same creates (``bench.delivery``)
- P2 the bridge's batch DAGs against one mapped task per report: via ``dag.test()``
  (``bench.comparison``) and, in a full run, on a real scheduler with Celery workers
  (``deploy/celery/run_scaleout.py --compare-baseline``)
- P3 documents per second against back ends that answer in 20 ms and 200 ms, with N senders,
  against a bare loop of N concurrent callers (``bench.delivery``)
- P4 polling requests with 100,000 open documents of which 100 changed (``bench.polling``)
- P5 peak RSS growth when one attachment grows from 1 MB to 200 MB (``bench.memory``)
- P6 latency from a report posted to its document existing, p95, with the shipped schedules,
  over reports actually posted (``deploy/celery/run_scaleout.py --latency-reports N``)

The stand-ins run in their own process (``bench.sandbox_proc``). ``--quick`` runs smaller
sizes and starts no scheduler (a few minutes); a full run takes about 30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bench.common import RESULTS, drop_databases, private_homes

FULL = {"p1_reports": 2000, "p1_repetitions": 3, "ledgers": ("sqlite", "postgresql"), "p2_reports": 1000, "p2_sample": 200,
        "p2_live_sample": 100, "p4_open": 100_000, "p4_changed": 100, "p4_budget": 500, "p5_sizes_mb": (1, 50, 100, 200),
        "p6_reports": 25}
QUICK = {"p1_reports": 400, "p1_repetitions": 1, "ledgers": ("sqlite",), "p2_reports": 200, "p2_sample": 40,
         "p4_open": 20_000, "p4_changed": 100, "p4_budget": 500, "p5_sizes_mb": (1, 200)}
QUICK_THROUGHPUT = {0.02: {1: 100, 16: 400}, 0.2: {16: 160}}
FIGURES = ("P1", "P2", "P3", "P4", "P5", "P6")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repetition, no scheduler (a few minutes)")
    parser.add_argument("--only", action="append", choices=FIGURES, help="run only these (repeatable); the others in bench.json are kept")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_file = Path(tempfile.gettempdir()) / "paht-bench.log"  # megabytes of the bridge's log lines: not for the repository
    import airflow.sdk  # noqa: F401 - Airflow sets up its logging on import; ours goes after it

    logging.basicConfig(filename=log_file, filemode="w", level=logging.INFO, force=True)
    previous = RESULTS / "bench.json"
    results: dict = json.loads(previous.read_text()) if args.only and previous.exists() else {}
    wanted = set(args.only or FIGURES)
    with tempfile.TemporaryDirectory(prefix="paht-bench-") as tmp:
        home = Path(tmp)
        private_homes(home)
        figures: dict[str, Callable[[], dict]] = {
            "P1": lambda: _p1(sizes, home), "P2": lambda: _p2(sizes, args.quick), "P3": lambda: _p3(sizes, args.quick, home),
            "P4": lambda: _p4(sizes, home), "P5": lambda: _p5(sizes), "P6": lambda: _p6(sizes, args.quick)}
        try:
            for name in FIGURES:
                if name in wanted:
                    results[name] = _timed(figures[name], mode="quick" if args.quick else "full")
                    _save(results)
        finally:
            drop_databases()
    from bench import report

    report.write()
    print((RESULTS.parent / "README.md").read_text())


def _p1(sizes: dict, home: Path) -> dict:
    from bench import delivery

    return delivery.cpu_per_report(sizes["p1_reports"], sizes["p1_repetitions"], sizes["ledgers"], home)


def _p2(sizes: dict, quick: bool) -> dict:
    from bench import comparison

    out = {"dag_test": comparison.run(sizes["p2_reports"], sizes["p2_sample"])}
    if not quick:  # the same comparison where each task instance is scheduled and queued for real
        out["live"] = _live(["--compare-baseline", str(sizes["p2_live_sample"]), "--backlog", str(sizes["p2_reports"])],
                            RESULTS / "comparison_live.json")
    return out


def _p3(sizes: dict, quick: bool, home: Path) -> dict:
    from bench import delivery

    return delivery.throughput("postgresql" if not quick else "sqlite", home, QUICK_THROUGHPUT if quick else delivery.THROUGHPUT_SIZES)


def _p4(sizes: dict, home: Path) -> dict:
    from bench import polling

    return polling.run(sizes["p4_open"], sizes["p4_changed"], sizes["p4_budget"], home)


def _p5(sizes: dict) -> dict:
    from bench import memory

    return memory.run(sizes["p5_sizes_mb"])


def _p6(sizes: dict, quick: bool) -> dict:
    """Posted reports timed through the real scheduler, triggerer and workers (a full run only;
    ``--quick`` keeps the last measurement)."""
    if quick:
        return json.loads((RESULTS / "latency.json").read_text())
    return _live(["--latency-reports", str(sizes["p6_reports"])], RESULTS / "latency.json")


def _live(arguments: list[str], output: Path) -> dict:
    """Run ``deploy/celery/run_scaleout.py`` in one of its measuring modes (a few minutes) and read its figures."""
    done = subprocess.run([sys.executable, str(RESULTS.parent.parent / "deploy" / "celery" / "run_scaleout.py"), *arguments],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"run_scaleout.py {' '.join(arguments)} failed: {done.stdout[-3000:]}{done.stderr[-2000:]}")
    return json.loads(output.read_text())


def _timed(run: Callable[[], dict], mode: str) -> dict:
    """``run()``'s figures with when, how long, on what, and the CPU time the host took from
    this virtual machine meanwhile (steal): a run with much of it measured a slower machine."""
    started, stolen = time.monotonic(), _steal_seconds()
    out = {"when": datetime.now().isoformat(timespec="seconds"), "mode": mode,
           "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start", **run()}
    out["wall_seconds"] = round(time.monotonic() - started, 1)
    if stolen is not None and (now := _steal_seconds()) is not None:
        out["cpu_stolen_seconds"] = round(now - stolen, 1)
    return out


def _steal_seconds() -> float | None:
    """CPU seconds stolen by the hypervisor since boot, all cores (``/proc/stat``), if known."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _save(results: dict) -> None:
    (RESULTS / "bench.json").write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
