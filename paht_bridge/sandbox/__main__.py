"""Start every stand-in: ``python -m paht_bridge.sandbox [--urls-file F] [--desk-interval S]``.

Prints where each one listens and the ``AIRFLOW_CONN_*`` lines that point the bridge at
them; runs until interrupted.
"""

from __future__ import annotations

import argparse
import signal
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
    for key, value in urls.connection_env().items():
        print(f"export {key}='{value}'")
    if args.urls_file:
        tmp = args.urls_file.with_suffix(".tmp")
        tmp.write_text(urls.to_json())
        tmp.replace(args.urls_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for clock in clocks:
        clock.stop()
    stack.stop()


if __name__ == "__main__":
    main()
