"""The FHIR interactions of the sandbox, independent of any web framework.

https://hl7.org/fhir/R4/http.html. :meth:`FhirServer.handle` takes a :class:`FhirRequest` and
always returns a :class:`FhirResponse`: every :class:`OperationFailed` becomes an
OperationOutcome here, in one place. Two fault hooks act on the store: a *stale* read serves the
version before the current one, and a *dropped* write answers as if stored but rolls back.

Query parameters are never ignored: each interaction takes the ones :data:`QUERY` lists for it
and refuses any other with 400 (a create with ``?identifier=...`` would otherwise quietly create
a duplicate); type-level PUT, PATCH and DELETE take search parameters as their criteria (the
conditional interactions).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode
from uuid import uuid4

from ehrbridge.sandbox import bundles, capabilities, dates, search
from ehrbridge.sandbox.messages import FhirRequest, FhirResponse
from ehrbridge.sandbox.outcome import OperationFailed, operation_outcome, status_line
from ehrbridge.sandbox.params import TYPES
from ehrbridge.sandbox.patch import apply_patch
from ehrbridge.sandbox.store import INSTANT_FORMAT, ResourceStore, Version, format_instant
from ehrbridge.sandbox.validation import is_id, validate

_ETAG = re.compile(r'^(?:W/)?"([^"]*)"$')
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_TYPES = frozenset(TYPES)
#: ``_format`` values meaning JSON (https://hl7.org/fhir/R4/http.html#mime-type); XML is not served.
JSON_FORMATS = frozenset(
    {"json", "application/json", "application/fhir+json", "application/json+fhir"}
)
#: Parameters every interaction takes: the response's format (JSON only) and pretty-printing.
_FORMAT = ("_format", "_pretty")
#: The query parameters each interaction takes besides :data:`_FORMAT` (search takes its own).
QUERY: dict[str, tuple[str, ...]] = {
    "read": (),
    "vread": (),
    "create": (),
    "update": (),
    "patch": (),
    "delete": (),
    "history": ("_since", "_count", "_cursor"),
    "capabilities": ("mode",),
    "batch": (),
}
_HISTORY_DEFAULT_COUNT = 50


class _Dropped(Exception):
    """Carries the response of a write that is rolled back (the dropped-write fault)."""

    def __init__(self, response: FhirResponse) -> None:
        super().__init__("dropped")
        self.response = response


def http_date(last_updated: str) -> str:
    """``Last-Modified`` for a stored instant.

    >>> http_date("2026-01-02T03:04:05.000006Z")
    'Fri, 02 Jan 2026 03:04:05 GMT'
    """
    when = datetime.strptime(last_updated, INSTANT_FORMAT).replace(tzinfo=UTC)
    return format_datetime(when, usegmt=True)


def _version_of_etag(value: str) -> str:
    match = _ETAG.match(value.strip())
    if match is None:
        raise OperationFailed(400, 'If-Match must be an ETag, e.g. W/"3"')
    return match.group(1)


class FhirServer:
    """A FHIR R4 server over a :class:`ResourceStore`."""

    def __init__(self, store: ResourceStore) -> None:
        #: where the resources live
        self.store = store

    def handle(
        self, request: FhirRequest, *, stale: bool = False, drop: bool = False
    ) -> FhirResponse:
        """Answer one request; ``stale`` serves reads one version behind, ``drop`` rolls writes
        back after answering them."""
        try:
            if drop and request.method in _WRITES:
                try:
                    with self.store.atomic():
                        raise _Dropped(self.dispatch(request, stale=stale))
                except _Dropped as dropped:
                    return dropped.response
            return self.dispatch(request, stale=stale)
        except OperationFailed as failed:
            return FhirResponse(status=failed.status, body=failed.outcome)

    def dispatch(self, request: FhirRequest, *, stale: bool = False) -> FhirResponse:
        """Route a request to its interaction; raises OperationFailed."""
        segments = [s for s in request.path.split("/") if s]
        method = request.method
        _check_format(request.query)
        match (method, segments):
            case ("POST", []):
                _allow(request, "batch")
                return bundles.process(self, request)
            case ("GET", ["metadata"]):
                _allow(request, "capabilities")
                return self.capabilities(request)
            case ("GET", ["_history"]):
                return self.history(request, None, None)
            case (_, []) | (_, ["metadata" | "_history"]):
                raise OperationFailed(405, f"{method} is not supported on this path")
        resource_type = segments[0]
        if resource_type not in _TYPES:
            raise OperationFailed(404, "not a resource type or operation the sandbox supports")
        rest = segments[1:]
        match (method, rest):
            case ("GET", []):
                return self.search(request, resource_type, stale=stale)
            case ("POST", ["_search"]):
                return self.search(request, resource_type, stale=stale)
            case ("GET", ["_history"]):
                return self.history(request, resource_type, None)
            case ("POST", []):
                _allow(request, "create")
                return self.create(request, resource_type)
            case ("PUT" | "PATCH" | "DELETE", []):
                return self.conditional(request, resource_type)
        if not is_id(rest[0]):
            raise OperationFailed(400, "not a valid resource id")
        id = rest[0]
        match (method, rest[1:]):
            case ("GET", []):
                _allow(request, "read")
                return self.read(request, resource_type, id, stale=stale)
            case ("PUT", []):
                _allow(request, "update")
                return self.update(request, resource_type, id)
            case ("PATCH", []):
                _allow(request, "patch")
                return self.patch(request, resource_type, id)
            case ("DELETE", []):
                _allow(request, "delete")
                return self.delete(request, resource_type, id)
            case ("GET", ["_history"]):
                return self.history(request, resource_type, id)
            case ("GET", ["_history", vid]):
                _allow(request, "vread")
                return self.vread(request, resource_type, id, vid)
        raise OperationFailed(405, f"{method} is not supported on this path")

    def capabilities(self, request: FhirRequest) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#capabilities: what the sandbox supports, built from
        the tables its interactions use (:mod:`.capabilities`)."""
        mode = dict(request.query).get("mode", "full")
        if mode != "full":
            raise OperationFailed(400, "the sandbox serves mode=full only")
        return FhirResponse(status=200, body=capabilities.statement(request.base))

    # -- reads --------------------------------------------------------------------------------

    def _existing(self, resource_type: str, id: str) -> Version:
        current = self.store.current(resource_type, id)
        if current is None:
            raise OperationFailed(404, f"{resource_type}/{id} is not known")
        if current.deleted:
            raise OperationFailed(410, f"{resource_type}/{id} was deleted")
        return current

    def read(
        self, request: FhirRequest, resource_type: str, id: str, *, stale: bool = False
    ) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#read: 404 if unknown, 410 if deleted; 304 when
        ``If-None-Match`` names the version served (https://hl7.org/fhir/R4/http.html#cread)."""
        version = self._existing(resource_type, id) if not stale else None
        if stale:
            current = self.store.current(resource_type, id)
            previous = self._previous(current) if current is not None else None
            version = previous if previous is not None and not previous.deleted else None
            version = version or self._existing(resource_type, id)
        assert version is not None
        if _not_modified(request.headers, version):
            return FhirResponse(status=304, headers=_version_headers(version))
        return self._resource(request, 200, version)

    def _previous(self, current: Version) -> Version:
        """The version before ``current`` (``current`` itself when it is the first)."""
        if current.version > 1:
            previous = self.store.version(current.type, current.id, current.version - 1)
            if previous is not None:
                return previous
        return current

    def vread(self, request: FhirRequest, resource_type: str, id: str, vid: str) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#vread"""
        version = self.store.version(resource_type, id, int(vid)) if vid.isdigit() else None
        if version is None:
            raise OperationFailed(404, f"{resource_type}/{id} has no version {vid}")
        if version.deleted:
            raise OperationFailed(410, f"{resource_type}/{id} version {vid} is a deletion")
        if _not_modified(request.headers, version):
            return FhirResponse(status=304, headers=_version_headers(version))
        return self._resource(request, 200, version)

    def history(
        self, request: FhirRequest, resource_type: str | None, id: str | None
    ) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#history at instance, type (``id`` None) or system
        (both None) level: versions newest first, ``_since`` (at or after) and ``_count``, paged
        by a ``next`` link. Each entry's request and response are what wrote the version: POST
        and ``201 Created`` for a create, PUT, PATCH, DELETE (``200 OK``) for the others."""
        _allow(request, "history")
        params = dict(request.query)
        count = _history_count(params.get("_count"))
        since = None
        if "_since" in params:
            found = dates.date_range(params["_since"])
            if found is None:
                raise OperationFailed(400, "_since must be a FHIR instant")
            since = format_instant(found[0])
        before = params.get("_cursor")
        if id is not None:
            assert resource_type is not None
            every = self.store.history(resource_type, id)
            if not every:
                raise OperationFailed(404, f"{resource_type}/{id} is not known")
            kept = [v for v in every if since is None or v.last_updated >= since]
            total = len(kept)
            versions = [v for v in kept if before is None or v.last_updated < before][: count + 1]
        else:
            total = self.store.count_changes(resource_type, since=since)
            versions = self.store.changes(
                resource_type, since=since, before=before, limit=count + 1
            )
        more = len(versions) > count
        versions = versions[:count]
        path = "/".join(p for p in (resource_type, id, "_history") if p)
        url = f"{request.base}/{path}"
        links = [{"relation": "self", "url": f"{url}?{urlencode(request.query)}".rstrip("?")}]
        if more and versions:
            pairs = [(n, v) for n, v in request.query if n != "_cursor"]
            pairs.append(("_cursor", versions[-1].last_updated))
            links.append({"relation": "next", "url": f"{url}?{urlencode(pairs)}"})
        entries = [_history_entry(request.base, version) for version in versions]
        body = {"resourceType": "Bundle", "type": "history", "total": total, "link": links}
        return FhirResponse(status=200, body={**body, "entry": entries} if entries else body)

    def search(
        self, request: FhirRequest, resource_type: str, *, stale: bool = False
    ) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#search (``GET [type]`` and ``POST [type]/_search``):
        one page, with ``self``/``next`` links; ``stale`` serves each match one version behind
        (matched on its current version). With ``Prefer: handling=lenient`` unknown parameters
        are left out of the search and of the ``self`` link, and named in an OperationOutcome
        entry (https://hl7.org/fhir/R4/search.html#errors)."""
        lenient = prefer(request.headers, "handling") == "lenient"
        page = search.search(self.store, resource_type, request.query, lenient=lenient)
        versions = page.versions
        if stale:
            versions = [p for p in map(self._previous, versions) if not p.deleted]
        url = f"{request.base}/{resource_type}"
        cursor = [(n, v) for n, v in request.query if n == "_cursor"]
        links = [
            {"relation": "self", "url": f"{url}?{urlencode([*page.used, *cursor])}".rstrip("?")}
        ]
        if page.next_cursor is not None:
            pairs = [*page.used, ("_cursor", page.next_cursor)]
            links.append({"relation": "next", "url": f"{url}?{urlencode(pairs)}"})
        entries: list[dict[str, Any]] = [
            {
                "fullUrl": f"{url}/{v.id}",
                "resource": v.resource,
                "search": {"mode": "match"},
            }
            for v in versions
        ]
        if page.ignored:
            text = f"ignored (Prefer: handling=lenient): {', '.join(page.ignored)}"
            outcome = operation_outcome(text, severity="warning", code="not-supported")
            entries.append({"resource": outcome, "search": {"mode": "outcome"}})
        body = {"resourceType": "Bundle", "type": "searchset", "total": page.total, "link": links}
        return FhirResponse(status=200, body={**body, "entry": entries} if entries else body)

    # -- writes -------------------------------------------------------------------------------

    def create(
        self, request: FhirRequest, resource_type: str, *, id: str | None = None
    ) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#create; with ``If-None-Exist`` a conditional create
        (one match: 200 with it; several: 412). ``id`` is one a transaction assigned. (A
        conditional update that matches nothing creates through here too, as the PUT it is.)"""
        resource = self._body(request, resource_type)
        criteria = request.headers.get("if-none-exist")
        if criteria:
            found = self.find(resource_type, criteria)
            if len(found) > 1:
                raise OperationFailed(412, "If-None-Exist matches more than one resource")
            if found:
                return self._resource(request, 200, found[0])
        resource.pop("id", None)
        validate(resource)
        method = "PUT" if request.method == "PUT" else "POST"
        version = self.store.put(resource_type, id or str(uuid4()), resource, method=method)
        return self._resource(request, 201, version)

    def create_entry(self, request: FhirRequest, id: str) -> FhirResponse:
        """A transaction's create (``POST [type]``) under the id the transaction assigned."""
        resource_type = request.path
        if resource_type not in _TYPES:
            raise OperationFailed(404, "not a resource type or operation the sandbox supports")
        _allow(request, "create")
        return self.create(request, resource_type, id=id)

    def find(self, resource_type: str, criteria: str | Sequence[tuple[str, str]]) -> list[Version]:
        """The (up to two) resources conditional criteria match (a query string or its pairs);
        400 for criteria that are empty or shape the result instead of filtering it."""
        if isinstance(criteria, str):
            criteria = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
        pairs = [(n, v) for n, v in criteria if n not in _FORMAT]
        shaping = sorted({n for n, _ in pairs if n.partition(":")[0] in search.RESULT_PARAMS})
        if shaping:
            raise OperationFailed(400, f"conditional criteria may not use {', '.join(shaping)}")
        if not pairs:
            raise OperationFailed(400, "conditional criteria must name at least one parameter")
        return search.search(self.store, resource_type, [*pairs, ("_count", "2")]).versions

    def conditional(self, request: FhirRequest, resource_type: str) -> FhirResponse:
        """Type-level PUT, PATCH and DELETE: the query is the criteria.

        Conditional update (https://hl7.org/fhir/R4/http.html#cond-update): no match creates
        (with the body's id, unless that id exists: 409), one match updates it (a different id in
        the body: 400), several: 412. Conditional patch and delete: no match 404, one match
        patches or deletes it, several 412 (deletes are ``single``).
        """
        found = self.find(resource_type, request.query)
        if len(found) > 1:
            raise OperationFailed(412, "the criteria match more than one resource")
        if request.method == "PUT":
            resource = self._body(request, resource_type)
            given = resource.get("id")
            if found:
                if given is not None and given != found[0].id:
                    raise OperationFailed(
                        400, "the resource's id is not the id of the match", code="invalid"
                    )
                return self.update(
                    request, resource_type, found[0].id, resource={**resource, "id": found[0].id}
                )
            if given is None:
                return self.create(request, resource_type)
            if not isinstance(given, str) or not is_id(given):
                raise OperationFailed(400, "the resource's id is not valid", code="invalid")
            existing = self.store.current(resource_type, given)
            if existing is not None and not existing.deleted:
                raise OperationFailed(
                    409, "the resource's id exists but does not match the criteria"
                )
            return self.update(request, resource_type, given)
        if not found:
            raise OperationFailed(404, "the criteria match no resource")
        if request.method == "PATCH":
            return self.patch(request, resource_type, found[0].id)
        return self.delete(request, resource_type, found[0].id)

    def update(
        self,
        request: FhirRequest,
        resource_type: str,
        id: str,
        *,
        resource: dict[str, Any] | None = None,
    ) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#update: a new version, or 201 when the id is new
        (update as create); ``If-Match`` must name the current version (else 412). An update
        that changes nothing keeps the current version. ``resource`` replaces the body (a
        conditional update gives it the match's id)."""
        resource = resource if resource is not None else self._body(request, resource_type)
        if resource.get("id") != id:
            raise OperationFailed(400, "the resource's id must match the URL", code="invalid")
        validate(resource)
        current = self.store.current(resource_type, id)
        self._check_if_match(request.headers, current)
        if current is None or current.deleted:
            return self._resource(request, 201, self.store.put(resource_type, id, resource))
        if _content(current.resource) == _content(resource):
            return self._resource(request, 200, current)
        return self._resource(request, 200, self.store.put(resource_type, id, resource))

    def patch(self, request: FhirRequest, resource_type: str, id: str) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#patch with a JSON Patch body."""
        content_type = request.headers.get("content-type", "application/json-patch+json")
        if not content_type.startswith("application/json-patch+json"):
            raise OperationFailed(415, "PATCH needs Content-Type: application/json-patch+json")
        current = self._existing(resource_type, id)
        self._check_if_match(request.headers, current)
        patched = apply_patch(current.resource or {}, request.body)
        if patched.get("resourceType") != resource_type or patched.get("id") != id:
            raise OperationFailed(400, "a patch may not change resourceType or id")
        validate(patched)
        return self._resource(
            request, 200, self.store.put(resource_type, id, patched, method="PATCH")
        )

    def delete(self, request: FhirRequest, resource_type: str, id: str) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#delete: later reads answer 410 Gone."""
        current = self.store.current(resource_type, id)
        if current is None:
            raise OperationFailed(404, f"{resource_type}/{id} is not known")
        self._check_if_match(request.headers, current)
        if not current.deleted:
            current = self.store.delete(resource_type, id)
        outcome = operation_outcome("deleted", severity="information", code="informational")
        return FhirResponse(status=200, body=outcome, headers={"ETag": f'W/"{current.version}"'})

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _body(request: FhirRequest, resource_type: str) -> dict[str, Any]:
        body = request.body
        if not isinstance(body, dict):
            raise OperationFailed(400, "the body must be a FHIR resource")
        if body.get("resourceType") != resource_type:
            raise OperationFailed(400, f"the body must be a {resource_type}", code="invalid")
        return dict(body)

    @staticmethod
    def _check_if_match(headers: Mapping[str, str], current: Version | None) -> None:
        if_match = headers.get("if-match")
        if if_match is None:
            return
        wanted = _version_of_etag(if_match)
        if current is None or current.deleted or str(current.version) != wanted:
            raise OperationFailed(412, "the If-Match version is not the current version")

    @staticmethod
    def _resource(request: FhirRequest, status: int, version: Version) -> FhirResponse:
        assert version.resource is not None
        headers = _version_headers(version)
        if request.method in _WRITES:
            where = f"{request.base}/{version.type}/{version.id}/_history/{version.version}"
            headers["Location" if status == 201 else "Content-Location"] = where
        prefer = request.headers.get("prefer", "")
        body = None if "return=minimal" in prefer else version.resource
        return FhirResponse(status=status, body=body, headers=headers)


def _content(resource: dict[str, Any] | None) -> dict[str, Any]:
    """A resource without its server-set ``meta`` fields, to tell whether an update changes it."""
    resource = dict(resource or {})
    meta = dict(resource.pop("meta", None) or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    return {**resource, "meta": meta} if meta else resource


def _version_headers(version: Version) -> dict[str, str]:
    return {"ETag": f'W/"{version.version}"', "Last-Modified": http_date(version.last_updated)}


def _not_modified(headers: Mapping[str, str], version: Version) -> bool:
    """Whether ``If-None-Match`` names ``version``: ``W/"3"``, ``"3"``, a bare ``3`` (fhirpy
    sends the versionId) or ``*``; several comma-separated."""
    value = headers.get("if-none-match")
    if value is None:
        return False
    for tag in value.split(","):
        tag = tag.strip()
        match = _ETAG.match(tag)
        if tag == "*" or (match.group(1) if match else tag) == str(version.version):
            return True
    return False


def prefer(headers: Mapping[str, str], name: str) -> str | None:
    """The value of one preference of the ``Prefer`` header (RFC 7240).

    >>> prefer({"prefer": "return=minimal, handling=lenient"}, "handling")
    'lenient'
    >>> prefer({}, "handling") is None
    True
    """
    for part in headers.get("prefer", "").replace(";", ",").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"').lower()
    return None


def _check_format(query: Sequence[tuple[str, str]]) -> None:
    for name, value in query:
        if name == "_format" and value.split(";")[0].strip().lower() not in JSON_FORMATS:
            raise OperationFailed(
                406, "the sandbox serves JSON only (_format)", code="not-supported"
            )


def _allow(request: FhirRequest, interaction: str) -> None:
    """Refuse query parameters the interaction does not take (never ignore them)."""
    allowed = (*_FORMAT, *QUERY[interaction])
    unknown = sorted({n for n, _ in request.query if n not in allowed})
    if not unknown:
        return
    text = f"{interaction} takes no query parameter {', '.join(unknown)}"
    if interaction == "create":
        text += "; for a conditional create send the criteria in If-None-Exist"
    elif interaction in ("update", "patch", "delete"):
        text += "; for a conditional one, send the criteria to [type]?criteria without an id"
    raise OperationFailed(400, text, code="not-supported")


def _history_count(value: str | None) -> int:
    if value is None:
        return _HISTORY_DEFAULT_COUNT
    if not value.isdigit() or int(value) == 0:
        raise OperationFailed(400, "_count must be a positive integer")
    return min(int(value), search.MAX_COUNT)


def _history_entry(base: str, version: Version) -> dict[str, Any]:
    url = f"{version.type}/{version.id}"
    entry: dict[str, Any] = {"fullUrl": f"{base}/{url}"}
    if version.resource is not None:
        entry["resource"] = version.resource
    # A create is POST [type]; every other interaction names the resource.
    request_url = version.type if version.method == "POST" else url
    entry["request"] = {"method": version.method, "url": request_url}
    entry["response"] = {
        "status": status_line(version.status),
        "etag": f'W/"{version.version}"',
        "lastModified": version.last_updated,
    }
    if version.status == 201:
        entry["response"]["location"] = f"{url}/_history/{version.version}"
    return entry
