"""What a ``kind: rest`` data source says: resources, paging, incremental reads, field mappings.

Everything here is plain frozen data (JMESPath expressions and patterns are kept as text and
compiled where used), so two loads of one file compare equal and the runner does not restart
unchanged poll tasks. :mod:`ehrbridge.connectors.rest.checks` builds these from the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

PagingStyle = Literal["none", "page", "offset", "cursor", "link", "next_url"]
PAGING_STYLES: tuple[PagingStyle, ...] = ("none", "page", "offset", "cursor", "link", "next_url")
CursorFormat = Literal["iso", "date", "epoch", "epoch_ms"]
#: how a reference field finds the entity it points to
LinkBy = Literal["record", "mrn", "phone", "email", "identifier"]
LINK_BY: tuple[LinkBy, ...] = ("record", "mrn", "phone", "email", "identifier")
#: transforms that take no argument (``transform: lower``)
SIMPLE_TRANSFORMS = frozenset(
    {
        "strip",
        "lower",
        "upper",
        "string",
        "number",
        "integer",
        "boolean",
        "list",
        "date",
        "datetime",
        "phone",
    }
)
#: transforms with an argument (``transform: {map: {...}}``)
ARGUMENT_TRANSFORMS = frozenset(
    {"map", "keywords", "date", "datetime", "phone", "name", "join", "split", "prefix"}
)


@dataclass(frozen=True, kw_only=True)
class Transform:
    """One step of a field's transform chain."""

    #: ``datetime``, ``map``, ``keywords``, ``name``, ...
    name: str
    #: code maps: source value (compared folded: case and spaces ignored) -> canonical value
    table: tuple[tuple[str, Any], ...] = ()
    #: ``keywords``: canonical value -> patterns, first match wins
    patterns: tuple[tuple[Any, tuple[str, ...]], ...] = ()
    #: ``map``/``keywords``: the value when nothing matches (``has_default`` says if given)
    default: Any = None
    has_default: bool = False
    #: ``datetime``/``date``: a strptime format tried first, day-first reading, time zone
    format: str | None = None
    dayfirst: bool | None = None
    timezone: str | None = None
    #: ``phone``: the region numbers are dialled from; ``name``: ``given`` or ``family``;
    #: ``join``/``split``: the separator; ``prefix``: the text put in front
    arg: str | None = None


@dataclass(frozen=True, kw_only=True)
class Link:
    """How a reference field finds its entity: by the source's own record, or an identity key."""

    #: the entity type pointed to, e.g. ``Patient``
    type: str
    by: LinkBy = "record"


@dataclass(frozen=True, kw_only=True)
class FieldMap:
    """One canonical field and where its value comes from."""

    #: the canonical field path, e.g. ``start`` or ``name.family`` (docs/entities.md)
    name: str
    #: JMESPath into the record; None when the field is a constant
    path: str | None = None
    #: a constant value (``value:``), used instead of ``path``
    value: Any = None
    #: used when the path finds nothing (``default:``)
    default: Any = None
    transforms: tuple[Transform, ...] = ()
    #: a record without this field is refused (and, for links, one whose entity is not found)
    required: bool = False
    link: Link | None = None


@dataclass(frozen=True, kw_only=True)
class Paging:
    """How the pages of a resource are walked."""

    style: PagingStyle = "none"
    #: page number / offset / cursor query parameter
    param: str | None = None
    #: query parameter carrying the page size, and the size asked for
    size_param: str | None = None
    size: int = 100
    #: ``page``: the number of the first page
    start: int = 1
    #: ``cursor``/``next_url``: JMESPath into the body for the next cursor or URL
    next: str | None = None
    #: a poll reading more pages than this fails (a server that never stops)
    max_pages: int = 1000


@dataclass(frozen=True, kw_only=True)
class Incremental:
    """Ask only for records changed since the stored cursor."""

    #: the query parameter carrying ``cursor - overlap``
    param: str
    #: JMESPath to the record's last-changed time; the cursor becomes the newest stored
    field: str
    #: how the parameter is written
    format: CursorFormat = "iso"


@dataclass(frozen=True, kw_only=True)
class RestResource:
    """One endpoint of a REST data source, mapped to one canonical entity type."""

    type: str
    path: str
    #: JMESPath to the record list in a page body (``@`` when the body is the list)
    records: str = "@"
    #: JMESPath to a record's id at the source
    id: str = "id"
    #: JMESPath to a record's version or ETag (with the id, a dedup token)
    version: str | None = None
    #: constant query parameters
    params: tuple[tuple[str, str], ...] = ()
    paging: Paging = field(default_factory=Paging)
    incremental: Incremental | None = None
    fields: tuple[FieldMap, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RestSettings:
    """Source-wide defaults of a REST data source."""

    #: the time zone of date-times without an offset
    timezone: str = "UTC"
    #: read ``03/04/2026`` as 3 April
    dayfirst: bool = False
    #: the region phone numbers without a country code are dialled from
    phone_region: str = "US"
    #: extra request headers (not secrets: those go in ``auth``)
    headers: tuple[tuple[str, str], ...] = ()
    #: per-request timeout
    timeout: timedelta = timedelta(seconds=30)


def fold_key(text: str) -> str:
    """How ``map`` keys and values are compared: case and runs of spaces ignored.

    >>> fold_key("  Follow  Up ")
    'follow up'
    """
    return " ".join(text.casefold().split())
