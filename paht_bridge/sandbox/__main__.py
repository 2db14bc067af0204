"""Start every stand-in: ``python -m paht_bridge.sandbox [--urls-file F] [--desk-interval S]``.

Prints where each one listens and, on a terminal, the ``AIRFLOW_CONN_*`` lines that point the
bridge at them; runs until interrupted. Those lines carry the stand-ins' passwords, so they
are not written where output is kept (a log file, a pipe) unless ``--print-connections`` asks
for them; the URLs file holds URLs only, readable by its owner alone.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from paht_bridge.sandbox.desk import Clock
from paht_bridge.sandbox.stack import SandboxStack


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m paht_bridge.sandbox", description=__doc__)
    parser.add_argument("--urls-file", type=Path, help="write the stand-ins' URLs here (JSON) once they listen")
    parser.add_argument("--desk-interval", type=float, default=0.0,
                        help="seconds between agency-desk steps and citizen ratings (0: only on command)")
    parser.add_argument("--refuse-one-in", type=int, default=7, help="the desk refuses about one document in N")
    parser.add_argument("--print-connections", action="store_true",
                        help="print the export lines (with the stand-ins' passwords) even when output is not a terminal")
    args = parser.parse_args(argv)

    stack = SandboxStack(refuse_one_in=args.refuse_one_in)
    urls = stack.start()
    clocks = []
    if args.desk_interval > 0:
        stack.soap_state.start_clock(args.desk_interval)
        stack.rest_state.start_clock(args.desk_interval)
        stack.ioffice_state.start_clock(args.desk_interval)
        clocks = [Clock(state.rate_all, args.desk_interval).start() for state in stack.citizen_states.values()]
    for name, url in urls.urls.items():
        print(f"{name:20s} {url}")
    if args.print_connections or sys.stdout.isatty():
        for key, value in urls.connection_env().items():
            print(f"export {key}='{value}'")
    else:
        print("the export AIRFLOW_CONN_* lines hold the stand-ins' passwords: not printed where output is kept "
              "(run on a terminal, or with --print-connections)")
    sys.stdout.flush()
    if args.urls_file:
        write_private(args.urls_file, urls.to_json())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for clock in clocks:
        clock.stop()
    stack.stop()


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole (readers never see half a file), readable by its owner alone."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(text)
    tmp.replace(path)


if __name__ == "__main__":
    main()
