"""Reading a configured back end's answers by the paths its mapping names.

One small interface over both wire formats, so the SOAP and REST configured connectors
read receipts and status changes the same way: ``XmlAnswer`` walks element local names
(namespaces differ between vendors and do not matter to a path), ``JsonAnswer`` walks
object keys and list indexes. A missing path reads as None; the connector decides whether
that is allowed.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from lxml import etree

from paht_bridge.connectors.outbound import aware, nfc
from paht_bridge.canonical import RawStatusChange
from paht_bridge.config.wire import to_datetime

XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


class Answer(Protocol):
    def get(self, path: str) -> Any: ...

    def all(self, path: str) -> list["Answer"]: ...

    def raw(self) -> str: ...


class XmlAnswer:
    def __init__(self, element: etree._Element) -> None:
        self.element = element

    def _walk(self, path: str) -> list[etree._Element]:
        nodes = [self.element]
        for part in path.split(".") if path else []:
            nodes = [child for node in nodes for child in node
                     if isinstance(child.tag, str) and etree.QName(child).localname == part]
        return nodes

    def get(self, path: str) -> str | None:
        nodes = self._walk(path)
        if not nodes or nodes[0].get(XSI_NIL) in ("true", "1"):
            return None
        return "".join(nodes[0].itertext())

    def all(self, path: str) -> list[XmlAnswer]:
        return [XmlAnswer(node) for node in self._walk(path)]

    def raw(self) -> str:
        return etree.tostring(self.element, encoding="unicode")[:4000]


class JsonAnswer:
    def __init__(self, value: Any) -> None:
        self.value = value

    def _walk(self, path: str) -> Any:
        node = self.value
        for part in path.split(".") if path else []:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def get(self, path: str) -> Any:
        return self._walk(path)

    def all(self, path: str) -> list[JsonAnswer]:
        """The items of the list at ``path`` (one object there is one item); raises ValueError
        when ``path`` holds text or a number, which no list of items can be."""
        node = self._walk(path)
        if node is None:
            return []
        if not isinstance(node, (list, dict)):
            raise ValueError(f"{path!r} holds {type(node).__name__}, not a list of items")
        return [JsonAnswer(item) for item in (node if isinstance(node, list) else [node])]

    def raw(self) -> str:
        try:
            return json.dumps(self.value, ensure_ascii=False, default=str)[:4000]
        except (ValueError, RecursionError):
            return "[unprintable]"


def text(value: Any) -> str | None:
    """An answer's value as NFC text; blank is None."""
    return nfc(value) or None


def read_change(answer: Answer, fields: dict[str, str], time_format: str | None) -> RawStatusChange:
    """One status change from the mapping's ``change`` paths (raises ValueError/ValidationError when unusable)."""
    changed_at = answer.get(fields["changed_at"])
    if changed_at in (None, ""):
        raise ValueError(f"no {fields['changed_at']!r} (changed_at)")
    return RawStatusChange(
        external_ref=text(answer.get(fields["external_ref"])), document_id=text(answer.get(fields["document_id"])),
        raw_code=text(answer.get(fields["raw_code"])), changed_at=aware(to_datetime(changed_at, time_format)),
        answer=text(answer.get(fields["answer"])) if "answer" in fields else None,
        answered_by=text(answer.get(fields["answered_by"])) if "answered_by" in fields else None,
    )
