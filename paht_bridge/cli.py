"""``paht``: the operator's command line (demo, trace, unlink, stats, replay, sandbox...)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from rich.console import Console

from paht_bridge.config.folders import NoDeploymentsFolder


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
        links = _duplicate_links(session, found)
    console = Console()
    if found is None:
        console.print(f"no report {args.report_id!r} in the ledger")
        return 1
    console.print(f"[bold]{found.report_key}[/bold] ({found.deployment}) — {found.title} — {found.locality or '?'} — now [bold]{found.status}[/bold]")
    if links.get("linked_to"):
        ref = links["linked_to"]
        console.print(f"linked to {ref.source_id} ({ref.source}): the same problem, reported earlier; this report follows its document",
                      highlight=False)
    if links.get("duplicates"):
        console.print(f"duplicates linked to it ({len(links['duplicates'])}): "
                      + ", ".join(f"{d.source_id} ({d.source})" for d in links["duplicates"]), highlight=False)
    for event in found.events:
        detail = " ".join(f"{k}={v}" for k, v in event.detail.items() if v is not None)
        console.print(f"{event.at:%Y-%m-%d %H:%M:%S}  [bold]{event.kind:<14}[/bold] {event.status or '':<18} {detail}  [dim]run={event.run_id}[/dim]",
                      highlight=False)
    return 0


def _duplicate_links(session: object, found: object) -> dict:
    """The duplicate links of the report ``trace`` found (none for a quarantined one)."""
    from sqlalchemy import select

    from paht_bridge.ledger.report_detail import duplicate_links
    from paht_bridge.ledger.models import ReportRow

    if found is None:
        return {}
    source, _, source_id = found.report_key.partition(":")
    row = session.scalar(select(ReportRow).where(ReportRow.source == source, ReportRow.source_id == source_id))
    return duplicate_links(session, row) if row is not None else {}


def _unlink(args: argparse.Namespace) -> int:
    from paht_bridge.ledger.db import migrate, sessions
    from paht_bridge.ledger.report_detail import matching_reports
    from paht_bridge.operations.unlink import UnlinkRefused, unlink_duplicate
    from paht_bridge.steps.context import operator_context

    migrate()
    console = Console()
    with sessions()() as session:
        found = [(row.id, row.deployment, row.source) for row in matching_reports(session, args.report_id, args.source)]
    if len(found) != 1:
        console.print(f"no report {args.report_id!r} in the ledger" if not found else
                      f"{args.report_id!r} is in several apps ({', '.join(f[2] for f in found)}): say which with --source")
        return 1
    report_id, name, _ = found[0]
    try:
        refs = unlink_duplicate(operator_context(name, "cli-unlink"), report_id, args.reason)
    except UnlinkRefused as refused:
        console.print(f"not unlinked: {refused}", highlight=False)
        return 1
    console.print(f"{args.report_id} is its own report again; the next deliver run sends it to: " + ", ".join(refs), highlight=False)
    return 0


def _stats(args: argparse.Namespace) -> int:
    from paht_bridge.demo import print_summary
    from paht_bridge.ledger.db import migrate

    migrate()
    print_summary(Console())
    return 0


def _replay(args: argparse.Namespace) -> int:
    from paht_bridge.ledger.db import migrate, sessions
    from paht_bridge.operations.replay import replay_dead_letters

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
    from paht_bridge.operations.forget import forget_reporter

    # Read from a prompt by default so the number stays out of shell history.
    phone = args.phone or getpass.getpass("Reporter's phone number (not echoed): ")
    migrate()
    with sessions()() as session:
        count = forget_reporter(session, phone, run_id="cli-forget")
    Console().print(f"{count} report(s) anonymised: name and phone removed (Law 91/2025 request); the event is on each trace.")
    return 0


def _replay_quarantine(args: argparse.Namespace) -> int:
    from paht_bridge.config.deployment import deployment_names
    from paht_bridge.operations.quarantine import replay_quarantine
    from paht_bridge.steps.context import operator_context

    console = Console()
    for name in [args.deployment] if args.deployment else deployment_names():
        counts = replay_quarantine(operator_context(name, "cli-replay"), ids=args.id or None).counts
        console.print(f"{name}: {counts.get('taken_in', 0)} taken in, {counts.get('still_quarantined', 0)} still quarantined")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from paht_bridge.config.validate import deployment_files, validate_file, write_json_schema

    console = Console(highlight=False)
    if args.schema:
        console.print(f"JSON Schema of a deployment mapping written to {write_json_schema(args.schema)}")
        return 0
    failed = False
    for path in args.files or [_shown(p) for p in deployment_files()]:
        problems = validate_file(path)
        failed = failed or bool(problems)
        for problem in problems:
            console.print(str(problem), markup=False, soft_wrap=True)
        if not problems:
            console.print(f"{path}: ok", markup=False, soft_wrap=True)
    return 1 if failed else 0


def _shown(path: Path) -> Path:
    """A path relative to the working directory when it is under it (shorter to read)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _backfill(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from paht_bridge.operations.backfill import PageDone, backfill
    from paht_bridge.ledger.db import migrate
    from paht_bridge.connectors.errors import ConnectorError
    from paht_bridge.steps.context import operator_context, partial_result
    from paht_bridge.config.deployment import deployment_names

    if args.to < args.start:
        raise SystemExit(f"paht backfill: --to {args.to} is before --from {args.start}")
    if args.deployment not in deployment_names():
        raise SystemExit(f"paht backfill: no deployment {args.deployment!r} (there are: {', '.join(deployment_names())})")
    migrate()
    ctx = operator_context(args.deployment, "cli-backfill")
    console = Console()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[pages]} pages, {task.completed} reports"),
               TimeElapsedColumn())
    failed: ConnectorError | None = None
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"backfill {args.deployment} {args.start}…{args.to}", total=None, pages=0)

        def page_done(page: PageDone) -> None:
            bar.update(task, advance=page.reports + page.quarantined, pages=bar.tasks[task].fields["pages"] + 1)

        try:
            result = backfill(ctx, args.start, args.to, progress=page_done)
        except ConnectorError as error:
            failed, result = error, partial_result(error)
    counts = result.counts
    n = counts.get
    console.print(f"{args.deployment} {args.start}…{args.to}: "
                  f"{n('received', 0) + n('needs_review', 0) + n('linked_duplicate', 0)} taken in ({n('needs_review', 0)} wait for IOC review"
                  + (f", {n('linked_duplicate')} linked to an earlier report of the same problem" if n('linked_duplicate') else "") + "), "
                  f"{n('repeated', 0) + n('updated', 0)} already there ({n('updated', 0)} updated), "
                  f"{n('quarantined', 0)} quarantined ({n('already_quarantined', 0)} were already), "
                  f"{n('outside_range', 0)} outside the range", highlight=False)
    if failed is not None:
        console.print(f"[red]{failed}[/red]")
        return 1
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


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
    unlink = sub.add_parser("unlink", help="undo a duplicate link found wrong: the report gets a document of its own")
    unlink.add_argument("report_id", help="the linked report's id in its citizen app")
    unlink.add_argument("--source", help="the citizen app's name, when two apps share an id")
    unlink.add_argument("--reason", required=True, help="why the link is wrong (kept on both reports' traces)")
    unlink.set_defaults(func=_unlink)
    stats = sub.add_parser("stats", help="per province and agency: received, delivered, in progress, answered, published, overdue, "
                                            "dead-lettered, waiting for review, rated, satisfaction")
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
    validate = sub.add_parser("validate", help="check deployment mapping files; every problem as file:line: field: message")
    validate.add_argument("files", nargs="*", type=Path, metavar="FILE", help="mapping files (default: every one in the deployments folder)")
    validate.add_argument("--schema", type=Path, metavar="OUT.json", help="write the mapping's JSON Schema (for editors) to OUT.json instead")
    validate.set_defaults(func=_validate)
    backfill = sub.add_parser("backfill", help="take in the reports of a date range that the ledger lacks (the ingest cursor is left alone)",
                              description="Read every source of a deployment again from its beginning and take in each report created "
                                          "in the range (Vietnam time, both days included) that the ledger lacks; reports already "
                                          "there are repeats, bad ones are quarantined. The ingest cursor is neither read nor moved.")
    backfill.add_argument("--deployment", required=True, help="e.g. quang_tri")
    backfill.add_argument("--from", dest="start", type=_day, required=True, metavar="YYYY-MM-DD", help="first day (Vietnam time)")
    backfill.add_argument("--to", type=_day, required=True, metavar="YYYY-MM-DD", help="last day, included (Vietnam time)")
    backfill.set_defaults(func=_backfill)
    sandbox = sub.add_parser("sandbox", help="start the stand-in systems (python -m paht_bridge.sandbox)")
    sandbox.add_argument("rest", nargs=argparse.REMAINDER)
    sandbox.set_defaults(func=_sandbox)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NoDeploymentsFolder as error:  # an installed package with no deployments folder configured
        print(f"paht: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
