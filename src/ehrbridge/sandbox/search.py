"""Type-level search: parameters -> one page of matches, sorted by ``_lastUpdated`` then id.

https://hl7.org/fhir/R4/search.html. ``_id`` and ``_lastUpdated`` become SQL (and then so do the
total and the page's ``LIMIT``); the other parameters filter the streamed rows, so memory holds
one page, never the whole type. Pages are
keyset-paged: the ``next`` link carries ``_cursor=<lastUpdated>|<id>`` of the page's last
resource, so a resource updated while a client pages moves behind the cursor and is seen again
rather than skipped, which is what ``_lastUpdated`` polling needs.

``_sort`` (https://hl7.org/fhir/R4/search.html#sort): ``_lastUpdated`` (the default) and
``-_lastUpdated`` are keyset-paged in SQL as above; any other key list (``_id`` and every search
parameter of the type, each ascending or ``-`` descending; a resource is sorted by its lowest
value ascending, its highest descending, with resources lacking a value last, ties by id) sorts
every match in memory and pages by offset (``_cursor=@<offset>``), so a resource changed while a
client pages may move between pages.

Unknown parameters, modifiers and sort keys are refused with 400 (``Prefer: handling=strict``, the
default); with ``Prefer: handling=lenient`` they are left out and named in :attr:`Query.ignored`,
which the server reports in the Bundle's OperationOutcome entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from ehrbridge.sandbox import dates
from ehrbridge.sandbox.outcome import OperationFailed
from ehrbridge.sandbox.params import Resource, lookup, matcher, search_params, sort_values
from ehrbridge.sandbox.store import ResourceStore, Version, format_instant

DEFAULT_COUNT = 20
MAX_COUNT = 1000
#: Parameters that shape the result rather than filter it (``_format`` is checked by the app).
RESULT_PARAMS = frozenset({"_count", "_sort", "_cursor", "_format", "_pretty", "_total"})
#: Sort keys every type has, beyond its search parameters.
_BASE_SORTS = ("_id", "_lastUpdated")
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
    #: ``_sort`` keys: (name, descending); () is ``_lastUpdated`` ascending
    sort: tuple[tuple[str, bool], ...] = ()
    #: for an in-memory sort, the offset of the page
    offset: int = 0
    #: what a lenient search left out: parameter names, ``name:modifier``, ``_sort=key``
    ignored: tuple[str, ...] = ()
    #: the (name, value) pairs the search used, for its ``self`` link
    used: tuple[tuple[str, str], ...] = ()

    @property
    def keyset(self) -> bool:
        """Whether the search is keyset-paged in SQL (sorted by ``_lastUpdated`` only)."""
        return self.sort in ((), (("_lastUpdated", False),), (("_lastUpdated", True),))

    @property
    def descending(self) -> bool:
        """Whether a keyset search runs newest first (``_sort=-_lastUpdated``)."""
        return self.sort == (("_lastUpdated", True),)


@dataclass(frozen=True, kw_only=True)
class Page:
    """One page of a search."""

    #: how many resources match in all
    total: int
    #: this page's resources
    versions: list[Version]
    #: the cursor of the next page (``_cursor``'s value), or None on the last
    next_cursor: str | None
    #: what the (lenient) search ignored
    ignored: tuple[str, ...] = ()
    #: the (name, value) pairs the search used
    used: tuple[tuple[str, str], ...] = ()


def _int(name: str, value: str) -> int:
    if not value.isdigit():
        raise OperationFailed(400, f"{name} must be a non-negative integer")
    return int(value)


def sort_keys(resource_type: str) -> tuple[str, ...]:
    """The ``_sort`` keys of a type (each also descending with a ``-``).

    >>> sort_keys("Encounter")[:3]
    ('_id', '_lastUpdated', 'code')
    """
    return (*_BASE_SORTS, *search_params(resource_type))


def _sort(
    resource_type: str, value: str, lenient: bool
) -> tuple[list[tuple[str, bool]], list[str]]:
    keys, ignored = [], []
    known = sort_keys(resource_type)
    for raw in (k.strip() for k in value.split(",")):
        name = raw.removeprefix("-")
        if not name:
            continue
        if name not in known:
            if not lenient:
                raise OperationFailed(400, f"unsupported _sort key {name!r} for {resource_type}")
            ignored.append(f"_sort={name}")
            continue
        keys.append((name, raw.startswith("-")))
    return keys, ignored


def _cursor(value: str) -> tuple[tuple[str, str] | None, int]:
    if value.startswith("@"):
        return None, _int("_cursor", value[1:])
    updated, bar, last_id = value.partition("|")
    if not bar:
        raise OperationFailed(400, "_cursor is not a cursor this server gave")
    return (updated, last_id), 0


def parse(resource_type: str, pairs: Sequence[tuple[str, str]], *, lenient: bool = False) -> Query:
    """Parse search parameters; 400 for an unknown parameter, modifier or sort key (left out and
    named in ``ignored`` when ``lenient``) and for a malformed value.

    >>> parse("Patient", [("_count", "5"), ("_id", "a,b")]).ids
    ('a', 'b')
    >>> parse("Patient", [("_lastUpdated", "gt2026-01-01")]).bounds
    (('>=', '2026-01-02T00:00:00.000000Z'),)
    >>> parse("Patient", [("_sort", "-birthdate,family")]).sort
    (('birthdate', True), ('family', False))
    >>> parse("Patient", [("shoe-size", "44"), ("family", "x")], lenient=True).ignored
    ('shoe-size',)
    """
    count, bounds, filters = DEFAULT_COUNT, [], []
    ids: set[str] | None = None
    cursor, offset = None, 0
    sort: list[tuple[str, bool]] = []
    ignored: list[str] = []
    used: list[tuple[str, str]] = []
    for raw_name, value in pairs:
        name, _, modifier = raw_name.partition(":")
        if name in RESULT_PARAMS:
            if modifier:
                raise OperationFailed(400, f"{name} takes no modifier")
            if name == "_count":
                count = min(_int(name, value), MAX_COUNT)
            elif name == "_sort":
                keys, left_out = _sort(resource_type, value, lenient)
                sort += keys
                ignored += left_out
                if keys:
                    value = ",".join(("-" if d else "") + k for k, d in keys)
                else:
                    continue
            elif name == "_cursor":
                cursor, offset = _cursor(value)
                continue
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
            try:
                filters.append(matcher(lookup(resource_type, name), modifier, value))
            except OperationFailed:
                known = name in search_params(resource_type) or name in ("_id", "_lastUpdated")
                if not lenient or (known and not modifier):  # a bad value is never ignored
                    raise
                ignored.append(raw_name)
                continue
        used.append((raw_name, value))
    return Query(
        count=count,
        bounds=tuple(bounds),
        ids=None if ids is None else tuple(sorted(ids)),
        filters=tuple(filters),
        cursor=cursor,
        sort=tuple(sort),
        offset=offset,
        ignored=tuple(ignored),
        used=tuple(used),
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
        descending=query.descending,
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


def _sorted(versions: list[Version], resource_type: str, query: Query) -> list[Version]:
    """``versions`` in ``_sort`` order: stable sorts from the last key to the first, on ids."""
    params = search_params(resource_type)
    ordered = sorted(versions, key=lambda v: v.id)
    for name, descending in reversed(query.sort):

        def values(v: Version, name: str = name) -> list[str]:
            if name == "_id":
                return [v.id]
            if name == "_lastUpdated":
                return [v.last_updated]
            return sort_values(params[name], v.resource or {})

        def key(v: Version, descending: bool = descending) -> tuple[bool, str]:
            found = values(v)
            if not found:  # no value: last, in either direction
                return (not descending, "")
            return (descending, max(found) if descending else min(found))

        ordered.sort(key=key, reverse=descending)
    return ordered


def run(store: ResourceStore, resource_type: str, query: Query) -> Page:
    """One page of the search, with the total over all pages."""
    if not query.keyset:
        every = list(_matches(store, resource_type, query, paged=False))
        ordered = _sorted(every, resource_type, query)
        end = query.offset + query.count
        more = query.count > 0 and end < len(ordered)
        return _page(query, len(ordered), ordered[query.offset : end] if query.count else [],
                     f"@{end}" if more else None)  # fmt: skip
    total = _total(store, resource_type, query)
    if query.count == 0:
        return _page(query, total, [], None)
    found = list(islice(_matches(store, resource_type, query, paged=True), query.count + 1))
    versions = found[: query.count]
    last = versions[-1] if versions else None
    more = len(found) > query.count and last is not None
    return _page(
        query, total, versions, f"{last.last_updated}|{last.id}" if more and last else None
    )


def _page(query: Query, total: int, versions: list[Version], cursor: str | None) -> Page:
    return Page(
        total=total, versions=versions, next_cursor=cursor, ignored=query.ignored, used=query.used
    )


def search(
    store: ResourceStore,
    resource_type: str,
    pairs: Sequence[tuple[str, str]],
    *,
    lenient: bool = False,
) -> Page:
    """Parse and run a search."""
    return run(store, resource_type, parse(resource_type, pairs, lenient=lenient))
