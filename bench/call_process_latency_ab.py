"""Does the forked call process pay against back ends that answer like real ones?

``python -m bench.call_process_latency_ab`` delivers the same backlog with the call process off
and on, alternated, against document systems that take 20 ms and 200 ms to answer each call
(the stand-ins' latency), one sender per target (the only case the call process serves), on
SQLite and PostgreSQL. For each run: deliveries per second, and CPU per delivered report over
every process (the step, its children, the stand-ins, PostgreSQL's server). The decision rule
(issue 17): keep the call process only if it raises throughput or lowers CPU per delivered
report by at least 20 % at both latencies. Results: ``bench/results/call_process_latency_ab.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from statistics import median

from bench.common import RESULTS, context, cpu_seconds, cpu_spent, fresh_ledger, sandbox, trial_home

REPORTS = {0.02: 300, 0.2: 60}  # per deployment: about 6 and 12 s of calls per sender
VARIANTS = {"inline": "off", "call-process": "on"}


def one_run(latency: float, ledger: str, switch: str, home) -> dict:  # noqa: ANN001
    from paht_bridge.steps import deliver, ingest

    os.environ["PAHT_CALL_PROCESS"] = switch
    reports = REPORTS[latency]
    with sandbox() as box:
        box.call("POST", "/backlog", params={"n": reports})
        url = fresh_ledger(ledger, home)
        contexts = [context(url, name, f"ab-{switch}") for name in ("quang_tri", "dien_bien")]
        for ctx in contexts:
            ingest(ctx)
            for spec in ctx.mapping.targets:  # clients built before the clock, as in bench.pipeline
                ctx.connectors.target(spec.name)
        box.call("POST", "/latency", params={"seconds": latency})
        before = cpu_seconds(box, url)
        delivered = sum(deliver(ctx).counts.get("delivered", 0) for ctx in contexts)
        spent = cpu_spent(before, cpu_seconds(box, url))
        if box.call("GET", "/created")["created_twice"]:
            raise AssertionError("a document was created twice")
    cpu = sum(v for k, v in spent.items() if k != "wall")
    return {"latency_ms": round(latency * 1000), "ledger": ledger, "variant": switch, "delivered": delivered,
            "reports_per_s": round(delivered / spent["wall"], 2), "cpu_ms_per_report": round(1000 * cpu / delivered, 3),
            "cpu_s": spent}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.call_process_latency_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with trial_home("paht-bench-latency-ab.log") as home:
        for rep in range(args.repetitions):
            for latency in REPORTS:
                for ledger in ("sqlite", "postgresql"):
                    for variant, switch in VARIANTS.items():
                        row = {"repetition": rep, **one_run(latency, ledger, switch, home), "variant": variant}
                        print(json.dumps(row), flush=True)
                        rows.append(row)
    os.environ.pop("PAHT_CALL_PROCESS", None)
    summary = {}
    for latency in REPORTS:
        for ledger in ("sqlite", "postgresql"):
            picked = {v: [r for r in rows if r["latency_ms"] == round(latency * 1000) and r["ledger"] == ledger and r["variant"] == v]
                      for v in VARIANTS}
            med = {v: {"reports_per_s": median(r["reports_per_s"] for r in rs), "cpu_ms_per_report": median(r["cpu_ms_per_report"] for r in rs)}
                   for v, rs in picked.items()}
            summary[f"{round(latency * 1000)}ms_{ledger}"] = {
                **med,
                "throughput_gain": round(med["call-process"]["reports_per_s"] / med["inline"]["reports_per_s"] - 1, 3),
                "cpu_per_report_saving": round(1 - med["call-process"]["cpu_ms_per_report"] / med["inline"]["cpu_ms_per_report"], 3)}
    keep = all(s["throughput_gain"] >= 0.2 or s["cpu_per_report_saving"] >= 0.2 for s in summary.values())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "call_process_latency_ab.json").write_text(json.dumps(
        {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": commit, "cores": os.cpu_count(), "reports_per_deployment": REPORTS,
         "rule": "keep the call process only if it raises throughput or lowers CPU per delivered report by >= 20 % at 20 ms and 200 ms",
         "keep_call_process": keep, "summary": summary, "runs": rows}, indent=1, default=str))
    print(json.dumps({"keep_call_process": keep, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
