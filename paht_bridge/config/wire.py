"""Wire mappings: where each canonical field goes in a back end's request, and where each
answer field comes from, written in a deployment's YAML instead of in Python.

A configured back end (``kind: soap`` or ``kind: rest``) names, per operation, a request
built from *value specs* and an answer read by *paths*:

- a value spec is a template (``"{subject}"``, ``"{due_date:%d/%m/%Y}"``: Python format
  syntax over the operation's named fields, no attribute or index access), a raw value
  (``{value: data}``: bytes, numbers, dates kept as they are), a table lookup
  (``{lookup: priority, table: {0: THUONG, 1: KHAN}}``), a list built per item
  (``{each: attachments, item: {TenTep: "{name}"}}``) or a constant (``{const: 1}``);
  a request key is a dotted path (``VanBan.DonViNhan.MaDinhDanh``) and an empty value is
  left out;
- an answer path is dotted element names (SOAP: local names under the response element)
  or JSON keys (REST), read by the connector.

Every template's fields are checked when the mapping loads, so a typo fails ``paht
validate`` with the file and line, not a delivery at 3 a.m.
"""

from __future__ import annotations

import string
from datetime import date, datetime
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The fields each operation's request may use (the connector fills them).
RECORD_FIELDS = frozenset({
    "external_ref", "report_key", "source_id", "agency_code", "agency_name", "sender_code", "sender_name", "subject", "content",
    "content_full", "category", "priority", "issued_at", "issued_date", "due_date", "lat", "lon", "address", "ward",
    "ward_code", "unit_name", "province", "province_code", "reporter_name", "reporter_phone", "attachments", "attachment_count",
})
ATTACHMENT_FIELDS = frozenset({"name", "media_type", "size", "sha256", "data", "index"})
OPERATION_FIELDS: dict[str, frozenset[str]] = {
    "create": RECORD_FIELDS,
    "find": frozenset({"external_ref"}),
    "changes": frozenset({"cursor", "limit"}),
    "status": frozenset({"document_id"}),
    "rating": frozenset({"document_id", "rating_id", "level", "comment", "rated_at", "source_id"}),
}
#: What each operation's answer must say (paths), and what it may.
ANSWER_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "create": (frozenset({"document_id"}), frozenset({"already_exists", "external_ref"})),
    "find": (frozenset({"document_id"}), frozenset({"found", "items", "external_ref"})),
    "changes": (frozenset({"items", "next_cursor"}), frozenset({"has_more"})),
    "status": (frozenset(), frozenset({"item"})),
    "rating": (frozenset(), frozenset({"rating_id", "already_exists"})),
}
CHANGE_FIELDS_REQUIRED = frozenset({"external_ref", "document_id", "raw_code", "changed_at"})
CHANGE_FIELDS = CHANGE_FIELDS_REQUIRED | {"answer", "answered_by"}


class _Spec(BaseModel):
    # Field descriptions are the docstrings under the fields: they reach the JSON Schema and docs/configuration.md.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Raw(_Spec):
    """The field's value as it is (bytes for base64Binary, a date for xsd:date...)."""

    value: str
    """The field whose value is sent."""


class Lookup(_Spec):
    """A code from a table: ``priority`` 0 → ``THUONG``. A value not in the table is an error."""

    lookup: str
    """The field whose value is looked up."""
    table: dict[str, Any]
    """The field's value (as text) → what is sent."""

    @field_validator("table", mode="before")
    @classmethod
    def _keys_as_text(cls, table: Any) -> Any:
        """YAML reads ``0: THUONG`` with an int key; values are looked up by their text."""
        return {str(key): value for key, value in table.items()} if isinstance(table, dict) else table


class Const(_Spec):
    """A constant: the same value in every request."""

    const: Any
    """The value sent."""


class Each(_Spec):
    """A list: one entry per item of ``each`` (only ``attachments`` today), built by ``item``."""

    each: Literal["attachments"]
    """The list gone through: ``attachments``."""
    item: dict[str, "ValueSpec"]
    """One entry: key (a dotted path) → value spec over the item's fields."""


ValueSpec = Union[str, Raw, Lookup, Const, Each]
Each.model_rebuild()


def template_fields(template: str) -> list[str]:
    """The field names a template uses; raises ValueError for syntax we do not allow."""
    names = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or not name.isidentifier():
            raise ValueError(f"template {template!r}: field {name!r} must be a plain name (no dots, indexes or positions)")
        if conversion not in (None, "s"):
            raise ValueError(f"template {template!r}: conversion !{conversion} is not allowed")
        if spec and "{" in spec:
            raise ValueError(f"template {template!r}: nested fields in a format spec are not allowed")
        names.append(name)
    return names


def spec_fields(spec: ValueSpec) -> list[str]:
    """Every field a value spec reads (an ``each`` item's fields are the item's own)."""
    if isinstance(spec, str):
        return template_fields(spec)
    if isinstance(spec, Raw):
        return [spec.value]
    if isinstance(spec, Lookup):
        return [spec.lookup]
    if isinstance(spec, Each):
        return [spec.each]
    return []


def check_request(request: dict[str, ValueSpec], allowed: frozenset[str], where: str) -> None:
    """Raise ValueError naming the first request key whose spec uses a field not in ``allowed``."""
    for key, spec in request.items():
        if not key or any(not part for part in key.split(".")):
            raise ValueError(f"{where}.{key}: a request key is a dotted path of names")
        for name in spec_fields(spec):
            if name not in allowed:
                raise ValueError(f"{where}.{key}: unknown field {name!r} (known: {', '.join(sorted(allowed))})")
        if isinstance(spec, Each):
            check_request(spec.item, ATTACHMENT_FIELDS, f"{where}.{key}.item")


# -- building a request ------------------------------------------------------------------------


class MissingCode(ValueError):
    """A value has no entry in a lookup table: the mapping, not the report, must change."""


def render(spec: ValueSpec, context: dict[str, Any]) -> Any:
    """The value of one spec over ``context``; None means "leave the element out"."""
    if isinstance(spec, str):
        fields = template_fields(spec)
        if fields and all(context.get(name) in (None, "") for name in fields):
            return None
        text = spec.format_map({name: "" if context.get(name) is None else context[name] for name in fields})
        return text or None
    if isinstance(spec, Raw):
        return context.get(spec.value)
    if isinstance(spec, Lookup):
        value = context.get(spec.lookup)
        if value is None:
            return None
        key = str(value.value if hasattr(value, "value") else value)
        if key not in spec.table:
            raise MissingCode(f"no code for {spec.lookup}={key!r} in the mapping's table ({', '.join(map(str, spec.table))})")
        return spec.table[key]
    if isinstance(spec, Const):
        return spec.const
    # An empty list, not None: its parents stay (edXML wants an empty manifest, not none).
    return [build(spec.item, item) for item in context.get(spec.each) or []]


def build(request: dict[str, ValueSpec], context: dict[str, Any]) -> dict[str, Any]:
    """A nested request (dicts and lists) from dotted keys; empty values are left out."""
    result: dict[str, Any] = {}
    for key, spec in request.items():
        value = render(spec, context)
        if value is None:
            continue
        *parents, leaf = key.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return result


# -- reading an answer ---------------------------------------------------------------------------


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "co", "có"):
        return True
    if text in ("false", "0", "no", "n", "khong", "không", ""):
        return False
    raise ValueError(f"{value!r} is not a boolean")


def to_datetime(value: Any, time_format: str | None) -> datetime:
    """An answer's time: an aware or naive datetime, ISO 8601 text, or text in ``time_format``."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = str(value).strip()
    if time_format:
        return datetime.strptime(text, time_format)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- the mapping sections ----------------------------------------------------------------------


class Operation(_Spec):
    """One call: what to send, and which answer paths mean what."""

    name: str = Field(min_length=1)
    """The WSDL operation (SOAP) or a label for errors (REST)."""
    request: dict[str, ValueSpec] = {}
    """What to send: request key (a dotted path) → value spec over the operation's fields."""
    response: dict[str, str] = {}
    """What the answer says: answer field → answer path."""
    change: dict[str, str] = {}
    """For the change feed and the status call: where each change field is, relative to one item."""


class RestCall(Operation):
    """One HTTP call: an endpoint template, what to send, and which JSON paths mean what."""

    method: Literal["GET", "POST", "PUT", "PATCH"] = "GET"
    """The HTTP method."""
    path: str
    """Path template under the connection's base URL: ``api/v2/van-ban-den/{document_id}``."""
    query: dict[str, ValueSpec] = {}
    """Query parameter → value spec over the operation's fields."""
    headers: dict[str, ValueSpec] = {}
    """Header → value spec over the operation's fields (``Idempotency-Key: "{external_ref}"``)."""
    body: Literal["none", "json", "multipart"] = "none"
    """``json`` sends ``request`` as the body; ``multipart`` sends it as a JSON part named ``json_part`` and streams
    each attachment as a part named ``file_part``."""
    json_part: str = "data"
    """The name of a multipart body's JSON part."""
    file_part: str = "file"
    """The name of a multipart body's attachment parts."""
    ok: tuple[int, ...] = (200, 201)
    """HTTP statuses that carry an answer (others are failures, judged by status)."""
    rejected: int | None = 422
    """A status meaning "this request is invalid" whose body names the problem."""


def _check_operations(operations: dict[str, Operation], kind: str) -> None:
    problems = []
    for op_name, op in operations.items():
        where = f"{kind}.operations.{op_name}"
        try:
            check_request(op.request, OPERATION_FIELDS[op_name], f"{where}.request")
            if isinstance(op, RestCall):
                check_request(op.query, OPERATION_FIELDS[op_name], f"{where}.query")
                check_request(op.headers, OPERATION_FIELDS[op_name], f"{where}.headers")
                for name in template_fields(op.path):
                    if name not in OPERATION_FIELDS[op_name]:
                        raise ValueError(f"{where}.path: unknown field {name!r}")
        except ValueError as exc:
            problems.append(str(exc))
            continue
        required, optional = ANSWER_FIELDS[op_name]
        missing = required - op.response.keys()
        unknown = op.response.keys() - required - optional
        if missing:
            problems.append(f"{where}.response: missing {', '.join(sorted(missing))}")
        if unknown:
            problems.append(f"{where}.response: unknown answer field(s) {', '.join(sorted(unknown))}")
        if op_name in ("changes", "status"):
            lacking = CHANGE_FIELDS_REQUIRED - op.change.keys()
            extra = op.change.keys() - CHANGE_FIELDS
            if lacking:
                problems.append(f"{where}.change: missing {', '.join(sorted(lacking))}")
            if extra:
                problems.append(f"{where}.change: unknown change field(s) {', '.join(sorted(extra))}")
    if problems:
        raise ValueError("; ".join(problems))


class _Wire(_Spec):
    time_format: str | None = None
    """Text in answers' times when they are not ISO 8601 (``%d/%m/%Y %H:%M:%S``); a time without a zone is Vietnam time."""
    text_limit: int | None = Field(default=None, ge=20)
    """Subject and content are cut to this many characters (at a word) when set; content cut this way travels whole
    as a text attachment, ``noi_dung_day_du.txt`` (edXML: 500)."""
    subject_limit: int | None = Field(default=None, ge=20)
    """The subject's own limit, when it differs from ``text_limit`` (or there is none)."""
    comment_limit: int = Field(default=4000, ge=20)
    """A rating's comment is cut to this many characters."""
    cursor: Literal["opaque", "sequence"] = "opaque"
    """``opaque``: the change feed's cursor is whatever text the back end hands out. ``sequence``: it is a change
    sequence number, so a stored cursor that is not one is refused before any call, and a feed whose next cursor does
    not grow is malformed."""
    max_page_size: int | None = Field(default=None, ge=1)
    """The most changes the back end gives in one page (it refuses a larger ``limit``)."""


class SoapOperations(_Spec):
    """The calls a SOAP document system is spoken to with."""

    create: Operation
    """Create a document for a delivery."""
    find: Operation
    """Find a document by its external reference (before any retry of a delivery in doubt)."""
    changes: Operation
    """Read the change feed from a cursor."""
    status: Operation
    """Ask one document's status (polling without a change feed)."""
    rating: Operation | None = None
    """Pass a citizen's rating on; without it, a rating for this system is refused as a permanent error."""


class SoapWire(_Wire):
    """A SOAP document system described by its WSDL and this mapping (``kind: soap``)."""

    wsdl: str
    """The vendor's WSDL, a local file: a relative path is read from the folder of the YAML file that names it (the
    deployment's, or the preset's)."""
    binding: str | None = None
    """The binding to call, ``{namespace}Name``; may be left out when the WSDL has one."""
    path: str = "/"
    """The service's path under the connection's host (a connection's ``extra.path`` wins)."""
    max_inline_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    """Attachments travel inline (base64 inside the envelope, held in memory while it is built and sent): a report
    whose attachments total more is refused, not sent. The connection's ``limits.max_attachment_bytes`` applies too,
    when smaller."""
    operations: SoapOperations
    """The calls, each a WSDL operation with its request and answer paths."""

    @model_validator(mode="after")
    def _operations_fit(self) -> "SoapWire":
        _check_operations({k: v for k, v in self.operations if v is not None}, "soap")
        return self


class RestOperations(_Spec):
    """The calls a REST document system is spoken to with."""

    create: RestCall
    """Create a document for a delivery."""
    find: RestCall
    """Find a document by its external reference (before any retry of a delivery in doubt)."""
    changes: RestCall
    """Read the change feed from a cursor."""
    status: RestCall
    """Ask one document's status (polling without a change feed)."""
    rating: RestCall | None = None
    """Pass a citizen's rating on; without it, a rating for this system is refused as a permanent error."""


class Refusal(_Spec):
    """Where an answer refusing a request as invalid (a call's ``rejected`` status) says why,
    so the dead-letter reason names what to fix: ``{"message": ..., "fields": [{"field":
    "han_xu_ly", "message": "Trường bắt buộc"}]}``."""

    message: tuple[str, ...] = ()
    """Paths to a one-line reason, tried in order until one is there (one path or a list)."""
    fields: str | None = None
    """Path to the list of refused fields."""
    field: str = "field"
    """Within each refused field's item: the path to the field's name."""
    reason: str = "message"
    """Within each refused field's item: the path to why it was refused."""

    @field_validator("message", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


class RestWire(_Wire):
    """A REST/JSON document system described by endpoint templates and JSON paths (``kind: rest``)."""

    auth: Literal["bearer", "basic", "none"] = "bearer"
    """``Authorization`` scheme for the connection's password: ``Bearer <password>``, Basic with the login, or none."""
    refusal: Refusal | None = None
    """How the API says why it refused a request; without it the refusal's text is quoted."""
    operations: RestOperations
    """The calls, each an HTTP method and endpoint template with its request and JSON answer paths."""

    @model_validator(mode="after")
    def _operations_fit(self) -> "RestWire":
        _check_operations({k: v for k, v in self.operations if v is not None}, "rest")
        return self
