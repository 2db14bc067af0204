"""What an Open311 server answers besides requests: XML elements read as dicts, error
documents (JSON or XML, sent with an error status or, by some servers, with 200) and the
id of an update it took. Pure functions; the client (``open311``) decides what they mean.
"""

from __future__ import annotations

from typing import Any

from paht_bridge.connectors.messages import printable

def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def element_dict(element: Any) -> dict[str, Any]:
    """An XML ``<request>`` as a dict of its children's text (an empty element is ``None``);
    children with children of their own (extension blocks) are left out, as unknown JSON fields are."""
    fields: dict[str, Any] = {}
    for child in element:
        if not isinstance(child.tag, str) or len(child):
            continue
        fields.setdefault(local_name(child.tag), child.text)
    return fields


#: Fields that make an object a request or an update, never an error entry.
REQUEST_FIELDS = frozenset({"service_request_id", "service_code", "requested_datetime", "update_id"})


def json_error(body: Any) -> tuple[int | None, str] | None:
    entries = body.get("errors", [body]) if isinstance(body, dict) else body
    if not isinstance(entries, list) or not entries:
        return None
    if not all(isinstance(e, dict) and "code" in e and "description" in e and not (REQUEST_FIELDS & e.keys()) for e in entries):
        return None
    return _error_summary([(e.get("code"), e.get("description")) for e in entries])


def xml_error(root: Any) -> tuple[int | None, str] | None:
    if local_name(root.tag) != "errors":
        return None
    entries = []
    for error in root:
        if isinstance(error.tag, str) and local_name(error.tag) == "error":
            fields = element_dict(error)
            entries.append((fields.get("code"), fields.get("description")))
    return _error_summary(entries or [(None, "")])


def _error_summary(entries: list[tuple[object, object]]) -> tuple[int | None, str]:
    code = None
    text = str(entries[0][0]).strip() if entries[0][0] is not None else ""
    if text.isdigit():
        code = int(text)
    description = "; ".join(printable(str(d), 300) for _, d in entries if d is not None) or "(no description)"
    return code, description


def first_update_id(body: Any) -> str | None:
    if isinstance(body, list) and body and isinstance(body[0], dict):
        value = body[0].get("update_id")
        return None if value is None else str(value)
    if hasattr(body, "iter"):
        for element in body.iter():
            if isinstance(element.tag, str) and local_name(element.tag) == "update_id" and element.text:
                return element.text.strip()
    return None
