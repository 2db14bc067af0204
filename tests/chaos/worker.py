"""A deliver worker process for the kill -9 trials: ``python -m tests.chaos.worker URL LEASE``.

It says READY only once its clients are built (Airflow connections read, WSDL parsed), so
the kill lands while it claims, sends and records, not while Python imports."""

from __future__ import annotations

import os
import sys

from paht_bridge.steps import deliver
from tests.chaos.harness import contexts


def main() -> None:
    url, lease = sys.argv[1], float(sys.argv[2])
    ready = contexts(url, f"worker-{os.getpid()}", lease_seconds=lease, batch_size=5)
    for ctx in ready:
        for target in ctx.mapping.targets:
            ctx.connectors.target(target.name)
        for source in ctx.mapping.sources:
            ctx.connectors.source(source.name)
    print("READY", flush=True)
    for ctx in ready:
        deliver(ctx)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
