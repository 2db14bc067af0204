"""Pure transforms between the canonical model and a deployment's terms.

Model in, model out, no I/O: report → routing → document record, raw back-end status →
canonical status, status change → public outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from paht_bridge.normalise.admin_units import ResolvedUnits
from paht_bridge.canonical import (
    VIETNAM_TZ,
    CanonicalStatus,
    DocumentRecord,
    Outcome,
    RawStatusChange,
    Report,
    Reporter,
    Routing,
    StatusChange,
)
from paht_bridge.config.deployment import Agency, Deployment


class MappingProblem(ValueError):
    """A report or an update the mapping cannot place; the reason goes to the IOC's review."""


class UnknownStatus(MappingProblem):
    """A back end sent a status code its table does not list: reported, never guessed."""

    def __init__(self, target: str, raw_code: str) -> None:
        self.target = target
        self.raw_code = raw_code
        super().__init__(f"target {target!r} sent unknown status code {raw_code!r}")


def external_ref(report: Report, attempt: int = 1, lane: int = 0) -> str:
    """Deterministic reference that makes document creation idempotent: co-handling agencies
    get ``-A<lane>``, re-routes ``-R<n>``."""
    base = f"PAHT-{report.source}-{report.source_id}" + (f"-A{lane}" if lane else "")
    return base if attempt <= 1 else f"{base}-R{attempt - 1}"


def route(report: Report, units: ResolvedUnits, mapping: Deployment) -> Routing:
    """The lead agency (see ``routes`` for co-handling agencies too)."""
    return routes(report, units, mapping)[0]


def routes(report: Report, units: ResolvedUnits, mapping: Deployment) -> list[Routing]:
    """Pick the agencies by category × place: the first matching rule wins; the lead agency
    comes first, then the co-handling ones (each delivered independently)."""
    category = mapping.categories.get(report.category)
    if category is None:
        raise MappingProblem(f"category {report.category!r} is not in the {mapping.deployment} mapping")
    if units.current is None:
        raise MappingProblem(f"place not resolved: {units.problem}")
    if units.current.province_code != mapping.province_code:
        raise MappingProblem(
            f"report is in province {units.current.province} ({units.current.province_code}),"
            f" outside {mapping.deployment} ({mapping.province_code})"
        )
    ward = units.current.ward_code
    for rule in mapping.routing.rules:
        if rule.category == report.category and (not rule.wards or ward in rule.wards):
            lead_target = rule.target or mapping.routing.default_target
            return [_routing(report, rule.agency, lead_target, mapping)] + [
                _routing(report, agency, agency.target or lead_target, mapping) for agency in rule.also
            ]
    raise MappingProblem(f"no routing rule for category {report.category!r} in ward {ward}")  # pragma: no cover - validated


def reroute(report: Report, mapping: Deployment, rerouted_at: datetime) -> Routing:
    """Where the IOC sends a report an agency refused; the new agency's deadline runs from now."""
    return _routing(report, mapping.routing.on_refusal, mapping.routing.default_target, mapping, start=rerouted_at)


def _routing(report: Report, agency: Agency, target: str, mapping: Deployment, start: datetime | None = None) -> Routing:
    category = mapping.categories[report.category]
    return Routing(
        agency_code=agency.code,
        agency_name=agency.name,
        target=target,
        deadline=(start or report.created_at).astimezone(VIETNAM_TZ) + timedelta(days=category.deadline_days),
        priority=category.priority,
        target_category=category.target_category,
    )


def _vn(moment: datetime) -> str:
    return moment.astimezone(VIETNAM_TZ).strftime("%H:%M %d/%m/%Y")


def build_document(report: Report, routing: Routing, mapping: Deployment, attempt: int = 1) -> DocumentRecord:
    """The record a target receives. Reporter identity only where the privacy rules allow it."""
    fields = {
        "title": report.title,
        "description": report.description,
        "address": report.location.address or "(không có địa chỉ)",
        "created": _vn(report.created_at),
        "deadline": _vn(routing.deadline),
        "source_id": report.source_id,
        "category": mapping.categories[report.category].name,
    }
    privacy = mapping.privacy
    reporter = Reporter(
        name=report.reporter.name if privacy.send_reporter_name else None,
        phone=report.reporter.phone if privacy.send_reporter_phone else None,
    )
    return DocumentRecord(
        external_ref=external_ref(report, attempt),
        report_key=report.key,
        agency_code=routing.agency_code,
        agency_name=routing.agency_name,
        sender_code=mapping.ioc.code,
        sender_name=mapping.ioc.name,
        subject=mapping.templates.subject.format(**fields),
        content=mapping.templates.content.format(**fields),
        category=routing.target_category,
        priority=routing.priority,
        issued_at=report.created_at,
        due_date=routing.deadline.date(),
        location=report.location,
        reporter=reporter,
    )


def map_status(change: RawStatusChange, target: str, mapping: Deployment) -> StatusChange:
    table = mapping.target(target).statuses
    status = table.get(change.raw_code)
    if status is None:
        raise UnknownStatus(target, change.raw_code)
    return StatusChange(
        external_ref=change.external_ref,
        document_id=change.document_id,
        status=status,
        raw_code=change.raw_code,
        changed_at=change.changed_at,
        answer=change.answer,
        answered_by=change.answered_by,
    )


def outcome_for(source_id: str, status: CanonicalStatus, answer: str, answered_by: str, answered_at: datetime,
                key: str | None = None) -> Outcome:
    return Outcome(source_id=source_id, status=status, answer=answer, answered_by=answered_by, answered_at=answered_at, key=key)
