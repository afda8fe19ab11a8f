"""The FHIR interactions of the sandbox, independent of any web framework.

https://hl7.org/fhir/R4/http.html. :meth:`FhirServer.handle` takes a :class:`FhirRequest` and
always returns a :class:`FhirResponse`: every :class:`OperationFailed` becomes an
OperationOutcome here, in one place. Two fault hooks act on the store: a *stale* read serves the
version before the current one, and a *dropped* write answers as if stored but rolls back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode
from uuid import uuid4

from ehrbridge.sandbox import bundles, search
from ehrbridge.sandbox.messages import FhirRequest, FhirResponse
from ehrbridge.sandbox.outcome import OperationFailed, operation_outcome
from ehrbridge.sandbox.patch import apply_patch
from ehrbridge.sandbox.store import INSTANT_FORMAT, ResourceStore, Version
from ehrbridge.sandbox.validation import is_id, is_type, validate

_ETAG = re.compile(r'^(?:W/)?"([^"]*)"$')
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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
        if not segments:
            if method == "POST":
                return bundles.process(self, request)
            raise OperationFailed(405, f"{method} is not supported on the base")
        resource_type = segments[0]
        if not is_type(resource_type):
            raise OperationFailed(404, "not a resource type or operation the sandbox supports")
        if len(segments) > 1 and not is_id(segments[1]):
            raise OperationFailed(400, "not a valid resource id")
        match (method, len(segments)):
            case ("GET", 1):
                return self.search(request, resource_type, stale=stale)
            case ("POST", 1):
                return self.create(request, resource_type)
            case ("GET", 2):
                return self.read(request, resource_type, segments[1], stale=stale)
            case ("PUT", 2):
                return self.update(request, resource_type, segments[1])
            case ("PATCH", 2):
                return self.patch(request, resource_type, segments[1])
            case ("DELETE", 2):
                return self.delete(request, resource_type, segments[1])
            case ("GET", 3) if segments[2] == "_history":
                return self.history(request, resource_type, segments[1])
            case ("GET", 4) if segments[2] == "_history":
                return self.vread(request, resource_type, segments[1], segments[3])
        raise OperationFailed(405, f"{method} is not supported on this path")

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
        """https://hl7.org/fhir/R4/http.html#read: 404 if unknown, 410 if deleted."""
        if stale:
            current = self.store.current(resource_type, id)
            if current is not None:
                previous = self._previous(current)
                if not previous.deleted:
                    return self._resource(request, 200, previous)
        return self._resource(request, 200, self._existing(resource_type, id))

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
        return self._resource(request, 200, version)

    def history(self, request: FhirRequest, resource_type: str, id: str) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#history: every version, newest first."""
        versions = self.store.history(resource_type, id)
        if not versions:
            raise OperationFailed(404, f"{resource_type}/{id} is not known")
        entries = []
        for version in versions:
            url = f"{resource_type}/{id}"
            method = "DELETE" if version.deleted else ("POST" if version.version == 1 else "PUT")
            entry: dict[str, Any] = {"fullUrl": f"{request.base}/{url}"}
            if version.resource is not None:
                entry["resource"] = version.resource
            entry["request"] = {"method": method, "url": url}
            entry["response"] = {
                "status": "200 OK" if not version.deleted else "204 No Content",
                "etag": f'W/"{version.version}"',
                "lastModified": version.last_updated,
            }
            entries.append(entry)
        body = {"resourceType": "Bundle", "type": "history", "total": len(entries)}
        return FhirResponse(status=200, body={**body, "entry": entries})

    def search(
        self, request: FhirRequest, resource_type: str, *, stale: bool = False
    ) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#search: one page, with ``self``/``next`` links;
        ``stale`` serves each match one version behind (matched on its current version)."""
        page = search.search(self.store, resource_type, request.query)
        versions = page.versions
        if stale:
            versions = [p for p in map(self._previous, versions) if not p.deleted]
        url = f"{request.base}/{resource_type}"
        pairs = [(n, v) for n, v in request.query if n != "_cursor"]
        links = [{"relation": "self", "url": f"{url}?{urlencode(request.query)}".rstrip("?")}]
        if page.next_cursor is not None:
            cursor = "|".join(page.next_cursor)
            links.append(
                {"relation": "next", "url": f"{url}?{urlencode([*pairs, ('_cursor', cursor)])}"}
            )
        entries = [
            {
                "fullUrl": f"{url}/{v.id}",
                "resource": v.resource,
                "search": {"mode": "match"},
            }
            for v in versions
        ]
        body = {"resourceType": "Bundle", "type": "searchset", "total": page.total, "link": links}
        return FhirResponse(status=200, body={**body, "entry": entries} if entries else body)

    # -- writes -------------------------------------------------------------------------------

    def create(
        self, request: FhirRequest, resource_type: str, *, id: str | None = None
    ) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#create; with ``If-None-Exist`` a conditional create
        (one match: 200 with it; several: 412). ``id`` is one a transaction assigned."""
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
        version = self.store.put(resource_type, id or str(uuid4()), resource)
        return self._resource(request, 201, version)

    def find(self, resource_type: str, criteria: str) -> list[Version]:
        """The (up to two) resources a conditional criteria string matches."""
        pairs = [*parse_qsl(criteria.lstrip("?"), keep_blank_values=True), ("_count", "2")]
        return search.search(self.store, resource_type, pairs).versions

    def update(self, request: FhirRequest, resource_type: str, id: str) -> FhirResponse:
        """https://hl7.org/fhir/R4/http.html#update: a new version, or 201 when the id is new
        (update as create); ``If-Match`` must name the current version (else 412). An update
        that changes nothing keeps the current version."""
        resource = self._body(request, resource_type)
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
        return self._resource(request, 200, self.store.put(resource_type, id, patched))

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
        headers = {
            "ETag": f'W/"{version.version}"',
            "Last-Modified": http_date(version.last_updated),
        }
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
