"""Type-level search: parameters -> one page of matches, sorted by ``_lastUpdated`` then id.

https://hl7.org/fhir/R4/search.html. ``_id`` and ``_lastUpdated`` become SQL (and then so do the
total and the page's ``LIMIT``); the other parameters filter the streamed rows, so memory holds
one page, never the whole type. Pages are
keyset-paged: the ``next`` link carries ``_cursor=<lastUpdated>|<id>`` of the page's last
resource, so a resource updated while a client pages moves behind the cursor and is seen again
rather than skipped, which is what ``_lastUpdated`` polling needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from ehrbridge.sandbox import dates
from ehrbridge.sandbox.outcome import OperationFailed
from ehrbridge.sandbox.params import Resource, lookup, matcher
from ehrbridge.sandbox.store import ResourceStore, Version, format_instant

DEFAULT_COUNT = 20
MAX_COUNT = 1000
#: Parameters that shape the result rather than filter it.
_RESULT = frozenset({"_count", "_sort", "_cursor", "_format", "_pretty", "_total"})
_SQL_BOUNDS = {
    "eq": ((">=", 0), ("<", 1)),
    "gt": ((">=", 1),),
    "sa": ((">=", 1),),
    "ge": ((">=", 0),),
    "lt": (("<", 0),),
    "eb": (("<", 0),),
    "le": (("<", 1),),
}


@dataclass(frozen=True, kw_only=True)
class Query:
    """A parsed search."""

    #: resources per page (0: only the total)
    count: int = DEFAULT_COUNT
    #: SQL bounds on ``lastUpdated``: (operator, instant)
    bounds: tuple[tuple[str, str], ...] = ()
    #: ``_id`` alternatives, or None for any id
    ids: tuple[str, ...] | None = None
    #: predicates every match satisfies
    filters: tuple[Callable[[Resource], bool], ...] = ()
    #: the keyset position to start after
    cursor: tuple[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class Page:
    """One page of a search."""

    #: how many resources match in all
    total: int
    #: this page's resources
    versions: list[Version]
    #: the cursor of the next page, or None on the last
    next_cursor: tuple[str, str] | None


def _int(name: str, value: str) -> int:
    if not value.isdigit():
        raise OperationFailed(400, f"{name} must be a non-negative integer")
    return int(value)


def parse(resource_type: str, pairs: Sequence[tuple[str, str]]) -> Query:
    """Parse search parameters; 400 for an unknown parameter, modifier or malformed value.

    >>> parse("Patient", [("_count", "5"), ("_id", "a,b")]).ids
    ('a', 'b')
    >>> parse("Patient", [("_lastUpdated", "gt2026-01-01")]).bounds
    (('>=', '2026-01-02T00:00:00.000000Z'),)
    """
    count, bounds, filters = DEFAULT_COUNT, [], []
    ids: set[str] | None = None
    cursor = None
    for raw_name, value in pairs:
        name, _, modifier = raw_name.partition(":")
        if name in _RESULT:
            if name == "_count":
                count = min(_int(name, value), MAX_COUNT)
            elif name == "_sort" and value not in ("", "_lastUpdated"):
                raise OperationFailed(400, "the sandbox sorts by _lastUpdated then id only")
            elif name == "_cursor":
                updated, _, last_id = value.partition("|")
                cursor = (updated, last_id)
        elif name == "_id" and not modifier:
            wanted = set(value.split(","))
            ids = wanted if ids is None else ids & wanted
        elif name == "_lastUpdated" and not modifier:
            prefix, (start, end) = dates.parse(value)
            if prefix not in _SQL_BOUNDS:
                raise OperationFailed(400, f"_lastUpdated does not support the prefix {prefix}")
            edges = (format_instant(start), format_instant(end))
            bounds += [(op, edges[i]) for op, i in _SQL_BOUNDS[prefix]]
        else:
            filters.append(matcher(lookup(resource_type, name), modifier, value))
    return Query(
        count=count,
        bounds=tuple(bounds),
        ids=None if ids is None else tuple(sorted(ids)),
        filters=tuple(filters),
        cursor=cursor,
    )


def _matches(
    store: ResourceStore, resource_type: str, query: Query, *, paged: bool
) -> Iterator[Version]:
    if query.ids == ():
        return
    rows = store.scan(
        resource_type,
        where=query.bounds,
        ids=query.ids or (),
        after=query.cursor if paged else None,
        # Without filters SQL stops at the page; with them, rows stream until it is full.
        limit=query.count + 1 if paged and not query.filters else None,
    )
    for version in rows:
        resource = version.resource or {}
        if all(f(resource) for f in query.filters):
            yield version


def _total(store: ResourceStore, resource_type: str, query: Query) -> int:
    if query.ids == ():
        return 0
    if not query.filters:
        return store.count(resource_type, where=query.bounds, ids=query.ids or ())
    return sum(1 for _ in _matches(store, resource_type, query, paged=False))


def run(store: ResourceStore, resource_type: str, query: Query) -> Page:
    """One page of the search, with the total over all pages."""
    total = _total(store, resource_type, query)
    if query.count == 0:
        return Page(total=total, versions=[], next_cursor=None)
    found = list(islice(_matches(store, resource_type, query, paged=True), query.count + 1))
    versions = found[: query.count]
    last = versions[-1] if versions else None
    more = len(found) > query.count and last is not None
    next_cursor = (last.last_updated, last.id) if more and last else None
    return Page(total=total, versions=versions, next_cursor=next_cursor)


def search(store: ResourceStore, resource_type: str, pairs: Sequence[tuple[str, str]]) -> Page:
    """Parse and run a search."""
    return run(store, resource_type, parse(resource_type, pairs))
