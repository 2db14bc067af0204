"""``paht``: the operator's command line (demo, trace, stats, sandbox)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console


def _demo(args: argparse.Namespace) -> int:
    from paht_bridge.demo import run_demo

    run_demo(Path(args.home).resolve(), max_rounds=args.max_rounds, sandbox_urls=args.sandbox_urls)
    return 0


def _trace(args: argparse.Namespace) -> int:
    from paht_bridge.ledger.db import migrate, sessions
    from paht_bridge.ledger.stats import trace

    migrate()
    with sessions()() as session:
        found = trace(session, args.report_id, args.source)
    console = Console()
    if found is None:
        console.print(f"no report {args.report_id!r} in the ledger")
        return 1
    console.print(f"[bold]{found.report_key}[/bold] ({found.deployment}) — {found.title} — {found.locality or '?'} — now [bold]{found.status}[/bold]")
    for event in found.events:
        detail = " ".join(f"{k}={v}" for k, v in event.detail.items() if v is not None)
        console.print(f"{event.at:%Y-%m-%d %H:%M:%S}  [bold]{event.kind:<14}[/bold] {event.status or '':<18} {detail}  [dim]run={event.run_id}[/dim]",
                      highlight=False)
    return 0


def _stats(args: argparse.Namespace) -> int:
    from paht_bridge.demo import print_summary
    from paht_bridge.ledger.db import migrate

    migrate()
    print_summary(Console())
    return 0


def _replay(args: argparse.Namespace) -> int:
    from paht_bridge.ledger.db import migrate, sessions
    from paht_bridge.ledger.replay import replay_dead_letters

    migrate()
    if args.quarantine:
        return _replay_quarantine(args)
    with sessions()() as session:
        refs = replay_dead_letters(session, source_id=args.report, agency_code=args.agency, reason_contains=args.reason,
                                   deployment=args.deployment, run_id="cli-replay")
    console = Console()
    console.print(f"{len(refs)} dead letter(s) put back in line; the next deliver run looks each up by reference before sending.")
    for ref in refs:
        console.print(f"  {ref}")
    return 0


def _forget(args: argparse.Namespace) -> int:
    import getpass

    from paht_bridge.ledger.db import migrate, sessions
    from paht_bridge.ledger.privacy_ops import forget_reporter

    # Read from a prompt by default so the number stays out of shell history.
    phone = args.phone or getpass.getpass("Reporter's phone number (not echoed): ")
    migrate()
    with sessions()() as session:
        count = forget_reporter(session, phone, run_id="cli-forget")
    Console().print(f"{count} report(s) anonymised: name and phone removed (Law 91/2025 request); the event is on each trace.")
    return 0


def _replay_quarantine(args: argparse.Namespace) -> int:
    from paht_bridge.connectors.hooks import AirflowConnectors
    from paht_bridge.ledger.db import sessions
    from paht_bridge.ledger.steps import StepContext
    from paht_bridge.ledger.steps.ingest import replay_quarantine
    from paht_bridge.mappings.config import deployment, deployment_names

    console = Console()
    for name in [args.deployment] if args.deployment else deployment_names():
        mapping = deployment(name)
        ctx = StepContext(mapping=mapping, sessions=sessions(), connectors=AirflowConnectors(mapping), run_id="cli-replay")
        counts = replay_quarantine(ctx, ids=args.id or None).counts
        console.print(f"{name}: {counts.get('taken_in', 0)} taken in, {counts.get('still_quarantined', 0)} still quarantined")
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from paht_bridge.sandbox.__main__ import main as sandbox_main

    sandbox_main(args.rest)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="paht", description="PAHT bridge: citizen field reports ⇄ agency document systems.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run every seeded report's whole lifecycle through Airflow against the sandbox")
    demo.add_argument("--home", default=os.environ.get("PAHT_DEMO_HOME", ".paht/demo"), help="where the demo keeps its state (wiped first)")
    demo.add_argument("--max-rounds", type=int, default=20)
    demo.add_argument("--sandbox-urls", type=Path, help="use stand-ins already running (the --urls-file of `paht sandbox`)")
    demo.set_defaults(func=_demo)
    trace = sub.add_parser("trace", help="one report's whole trace, from receipt to rating")
    trace.add_argument("report_id", help="the report's id in its citizen app, e.g. QT-2026-000123")
    trace.add_argument("--source", help="the citizen app's name, when two apps share an id")
    trace.set_defaults(func=_trace)
    stats = sub.add_parser("stats", help="per province and agency: received, delivered, answered, published, rated")
    stats.set_defaults(func=_stats)
    replay = sub.add_parser("replay", help="send dead letters again (all, or by report, agency or reason), or replay the quarantine")
    replay.add_argument("--report", help="one report's id in its citizen app")
    replay.add_argument("--agency", help="an agency's organisation code")
    replay.add_argument("--reason", help="dead letters whose reason contains this text")
    replay.add_argument("--deployment", help="one deployment only, e.g. quang_tri")
    replay.add_argument("--quarantine", action="store_true",
                        help="replay quarantined reports instead (parsed again with the current connector and limits)")
    replay.add_argument("--id", type=int, action="append", help="with --quarantine: only this quarantine row (repeatable)")
    replay.set_defaults(func=_replay)
    forget = sub.add_parser("forget", help="delete one reporter's name and phone everywhere in the ledger (Law 91/2025)")
    forget.add_argument("--phone", help="the reporter's phone (asked for without echo when left out)")
    forget.set_defaults(func=_forget)
    sandbox = sub.add_parser("sandbox", help="start the stand-in systems (python -m paht_bridge.sandbox)")
    sandbox.add_argument("rest", nargs=argparse.REMAINDER)
    sandbox.set_defaults(func=_sandbox)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
