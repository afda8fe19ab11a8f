"""References to the design point at sections of ``docs/design.md`` that exist.

The code cites the design by section (``docs/design.md §5.3``). A reference without the path
(``DESIGN §5``, the old form that named a file outside the repository) or to a section number the
document does not have fails here, so a renumbered or removed section cannot leave stale pointers.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "design.md"
SCANNED = ("src", "tests", "bench", "docs")
SUFFIXES = {".py", ".md", ".sql", ".yaml", ".yml", ".toml", ".txt"}

_HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.MULTILINE)
#: ``docs/design.md §5.3``, ``§10-11`` or with an en dash (the first number is checked), and further
#: sections after commas: ``docs/design.md §4, §5.5``.
_REFERENCE = re.compile(r"design\.md §(\d+(?:\.\d+)?)((?:[-\u2013]\d+)?(?:, §\d+(?:\.\d+)?)*)")
_MORE = re.compile(r"§(\d+(?:\.\d+)?)")
_BARE = re.compile(r"DESIGN §|shared/DESIGN|design brief")


def sections() -> set[str]:
    """The section numbers ``docs/design.md`` has (``"5"``, ``"5.3"``, ...)."""
    return set(_HEADING.findall(DESIGN.read_text(encoding="utf-8")))


def scanned_files() -> list[Path]:
    """The text files of the scanned folders, this test excepted (it names the old forms)."""
    here = Path(__file__).resolve()
    return sorted(
        path
        for folder in SCANNED
        for path in (ROOT / folder).rglob("*")
        if path.suffix in SUFFIXES
        and path.is_file()
        and path.resolve() != here
        and ".venv" not in path.parts
    )


def references(text: str) -> list[str]:
    """The section numbers ``text`` cites in ``docs/design.md``.

    >>> references("see docs/design.md §5.3 and (docs/design.md §4, §5.5) or §10-11")
    ['5.3', '4', '5.5']
    >>> references("[docs/design.md §8-9](design.md#8-review)")
    ['8']
    """
    found: list[str] = []
    for match in _REFERENCE.finditer(text):
        found.append(match.group(1))
        found.extend(_MORE.findall(match.group(2)))
    return found


def test_the_design_has_the_numbered_sections_the_code_relies_on() -> None:
    have = sections()
    expected = {str(n) for n in range(1, 14)} | {f"5.{n}" for n in range(1, 8)}
    assert expected <= have


def test_no_reference_to_the_design_outside_the_repository() -> None:
    stale = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in [*scanned_files(), ROOT / "README.md"]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _BARE.search(line)
    ]
    assert stale == []


def test_every_reference_names_a_section_that_exists() -> None:
    have = sections()
    missing = [
        f"{path.relative_to(ROOT)}: §{section}"
        for path in [*scanned_files(), ROOT / "README.md"]
        for section in references(path.read_text(encoding="utf-8"))
        if section not in have
    ]
    assert missing == []


def test_the_design_cites_only_its_own_sections() -> None:
    have = sections()
    text = DESIGN.read_text(encoding="utf-8")
    assert sorted(set(_MORE.findall(text)) - have) == []


def test_references_are_found() -> None:
    # Guards the scan itself: if the pattern stopped matching, the test above would pass vacuously.
    cited = {
        section
        for path in scanned_files()
        for section in references(path.read_text(encoding="utf-8"))
    }
    assert {"4", "5.3", "5.5", "10", "11"} <= cited
