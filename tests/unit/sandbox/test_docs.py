"""docs/sandbox.md names exactly the search parameters the sandbox serves: every one the server's
table holds is in the document's list, and the list names none the server does not know."""

from __future__ import annotations

import re

from ehrbridge.sandbox.params import PARAMS, TYPES, search_params
from tests.paths import DOCS

DOC = DOCS / "sandbox.md"


def documented_parameters() -> set[str]:
    """The backticked names of the "Search parameters" item (its modifiers and the
    ``Prefer`` values left out)."""
    text = DOC.read_text(encoding="utf-8")
    item = text[text.index("- **Search parameters**") :]
    item = item[: item.index("Modifiers:")]
    return set(re.findall(r"`([a-z_][a-zA-Z-]*)`", item))


def test_the_documented_search_parameters_are_the_servers() -> None:
    served = {name for resource_type in TYPES for name in search_params(resource_type)}
    served |= {"_id", "_lastUpdated"}
    assert documented_parameters() == served


def test_every_type_with_parameters_of_its_own_is_named_in_the_document() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert all(resource_type in text for resource_type in PARAMS)
