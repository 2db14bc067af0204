"""Presets: a known kind of document system (edXML-style SOAP, TDOffice-style REST) written
down once, so a deployment's target says ``preset: edxml_soap`` instead of copying it.

A preset is a YAML file holding part of a target: ``kind``, the ``soap:`` or ``rest:``
section, the ``statuses`` table and any other target default (``max_tries``...). A target
that names a preset may give any top-level target key itself, and the deployment's key
replaces the preset's whole: the merge is shallow, so a deployment's ``soap:`` replaces the
preset's entire ``soap:`` section and its ``statuses:`` the entire table. ``name`` and
``connection_id`` belong to the deployment only.

A preset is looked up in the ``presets/`` folder beside the deployment file first, then among
the shipped presets (``folders.presets_folder()``), so a province can keep its own variant of
a shipped preset under the same name. A relative WSDL path is read from the folder of the
YAML file that names it: the preset's for a preset's ``soap:`` section, the deployment's for
its own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from paht_bridge.config.folders import presets_folder

PRESET_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Keys that say which system and which connection: a deployment's own, never a preset's.
DEPLOYMENT_ONLY = ("name", "connection_id", "preset")


class PresetProblem(ValueError):
    """A target's preset is unknown, unreadable, or holds keys only a deployment may hold."""


def preset_folders(folder: str | Path | None) -> list[Path]:
    """Where presets are looked for, in order: ``<folder>/presets``, then the shipped ones."""
    folders = [Path(folder) / "presets"] if folder is not None else []
    shipped = presets_folder()
    return folders + ([shipped] if all(f.resolve() != shipped.resolve() for f in folders) else [])


def available_presets(folder: str | Path | None = None) -> list[str]:
    return sorted({path.stem for f in preset_folders(folder) if f.is_dir() for path in f.glob("*.yaml")})


def find_preset(name: str, folder: str | Path | None = None) -> Path:
    """The file of preset ``name`` (raises ``PresetProblem`` naming the presets there are)."""
    if PRESET_NAME.match(name):
        for candidate in preset_folders(folder):
            path = candidate / f"{name}.yaml"
            if path.is_file():
                return path
    known = ", ".join(available_presets(folder)) or "none"
    raise PresetProblem(f"unknown preset {name!r} (available: {known})")


def read_preset(path: Path) -> dict[str, Any]:
    """A preset's target keys, with a relative WSDL path made absolute from the preset's folder."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PresetProblem(f"preset file {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise PresetProblem(f"preset file {path} must hold a mapping of target keys")
    misplaced = [key for key in DEPLOYMENT_ONLY if key in data]
    if misplaced:
        raise PresetProblem(f"preset file {path}: {', '.join(misplaced)} belong(s) in the deployment, not in a preset")
    return with_absolute_wsdl(data, path.parent)


def with_absolute_wsdl(target: dict[str, Any], folder: str | Path | None) -> dict[str, Any]:
    """``target`` with its ``soap.wsdl``, when relative, read from ``folder`` (unchanged without one)."""
    soap = target.get("soap")
    if folder is None or not isinstance(soap, dict) or not isinstance(soap.get("wsdl"), str):
        return target
    wsdl = Path(soap["wsdl"]).expanduser()
    if wsdl.is_absolute():
        return target
    return {**target, "soap": {**soap, "wsdl": str((Path(folder) / wsdl).resolve())}}


def with_preset(target: dict[str, Any], folder: str | Path | None) -> dict[str, Any]:
    """A target as written in the deployment at ``folder``, its preset's keys under its own."""
    own = with_absolute_wsdl(target, folder)
    name = own.get("preset")
    if name is None:
        return own
    if not isinstance(name, str):
        raise PresetProblem(f"a preset is named by text, not {type(name).__name__}")
    return {**read_preset(find_preset(name, folder)), **own}


def from_preset(target: dict[str, Any], key: str) -> bool:
    """Whether a target's ``key`` (as written in its deployment) comes from its preset."""
    return isinstance(target.get("preset"), str) and key not in target
