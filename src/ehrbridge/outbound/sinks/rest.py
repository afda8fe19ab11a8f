"""The REST sink: writes to a custom HTTP API, configured not coded (docs/sinks.md).

Each entity type's ``writes:`` entry (:class:`~ehrbridge.outbound.sinks.restwrites.EntityWrites`)
says how a record is created and updated, how a write is found again by its key, and how a record
is read back. The item's payload (``operation="upsert"``) is the FHIR sink's
(:mod:`ehrbridge.outbound.sinks.restpayload`); the templates see the entity's state with the
item's ``fields`` over it, ``{id}`` (from its ``ref``) and ``{key}`` (the item's key).

- **Create** (no ``ref``): ``create.method`` to ``create.url`` with the rendered body and the
  idempotency header (value: the item's key) when one is named; the created id from
  ``create.id_from`` (a JMESPath into the answer, or the ``Location`` header).
- **Update** (a ``ref``): when a ``read:`` is configured the record is read first: a field the
  sink changed since ``base`` to something other than ours is a
  :class:`~ehrbridge.errors.SinkConflict`, never written over; when the sink already holds our
  values nothing is sent. Otherwise the body is written with the fields we do not change as the
  sink holds them, and ``If-Match`` the read's ``ETag`` when it had one; a ``412`` (changed in
  between) reads and decides once more. A field is compared (and taken) where the update's body
  places it whole, the read record being shaped like the body. Without a ``read:`` there is no
  conflict check (the API gives nothing to check against) and the body is our copy.
- **lookup** (an in-doubt item, whose write may have reached the sink): by ``lookup:`` (the key),
  or for an update by ``read:`` (are our values there?). A sink that honours the idempotency
  header (``idempotent: true``) may be sent the write again: lookup answers None. With none of
  these the outcome cannot be known, and the write is never re-sent blindly: lookup raises a
  permanent :class:`~ehrbridge.errors.SinkError` for an operator.

The sink sends each request once (the dispatcher retries, with backoff); only a ``401`` is
sent again, once, with fresh credentials (the sink applied nothing). Errors:

=================================================  ====================================
what happened                                      SinkError
=================================================  ====================================
429, or 503, with or without ``Retry-After``       transient, ``retry_after`` when given
other 5xx, 408                                      transient
no connection, connect timeout                     transient
a write sent, then a timeout or a dropped line     transient, ``may_have_reached_sink``
401, 403                                            permanent: credentials
409 to a write with an idempotency key              transient: the first is still in progress
a second 412 after a re-read                        transient (read again at the next attempt)
other 4xx                                           permanent, status and body kind only
=================================================  ====================================

Messages carry the operation (method and path, never the query) and the status, never a field
value or the sink's body (it may quote values).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import jmespath
import orjson

from ehrbridge.errors import SinkConflict, SinkError
from ehrbridge.http.retry import retry_after_seconds, transport_problem
from ehrbridge.outbound.outbox import OutboxItem
from ehrbridge.outbound.sinks import Delivered
from ehrbridge.outbound.sinks.restpayload import Payload, RecordReader, compare, shape
from ehrbridge.outbound.sinks.restwrites import (
    LOCATION,
    Body,
    EntityWrites,
    LookupCall,
    ReadCall,
    Text,
    WriteCall,
    render_url,
)

#: the statuses that mean "later": the sink is throttling or down for a while
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
#: transport failures that happen before a request leaves (the sink cannot have applied it)
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
UNKNOWN_OUTCOME = "outcome unknown; check the sink"


class SinkAuth(Protocol):
    """The credential headers of each request (the REST connector's auth fits:
    :func:`ehrbridge.connectors.rest.auth.rest_auth`)."""

    async def headers(self) -> dict[str, str]:
        """The headers to add to the next request."""
        ...

    async def refresh(self, rejected: dict[str, str]) -> bool:
        """The sink answered 401 to ``rejected``: get new credentials; False if none."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class _NoAuth:
    async def headers(self) -> dict[str, str]:
        return {}

    async def refresh(self, rejected: dict[str, str]) -> bool:
        return False

    async def aclose(self) -> None:
        return None


class RestSink:
    """One configured ``rest`` sink (the :class:`~ehrbridge.outbound.sinks.Sink` protocol)."""

    def __init__(
        self,
        sink_id: str,
        base_url: str,
        writes: Sequence[EntityWrites],
        *,
        auth: SinkAuth | None = None,
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        readers: Mapping[str, RecordReader] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._id = sink_id
        #: per entity type, a read record in canonical fields (the source's inbound mapping)
        self._readers = dict(readers or {})
        #: the base URL, without a trailing slash; templates render paths under it
        self.base_url = base_url.rstrip("/")
        self._writes = {w.entity_type: w for w in writes}
        self.auth: SinkAuth = auth or _NoAuth()
        self._headers = {"Accept": "application/json", **dict(headers)}
        self._now = now
        # A write is sent once: no retries in the transport, no redirects followed.
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout)

    def __repr__(self) -> str:
        return f"RestSink({self._id!r}, {self.base_url!r})"

    @property
    def id(self) -> str:
        return self._id

    async def aclose(self) -> None:
        """Close the connections (and the auth's)."""
        await self._http.aclose()
        await self.auth.aclose()

    # --- the Sink protocol ----------------------------------------------------------------------

    async def send(self, item: OutboxItem) -> Delivered:
        """Create or update the item's record once (see the module's docstring)."""
        writes = self._entry(item)
        payload = Payload.of(item, writes)
        if payload.remote_id is None:
            if writes.create is None:
                raise SinkError(f"this sink has no create for {item.entity_type}")
            return await self._create(item, writes, writes.create, payload)
        if writes.update is None:
            raise SinkError(f"this sink has no update for {item.entity_type}")
        if writes.read is None:
            response, _ = await self._write("update", writes.update, writes, payload, item)
            return Delivered(ref=payload.ref or "", version=_etag(response), created=False)
        return await self._checked_update(item, writes, writes.update, writes.read, payload)

    async def _checked_update(
        self,
        item: OutboxItem,
        writes: EntityWrites,
        update: WriteCall,
        read: ReadCall,
        payload: Payload,
    ) -> Delivered:
        """Read, compare, then write with ``If-Match`` the version read (when the read has an
        ETag); a ``412`` (changed in between) reads and decides once more."""
        for attempt in range(2):
            found = await self._read(read, payload, item)
            if found is None:
                raise SinkError(
                    "the record is not at the sink any more", operation=f"read {item.entity_type}"
                )
            record, tag = found
            seen = compare(update.body, record, payload, self._readers.get(item.entity_type))
            if seen.conflicts:
                raise SinkConflict(seen.conflicts, operation=f"read {item.entity_type}")
            if seen.same:
                return Delivered(ref=payload.ref or "", version=_bare(tag), created=False)
            extra = {"If-Match": tag} if tag else {}
            response, operation = await self._write(
                "update",
                update,
                writes,
                payload.over(update.body, record),
                item,
                headers=extra,
                raising=False,
            )
            if response.status_code == 412 and tag and attempt == 0:
                continue
            if response.status_code == 412 and tag:
                raise SinkError(
                    "the record changed again while we wrote; it is read again next time",
                    operation=operation,
                    status=412,
                    transient=True,
                )
            if not response.is_success:
                raise self._error(response, operation)
            return Delivered(ref=payload.ref or "", version=_etag(response), created=False)
        raise AssertionError("unreachable")  # pragma: no cover

    async def lookup(self, item: OutboxItem) -> Delivered | None:
        """Find a write of the in-doubt ``item``: an update by ``read:`` (when the read shows
        any of its fields), else by ``lookup:``. None: not there (send it again). A permanent
        SinkError when nothing can tell and the sink does not honour the idempotency header."""
        writes = self._entry(item)
        payload = Payload.of(item, writes)
        if payload.remote_id is not None and writes.read is not None:
            found = await self._read(writes.read, payload, item)
            if found is None:
                return None
            reader = self._readers.get(item.entity_type)
            shown = compare(shape(writes), found[0], payload, reader).shown
            if shown:
                return Delivered(ref=payload.ref or "", version=None, created=False)
            if shown is not None:
                return None
            # the read shows none of the item's fields: it cannot tell; ask what else can
        if writes.lookup is not None and (
            payload.remote_id is not None or writes.lookup.id_from is not None
        ):
            return await self._lookup(writes.lookup, payload, item)
        if writes.idempotent and writes.idempotency_header:
            return None
        raise SinkError(UNKNOWN_OUTCOME, operation=f"lookup {item.entity_type}")

    async def read_back(self, item: OutboxItem) -> bool:
        """Whether the synced ``item``'s values show at the sink now: by ``read:`` (its record,
        from the item's result or payload; the fields the body places whole), else by
        ``lookup:``. A SinkError when neither can tell."""
        writes = self._entry(item)
        payload = Payload.of(item, writes)
        ref = (item.result or {}).get("ref") or payload.ref
        if writes.read is not None and isinstance(ref, str) and "/" in ref:
            payload = payload.with_ref(ref)
            found = await self._read(writes.read, payload, item)
            if found is None:
                return False
            reader = self._readers.get(item.entity_type)
            shown = compare(shape(writes), found[0], payload, reader).shown
            if shown is not None:
                return shown
        if writes.lookup is not None:
            return await self._lookup(writes.lookup, payload, item) is not None
        raise SinkError(
            "cannot tell: configure read or lookup for this entity type",
            operation=f"read-back {item.entity_type}",
        )

    # --- requests -------------------------------------------------------------------------------

    def _entry(self, item: OutboxItem) -> EntityWrites:
        writes = self._writes.get(item.entity_type)
        if writes is None:
            raise SinkError(f"this sink has no writes for {item.entity_type}")
        return writes

    async def _create(
        self, item: OutboxItem, writes: EntityWrites, call: WriteCall, payload: Payload
    ) -> Delivered:
        response, operation = await self._write("create", call, writes, payload, item)
        remote_id = _created_id(response, call.id_from or "id")
        if remote_id is None:
            raise SinkError(
                f"the sink took the write but its answer has no id at {call.id_from}; "
                "check the sink",
                operation=operation,
                status=response.status_code,
                may_have_reached_sink=True,
            )
        ref = f"{item.entity_type}/{remote_id}"
        return Delivered(ref=ref, version=_etag(response), created=True)

    async def _write(
        self,
        what: str,
        call: WriteCall,
        writes: EntityWrites,
        payload: Payload,
        item: OutboxItem,
        *,
        headers: Mapping[str, str] | None = None,
        raising: bool = True,
    ) -> tuple[httpx.Response, str]:
        url = self._url(call.url, payload, what, item)
        operation = f"{what} {call.method} {url.path}"
        sent = {"Content-Type": "application/json", **(headers or {})}
        if writes.idempotency_header:
            sent[writes.idempotency_header] = item.key
        body = _dumps(call.body, payload, operation)
        response = await self._request(call.method, url, operation, body, sent, write=True)
        if raising and not response.is_success:
            raise self._error(response, operation, keyed=bool(writes.idempotency_header))
        return response, operation

    async def _read(
        self, call: ReadCall, payload: Payload, item: OutboxItem
    ) -> tuple[Mapping[str, Any], str | None] | None:
        """The record as the sink holds it and its ``ETag`` as sent, or None when it answers
        404."""
        url = self._url(call.url, payload, "read", item)
        operation = f"read {call.method} {url.path}"
        response = await self._request(call.method, url, operation, None, {}, write=False)
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise self._error(response, operation)
        record = _search(call.record, _json(response, operation), operation)
        if not isinstance(record, dict):
            raise SinkError(f"the answer has no record at {call.record}", operation=operation)
        return record, response.headers.get("etag") or None

    async def _lookup(
        self, call: LookupCall, payload: Payload, item: OutboxItem
    ) -> Delivered | None:
        url = self._url(call.url, payload, "lookup", item)
        operation = f"lookup {call.method} {url.path}"
        body = _dumps(call.body, payload, operation) if call.body else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = await self._request(call.method, url, operation, body, headers, write=False)
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise self._error(response, operation)
        answer = _json(response, operation)
        if not _search(call.found, answer, operation):
            return None
        if payload.remote_id is not None:
            return Delivered(ref=payload.ref or "", version=None, created=False)
        assert call.id_from is not None  # lookup() asks only then
        remote_id = _search(call.id_from, answer, operation)
        if not isinstance(remote_id, str | int) or isinstance(remote_id, bool) or remote_id == "":
            raise SinkError(
                f"found, but the answer has no id at {call.id_from}", operation=operation
            )
        return Delivered(ref=f"{item.entity_type}/{remote_id}", version=None, created=True)

    def _url(self, template: Text, payload: Payload, what: str, item: OutboxItem) -> httpx.URL:
        try:
            path = render_url(template, payload.values)
        except KeyError as exc:
            raise SinkError(
                f"the {what} URL names {exc.args[0]}, which this item has no plain value for",
                operation=f"{what} {item.entity_type}",
            ) from None
        try:
            return httpx.URL(f"{self.base_url}/{path.lstrip('/')}")
        except httpx.InvalidURL:
            raise SinkError(
                f"the {what} URL is not a valid URL once filled in",
                operation=f"{what} {item.entity_type}",
            ) from None

    async def _request(
        self,
        method: str,
        url: httpx.URL,
        operation: str,
        body: bytes | None,
        headers: Mapping[str, str],
        *,
        write: bool,
    ) -> httpx.Response:
        """One request (sent again once, with fresh credentials, after a 401)."""
        refreshed = False
        while True:
            creds = await self.auth.headers()
            try:
                response = await self._http.request(
                    method, url, content=body, headers={**self._headers, **headers, **creds}
                )
            except httpx.TransportError as exc:
                reached = write and not isinstance(exc, _NOT_SENT)
                raise SinkError(
                    transport_problem(exc)
                    + ("; the write may have been applied" if reached else ""),
                    operation=operation,
                    transient=True,
                    may_have_reached_sink=reached,
                ) from None
            if response.status_code == 401 and not refreshed:
                refreshed = True
                if await self.auth.refresh(creds):
                    continue
            return response

    def _error(self, response: httpx.Response, operation: str, *, keyed: bool = False) -> SinkError:
        status = response.status_code
        if status == 409 and keyed:
            # An Idempotency-Key's 409: the first request with this key is still being
            # processed (draft-ietf-httpapi-idempotency-key-header, section 2.7).
            return SinkError(
                "the sink is still processing the first request with this key",
                operation=operation,
                status=status,
                transient=True,
            )
        if status in _TRANSIENT:
            after = retry_after_seconds(response.headers.get("retry-after"), self._now())
            return SinkError(
                "the sink asked us to wait" if status in (429, 503) else "the sink failed",
                operation=operation,
                status=status,
                transient=True,
                retry_after=after if status in (429, 503) else None,
            )
        if status in (401, 403):
            return SinkError("the sink refused our credentials", operation=operation, status=status)
        return SinkError(
            f"the sink refused the request ({_kind(response)}, {len(response.content)} bytes)",
            operation=operation,
            status=status,
        )


def _dumps(body: Body, payload: Payload, operation: str) -> bytes:
    try:
        return orjson.dumps(body.render(payload.values))
    except orjson.JSONEncodeError:
        raise SinkError("the body cannot be written as JSON", operation=operation) from None


def _etag(response: httpx.Response) -> str | None:
    """The record's version from the answer's ``ETag`` (weak or strong), if it has one."""
    return _bare(response.headers.get("etag"))


def _bare(tag: str | None) -> str | None:
    """``W/"3"`` -> ``3``.

    >>> _bare('W/"3"'), _bare('"abc"'), _bare(None)
    ('3', 'abc', None)
    """
    return (tag.removeprefix("W/").strip('"') or None) if tag else None


def _created_id(response: httpx.Response, id_from: str) -> str | None:
    if id_from == LOCATION:
        location = response.headers.get("location", "")
        segment = httpx.URL(location).path.rstrip("/").rsplit("/", 1)[-1] if location else ""
        return segment or None
    try:
        answer = orjson.loads(response.content)
        found = jmespath.search(id_from, answer)
    except (orjson.JSONDecodeError, jmespath.exceptions.JMESPathError):
        return None
    if isinstance(found, bool) or not isinstance(found, str | int) or found == "":
        return None
    return str(found)


def _json(response: httpx.Response, operation: str) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise SinkError(
            f"the answer is not JSON ({_kind(response)}, {len(response.content)} bytes)",
            operation=operation,
            status=response.status_code,
            transient=True,
        ) from None


def _search(expression: str, value: Any, operation: str) -> Any:
    try:
        return jmespath.search(expression, value)
    except jmespath.exceptions.JMESPathError:
        raise SinkError(f"{expression} does not apply to the answer", operation=operation) from None


def _kind(response: httpx.Response) -> str:
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    return media or "no Content-Type"
