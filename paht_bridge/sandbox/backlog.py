"""Backlogs for the chaos tests and the long runs: many reports, made from the seeds.

A synthetic report is a seeded one with a new id (``<seed id>-S<n>``), so it routes like a
real one; attachments can be dropped to keep a 10,000-report run about delivery, not bytes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from paht_bridge.sandbox.citizen_app import load_seed_reports
from paht_bridge.sandbox.stack import SandboxStack

SOURCES = ("quangtri_ioc", "dienbien_smart")


def synthetic_reports(n: int, with_attachments: bool = False) -> Iterable[tuple[str, dict]]:
    """``n`` (source, seed-shaped report) pairs, alternating between the two provinces."""
    seeds = {source: load_seed_reports(source) for source in SOURCES}
    for i in range(n):
        source = SOURCES[i % 2]
        pool = seeds[source]
        report = copy.deepcopy(pool[(i // 2) % len(pool)])
        report["id"] = f"{report['id']}-S{i:05d}"
        if not with_attachments:
            report["attachments"] = []
        else:
            for j, attachment in enumerate(report.get("attachments", [])):
                attachment["id"] = f"{attachment['id']}-S{i:05d}-{j}"
        yield source, report


def load_backlog(stack: SandboxStack, n: int, with_attachments: bool = False) -> None:
    for source, report in synthetic_reports(n, with_attachments):
        stack.citizen_states[source].add_report(report)
