"""The deployment mapping: one YAML file per province IOC, validated by these models.

It names the systems (by Airflow connection id, never with secrets), what categories
mean, who handles what where, deadlines, each target's status codes, what reporter data
may reach an agency, and the text templates of a document.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from paht_bridge.canonical import VIETNAM_TZ, CanonicalStatus, Text
from paht_bridge.config.folders import deployments_folder
from paht_bridge.config.presets import with_preset
from paht_bridge.config.wire import RestWire, SoapWire, template_fields

#: Decision 20/2020/QĐ-TTg organisation codes: at most 35 characters of [.0-9A-Z] in dot groups.
ORGANISATION_CODE = re.compile(r"^(?=.{1,35}$)[0-9A-Z]+(\.[0-9A-Z]+)*$")


class Strict(BaseModel):
    # Field descriptions are the docstrings under the fields: they reach the JSON Schema and docs/configuration.md.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Agency(Strict):
    """An agency (cơ quan, đơn vị): who handles a report, or the IOC that sends it."""

    code: str
    """Organisation code (Decision 20/2020/QĐ-TTg): at most 35 characters of ``[.0-9A-Z]`` in dot-separated groups."""
    name: Text
    """The agency's name, as documents address it."""
    target: str | None = None
    """The document system a co-handling agency (``also:``) works in, when it is not the rule's: a co-handling agency may
    work in another document system. Not read for other agencies."""

    @field_validator("code")
    @classmethod
    def _organisation_code(cls, value: str) -> str:
        if not ORGANISATION_CODE.match(value):
            raise ValueError(f"{value!r} is not an organisation code (Decision 20/2020: [.0-9A-Z], at most 35)")
        return value


class Open311Options(Strict):
    """How to read an Open311 GeoReport v2 server (``kind: open311``)."""

    wire_format: Literal["json", "xml"] = "json"
    """The format asked of the server (``requests.json`` or ``requests.xml``)."""
    jurisdiction_id: str | None = None
    """Sent as ``jurisdiction_id`` with every request, for servers that serve several jurisdictions."""
    window_days: int = Field(default=30, ge=1, le=365)
    """Requests are read in date windows this long (servers cap a window's results)."""
    initial_start: datetime | None = None
    """Where the first run starts reading (ISO date; Vietnam time without a zone); later runs go on from the cursor."""

    @field_validator("initial_start")
    @classmethod
    def _vietnam_time(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=VIETNAM_TZ) if value is not None and value.tzinfo is None else value


class Source(Strict):
    """A citizen channel reports come from and answers go back to."""

    name: str
    """The source's name in the ledger and in report keys (``<name>:<id>``, ``PAHT-<name>-<id>``)."""
    kind: Literal["citizen_app", "open311"]
    """``citizen_app``: the provinces' REST JSON apps; ``open311``: any GeoReport v2 server."""
    connection_id: str
    """The Airflow Connection (type ``paht_citizen_app`` or ``paht_open311``) holding its URL and API key."""
    page_size: int = Field(default=100, ge=1, le=1000)
    """Reports asked for per page (Open311: a date window holding this many or more is halved; keep it within the server's cap)."""
    open311: Open311Options | None = None
    """Options of an Open311 source (only for ``kind: open311``; defaults without it)."""
    legacy_text: Literal["reject", "tcvn3", "vni", "viscii", "auto"] = "reject"
    """Text in a legacy Vietnamese encoding. ``reject``: quarantined with the reason (the default).
    ``tcvn3``/``vni``/``viscii``: text that is that charset's bytes read as cp1252/latin-1 is converted to Unicode.
    ``auto``: whichever of the three reads best is used, and the item quarantined when none reads cleanly. Every mode
    but ``reject`` also repairs UTF-8 read as cp1252 ("HÃ  Ná»™i"). See ``paht_bridge.normalise.legacy_charsets``."""

    @model_validator(mode="after")
    def _options_fit_kind(self) -> "Source":
        if self.open311 is not None and self.kind != "open311":
            raise ValueError(f"an 'open311' section only belongs to a source of kind 'open311' (this one is {self.kind!r})")
        return self


def _kind_and_statuses_may_come_from_a_preset(schema: dict[str, Any]) -> None:
    schema["required"] = [key for key in schema.get("required", []) if key not in ("kind", "statuses")]


class Target(Strict):
    """A document system. ``preset`` names a known kind of system (``edxml_soap``,
    ``tdoffice_rest``: see ``config.presets``) whose keys this target takes; any key given
    here replaces the preset's whole (shallow)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_kind_and_statuses_may_come_from_a_preset)

    name: str
    """The document system's name, as routing rules and agencies name it."""
    preset: str | None = None
    """A known kind of system whose keys this target takes: a file in the deployment folder's ``presets/``, else a shipped one."""
    kind: Literal["soap", "rest"]
    """Described entirely by the ``soap:`` (a WSDL and paths) or ``rest:`` (endpoint templates and JSON paths) section,
    or by the preset's."""
    connection_id: str
    """The Airflow Connection (type ``paht_soap`` or ``paht_rest``) holding its URL and credentials."""
    soap: SoapWire | None = None
    """The wire mapping of a ``kind: soap`` target."""
    rest: RestWire | None = None
    """The wire mapping of a ``kind: rest`` target."""
    statuses: dict[str, CanonicalStatus]
    """Raw back-end status code → canonical status; a code not listed is reported, never guessed."""
    max_tries: int = Field(default=8, ge=1)
    """Tries of one delivery before it becomes a dead letter (a failed circuit probe gives its try back)."""
    retry_base_seconds: float = Field(default=30, gt=0)
    """Back-off between tries: base × 2^(try−1), capped."""
    retry_cap_seconds: float = Field(default=3600, gt=0)
    """The longest wait between two tries."""
    circuit_failures: int = Field(default=10, ge=1)
    """After this many failures in a row the circuit opens: no calls for the cool-down. Ten keeps a flaky back end
    (40 % failures: ten in a row about once in 10,000 calls) working, and still stops calling a dead one after ten calls."""
    circuit_cooldown_seconds: float = Field(default=300, gt=0)
    """How long an open circuit stays open; then one call is let through as a probe."""
    change_feed: bool = True
    """The back end offers a change feed (``changes_since``). Without one (``false``) each poll asks open documents for
    their status one by one, within ``poll_budget``."""
    poll_budget: int = Field(default=500, ge=1)
    """Status requests one poll run may make to a back end without a change feed: the open documents nearest their
    deadline first, then the ones polled longest ago."""
    send_concurrency: int = Field(default=1, ge=1, le=32)
    """Deliveries one deliver task sends to this target at once (each sender claims its own batches under its own
    lease). Above 1 where the back end answers slowly but copes with parallel calls."""

    @model_validator(mode="before")
    @classmethod
    def _preset_under_own_keys(cls, data: Any, info: ValidationInfo) -> Any:
        """The preset's keys, then this target's over them; relative WSDL paths made absolute
        from the file naming them (the deployment's folder comes in the validation context)."""
        if not isinstance(data, dict):
            return data
        folder = info.context.get("folder") if isinstance(info.context, dict) else None
        return with_preset(data, folder)

    @model_validator(mode="after")
    def _wire_section_fits_kind(self) -> "Target":
        wanted = {"soap": "soap", "rest": "rest"}.get(self.kind)
        for section in ("soap", "rest"):
            if section == wanted and getattr(self, section) is None:
                raise ValueError(f"a target of kind {self.kind!r} needs its {section!r} section")
            if section != wanted and getattr(self, section) is not None:
                raise ValueError(f"a {section!r} section only belongs to a target of kind {section!r} (this one is {self.kind!r})")
        return self


class Category(Strict):
    """A category of the citizen sources (the key: the source's category code) and what it means here."""

    name: Text
    """The category's name, shown to IOC staff and available to templates as ``{category}``."""
    target_category: str
    """The category in the document systems' terms (``category`` in a wire mapping's request)."""
    deadline_days: int = Field(ge=1, le=90)
    """Days an agency has to answer, from the report's creation (from the re-route, for a re-routed report)."""
    priority: int = Field(default=0, ge=0, le=4)
    """Priority (độ khẩn) 0 (normal) to 4 (timed express); claims take higher priorities first."""


class RoutingRule(Strict):
    """Category × place → agency. A rule with no ``wards`` applies province-wide."""

    category: str
    """A key of ``categories``."""
    wards: tuple[str, ...] = ()
    """2025-scheme ward codes (the unit the report was resolved to); empty: the whole province."""
    agency: Agency
    """The lead agency: it answers the citizen."""
    target: str | None = None
    """The lead agency's document system; defaults to ``routing.default_target``."""
    also: tuple[Agency, ...] = ()
    """Co-handling agencies (đơn vị phối hợp): each gets its own document, delivered independently."""


class Routing(Strict):
    """Who handles what where: the first rule matching a report's category and ward wins."""

    default_target: str
    """The document system of a rule without ``target``, and of a re-routed report."""
    rules: tuple[RoutingRule, ...]
    """Tried in order; every category needs a province-wide rule (one without ``wards``)."""
    on_refusal: Agency
    """Who a report goes to when the first agency refuses it (the IOC re-routes it there)."""


class Privacy(Strict):
    """Which reporter data may reach an agency. Hue-S: only IOC staff see who sent a report."""

    send_reporter_name: bool = False
    """Send the reporter's name to agencies (``reporter_name`` in a wire mapping; empty otherwise)."""
    send_reporter_phone: bool = False
    """Send the reporter's phone to agencies (``reporter_phone`` in a wire mapping; empty otherwise)."""


class Alerts(Strict):
    """When IOC staff are alerted, and where to. Without a webhook, alerts go to the task log."""

    overdue: bool = True
    """Alert when a report passes its deadline without an answer."""
    failing_backend: bool = True
    """Alert when a document system's circuit opens (it keeps failing)."""
    failed_task: bool = True
    """Alert when a lifecycle task fails (Airflow's ``on_failure_callback``)."""
    webhook_connection_id: str | None = None
    """An Airflow HTTP connection to POST alerts to as JSON (the IOC's chat bot, a ticketing system...)."""


class Duplicates(Strict):
    """When reports of one problem (phản ánh trùng, duplicate reports) share one document.

    Several citizens often report the same pothole or the same pile of rubbish. A new report
    that matches an earlier one on every rule below is linked to it: it gets no document of
    its own, follows the earlier report's document, and its reporter still gets the answer
    and can rate it. Off unless a deployment turns it on.
    """

    enabled: bool = False
    """Link duplicate reports at ingest."""
    max_distance_m: float = Field(default=150, gt=0, le=5000)
    """How far apart (metres, great-circle) two reports' positions may be to be one problem."""
    max_hours: float = Field(default=72, gt=0, le=24 * 90)
    """How far apart in time (hours, by the time the citizen reported) two reports may be."""
    min_text_similarity: float = Field(default=0.5, ge=0, le=1)
    """How alike the title and description must be (0..1): the share of words they have in common, accents, case and
    Vietnamese filler words aside (see ``ledger.duplicates``)."""
    same_category: bool = True
    """Only reports of the same category are linked (a flooded street reported as traffic and as drainage may need two
    agencies)."""
    same_ward_when_no_position: bool = True
    """When either report has no position: the same 2025-scheme ward counts as near. Off: a report without a position
    is never linked."""


#: The fields a document template may use (``normalise.transforms.build_document`` fills them).
DOCUMENT_FIELDS = frozenset({"title", "description", "address", "created", "deadline", "source_id", "category"})


class Templates(Strict):
    """The document's subject and content, in Python format syntax over ``{title}``, ``{description}``, ``{address}``,
    ``{created}``, ``{deadline}``, ``{source_id}`` and ``{category}`` (times as ``HH:MM dd/mm/yyyy``, Vietnam time)."""

    subject: str = "[PAHT] {title}"
    """The document's subject (trích yếu)."""
    content: str = "{description}\nĐịa điểm: {address}\nThời gian phản ánh: {created}\nMã phản ánh: {source_id}"
    """The document's content (nội dung)."""

    @field_validator("subject", "content")
    @classmethod
    def _known_fields(cls, template: str) -> str:
        """A misspelt field (``{titel}``) fails here, with the file and line, not every delivery at run time."""
        unknown = [name for name in template_fields(template) if name not in DOCUMENT_FIELDS]
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))} (known: {', '.join(sorted(DOCUMENT_FIELDS))})")
        return template


class Deployment(Strict):
    """One province's IOC: its citizen sources, its agencies' document systems, and the rules between them."""

    deployment: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    """The deployment's id, as the ledger records it; the file is named ``<id>.yaml`` (DAG tasks and commands find a
    deployment by its file name)."""
    name: Text
    """The province and IOC, as IOC staff read it."""
    province_code: str
    """The province's code in the 2025 scheme: a report resolved to another province is not routed."""
    ioc: Agency
    """The IOC itself: the sender of every document (``sender_code``, ``sender_name``)."""
    sources: tuple[Source, ...]
    """The citizen channels."""
    targets: tuple[Target, ...]
    """The agencies' document systems."""
    categories: dict[str, Category]
    """The sources' category codes and what they mean."""
    routing: Routing
    """Who handles which category where."""
    privacy: Privacy = Privacy()
    """Which reporter data may reach an agency (none by default)."""
    templates: Templates = Templates()
    """The document's subject and content."""
    alerts: Alerts = Alerts()
    """When IOC staff are alerted, and where to."""
    duplicates: Duplicates = Duplicates()
    """Whether reports of one problem share one document (off by default)."""

    @model_validator(mode="after")
    def _references_resolve(self) -> "Deployment":
        targets = {t.name for t in self.targets}
        problems = []
        if self.routing.default_target not in targets:
            problems.append(f"routing.default_target {self.routing.default_target!r} is not a target")
        for i, rule in enumerate(self.routing.rules):
            if rule.category not in self.categories:
                problems.append(f"routing.rules[{i}].category {rule.category!r} is not in categories")
            if rule.target and rule.target not in targets:
                problems.append(f"routing.rules[{i}].target {rule.target!r} is not a target")
            for j, agency in enumerate(rule.also):
                if agency.target and agency.target not in targets:
                    problems.append(f"routing.rules[{i}].also[{j}].target {agency.target!r} is not a target")
        for code in self.categories:
            if not any(r.category == code and not r.wards for r in self.routing.rules):
                problems.append(f"category {code!r} has no province-wide routing rule")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def final_status(self) -> str:
        """Where a report's life ends here: rated, unless no source takes ratings (Open311)."""
        return "rated" if any(s.kind != "open311" for s in self.sources) else "published"

    def source(self, name: str) -> Source:
        return next(s for s in self.sources if s.name == name)

    def target(self, name: str) -> Target:
        return next(t for t in self.targets if t.name == name)


def load_deployment(path: str | Path) -> Deployment:
    """A deployment file, its targets' presets found from its own folder first."""
    with open(path, encoding="utf-8") as handle:
        return Deployment.model_validate(yaml.safe_load(handle), context={"folder": Path(path).parent})


@lru_cache(maxsize=None)
def deployment(name: str, directory: str | None = None) -> Deployment:
    """The named deployment from ``directory``, else the live deployments folder (cached per process)."""
    return load_deployment(Path(directory or deployments_folder()) / f"{name}.yaml")


def deployment_names(directory: str | Path | None = None) -> list[str]:
    return sorted(p.stem for p in Path(directory or deployments_folder()).glob("*.yaml"))
