"""What the call process buys: P1 with ``PAHT_CALL_PROCESS`` off and on, alternated in one run.

``python -m bench.call_process_ab [--repetitions N]`` runs, in turn, on fresh stand-ins and a
fresh ledger, each paired with a transport floor measured just before it (as ``bench.pipeline``):

- ``inline``: ingest reads its pages and deliver makes its creates in the task's own process;
- ``call-process``: ingest's pages are read, and deliver's creates made, by forked children
  while the step writes the ledger (``paht_bridge/ledger/steps/call_process.py``), as shipped.

A single ``bench.run`` cannot tell the two apart from the machine's drift: the floor moved
between 1.2 and 2.4 ms a report within one day. For the call process it also reads, from
``/proc/PID/schedstat``, how long the child sat ready to run while no core was free: on this
2-core machine (the step, its child, the stand-ins and PostgreSQL) that wait is about all of
deliver's excess over the bare creates. Results: ``bench/results/call_process_ab.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench.common import RESULTS, fresh_ledger, sandbox, trial_home
from bench.pipeline import pipeline, transport_floor

VARIANTS = {"inline": "off", "call-process": "on"}
_CHILD_WAIT: list[float] = []  # seconds each call process spent waiting for a core


def _watch_children() -> None:
    """Read each call process's run-queue wait just before it is stopped."""
    from paht_bridge.steps.call_process import CallProcess

    close = CallProcess.close

    def reading_first(self: CallProcess, wait: float = 30.0) -> None:
        _CHILD_WAIT.append(int(Path(f"/proc/{self.pid}/schedstat").read_text().split()[1]) / 1e9)
        close(self, wait)

    CallProcess.close = reading_first  # type: ignore[method-assign]


def run(reports: int, repetitions: int, ledgers: tuple[str, ...], home: Path) -> list[dict]:
    _watch_children()
    rows = []
    for rep in range(repetitions):
        for kind in ledgers:
            for variant, switch in VARIANTS.items():
                os.environ["PAHT_CALL_PROCESS"] = switch
                _CHILD_WAIT.clear()
                with sandbox() as box:
                    box.call("POST", "/backlog", params={"n": reports})
                    floor = transport_floor(f"{rep}{kind}{variant}")
                with sandbox() as box:
                    box.call("POST", "/backlog", params={"n": reports})
                    pipe = pipeline(fresh_ledger(kind, home), f"{rep}{variant}")
                    if box.call("GET", "/created")["created_twice"]:
                        raise AssertionError("a document was created twice")
                total = sum(v for k, v in floor.items() if k.endswith("_s"))
                row = {"repetition": rep, "ledger": kind, "variant": variant,
                       "overhead_ratio": round(sum(v for k, v in pipe.items() if k.endswith("_s")) / total, 3),
                       "ingest_vs_list": {b: round(pipe[f"{b}_ingest_s"] / floor[f"{b}_list_s"], 3) for b in ("soap", "rest")},
                       "deliver_vs_creates": {b: round(pipe[f"{b}_deliver_s"] / floor[f"{b}_create_s"], 3) for b in ("soap", "rest")},
                       "floor_per_report_ms": round(1000 * total / reports, 3)}
                if _CHILD_WAIT:
                    creates = sum(floor[f"{b}_create_s"] for b in ("soap", "rest"))
                    row["deliver_excess_s"] = round(sum(pipe[f"{b}_deliver_s"] for b in ("soap", "rest")) - creates, 3)
                    row["call_process_waited_for_a_core_s"] = round(sum(_CHILD_WAIT), 3)
                print(json.dumps(row), flush=True)
                rows.append(row)
    os.environ.pop("PAHT_CALL_PROCESS", None)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.call_process_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--reports", type=int, default=2000)
    args = parser.parse_args()
    with trial_home("paht-bench-ab.log") as home:
        rows = run(args.reports, args.repetitions, ("sqlite", "postgresql"), home)
    RESULTS.mkdir(parents=True, exist_ok=True)
    summary = {variant: {kind: [r["overhead_ratio"] for r in rows if r["variant"] == variant and r["ledger"] == kind]
                         for kind in ("sqlite", "postgresql")} for variant in VARIANTS}
    (RESULTS / "call_process_ab.json").write_text(json.dumps(
        {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "cores": os.cpu_count(), "reports": args.reports, "P1_by_variant": summary,
         "runs": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
