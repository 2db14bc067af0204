"""The generated references are current: docs/configuration.md and mappings/deployment.schema.json
are what the mapping's models say today, and the docs link only to files in the repository."""

from __future__ import annotations

import re
from pathlib import Path

from paht_bridge.config import reference
from paht_bridge.config.validate import write_json_schema

REPO = Path(__file__).resolve().parents[2]


def test_the_configuration_reference_is_what_the_models_say() -> None:
    committed = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == reference.render(), (
        "docs/configuration.md is stale: regenerate it with `.venv/bin/python -m paht_bridge.config.reference`")


def test_the_editors_json_schema_is_what_the_models_say(tmp_path: Path) -> None:
    fresh = write_json_schema(tmp_path / "deployment.schema.json").read_text(encoding="utf-8")
    committed = (REPO / "mappings" / "deployment.schema.json").read_text(encoding="utf-8")
    assert committed == fresh, (
        "mappings/deployment.schema.json is stale: regenerate it with "
        "`.venv/bin/paht validate --schema mappings/deployment.schema.json`")


def test_every_mapping_field_has_a_description() -> None:
    missing = [f"{model.__name__}.{name}" for model in reference.models()
               for name, field in model.model_fields.items() if not field.description]
    assert not missing, f"fields without a description (a docstring under the field): {', '.join(missing)}"


def test_the_docs_link_only_to_files_in_the_repository() -> None:
    pages = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists() or REPO.resolve() not in path.parents:
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, "links to files that are not in the repository: " + "; ".join(broken)
