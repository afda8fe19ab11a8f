"""Reading FHIR JSON with type checks, and collecting entity fields that are checked as they come.

:class:`Element` wraps one JSON object of a resource together with its FHIRPath-like path
(``Patient.telecom[1]``); its getters check FHIR's primitive types (https://hl7.org/fhir/R4/datatypes.html)
and raise :class:`~ehrbridge.errors.MappingError` naming the element, never its value.
:class:`Fields` collects the flat entity data and runs
:func:`~ehrbridge.worldmodel.entities.validate_fields` on each field as it is set, so a refusal also
names the FHIR element it came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any, NoReturn

from ehrbridge.errors import MappingError
from ehrbridge.worldmodel.entities import spec_for, validate_fields

# FHIR primitive formats, used with fullmatch. ASCII only, like the entity patterns.
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?", re.ASCII)
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", re.ASCII)
_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?", re.ASCII)
#: FHIR's ``id`` type: https://hl7.org/fhir/R4/datatypes.html#id
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}", re.ASCII)


def fail(path: str, problem: str) -> NoReturn:
    """Raise :class:`MappingError` for ``path``."""
    raise MappingError(path, problem)


def is_partial_date(value: str) -> bool:
    """Whether ``value`` is a FHIR ``date`` (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``) that exists.

    >>> is_partial_date("2019"), is_partial_date("2019-02-30"), is_partial_date("2019-13")
    (True, False, False)
    """
    if not _DATE.fullmatch(value):
        return False
    if len(value) == 10:
        try:
            date.fromisoformat(value)
        except ValueError:
            return False
    return len(value) != 7 or 1 <= int(value[5:]) <= 12


def _is_datetime(value: str) -> bool:
    if not _DATETIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class Element:
    """One JSON object inside a resource, with its path for error messages."""

    def __init__(self, obj: Mapping[str, Any], path: str) -> None:
        self.obj = obj
        #: FHIRPath-like location, e.g. ``Appointment.participant[0].actor``
        self.path = path

    def at(self, key: str) -> str:
        """The path of ``key`` inside this element."""
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        """Whether ``key`` is present (and not null)."""
        return self.obj.get(key) is not None

    def require(self, *keys: str) -> None:
        """Raise unless at least one of ``keys`` is present (``medication[x]`` takes several)."""
        if not any(self.has(k) for k in keys):
            fail(self.at(keys[0] if len(keys) == 1 else "|".join(keys)), "required but missing")

    def string(self, key: str, *, required: bool = False) -> str | None:
        """A ``string``/``code``/``uri``/``markdown`` element: a string with some non-blank text."""
        value = self.obj.get(key)
        if value is None:
            if required:
                fail(self.at(key), "required but missing")
            return None
        if not isinstance(value, str):
            fail(self.at(key), "expected a string")
        if not value.strip():
            fail(self.at(key), "empty string")
        return value

    def strings(self, key: str) -> list[str]:
        """A repeating string element (``HumanName.given``)."""
        values = self.obj.get(key)
        if values is None:
            return []
        if not isinstance(values, list):
            fail(self.at(key), "expected a list")
        for i, value in enumerate(values):
            if not isinstance(value, str) or not value.strip():
                fail(f"{self.at(key)}[{i}]", "expected a non-empty string")
        return list(values)

    def boolean(self, key: str) -> bool | None:
        """A ``boolean`` element."""
        value = self.obj.get(key)
        if value is not None and not isinstance(value, bool):
            fail(self.at(key), "expected true or false")
        return value

    def decimal(self, key: str) -> int | float | None:
        """A ``decimal`` element: a JSON number (not a string, not a boolean)."""
        value = self.obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(self.at(key), "expected a number")
        if not math.isfinite(value):
            fail(self.at(key), "expected a finite number")
        return value

    def integer(self, key: str, *, minimum: int | None = None) -> int | None:
        """An ``integer``/``positiveInt``/``unsignedInt`` element."""
        value = self.obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            fail(self.at(key), "expected an integer")
        if minimum is not None and value < minimum:
            fail(self.at(key), f"expected an integer of at least {minimum}")
        return value

    def date(self, key: str) -> str | None:
        """A ``date`` element: ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``."""
        value = self.string(key)
        if value is not None and not is_partial_date(value):
            fail(self.at(key), "expected a date YYYY-MM-DD (or YYYY, YYYY-MM)")
        return value

    def datetime(self, key: str) -> str | None:
        """A ``dateTime`` element: a partial date, or a date-time with seconds and an offset."""
        value = self.string(key)
        if value is not None and not (is_partial_date(value) or _is_datetime(value)):
            fail(self.at(key), "expected a FHIR dateTime (a date, or a time with an offset)")
        return value

    def instant(self, key: str) -> str | None:
        """An ``instant`` element: a date-time with seconds and an offset."""
        value = self.string(key)
        if value is not None and not _is_datetime(value):
            fail(self.at(key), "expected a FHIR instant (date-time with seconds and an offset)")
        return value

    def time(self, key: str) -> str | None:
        """A ``time`` element: ``hh:mm:ss``."""
        value = self.string(key)
        if value is not None and not _TIME.fullmatch(value):
            fail(self.at(key), "expected a time hh:mm:ss")
        return value

    def child(self, key: str, *, required: bool = False) -> Element | None:
        """A complex (object) element."""
        value = self.obj.get(key)
        if value is None:
            if required:
                fail(self.at(key), "required but missing")
            return None
        if not isinstance(value, Mapping):
            fail(self.at(key), "expected an object")
        return Element(value, self.at(key))

    def children(self, key: str, *, required: bool = False) -> list[Element]:
        """A repeating complex element; each item's path carries its index."""
        values = self.obj.get(key)
        if values is None or values == []:
            if required:
                fail(self.at(key), "required but missing")
            return []
        if not isinstance(values, list):
            fail(self.at(key), "expected a list")
        items = []
        for i, value in enumerate(values):
            if not isinstance(value, Mapping):
                fail(f"{self.at(key)}[{i}]", "expected an object")
            items.append(Element(value, f"{self.at(key)}[{i}]"))
        return items

    def first(self, key: str) -> Element | None:
        """The first item of a repeating complex element, or None."""
        items = self.children(key)
        return items[0] if items else None


class Fields:
    """The flat data of one entity, built field by field; each field is checked when set."""

    def __init__(self, entity_type: str) -> None:
        self.entity_type = entity_type
        self.data: dict[str, Any] = {}
        self._spec = spec_for(entity_type)

    def set(self, path: str, value: Any, *, source: str) -> None:
        """Set ``path`` to ``value`` (skipped when None or an empty list of optional items).

        ``source`` is the FHIR element the value came from; a value the entity type refuses raises
        :class:`MappingError` naming it. Reference fields hold FHIR reference strings here
        (``urn:uuid:…``, ``Patient/1``), which the importer translates, so they are only checked for
        being strings.
        """
        if value is None:
            return
        field = self._spec.field(path) if self._spec is not None else None
        if field is not None and field.kind in ("reference", "reference_list"):
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(i, str) and i.strip() for i in items):
                fail(source, "expected a reference string")
        else:
            try:
                validate_fields(self.entity_type, {path: value})
            except ValueError as exc:
                fail(source, str(exc).partition(": ")[2])
        self.data[path] = value

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)


def check_entity_data(entity_type: str, data: Mapping[str, Any]) -> None:
    """Check entity data before writing FHIR: :func:`validate_fields`, references as strings.

    Raises :class:`MappingError` with the path ``<EntityType>.<field>``.
    """
    spec = spec_for(entity_type)
    plain: dict[str, Any] = {}
    for path, value in data.items():
        field = spec.field(path) if spec is not None and isinstance(path, str) else None
        if (
            field is not None
            and field.kind in ("reference", "reference_list")
            and value is not None
        ):
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(i, str) and i.strip() for i in items):
                fail(f"{entity_type}.{path}", "expected a FHIR reference string")
        else:
            plain[path] = value
    try:
        validate_fields(entity_type, plain)
    except ValueError as exc:
        where, _, problem = str(exc).partition(": ")
        fail(where, problem)
