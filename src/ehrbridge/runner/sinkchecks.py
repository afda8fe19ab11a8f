"""What the checks of a data source's ``outbound:`` section share (:mod:`.sinkconfig`,
:mod:`.sinkwrites`): the config checker's interface, mappings whose unknown keys are named with
the nearest known one, and the entity-type hints."""

from __future__ import annotations

import difflib
import re
from typing import Any, Protocol

from ehrbridge.connectors.rest.checks import Checks
from ehrbridge.connectors.schedule import BusinessHours
from ehrbridge.worldmodel.entities import ENTITY_TYPES

#: an entity type's name, e.g. ``Patient``
ENTITY_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")


class SinkChecks(Checks, Protocol):
    """What the outbound checks need of the config checker beyond :class:`Checks`."""

    #: the problems recorded so far (a check compares counts to see whether it added any)
    problems: list[str]

    def number(self, value: Any, path: str, least: int, most: int) -> int | None:
        """A whole number from ``least`` to ``most``, or None (problem recorded)."""

    def hours(self, value: Any, path: str) -> BusinessHours | None:
        """Business hours, as a source's ``business_hours:``, or None (problem recorded)."""


def count(c: SinkChecks) -> int:
    """How many problems are recorded so far."""
    return len(c.problems)


def mapping(
    c: SinkChecks, value: Any, path: str, required: set[str], optional: set[str]
) -> dict[str, Any] | None:
    """``value`` as a mapping of known keys; an unknown key is named with the nearest known."""
    if not isinstance(value, dict):
        c.fail(path, "expected a mapping")
        return None
    known = sorted(required | optional)
    for key in value:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1) if len(str(key)) <= 64 else []
            hint = f"; did you mean {near[0]}?" if near else ""
            c.fail(f"{path}.{key}", f"unknown key {key!r}{hint}")
    for key in sorted(required - value.keys()):
        c.fail(path, f"missing key {key!r}")
    return value


def flag(c: SinkChecks, raw: dict[str, Any], key: str, path: str) -> bool:
    """``raw[key]`` as true or false (false when absent or wrong; the problem recorded)."""
    value = raw.get(key, False)
    if not isinstance(value, bool):
        c.fail(f"{path}.{key}", "expected true or false")
        return False
    return value


def near_type(name: str) -> str | None:
    """The first-class entity type ``name`` is a near miss of, if any (a likely typo)."""
    near = difflib.get_close_matches(name, sorted(ENTITY_TYPES), n=1, cutoff=0.8)
    return near[0] if near else None


def not_first_class(name: str, what: str) -> str:
    """The problem with a type that is not first-class, with the nearest one."""
    near = difflib.get_close_matches(name, sorted(ENTITY_TYPES), n=1)
    hint = f"did you mean {near[0]}? " if near else ""
    return f"not a first-class entity type ({hint}{what} {', '.join(sorted(ENTITY_TYPES))})"
