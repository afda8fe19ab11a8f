"""The core's request and response: what a FHIR interaction is, without a web framework."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FHIR_JSON = "application/fhir+json; charset=utf-8"


@dataclass(frozen=True, kw_only=True)
class FhirRequest:
    """One FHIR interaction, as a route or a Bundle entry states it."""

    #: GET, POST, PUT, PATCH or DELETE
    method: str
    #: the path below the FHIR base, e.g. ``Patient/1/_history/2`` ("" for the base)
    path: str
    #: the query string's (name, value) pairs, in order
    query: tuple[tuple[str, str], ...] = ()
    #: the headers that matter (``if-match``, ``if-none-exist``, ``prefer``, ``content-type``),
    #: lower-case names
    headers: Mapping[str, str] = field(default_factory=dict)
    #: the parsed JSON body, if any
    body: Any = None
    #: the absolute FHIR base, for ``Location`` and links, e.g. ``http://127.0.0.1:8080/fhir/R4``
    base: str = ""


@dataclass(frozen=True, kw_only=True)
class FhirResponse:
    """What the core answers: a status, headers and a FHIR resource (or nothing)."""

    #: the HTTP status
    status: int
    #: the body: a resource, a Bundle or an OperationOutcome
    body: dict[str, Any] | None = None
    #: ``ETag``, ``Location``, ``Last-Modified``, ``Retry-After`` ...
    headers: dict[str, str] = field(default_factory=dict)
