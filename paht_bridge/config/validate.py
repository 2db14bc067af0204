"""Check deployment mapping files and say where each problem is: file, line, field.

``paht validate`` uses this so a province's IT staff can fix a mapping before a DAG loads
it. Field errors point at the offending key: the YAML is composed into a node tree (which
keeps line marks) and each pydantic error's ``loc`` is walked through it. The cross-reference
check of :class:`~paht_bridge.config.deployment.Deployment` raises one message per problem
(``routing.rules[3].target 'x' is not a target``); the path at the head of each message is
walked the same way.

A target that names a preset (``preset: edxml_soap``) is checked with the preset's keys under
its own: a problem in a key the preset supplies is reported in the preset's file, at the
preset's line; an unknown preset is reported on the ``preset:`` line with the presets there are.

Pydantic runs the cross-reference check only once every field is valid, so a file with a
field error shows its cross-reference problems on the next run, after the fix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from paht_bridge.config.deployment import Deployment
from paht_bridge.config.folders import deployments_folder
from paht_bridge.config.presets import PresetProblem, find_preset, from_preset

Loc = tuple[str | int, ...]

#: ``routing.rules[3].also[0].target`` at the head of a cross-reference message.
_DOTTED_PATH = re.compile(r"^(?P<path>[A-Za-z_][\w-]*(?:\[\d+\]|\.[A-Za-z_][\w-]*)*):? ")
_PATH_PART = re.compile(r"\.?([A-Za-z_][\w-]*)|\[(\d+)\]")
#: ``category 'XD' has no province-wide routing rule``: the place is the category's own entry.
_CATEGORY = re.compile(r"^category '(?P<code>[^']*)' ")


class Problem(BaseModel):
    """One thing wrong in a mapping file, where a person can find it."""

    file: str
    line: int | None  # 1-based; None when the file could not be read at all
    path: str  # the field, dotted (``routing.rules[3].target``); ``yaml`` for a syntax error
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line if self.line is not None else '?'}: {self.path}: {self.message}"


def deployment_files(directory: str | Path | None = None) -> list[Path]:
    """Every mapping file in the deployments folder."""
    return sorted(Path(directory or deployments_folder()).glob("*.yaml"))


def validate_file(path: str | Path) -> list[Problem]:
    """Every problem in one mapping file (empty when it loads as a Deployment)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(file=str(path), line=None, path="file", message=f"cannot be read: {exc}")]
    return validate_text(text, str(path))


def validate_text(text: str, file: str) -> list[Problem]:
    """Every problem in a mapping's YAML text; ``file`` names it, and its folder is where
    presets (``presets/``) and relative WSDL paths are looked for first."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        message = ": ".join(str(part) for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part) or str(exc)
        return [Problem(file=file, line=mark.line + 1 if mark else None, path="yaml", message=message)]
    folder = Path(file).parent
    try:
        Deployment.model_validate(data, context={"folder": folder})
    except ValidationError as exc:
        places = _Places(file, root, data, folder)
        return [problem for error in exc.errors() for problem in _problems(error, places)]
    return []


def json_schema() -> dict:
    """The mapping's JSON Schema, for editors (YAML language servers) to check as one types."""
    return Deployment.model_json_schema()


def write_json_schema(out: str | Path) -> Path:
    out = Path(out)
    out.write_text(json.dumps(json_schema(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return out


class _Places:
    """Where a field is written: in the deployment file, or in the preset a target takes it from."""

    def __init__(self, file: str, root: Node | None, data: object, folder: Path) -> None:
        self.file, self.root, self.data, self.folder = file, root, data, folder

    def problem(self, loc: Loc, message: str) -> Problem:
        file, root, within = self.file, self.root, loc
        target = self._target(loc)
        if target is not None and len(loc) > 2 and from_preset(target, str(loc[2])):
            try:
                preset = find_preset(target["preset"], self.folder)
                file, root, within = str(preset), yaml.compose(preset.read_text(encoding="utf-8"), Loader=yaml.SafeLoader), loc[2:]
            except (PresetProblem, OSError, UnicodeDecodeError, yaml.YAMLError):
                pass  # an unreadable preset is reported on its own, on the target's ``preset:`` line
        return Problem(file=file, line=_line(root, within), path=_dotted(loc) or "(file)", message=message)

    def _target(self, loc: Loc) -> dict | None:
        targets = self.data.get("targets") if isinstance(self.data, dict) else None
        if len(loc) > 1 and loc[0] == "targets" and isinstance(loc[1], int) and isinstance(targets, list) and loc[1] < len(targets):
            target = targets[loc[1]]
            return target if isinstance(target, dict) else None
        return None


def _problems(error: dict, places: _Places) -> list[Problem]:
    loc: Loc = tuple(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if isinstance(error.get("ctx", {}).get("error"), PresetProblem):
        return [places.problem(loc + ("preset",), message)]
    if loc and error["type"] == "value_error":
        # A section's own check (a configured back end's ``soap:``/``rest:``) names each problem
        # by its path inside the section: ``soap.operations.create.request.VanBan.X: ...``.
        parts = [_message_loc(part) for part in message.split("; ")]
        if all(where and where[0] == loc[-1] for where, _ in parts):
            return [places.problem(loc[:-1] + where, rest.removeprefix(": ")) for where, rest in parts]
    if loc or error["type"] != "value_error":
        return [places.problem(loc, message)]
    # The model-level cross-reference check: one message, problems joined with "; ".
    return [places.problem(where, rest) for where, rest in map(_message_loc, message.split("; "))]


def _message_loc(message: str) -> tuple[Loc, str]:
    """The field a cross-reference message is about, as a pydantic-style ``loc``, and the
    rest of the message (the path is shown on its own)."""
    if category := _CATEGORY.match(message):
        return ("categories", category["code"]), message
    if head := _DOTTED_PATH.match(message):
        loc = tuple(name if name else int(index) for name, index in _PATH_PART.findall(head["path"]))
        return loc, message[head.end():]
    return (), message


def _line(root: Node | None, loc: Loc) -> int:
    """The 1-based line of the deepest node along ``loc`` (a key's line, for a mapping key).

    Parts of ``loc`` that are not in the file (pydantic's union branch names, ``[key]``)
    are skipped; a missing key leaves the line of its parent."""
    if root is None:
        return 1
    node, line = root, root.start_mark.line
    index = 0
    while index < len(loc):
        # A key may itself hold dots (a request path such as ``VanBan.TrichYeu``): try the
        # longest run of the remaining parts as one key first.
        for end in range(len(loc), index, -1):
            key = loc[index] if end == index + 1 else ".".join(map(str, loc[index:end]))
            found = _child(node, key)
            if found is not None:
                line, node = found
                index = end
                break
        else:
            index += 1
    return line + 1


def _child(node: Node, part: str | int) -> tuple[int, Node] | None:
    if isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return item.start_mark.line, item
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and (key.value == str(part) or _scalar(key) == part):
                return key.start_mark.line, value
    return None


def _scalar(node: ScalarNode) -> object:
    """A key as YAML reads it (``1`` for an unquoted ``1:``), to match pydantic's loc."""
    try:
        return SafeConstructor().construct_object(node)
    except yaml.YAMLError:
        return node.value


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
