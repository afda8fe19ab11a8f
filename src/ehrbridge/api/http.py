"""The agent API over HTTP: FastAPI routes that adapt :class:`AgentService` (docs/design.md §10-11).

Routes hold no logic: each builds the operation's request model (the body, or the path and
query), calls one :class:`~ehrbridge.api.service.AgentService` method as the key's principal with
the request id and ``channel="http"``, and returns the response model as JSON. What the service
raises becomes ``application/problem+json`` in one place (:mod:`ehrbridge.api.problems`).

In front of the routes, :class:`~ehrbridge.api.edge.Edge` does what must happen before anything
is parsed: request ids, the body limit, authentication, the media type, the log line and the
last-resort 500 (see :mod:`ehrbridge.api.edge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal
from uuid import uuid4

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from ehrbridge import __version__
from ehrbridge.api import problems
from ehrbridge.api.edge import PRINCIPAL_KEY, REQUEST_ID_KEY, Edge, log_failure
from ehrbridge.api.models import (
    ENTITY_ID_PATTERN,
    ENTITY_TYPE_PATTERN,
    AmbientRequest,
    AmbientResponse,
    AppointmentBooking,
    BookingConfirmation,
    CallId,
    EntityList,
    EntitySearch,
    EntityView,
    ObservationWrite,
    PatientSearch,
    ReviewBatch,
    ReviewBatchResult,
    ReviewCorrection,
    ReviewItemDetail,
    ReviewItemList,
    ReviewItemView,
    ReviewNote,
    ReviewRejection,
    ReviewStats,
    SlotList,
    SlotSearch,
    StateRequest,
    Timeline,
    TimelineRequest,
    TranscriptAttach,
    TranscriptBody,
    WriteResult,
)
from ehrbridge.api.outboxmodels import (
    ENTITY_REF_PATTERN,
    OUTBOX_ITEM_PATTERN,
    ItemStatusName,
    OutboxItemDetail,
    OutboxItemList,
    OutboxItemView,
    OutboxSkip,
    OutboxStats,
)
from ehrbridge.api.service import AgentService, ReviewAction
from ehrbridge.api.store import DEFAULT_MAX_BODY, ApiKeys, Principal
from ehrbridge.errors import EhrbridgeError, InvalidInput, Unauthenticated
from ehrbridge.outbound.outbox import ItemQuery as OutboxQuery
from ehrbridge.outbound.outbox import ItemStatus
from ehrbridge.review.queue import ItemQuery

#: the channel recorded in the audit entries of HTTP requests
CHANNEL: Final = "http"
# --- problems from the routes ----------------------------------------------------------------


def _problem_response(
    request: Request,
    kind: problems.Kind,
    detail: str,
    errors: Sequence[problems.ProblemItem] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    request_id = str(request.scope.get(REQUEST_ID_KEY) or uuid4().hex)
    return Response(
        content=problems.problem_body(kind, detail, request_id, errors),
        status_code=kind.status,
        media_type=problems.PROBLEM_MEDIA_TYPE,
        headers={**problems.problem_headers(kind), **(headers or {})},
    )


async def _on_service_error(request: Request, exc: Exception) -> Response:
    kind = problems.classify(exc)
    if not problems.is_expected(exc):
        log_failure(request.scope, exc, str(request.scope.get(REQUEST_ID_KEY)))
    return _problem_response(request, kind, problems.detail_of(exc, kind))


async def _on_invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    items = problems.validation_items(exc.errors())
    return _problem_response(request, problems.VALIDATION, problems.validation_detail(items), items)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's "error parsing the body" (a body that is not UTF-8, say): a validation
        # failure like any other malformed body
        items = [problems.ProblemItem(location="body", field="(body)", detail="not valid JSON")]
        return _problem_response(
            request, problems.VALIDATION, problems.validation_detail(items), items
        )
    kind = problems.for_status(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) else kind.title
    allow = {"Allow": exc.headers["Allow"]} if exc.headers and "Allow" in exc.headers else None
    return _problem_response(request, kind, detail, headers=allow)


# --- who is asking ---------------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerKey",
    description="An API key (ehb_...): Authorization: Bearer <api key>",
)
_api_key = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKeyHeader",
    description="The same API key in X-API-Key, for clients that cannot set Authorization",
)


@dataclass(frozen=True, kw_only=True)
class Caller:
    """The authenticated principal of a request and its request id."""

    principal: Principal
    request_id: str


async def _caller(
    request: Request,
    _bearer_key: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _header_key: Annotated[str | None, Depends(_api_key)],
) -> Caller:
    # Edge authenticated the key before routing; the two schemes above only document it.
    principal = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise Unauthenticated(problems.UNAUTHENTICATED_DETAIL)
    return Caller(principal=principal, request_id=str(request.scope[REQUEST_ID_KEY]))


CallerDep = Annotated[Caller, Depends(_caller)]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=8,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Retry safely: the write is recorded once. The same as the body's "
        "idempotency_key (give either; both must agree).",
    ),
]
EntityTypePath = Annotated[
    str, Path(pattern=ENTITY_TYPE_PATTERN, description="Entity type, e.g. Patient")
]
EntityIdPath = Annotated[
    str, Path(pattern=ENTITY_ID_PATTERN, max_length=128, description="Entity id in its type")
]


ItemIdPath = Annotated[str, Path(pattern=r"^[0-9a-z]{1,64}$", description="A review item's id")]
_ACT = problems.openapi_responses(401, 403, 404, 409, 413, 415, 422, 500, 503)


class Health(BaseModel):
    """The process is up (no data, no authentication)."""

    status: Literal["ok"] = "ok"


def _json(
    model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    # Serialised straight from the service's model: FastAPI does not validate it again.
    return Response(
        content=model.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def _keyed(body: Any, header: str | None) -> Any:
    """``body`` with the Idempotency-Key header as its idempotency key (they must agree)."""
    if header is None:
        return body
    if body.idempotency_key not in (None, header):
        raise InvalidInput("idempotency_key: differs from the Idempotency-Key header")
    return body.model_copy(update={"idempotency_key": header})


# --- the OpenAPI document --------------------------------------------------------------------

_READ = problems.openapi_responses(401, 403, 404, 413, 422, 500, 503)
_QUERY = problems.openapi_responses(401, 403, 404, 413, 415, 422, 500, 503)
_WRITE = problems.openapi_responses(401, 403, 404, 409, 413, 415, 422, 500, 503)

DESCRIPTION = """\
The agent interface of ehrbridge: a voice agent's reads and writes of a clinic's world model.

**Authentication.** Every `/v1/` route needs a workspace API key, as `Authorization: Bearer
<api key>` or `X-API-Key: <api key>`. The key decides the workspace and role; nothing in a
request names a workspace. Writes are recorded at voice confidence (confirmed 0.5, mentioned
0.3, inferred 0.2) and reviewed before they reach the EHR.

**Errors** are `application/problem+json` (RFC 9457) with `request_id`; they never contain
submitted values. Every response carries `X-Request-Id` (send a 32-hex or UUID one to choose
it); the audit trail records it.
"""


def _not_null_parameters(document: dict[str, Any]) -> None:
    """An optional header or query parameter is absent, never ``null`` (a header or query
    value cannot be null): ``anyOf [X, null]`` becomes ``X``."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                options = schema.get("anyOf")
                if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
                    [kept] = [option for option in options if option != {"type": "null"}]
                    rest = {k: v for k, v in schema.items() if k != "anyOf"}
                    parameter["schema"] = {**rest, **kept}


def create_app(
    service: AgentService,
    keys: ApiKeys,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    mounts: Sequence[tuple[str, ASGIApp]] = (),
) -> FastAPI:
    """The HTTP API over ``service``, authenticating with ``keys``; ``mounts`` are further ASGI
    apps served under a path (the MCP endpoint at ``/mcp``), behind the same body limit, request
    ids and logging (they authenticate on their own)."""
    app = FastAPI(
        title="ehrbridge agent API",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        # operation ids are the routes' names (ambient_context, write_observation, ...): what a
        # generated client calls its functions, the same names as the MCP tools
        generate_unique_id_function=lambda route: route.name,
        # FastAPI's own OpenTelemetry spans and logs (on whenever a provider is configured in
        # the process) record URL paths, query strings and exception messages: patient data.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    @app.get("/healthz", tags=["health"], response_model=Health)
    async def healthz() -> Response:
        """Liveness: the process answers. No authentication, no data."""
        return _json(Health())

    # --- ambient ---

    @app.post(
        "/v1/ambient/context",
        tags=["ambient"],
        response_model=AmbientResponse,
        responses=_QUERY,
        summary="Identify a caller by phone; their context",
    )
    async def ambient_context(body: AmbientRequest, caller: CallerDep) -> Response:
        """The caller's context at call start: demographics, upcoming appointments, recent
        encounters, active medications, coverage and pending unverified facts, each value with
        its confidence and source, and the same as prompt-ready text. The phone number travels
        in the body, never in a URL. Audited as ``ambient.context``."""
        return _json(
            await service.ambient_context(
                caller.principal, body, request_id=caller.request_id, channel=CHANNEL
            )
        )

    # --- queried ---

    @app.post(
        "/v1/entities/search",
        tags=["queried"],
        response_model=EntityList,
        responses=_QUERY,
        summary="Search entities",
    )
    async def search_entities(body: EntitySearch, caller: CallerDep) -> Response:
        """Entities by whole name words, identifier, phone or email. Audited as
        ``entities.search``."""
        return _json(
            await service.search_entities(
                caller.principal, body, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.post(
        "/v1/patients/search",
        tags=["queried"],
        response_model=EntityList,
        responses=_QUERY,
        summary="Search patients",
    )
    async def search_patients(body: PatientSearch, caller: CallerDep) -> Response:
        """Patients by name, birth date, identifier, phone, gender, address (in the body: they
        are patient data). Audited as ``patients.search``."""
        return _json(
            await service.search_patients(
                caller.principal, body, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.get(
        "/v1/entities/{entity_type}/{entity_id}",
        tags=["queried"],
        response_model=EntityView,
        responses=_READ,
        summary="An entity's state",
    )
    async def entity_state(
        entity_type: EntityTypePath,
        entity_id: EntityIdPath,
        caller: CallerDep,
        as_of: Annotated[
            AwareDatetime | None,
            Query(description="The state as the world model knew it then (with a zone)"),
        ] = None,
    ) -> Response:
        """Every field with its provenance, pending values and open conflicts; with
        ``as_of``, as known at that time. Audited as ``entities.state``."""
        request = StateRequest(entity_type=entity_type, entity_id=entity_id, as_of=as_of)
        return _json(
            await service.entity_state(
                caller.principal, request, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.get(
        "/v1/entities/{entity_type}/{entity_id}/timeline",
        tags=["queried"],
        response_model=Timeline,
        responses=_READ,
        summary="An entity's timeline",
    )
    async def entity_timeline(
        entity_type: EntityTypePath,
        entity_id: EntityIdPath,
        caller: CallerDep,
        after_version: Annotated[
            int, Query(ge=0, description="Only events after this version")
        ] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> Response:
        """The entity's events, oldest first, with provenance; page with
        ``after_version=next_version``. Audited as ``entities.timeline``."""
        request = TimelineRequest(
            entity_type=entity_type,
            entity_id=entity_id,
            after_version=after_version,
            limit=limit,
        )
        return _json(
            await service.entity_timeline(
                caller.principal, request, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.post(
        "/v1/slots/search",
        tags=["queried"],
        response_model=SlotList,
        responses=_QUERY,
        summary="Free appointment slots",
    )
    async def search_slots(body: SlotSearch, caller: CallerDep) -> Response:
        """Free slots starting in ``[start, end)``, soonest first. Audited as
        ``slots.search``."""
        return _json(
            await service.search_slots(
                caller.principal, body, request_id=caller.request_id, channel=CHANNEL
            )
        )

    # --- extracted ---

    @app.post(
        "/v1/observations",
        tags=["extracted"],
        response_model=WriteResult,
        responses=_WRITE,
        summary="Record what the caller said",
    )
    async def write_observation(
        body: ObservationWrite, caller: CallerDep, idempotency_key: IdempotencyHeader = None
    ) -> Response:
        """Facts heard on a call, about an existing entity or a new one, at a voice level;
        answers at once with the entity's projected state. Audited as
        ``observations.write``."""
        request: ObservationWrite = _keyed(body, idempotency_key)
        return _json(
            await service.write_observation(
                caller.principal, request, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.post(
        "/v1/calls/{call_id}/transcript",
        tags=["extracted"],
        response_model=WriteResult,
        responses=_WRITE,
        summary="Attach a call's transcript",
    )
    async def attach_transcript(
        call_id: Annotated[CallId, Path(description="The call, as the voice platform names it")],
        body: TranscriptBody,
        caller: CallerDep,
    ) -> Response:
        """Keep the call's transcript as its Call entity; the same text again writes nothing,
        a longer one replaces it. Audited as ``transcripts.attach``."""
        request = TranscriptAttach(call_id=call_id, **body.model_dump(exclude_unset=True))
        return _json(
            await service.attach_transcript(
                caller.principal, request, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.post(
        "/v1/appointments",
        tags=["extracted"],
        status_code=201,
        response_model=BookingConfirmation,
        responses={
            200: {
                "description": "A retry with the same idempotency key: the original booking",
                "model": BookingConfirmation,
            },
            **_WRITE,
        },
        summary="Book an appointment",
    )
    async def book_appointment(
        body: AppointmentBooking, caller: CallerDep, idempotency_key: IdempotencyHeader = None
    ) -> Response:
        """Book an appointment in the world model at once, at voice confidence, before any EHR
        is involved: 201 with ``Location``; a retry with the same idempotency key answers 200
        with the same booking. Audited as ``appointments.book``."""
        request: AppointmentBooking = _keyed(body, idempotency_key)
        booked = await service.book_appointment(
            caller.principal, request, request_id=caller.request_id, channel=CHANNEL
        )
        return _json(
            booked,
            status_code=201 if booked.status == "recorded" else 200,
            headers={"Location": f"/v1/entities/Appointment/{booked.appointment_id}"},
        )

    _review_routes(app, service)
    _outbox_routes(app, service)
    app.add_exception_handler(EhrbridgeError, _on_service_error)
    app.add_exception_handler(RequestValidationError, _on_invalid_request)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    for path, mounted in mounts:
        app.mount(path, mounted)
    app.add_middleware(
        Edge,
        keys=keys,
        max_body_bytes=max_body_bytes,
        fixed=["/openapi.json", *(path for path, _ in mounts)],
    )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=[
                    {"name": "ambient", "description": "The caller's context at call start"},
                    {"name": "queried", "description": "Questions during the call"},
                    {"name": "extracted", "description": "What the agent heard: voice writes"},
                    {"name": "review", "description": "The human review queue (operators)"},
                    {
                        "name": "outbox",
                        "description": "What is on its way to the sinks, and the dead letters "
                        "(operators)",
                    },
                    {"name": "health", "description": "Liveness"},
                ],
            )
            _not_null_parameters(document)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(problems.openapi_schemas())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _review_routes(app: FastAPI, service: AgentService) -> None:
    """The operators' review queue (``/v1/review/...``): operator and admin keys only."""

    @app.get(
        "/v1/review/items",
        tags=["review"],
        response_model=ReviewItemList,
        responses=_READ,
        summary="The review queue",
    )
    async def review_items(
        caller: CallerDep,
        status: Annotated[Literal["open", "decided"] | None, Query()] = "open",
        entity_type: Annotated[str | None, Query(pattern=ENTITY_TYPE_PATTERN)] = None,
        reason: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        priority: Annotated[int | None, Query(ge=1, le=9)] = None,
        created_before: Annotated[AwareDatetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """Items most urgent first, then oldest first. Audited as ``review.list``."""
        query = ItemQuery(
            status=status,
            entity_type=entity_type,
            reason=reason,
            priority=priority,
            created_before=created_before,
            limit=limit,
        )
        return _json(
            await service.review_items(
                caller.principal, query, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.get(
        "/v1/review/items/{item_id}",
        tags=["review"],
        response_model=ReviewItemDetail,
        responses=_READ,
        summary="A review item, with the entity and the verdicts",
    )
    async def review_item(item_id: ItemIdPath, caller: CallerDep) -> Response:
        """The item, the entity's state, the flagged events and their re-grades (the judges'
        verdicts with their evidence). Audited as ``review.show``."""
        return _json(
            await service.review_item(
                caller.principal, item_id, request_id=caller.request_id, channel=CHANNEL
            )
        )

    async def act(
        caller: Caller,
        item_id: str,
        action: ReviewAction,
        body: ReviewNote | ReviewRejection | ReviewCorrection | None = None,
    ) -> Response:
        return _json(
            await service.review_action(
                caller.principal,
                item_id,
                action,
                body,
                request_id=caller.request_id,
                channel=CHANNEL,
            )
        )

    @app.post(
        "/v1/review/items/{item_id}/claim",
        tags=["review"],
        response_model=ReviewItemView,
        responses=_ACT,
        summary="Claim a review item",
    )
    async def claim_review_item(item_id: ItemIdPath, caller: CallerDep) -> Response:
        """Hold the item for a while so no other operator works it (409 if one does)."""
        return await act(caller, item_id, "claim")

    @app.post(
        "/v1/review/items/{item_id}/unclaim",
        tags=["review"],
        response_model=ReviewItemView,
        responses=_ACT,
        summary="Give a review item back",
    )
    async def unclaim_review_item(item_id: ItemIdPath, caller: CallerDep) -> Response:
        """Let go of your claim on the item."""
        return await act(caller, item_id, "unclaim")

    @app.post(
        "/v1/review/items/{item_id}/approve",
        tags=["review"],
        response_model=ReviewItemView,
        responses=_ACT,
        summary="Approve a review item's facts",
    )
    async def approve_review_item(
        item_id: ItemIdPath, body: ReviewNote, caller: CallerDep
    ) -> Response:
        """Every flagged fact approved (0.95). 409 if decided, or claimed by another."""
        return await act(caller, item_id, "approve", body)

    @app.post(
        "/v1/review/items/{item_id}/reject",
        tags=["review"],
        response_model=ReviewItemView,
        responses=_ACT,
        summary="Reject a review item's facts",
    )
    async def reject_review_item(
        item_id: ItemIdPath, body: ReviewRejection, caller: CallerDep
    ) -> Response:
        """Every flagged fact rejected (0.0), with the reason."""
        return await act(caller, item_id, "reject", body)

    @app.post(
        "/v1/review/items/{item_id}/correct",
        tags=["review"],
        response_model=ReviewItemView,
        responses=_ACT,
        summary="Correct a review item's facts",
    )
    async def correct_review_item(
        item_id: ItemIdPath, body: ReviewCorrection, caller: CallerDep
    ) -> Response:
        """The operator's values, at 1.0, superseding the flagged fact they are about."""
        return await act(caller, item_id, "correct", body)

    @app.post(
        "/v1/review/batch",
        tags=["review"],
        response_model=ReviewBatchResult,
        responses=_ACT,
        summary="Approve or reject several review items",
    )
    async def review_batch(body: ReviewBatch, caller: CallerDep) -> Response:
        """Each item answers on its own (a conflict on one does not stop the others)."""
        return _json(
            await service.review_batch(
                caller.principal, body, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.get(
        "/v1/review/stats",
        tags=["review"],
        response_model=ReviewStats,
        responses=_READ,
        summary="The review queue's depth",
    )
    async def review_stats(caller: CallerDep) -> Response:
        """Open items by priority, with the oldest of each."""
        return _json(
            await service.review_stats(
                caller.principal, request_id=caller.request_id, channel=CHANNEL
            )
        )


#: a sink's id, as the config names a data source
SINK_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
OutboxItemPath = Annotated[
    str, Path(pattern=OUTBOX_ITEM_PATTERN, description="An outbox item's id")
]


def _outbox_routes(app: FastAPI, service: AgentService) -> None:
    """The operators' outbox (``/v1/outbox/...``): operator and admin keys only."""

    @app.get(
        "/v1/outbox/items",
        tags=["outbox"],
        response_model=OutboxItemList,
        responses=_READ,
        summary="Outbox items",
    )
    async def outbox_items(
        caller: CallerDep,
        sink: Annotated[
            str | None, Query(pattern=SINK_PATTERN, description="Only this sink's")
        ] = None,
        status: Annotated[ItemStatusName | None, Query(description="Only items in it")] = None,
        entity: Annotated[
            str | None,
            Query(pattern=ENTITY_REF_PATTERN, description="Only this entity's: Patient/<id>"),
        ] = None,
        event: Annotated[
            str | None,
            Query(pattern=r"^[0-9a-z]{1,64}$", description="Only the items delivering this fact"),
        ] = None,
        before: Annotated[
            int | None, Query(ge=0, description="Only items older than this position (paging)")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        """Items newest first, without their payloads' values; page with
        ``before=next_before``. Audited as ``outbox.list``."""
        entity_type, _, entity_id = (entity or "").partition("/")
        query = OutboxQuery(
            sink=sink,
            status=None if status is None else ItemStatus(status),
            entity_type=entity_type or None,
            entity_id=entity_id or None,
            event_id=event,
            before=before,
            limit=limit,
        )
        return _json(
            await service.outbox_items(
                caller.principal, query, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.get(
        "/v1/outbox/items/{item_id}",
        tags=["outbox"],
        response_model=OutboxItemDetail,
        responses=_READ,
        summary="An outbox item, with its attempts",
    )
    async def outbox_item(item_id: OutboxItemPath, caller: CallerDep) -> Response:
        """The item (the names of the fields it writes, never their values) and every attempt
        with the sink's answer. Audited as ``outbox.show``."""
        return _json(
            await service.outbox_item(
                caller.principal, item_id, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.post(
        "/v1/outbox/items/{item_id}/retry",
        tags=["outbox"],
        response_model=OutboxItemView,
        responses=_ACT,
        summary="Retry a parked outbox item",
    )
    async def retry_outbox_item(item_id: OutboxItemPath, caller: CallerDep) -> Response:
        """A dead or conflict item back in its lane, due now, its attempts reset; 409
        ``outbox-conflict`` for any other. Audited as ``outbox.retry``."""
        return _json(
            await service.outbox_retry(
                caller.principal, item_id, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.post(
        "/v1/outbox/items/{item_id}/skip",
        tags=["outbox"],
        response_model=OutboxItemView,
        responses=_ACT,
        summary="Give up on a parked outbox item",
    )
    async def skip_outbox_item(
        item_id: OutboxItemPath, body: OutboxSkip, caller: CallerDep
    ) -> Response:
        """A dead or conflict item skipped for good (the reason is required), freeing its
        lane; 409 ``outbox-conflict`` for any other. Audited as ``outbox.skip``."""
        return _json(
            await service.outbox_skip(
                caller.principal, item_id, body, request_id=caller.request_id, channel=CHANNEL
            )
        )

    @app.get(
        "/v1/outbox/stats",
        tags=["outbox"],
        response_model=OutboxStats,
        responses=_READ,
        summary="The outbox by sink",
    )
    async def outbox_stats(caller: CallerDep) -> Response:
        """Per sink: depth, dead letters, conflicts, the oldest open item, and the dispatchers'
        saved states (circuit, concurrency limit). Audited as ``outbox.stats``."""
        return _json(
            await service.outbox_stats(
                caller.principal, request_id=caller.request_id, channel=CHANNEL
            )
        )
