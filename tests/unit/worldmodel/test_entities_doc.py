"""docs/entities.md and ENTITY_TYPES describe the same fields, so neither can drift."""

from __future__ import annotations

import re

import pytest

from ehrbridge.worldmodel.entities import ENTITY_TYPES, EntityTypeSpec
from tests.paths import DOCS

DOC = DOCS / "entities.md"
_ROW = re.compile(r"^\| `(?P<path>[^`]+)` \| (?P<type>[^|]+?) \|")
_FHIR = re.compile(r"^FHIR R4: \*\*(?P<fhir>.+)\*\*$")


def _sections() -> dict[str, list[str]]:
    """The lines of each ``## <heading>`` section of the doc."""
    sections: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            lines = sections.setdefault(line[3:].strip(), [])
        else:
            lines.append(line)
    return sections


def _rows(lines: list[str]) -> dict[str, str]:
    """``{path: type column}`` of the field table rows in ``lines``."""
    rows: dict[str, str] = {}
    for line in lines:
        if m := _ROW.match(line):
            assert m["path"] not in rows, f"{m['path']} documented twice"
            rows[m["path"]] = m["type"].strip()
    return rows


def _type_column(spec: EntityTypeSpec, path: str) -> str:
    field = spec.field(path)
    assert field is not None
    return field.kind + (" → " + ", ".join(field.targets) if field.targets else "")


def test_every_entity_type_has_a_section() -> None:
    sections = _sections()
    assert set(ENTITY_TYPES) <= set(sections)


def test_no_section_documents_an_unknown_entity_type() -> None:
    for heading, lines in _sections().items():
        if _rows(lines):
            assert heading in ENTITY_TYPES, f"docs/entities.md documents unknown type {heading}"


@pytest.mark.parametrize("name", sorted(ENTITY_TYPES))
def test_doc_table_lists_exactly_the_registry_fields(name: str) -> None:
    spec = ENTITY_TYPES[name]
    rows = _rows(_sections()[name])
    documented = set(rows)
    registered = {field.path for field in spec.fields}
    assert registered - documented == set(), "fields missing from docs/entities.md"
    assert documented - registered == set(), "fields in docs/entities.md but not in ENTITY_TYPES"


@pytest.mark.parametrize("name", sorted(ENTITY_TYPES))
def test_doc_table_gives_each_field_its_registry_type(name: str) -> None:
    spec = ENTITY_TYPES[name]
    rows = _rows(_sections()[name])
    for path, type_column in rows.items():
        assert type_column == _type_column(spec, path), f"{name}.{path}"


@pytest.mark.parametrize("name", sorted(ENTITY_TYPES))
def test_doc_names_the_fhir_resource(name: str) -> None:
    fhir = [m["fhir"] for line in _sections()[name] if (m := _FHIR.match(line))]
    assert fhir == [ENTITY_TYPES[name].fhir]


@pytest.mark.parametrize("name", sorted(ENTITY_TYPES))
def test_doc_lists_the_allowed_codes(name: str) -> None:
    lines = _sections()[name]
    for field in ENTITY_TYPES[name].fields:
        if field.codes:
            (row,) = [line for line in lines if line.startswith(f"| `{field.path}` |")]
            for code in field.codes:
                assert f"`{code}`" in row, f"{name}.{field.path}: code {code} not documented"
