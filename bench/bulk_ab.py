"""A/B: a page's or chunk's rows to PostgreSQL as psycopg executemany (A) or as one JSON
document (B, ``paht_bridge.ledger.bulk``), alternated in one run, every process's CPU counted.

Wall times on this 2-core machine move by up to 2× within minutes, so the figure to read is
CPU time: the step's process, its forked children (page reader, call process), the stand-ins
and PostgreSQL's server processes, for ingest and for deliver of the same backlog apiece.

    .venv/bin/python -m bench.bulk_ab [--reports 2000] [--repetitions 4]

Writes ``bench/results/bulk_ab.json``.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from statistics import median

from bench.common import RESULTS, context, cpu_seconds, cpu_spent, fresh_ledger, sandbox, trial_home

DEPLOYMENTS = ("quang_tri", "dien_bien")


def one_run(reports: int, home: Path, json_rows: bool) -> dict[str, dict[str, float]]:
    from paht_bridge.ledger import bulk
    from paht_bridge.steps import deliver, ingest

    real = bulk.is_postgresql
    # The only switch: with it off, every bulk statement takes the executemany path SQLite takes.
    bulk.is_postgresql = real if json_rows else (lambda connection: False)
    try:
        with sandbox() as box:
            box.call("POST", "/backlog", params={"n": reports})
            url = fresh_ledger("postgresql", home)
            phases: dict[str, dict[str, float]] = {}
            for phase, step in (("ingest", ingest), ("deliver", deliver)):
                before = cpu_seconds(box, url)
                for name in DEPLOYMENTS:
                    ctx = context(url, name, f"bulk-ab-{phase}")
                    for spec in ctx.mapping.sources:  # clients built before the clock, as in bench.pipeline
                        ctx.connectors.source(spec.name)
                    for spec in ctx.mapping.targets:
                        ctx.connectors.target(spec.name)
                    step(ctx)
                phases[phase] = cpu_spent(before, cpu_seconds(box, url))
            if box.call("GET", "/created")["created_twice"]:
                raise AssertionError("a document was created twice")
    finally:
        bulk.is_postgresql = real
    return phases


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--repetitions", type=int, default=4)
    args = parser.parse_args(argv)
    runs: dict[str, list[dict]] = {"executemany": [], "json": []}
    with trial_home() as home:
        from sqlalchemy.orm import configure_mappers

        from paht_bridge.tasks import settle_heap

        configure_mappers()
        settle_heap()
        for rep in range(args.repetitions):
            order = ("executemany", "json") if rep % 2 == 0 else ("json", "executemany")
            for mode in order:
                runs[mode].append(one_run(args.reports, home, json_rows=mode == "json"))
                print(rep, mode, runs[mode][-1], flush=True)
    medians = {mode: {phase: {key: round(median(run[phase][key] for run in done), 3) for key in done[0][phase]}
                      for phase in done[0]} for mode, done in runs.items()}
    result = {"when": datetime.now().isoformat(timespec="seconds"), "reports": args.reports,
              "repetitions": args.repetitions, "medians": medians, "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bulk_ab.json").write_text(json.dumps(result, indent=2) + "\n")
    for mode, phases in medians.items():
        for phase, values in phases.items():
            print(f"{mode:12} {phase:8} " + "  ".join(f"{key} {value:.3f}" for key, value in values.items()))


if __name__ == "__main__":
    main()
