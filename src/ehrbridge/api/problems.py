"""Errors as ``application/problem+json`` (RFC 9457), mapped in one place for the HTTP API.

Every refusal of the HTTP API is a :class:`Problem`: ``type`` (a URN naming the kind of
problem, or ``about:blank`` when the status says it all), ``title``, ``status``, ``detail`` (the
service's PHI-free message: entity ids and field paths, never values), ``instance`` (the
request, as ``urn:ehrbridge:request:<request id>``) and ``request_id`` (as in the audit trail
and the ``X-Request-Id`` header). A validation failure adds ``errors``: where (``location``,
``field``, and for the body a JSON ``pointer``) and what is wrong, never the value submitted.

>>> classify(NotFound("no Patient/p1")).status
404
>>> classify(KeyError("x")).status
500
>>> redacted_location(("body", "fields", "Maria Santos", "[key]"))
['body', 'fields', '[key]']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ehrbridge.errors import (
    ConcurrencyError,
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    OutboxConflict,
    PermissionDenied,
    ReviewConflict,
    SlotUnavailable,
    StorageError,
    Unauthenticated,
)

#: the media type of every error body
PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
#: the ``WWW-Authenticate`` challenge sent with every 401 (RFC 6750)
CHALLENGE: Final = 'Bearer realm="ehrbridge"'
#: the detail of every 500: nothing of the exception, which may quote data
INTERNAL_DETAIL: Final = "the request failed unexpectedly; quote the request id when reporting it"
#: the detail of a 401
UNAUTHENTICATED_DETAIL: Final = (
    "a valid API key is required: Authorization: Bearer <api key> (or X-API-Key)"
)


class ProblemItem(BaseModel):
    """One thing wrong with the request (a validation failure), without the value given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    location: Literal["body", "query", "path", "header"] | None = Field(
        default=None, description="Where in the request: body, query, path or header"
    )
    field: str = Field(description="The field's dotted path, e.g. evidence.transcript_span")
    pointer: str | None = Field(
        default=None, description="JSON pointer into the body, e.g. #/evidence/transcript_span"
    )
    detail: str = Field(description="What is wrong with it")


class Problem(BaseModel):
    """An error (RFC 9457 problem details); no patient data, ever."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(
        description="urn:ehrbridge:problem:<kind>, or about:blank (see title and status)"
    )
    title: str = Field(description="A short summary of the kind of problem")
    status: int = Field(ge=400, le=599, description="The HTTP status code")
    detail: str = Field(description="What went wrong with this request")
    instance: str = Field(description="This request: urn:ehrbridge:request:<request id>")
    request_id: str = Field(description="The request id, as in X-Request-Id and the audit trail")
    errors: list[ProblemItem] | None = Field(
        default=None, description="Validation failures: where and what (422 only)"
    )


@dataclass(frozen=True, kw_only=True)
class Kind:
    """What an error becomes: its status, problem type and title."""

    status: int
    #: the last part of ``urn:ehrbridge:problem:<slug>``; empty: ``about:blank``
    slug: str
    title: str

    @property
    def type(self) -> str:
        return f"urn:ehrbridge:problem:{self.slug}" if self.slug else "about:blank"


VALIDATION: Final = Kind(status=422, slug="invalid-request", title="Invalid request")
UNAUTHENTICATED: Final = Kind(status=401, slug="unauthenticated", title="Unauthenticated")
TOO_LARGE: Final = Kind(status=413, slug="", title="Content Too Large")
UNSUPPORTED_MEDIA: Final = Kind(status=415, slug="", title="Unsupported Media Type")
INTERNAL: Final = Kind(status=500, slug="", title="Internal Server Error")

#: the service's errors, most specific first
_KINDS: Final[tuple[tuple[type[Exception], Kind], ...]] = (
    (Unauthenticated, UNAUTHENTICATED),
    (PermissionDenied, Kind(status=403, slug="permission-denied", title="Permission denied")),
    (NotFound, Kind(status=404, slug="not-found", title="Not found")),
    (
        IdempotencyConflict,
        Kind(status=409, slug="idempotency-conflict", title="Idempotency key reused"),
    ),
    (SlotUnavailable, Kind(status=409, slug="slot-unavailable", title="Slot unavailable")),
    (ReviewConflict, Kind(status=409, slug="review-conflict", title="Review conflict")),
    (OutboxConflict, Kind(status=409, slug="outbox-conflict", title="Outbox conflict")),
    (ConcurrencyError, Kind(status=409, slug="conflict", title="Concurrent write; retry")),
    (InvalidInput, Kind(status=422, slug="invalid-input", title="Invalid input")),
    (StorageError, Kind(status=503, slug="", title="Service Unavailable")),
)


def classify(exc: Exception) -> Kind:
    """The problem kind of an exception; anything unexpected is a 500."""
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return kind
    return INTERNAL


def is_expected(exc: Exception) -> bool:
    """Whether ``exc`` is one of the refusals the API answers with its own message."""
    return classify(exc).status not in (500, 503)


def for_status(status: int) -> Kind:
    """``about:blank`` with the status's reason phrase (404 of an unknown route, 405, ...)."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return Kind(status=status, slug="", title=title)


def detail_of(exc: Exception, kind: Kind) -> str:
    """The message a client reads: the service's own (PHI-free), or a generic one."""
    if kind.status == 500:
        return INTERNAL_DETAIL
    if kind.status == 503:
        return "the database is unavailable; retry later"
    return str(exc)


#: what a location names instead of an unknown field's name (the name is submitted data)
UNKNOWN_FIELD: Final = "(unknown field)"


def redacted_location(loc: Sequence[int | str], error_type: str | None = None) -> list[str]:
    """A pydantic error location without the dict keys it quotes, or the name of an unknown
    field (``extra_forbidden``): both are submitted data.

    >>> redacted_location(("body", "evidence", "Maria"), "extra_forbidden")
    ['body', 'evidence', '(unknown field)']
    """
    parts = [str(part) for part in loc]
    if error_type == "extra_forbidden" and parts:
        parts[-1] = UNKNOWN_FIELD
    return [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1] == "[key]")]


def validation_items(errors: Sequence[Any]) -> list[ProblemItem]:
    """pydantic/FastAPI validation errors as problem items: where and what, never the input.

    The ``input`` and ``ctx`` of each error are dropped; pydantic's messages name the
    constraint ("String should match pattern ..."), not the value.
    """
    items = []
    for error in errors:
        if error.get("type") == "json_invalid":
            items.append(
                ProblemItem(location="body", field="(body)", detail="the body is not valid JSON")
            )
            continue
        parts = redacted_location(tuple(error.get("loc", ())), error.get("type"))
        location = parts[0] if parts and parts[0] in ("body", "query", "path", "header") else None
        path = parts[1:] if location else parts
        field = ".".join(path) or "(body)"
        pointer = "#" + "".join(f"/{part}" for part in path) if location == "body" else None
        items.append(
            ProblemItem(
                location=location,  # type: ignore[arg-type]
                field=field[:256],
                pointer=pointer[:256] if pointer else None,
                detail=str(error.get("msg", "invalid"))[:500],
            )
        )
    return items


def validation_detail(items: Sequence[ProblemItem]) -> str:
    """One line naming the fields that are wrong."""
    fields = ", ".join(dict.fromkeys(item.field for item in items))
    return f"the request is not valid: {fields}" if fields else "the request is not valid"


def problem_body(
    kind: Kind,
    detail: str,
    request_id: str,
    errors: Sequence[ProblemItem] | None = None,
) -> bytes:
    """The JSON of a problem."""
    problem = Problem(
        type=kind.type,
        title=kind.title,
        status=kind.status,
        detail=detail,
        instance=f"urn:ehrbridge:request:{request_id}",
        request_id=request_id,
        errors=list(errors) if errors is not None else None,
    )
    return orjson.dumps(problem.model_dump(mode="json", exclude_none=True))


def problem_headers(kind: Kind) -> dict[str, str]:
    """Headers that go with a problem of ``kind`` (the challenge of a 401)."""
    return {"WWW-Authenticate": CHALLENGE} if kind.status == 401 else {}


def openapi_schemas() -> dict[str, Any]:
    """The JSON schemas of :class:`Problem` and :class:`ProblemItem` for the OpenAPI
    components."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {"Problem": schema, **defs}


#: how a route's responses refer to the problem schema
PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}
#: why each documented problem status happens
WHY: Final[dict[int, str]] = {
    401: "No valid API key (missing, unknown, malformed or revoked)",
    403: "The key's role or write scope does not allow it",
    404: "No such entity in the key's workspace (or no such route)",
    409: "Idempotency key reused for a different request, slot no longer free, a review or "
    "outbox item that cannot take the action now, or a concurrent write (retry)",
    413: "The request body is over the size limit",
    415: "The request body is not application/json",
    422: "The request is not valid (errors name the fields, never the values)",
    500: "Unexpected failure (quote the request id)",
    503: "The database is unavailable; retry later",
}


def openapi_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for ``statuses``: each a problem, with why it happens."""
    return {
        status: {
            "description": WHY[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}},
        }
        for status in statuses
    }
