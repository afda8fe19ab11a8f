"""FHIR search parameters, built immutably (https://hl7.org/fhir/R4/search.html).

Every method returns a new :class:`SearchParams`, so a base query can be shared and refined.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias


@dataclass(frozen=True)
class SearchParams:
    """Search parameters as ordered (name, value) pairs; a name may repeat (AND).

    >>> base = SearchParams().where(family="Santos").count(50)
    >>> base.where(birthdate="ge1980").sort("-_lastUpdated").pairs
    (('family', 'Santos'), ('_count', '50'), ('birthdate', 'ge1980'), ('_sort', '-_lastUpdated'))
    >>> base.pairs
    (('family', 'Santos'), ('_count', '50'))
    """

    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, params: SearchInput = None) -> SearchParams:
        """Builds from a mapping (a list value repeats the name) or pairs.

        >>> SearchParams.of({"date": ["ge2020", "lt2021"], "_count": "10"}).pairs
        (('date', 'ge2020'), ('date', 'lt2021'), ('_count', '10'))
        """
        if params is None:
            return cls()
        if isinstance(params, SearchParams):
            return params
        if isinstance(params, Mapping):
            pairs: list[tuple[str, str]] = []
            for name, value in params.items():
                values = [value] if isinstance(value, str) else list(value)
                pairs.extend((name, v) for v in values)
            return cls(tuple(pairs))
        return cls(tuple((str(n), str(v)) for n, v in params))

    def add(self, name: str, value: str) -> SearchParams:
        """One more parameter."""
        return SearchParams((*self.pairs, (name, value)))

    def where(self, **criteria: str) -> SearchParams:
        """More parameters by keyword; write modifiers as ``add("name:exact", ...)``."""
        return SearchParams((*self.pairs, *criteria.items()))

    def _replace(self, name: str, value: str) -> SearchParams:
        return SearchParams((*((n, v) for n, v in self.pairs if n != name), (name, value)))

    def count(self, page_size: int) -> SearchParams:
        """``_count``: results per page (replaces any earlier value)."""
        return self._replace("_count", str(page_size))

    def sort(self, *keys: str) -> SearchParams:
        """``_sort``: e.g. ``sort("-_lastUpdated", "family")``."""
        return self._replace("_sort", ",".join(keys))

    def updated_since(self, when: datetime) -> SearchParams:
        """``_lastUpdated=gt<when>``: resources changed after ``when`` (timezone-aware).

        >>> from datetime import UTC
        >>> SearchParams().updated_since(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)).pairs
        (('_lastUpdated', 'gt2026-01-02T03:04:05+00:00'),)
        """
        if when.tzinfo is None:
            raise ValueError("updated_since needs a timezone-aware datetime")
        return self._replace("_lastUpdated", f"gt{when.isoformat()}")


#: What the client's search methods accept: a builder, a mapping, or (name, value) pairs.
SearchInput: TypeAlias = (
    SearchParams | Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]] | None
)
