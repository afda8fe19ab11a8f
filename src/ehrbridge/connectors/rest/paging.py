"""Walking the pages of a REST resource: page numbers, offset/limit, a cursor from the body,
the ``Link`` header's ``rel=next`` (https://www.rfc-editor.org/rfc/rfc8288), or a next URL in the
body.

Every style stops at an empty page. A next link to another host, a next link or cursor seen
before, a page identical to the one before (a server ignoring the page parameter) and more than
``max_pages`` pages are errors, so a misbehaving server cannot keep a poll going forever or get
our credentials sent elsewhere.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jmespath
import orjson
from jmespath.parser import ParsedResult

from ehrbridge.connectors.rest.client import RestClient
from ehrbridge.connectors.rest.spec import RestResource
from ehrbridge.errors import RestProtocolError


@functools.lru_cache(maxsize=1024)
def compiled(expression: str) -> ParsedResult:
    """A JMESPath expression compiled once (the config checker has validated it)."""
    return jmespath.compile(expression)


def search(expression: str, document: Any) -> Any:
    """``expression`` applied to ``document``.

    >>> search("data.items[0].id", {"data": {"items": [{"id": 7}]}})
    7
    """
    return compiled(expression).search(document)


@dataclass(frozen=True, kw_only=True)
class Page:
    """One page read: its number (from 1) and its records."""

    number: int
    records: list[Any]


async def pages(
    client: RestClient, resource: RestResource, params: Sequence[tuple[str, str]] = ()
) -> AsyncIterator[Page]:
    """The pages of ``resource``, with ``params`` (constant and incremental) on the first request
    and on every numbered, offset or cursor request after it."""
    paging = resource.paging
    base = [*resource.params, *params]
    if paging.size_param:
        base.append((paging.size_param, str(paging.size)))
    url: httpx.URL | None = client.url(resource.path)
    query: list[tuple[str, str]] = list(base)
    if paging.style == "page":
        query.append((str(paging.param), str(paging.start)))
    elif paging.style == "offset":
        query.append((str(paging.param), "0"))
    seen_urls: set[str] = set()
    seen_cursors: set[str] = set()
    offset, previous = 0, None
    number = 0
    while url is not None:
        number += 1
        if number > paging.max_pages:
            raise RestProtocolError(
                f"more than {paging.max_pages} pages; raise pagination.max_pages if that is right",
                operation=f"GET {url.path}",
            )
        response = await client.get(url, query)
        operation = f"GET {response.url.path}"
        seen_urls.add(str(response.url))
        records = search(resource.records, response.body)
        if records is None:
            records = []
        if not isinstance(records, list):
            raise RestProtocolError(
                f"records ({resource.records}) is {_kind(records)}, not a list",
                operation=operation,
            )
        if not records:
            return
        fingerprint = orjson.dumps(records, option=orjson.OPT_SORT_KEYS)
        if fingerprint == previous:
            raise RestProtocolError(
                f"page {number} repeats page {number - 1}: does the source ignore "
                f"the {paging.param or 'paging'} parameter?",
                operation=operation,
            )
        previous = fingerprint
        yield Page(number=number, records=records)
        if paging.style == "none":
            return
        if paging.style == "page":
            query = [*base, (str(paging.param), str(paging.start + number))]
        elif paging.style == "offset":
            offset += len(records)
            query = [*base, (str(paging.param), str(offset))]
        elif paging.style == "cursor":
            token = search(str(paging.next), response.body)
            if token is None or token == "":
                return
            token = str(token)
            if token in seen_cursors:
                raise RestProtocolError("the next cursor was seen before", operation=operation)
            seen_cursors.add(token)
            query = [*base, (str(paging.param), token)]
        else:
            target = (
                _link_next(response.headers)
                if paging.style == "link"
                else search(str(paging.next), response.body)
            )
            if target is None or target == "":
                return
            if not isinstance(target, str):
                raise RestProtocolError("the next URL is not a string", operation=operation)
            url = response.url.join(target)
            query = []
            if not client.same_origin(url):
                raise RestProtocolError(
                    "the next link points to another server", operation=operation
                )
            if str(url) in seen_urls:
                raise RestProtocolError(
                    "the next link points to a page already read", operation=operation
                )


def _link_next(headers: httpx.Headers) -> str | None:
    """The ``rel=next`` target of the ``Link`` headers.

    >>> _link_next(httpx.Headers({"Link": '</a?page=2>; rel="next", </a?page=9>; rel="last"'}))
    '/a?page=2'
    """
    for value in headers.get_list("link"):
        for part in _split_links(value):
            target, _, rest = part.partition(">")
            params = {
                k.strip().lower(): v.strip().strip('"').lower()
                for k, _, v in (p.partition("=") for p in rest.split(";") if "=" in p)
            }
            if "next" in params.get("rel", "").split():
                return target.strip().lstrip("<")
    return None


def _split_links(value: str) -> list[str]:
    """The comma-separated links of one ``Link`` header (commas inside ``<...>`` kept)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in value:
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__
