"""P5: peak memory of delivering one report whose attachment grows from 1 MB to 200 MB.

Each size runs in its own worker process (``python -m bench.memory <size>`` with the
stand-ins' connections in its environment): it ingests the one report, reads its peak RSS
(VmHWM), delivers it to the REST stand-in (the attachment streams from the citizen app to
a spool file, then as a multipart body to the back end), and reads the peak again. The
figure is how much the peak after delivery grows from the 1 MB run to the 200 MB run.

The SOAP back end takes attachments inline (base64 inside the XML envelope), so its
connector reads them whole and refuses more than 32 MiB: only the REST path can stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, sandbox

MB = 1_000_000


def vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(size: int) -> dict:
    """In the worker process: ingest the one report, deliver it, report the peaks (KiB)."""
    import resource

    from bench.common import context, fresh_ledger, private_homes
    from paht_bridge.steps import deliver, ingest

    with tempfile.TemporaryDirectory(prefix="paht-bench-mem-") as tmp:
        home = Path(tmp)
        private_homes(home)
        url = fresh_ledger("sqlite", home)
        ctx = context(url, "dien_bien", f"memory-{size}")
        ingested = ingest(ctx)
        before = vm_hwm_kib()
        delivered = deliver(ctx)
        after = vm_hwm_kib()
    return {"size_bytes": size, "received": ingested.counts.get("received", 0), "delivered": delivered.counts.get("delivered", 0),
            "peak_before_deliver_kib": before, "peak_after_deliver_kib": after,
            "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def run(sizes_mb: tuple[int, ...]) -> dict:
    from paht_bridge.sandbox.citizen_app import load_seed_reports
    from bench.sandbox_proc import big_report

    seed = load_seed_reports("dienbien_smart")[0]
    runs = []
    for n, size_mb in enumerate(sizes_mb):
        with sandbox() as box:  # a fresh app per size: the worker's ingest finds only this report
            box.call("POST", "/reports", params={"source": "dienbien_smart"}, json=big_report(seed, size_mb * MB, n))
            env = {**os.environ, **box.connection_env(timeout=120)}
            done = subprocess.run([sys.executable, "-m", "bench.memory", str(size_mb * MB)], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"memory worker failed for {size_mb} MB: {done.stderr[-2000:]}")
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            if figures["delivered"] != 1:
                raise RuntimeError(f"the {size_mb} MB report was not delivered: {figures}")
            runs.append(figures)
    smallest, largest = runs[0], runs[-1]
    growth_kib = largest["peak_after_deliver_kib"] - smallest["peak_after_deliver_kib"]
    return {
        "runs": runs,
        "from_mb": sizes_mb[0], "to_mb": sizes_mb[-1],
        "peak_growth_mb": round(growth_kib * 1024 / MB, 2),
        "delivery_peak_growth_mb_per_run": [round((r["peak_after_deliver_kib"] - r["peak_before_deliver_kib"]) * 1024 / MB, 2) for r in runs],
        "soap": "edXML SOAP takes attachments inline (base64 in the envelope): read whole, capped at 32 MiB; not streamed",
    }


if __name__ == "__main__":
    import logging

    logging.disable(logging.INFO)  # keep stdout for the one JSON line
    result = worker(int(sys.argv[1]))
    print(json.dumps(result))
