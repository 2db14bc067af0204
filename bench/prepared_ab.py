"""A/B: each create's request built by the call process (A, as before) or by the deliver step
while the child sends the chunk before (B, ``PreparesCreates``), alternated in one run with a
floor before each pair, every process's CPU counted.

The only switch is ``deliver._prepared``: off, every call goes to the child as a record and
the child builds its request (zeep's envelope, the REST body) before sending it.

    .venv/bin/python -m bench.prepared_ab [--reports 2000] [--repetitions 4] [--ledger sqlite --ledger postgresql]

Writes ``bench/results/prepared_ab.json``: per way and ledger, the median of the pipeline's
seconds against the median floor (P1's reading), and the median CPU seconds per process class.
"""

from __future__ import annotations

import argparse
import importlib
import json
from datetime import datetime
from pathlib import Path
from statistics import median

from bench.common import RESULTS, fresh_ledger, sandbox, trial_home
from bench.pipeline import Meter, _seconds, pipeline, transport_floor

WAYS = ("in_the_child", "in_the_step")


def one_pipeline(reports: int, home: Path, ledger: str, way: str, tag: str) -> tuple[float, dict[str, float]]:
    deliver_module = importlib.import_module("paht_bridge.steps.deliver")  # the package re-exports the function
    real = deliver_module._prepared
    if way == "in_the_child":
        deliver_module._prepared = lambda target, record: None
    try:
        with sandbox() as box:
            box.call("POST", "/backlog", params={"n": reports})
            cpu = Meter(box)
            seconds = _seconds(pipeline(fresh_ledger(ledger, home), tag, cpu=cpu))
            if box.call("GET", "/created")["created_twice"]:
                raise AssertionError("a document was created twice")
    finally:
        deliver_module._prepared = real
    return seconds, cpu.spent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.prepared_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--repetitions", type=int, default=4)
    parser.add_argument("--ledger", action="append", choices=("sqlite", "postgresql"))
    args = parser.parse_args(argv)
    ledgers = tuple(args.ledger or ("sqlite", "postgresql"))
    floors: list[float] = []
    runs: dict[str, dict[str, list]] = {ledger: {way: [] for way in WAYS} for ledger in ledgers}
    with trial_home() as home:
        for rep in range(args.repetitions):
            with sandbox() as box:
                box.call("POST", "/backlog", params={"n": args.reports})
                floors.append(_seconds(transport_floor(f"ab{rep}")))
            print(rep, "floor", round(floors[-1], 3), flush=True)
            for ledger in ledgers:
                for way in WAYS if rep % 2 == 0 else WAYS[::-1]:
                    seconds, spent = one_pipeline(args.reports, home, ledger, way, f"ab{rep}{way[7]}")
                    runs[ledger][way].append({"seconds": round(seconds, 3), "cpu": spent})
                    print(rep, ledger, way, round(seconds, 3), spent, flush=True)
    floor = median(floors)
    summary = {ledger: {way: {
        "ratio_to_median_floor": round(median(r["seconds"] for r in done) / floor, 3),
        "cpu_seconds": {key: round(median(r["cpu"][key] for r in done), 3) for key in done[0]["cpu"] if key != "wall"},
    } for way, done in by_way.items()} for ledger, by_way in runs.items()}
    result = {"when": datetime.now().isoformat(timespec="seconds"), "reports": args.reports, "repetitions": args.repetitions,
              "floors_s": [round(f, 3) for f in floors], "summary": summary, "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "prepared_ab.json").write_text(json.dumps(result, indent=2) + "\n")
    for ledger, by_way in summary.items():
        for way, values in by_way.items():
            print(f"{ledger:10} {way:12} P1 {values['ratio_to_median_floor']:.3f}  CPU s " +
                  "  ".join(f"{key} {value:.3f}" for key, value in values["cpu_seconds"].items()))


if __name__ == "__main__":
    main()
