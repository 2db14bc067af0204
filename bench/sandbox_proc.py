"""The stand-ins in their own process for the benchmarks, with a small control server.

``python -m bench.sandbox_proc --urls-file F`` starts every stand-in (no seeded reports, so
each benchmark loads what it measures) and one more loopback server, ``control``, that
the benchmark drives: load a backlog, read how many requests each stand-in received, put
many documents straight into the REST stand-in and move chosen ones on (the polling
figure), add a report whose attachment has a given size (the memory figure).

A separate process keeps the stand-ins' work off the bridge's GIL, so what is timed in the
benchmark process is the bridge (or the bare transport loop), not the servers.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import signal
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI

from paht_bridge.sandbox import sample_media
from paht_bridge.sandbox.backlog import load_backlog
from paht_bridge.sandbox.desk import next_stage
from paht_bridge.sandbox.server import LoopbackServer
from paht_bridge.sandbox.stack import SandboxStack

#: Attachments whose id starts with this are ``BIG-<bytes>-<n>``: JPEG-shaped, of that size.
BIG = "BIG-"
_generated = sample_media.attachment_bytes


def _bytes_for(attachment_id: str, media_type: str) -> bytes:
    """Big attachments for the memory figure (built per request, not kept); the rest as usual."""
    if attachment_id.startswith(BIG):
        size = int(attachment_id.split("-")[1])
        head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        body = hashlib.sha256(attachment_id.encode()).digest() * (size // 32 + 1)
        return (head + body)[: size - 2] + b"\xff\xd9"
    return _generated(attachment_id, media_type)


@lru_cache(maxsize=64)
def _digest(attachment_id: str, media_type: str) -> tuple[int, str]:
    data = _bytes_for(attachment_id, media_type)
    return len(data), hashlib.sha256(data).hexdigest()


def control_app(stack: SandboxStack) -> FastAPI:
    app = FastAPI(title="bench sandbox control")

    @app.post("/backlog")
    def backlog(n: int, attachments: bool = False) -> dict[str, int]:
        load_backlog(stack, n, with_attachments=attachments)
        return {"loaded": n}

    @app.post("/reports")
    def add(source: str, body: dict[str, Any] = Body()) -> dict[str, Any]:  # noqa: B008
        report_id, seq, created = stack.citizen_states[source].add_report(body)
        return {"id": report_id, "seq": seq}

    @app.post("/latency")
    def latency(seconds: float) -> dict[str, float]:
        """Added before every answer of the document systems: a real one is not on loopback."""
        for name in ("qoffice_quangtri", "tdoffice_dienbien"):
            stack.chaos[name].configure(latency=seconds)
        return {"latency": seconds}

    @app.get("/counts")
    def counts() -> dict[str, int]:
        return {name: chaos.counts["requests"] for name, chaos in stack.chaos.items()}

    @app.post("/bulk_documents")
    def bulk_documents(n: int, prefix: str) -> dict[str, Any]:
        """``n`` documents straight into the REST stand-in, shaped like the first one it holds."""
        state = stack.rest_state
        with state._lock:  # noqa: SLF001 - a benchmark's shortcut around n HTTP creates
            template = next(iter(state._records.values())).document  # noqa: SLF001
            pairs = [[f"{prefix}{i:06d}", state.create(template.model_copy(update={"so_ky_hieu": f"{prefix}{i:06d}"}), [])[0].id]
                     for i in range(n)]
            return {"documents": pairs, "feed_end": len(state._log)}  # noqa: SLF001

    @app.post("/move_on")
    def move_on(refs: list[str] = Body()) -> dict[str, int]:  # noqa: B008
        """The agency desk moves these documents (only) one stage on."""
        state, moved = stack.rest_state, 0
        from paht_bridge.canonical import vietnam_now

        with state._lock:  # noqa: SLF001
            for ref in refs:
                record = state._records[state._by_ref[ref]]  # noqa: SLF001
                stage = next_stage(record.stage, ref, 0)
                if stage is not None:
                    record.stage = stage
                    state._record_change(record, vietnam_now())  # noqa: SLF001
                    moved += 1
        return {"moved": moved}

    @app.get("/created")
    def created() -> dict[str, int]:
        """Documents created more than once in either back end (0 when exactly once held)."""
        rest = stack.rest_state
        twice = sum(1 for count in rest._created.values() if count > 1)  # noqa: SLF001
        twice += sum(1 for count in stack.soap_state.created.values() if count > 1)
        return {"rest": len(rest._records), "soap": len(stack.soap_state.documents), "created_twice": twice}  # noqa: SLF001

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox_proc", description=__doc__)
    parser.add_argument("--urls-file", type=Path, required=True)
    parser.add_argument("--refuse-one-in", type=int, default=0)
    args = parser.parse_args(argv)
    sample_media.attachment_bytes = _bytes_for  # BIG-… attachments (the stand-ins look the name up per call)
    sample_media.attachment_digest = _digest
    stack = SandboxStack(refuse_one_in=args.refuse_one_in, seed_reports=False)
    urls = stack.start()
    control = LoopbackServer(control_app(stack), name="control").start()
    tmp = args.urls_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"urls": {**urls.urls, "control": control.url}}))
    tmp.replace(args.urls_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    control.stop()
    stack.stop()


def big_report(seed: dict[str, Any], size: int, n: int) -> dict[str, Any]:
    """A seed-shaped report with one JPEG attachment of ``size`` bytes."""
    report = copy.deepcopy(seed)
    report["id"] = f"{seed['id']}-BIG{n}"
    report["attachments"] = [{"id": f"{BIG}{size}-{n}", "name": "hien-truong.jpg", "media_type": "image/jpeg"}]
    return report


if __name__ == "__main__":
    main()
