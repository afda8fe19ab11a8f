"""The agent API's operations as MCP tools: names, descriptions, schemas, and the handlers.

Every tool is one :class:`~ehrbridge.api.service.AgentService` operation (:data:`TOOLS`): its
input schema is the operation's request model, its output schema the response model, and each
call goes through the service with ``channel="mcp"`` and a fresh request id, so authorisation,
workspace scoping and the audit trail are exactly those of the HTTP routes. A result carries the
response as ``structuredContent`` (and the same JSON as text); what the service refuses becomes a
tool error (``isError``) whose text is the same PHI-free message (``not found: no Patient/…``).

The transports (streamable HTTP, stdio) and who is asking are :mod:`ehrbridge.api.mcp`'s; here a
:data:`PrincipalOf` callable finds the principal of each call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol
from uuid import uuid4

import mcp_types as types
import orjson
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from ehrbridge import __version__
from ehrbridge.api.models import (
    AmbientRequest,
    AmbientResponse,
    AppointmentBooking,
    BookingConfirmation,
    EntityList,
    EntitySearch,
    EntityView,
    ObservationWrite,
    PatientSearch,
    SlotList,
    SlotSearch,
    StateRequest,
    Timeline,
    TimelineRequest,
    TranscriptAttach,
    WriteResult,
)
from ehrbridge.api.problems import redacted_location
from ehrbridge.api.service import AgentService
from ehrbridge.api.store import Principal
from ehrbridge.errors import (
    ConcurrencyError,
    IdempotencyConflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SlotUnavailable,
    Unauthenticated,
)

#: the channel recorded in the audit entries of tool calls
CHANNEL: Final = "mcp"
#: the ``_meta`` key of a tool result that carries the request id (as in the audit entries)
REQUEST_ID_META_KEY: Final = "ehrbridge/request_id"
#: JSON-RPC "invalid params": the answer to an unknown tool name
INVALID_PARAMS: Final = -32602

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
ehrbridge: a clinic's patient records (the world model) for a voice agent on a live call.
At the start of a call, call ambient_context with the caller's phone number: it identifies the
caller and returns their demographics, upcoming appointments, recent encounters, active
medications, coverage and unverified facts, plus a prompt-ready summary. Use the search and
get_ tools to answer questions during the call, search_slots and book_appointment to book, and
write_observation to record what the caller tells you. Every value carries a confidence (0-1)
and a source: anything below 0.8 or marked unverified is not yet verified by the clinic. Writes
are recorded at voice confidence (confirmed 0.5, mentioned 0.3, inferred 0.2) and are reviewed
before they reach the EHR; never tell the caller a voice fact is verified.
"""


class _Operation(Protocol):
    """An :class:`AgentService` method, bound to its service."""

    def __call__(
        self, principal: Principal, request: Any, /, *, request_id: str | None, channel: str | None
    ) -> Awaitable[BaseModel]: ...


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """One tool: its name and description for the agent, its schemas, and the operation."""

    name: str
    title: str
    description: str
    request: type[BaseModel]
    response: type[BaseModel]
    #: the service method the tool calls
    operation: Callable[[AgentService], _Operation]
    read_only: bool
    #: whether a repeated call changes nothing more (writes: with an idempotency key)
    idempotent: bool

    def tool(self) -> types.Tool:
        """The tool as ``tools/list`` describes it."""
        return types.Tool(
            name=self.name,
            title=self.title,
            description=self.description,
            input_schema=self.request.model_json_schema(mode="validation"),
            output_schema=self.response.model_json_schema(mode="serialization"),
            annotations=types.ToolAnnotations(
                title=self.title,
                read_only_hint=self.read_only,
                destructive_hint=False,
                idempotent_hint=self.idempotent,
                open_world_hint=False,
            ),
        )


_VOICE = (
    " The write is recorded at once at voice confidence (confirmed 0.5, mentioned 0.3, "
    "inferred 0.2), never as verified: the clinic's review loop checks it before it reaches "
    "the EHR. Pass an idempotency_key to retry safely."
)

TOOLS: Final[tuple[ToolSpec, ...]] = (
    ToolSpec(
        name="ambient_context",
        title="Caller context",
        description=(
            "Identify the caller by phone number (E.164 like +16175550142, or as dialled with "
            "region) and get their context: demographics, upcoming appointments, recent "
            "encounters, active medications, coverage and pending unverified facts, every value "
            "with its confidence and source, plus `prompt`, the same as compact text within "
            "prompt_budget characters. Call it first, when the call starts. match=ambiguous "
            "means several patients share the number: ask who is calling (candidates give a "
            "first name and birth year) and use search_patients. match=no_match: nobody has "
            "the number."
        ),
        request=AmbientRequest,
        response=AmbientResponse,
        operation=lambda s: s.ambient_context,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        name="search_patients",
        title="Search patients",
        description=(
            "Find patients by name, birth date (YYYY, YYYY-MM or YYYY-MM-DD), identifier (MRN), "
            "or phone; gender and address narrow the result. Give at least a name, a full "
            "birth date, an identifier or a phone. Use it to confirm who the caller is (name "
            "plus birth date) when the phone number did not identify them."
        ),
        request=PatientSearch,
        response=EntityList,
        operation=lambda s: s.search_patients,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        name="search_entities",
        title="Search entities",
        description=(
            "Find any entities (Patient, Practitioner, Location, ...) by whole family or given "
            "names (`text`, case and accents ignored; no partial words), an identifier "
            "(system|value, or a bare MRN or NPI), a phone or an email; entity_type narrows. "
            "Every criterion given must match. Use it to find a practitioner or location id "
            "for search_slots or book_appointment."
        ),
        request=EntitySearch,
        response=EntityList,
        operation=lambda s: s.search_entities,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        name="get_entity_state",
        title="Entity state",
        description=(
            "Read one entity (e.g. an Appointment, a MedicationOrder, a Patient) by type and "
            "id: every field with its confidence and source, pending unverified values and "
            "open conflicts. With as_of (a time with zone), the state as it was known then."
        ),
        request=StateRequest,
        response=EntityView,
        operation=lambda s: s.entity_state,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        name="get_entity_timeline",
        title="Entity timeline",
        description=(
            "An entity's history: its events oldest first, each with the fields it asserted, "
            "its source, confidence, time, and for voice facts the call and transcript span. "
            "Use it to explain where a value came from. Page with after_version=next_version."
        ),
        request=TimelineRequest,
        response=Timeline,
        operation=lambda s: s.entity_timeline,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        name="search_slots",
        title="Free appointment slots",
        description=(
            "Free appointment slots starting in [start, end) (times with zone), soonest "
            "first; narrow by practitioner_id, location_id or service_type. Offer these to the "
            "caller, then book the chosen one with book_appointment(slot_id=...)."
        ),
        request=SlotSearch,
        response=SlotList,
        operation=lambda s: s.search_slots,
        read_only=True,
        idempotent=True,
    ),
    ToolSpec(
        name="write_observation",
        title="Record what the caller said",
        description=(
            "Record facts heard on the call about an existing entity (entity_id) or a new one "
            '(no entity_id): field paths to values, e.g. {"phone.mobile": "+16175550199"}. '
            "level: confirmed if the caller confirmed it, mentioned if they said it in "
            "passing, inferred if you concluded it. Give the call_id and the transcript span "
            "as evidence. Returns the entity's state right after; a value the EHR holds with "
            "higher confidence stays, and yours shows under pending." + _VOICE
        ),
        request=ObservationWrite,
        response=WriteResult,
        operation=lambda s: s.write_observation,
        read_only=False,
        idempotent=False,
    ),
    ToolSpec(
        name="attach_transcript",
        title="Attach the call transcript",
        description=(
            "Keep the call's transcript (the whole text so far) as the Call entity named by "
            "call_id, linked to the patient when known. Attaching the same text again changes "
            "nothing; a longer transcript replaces the shorter one. Call it at the end of the "
            "call (or as it grows)."
        ),
        request=TranscriptAttach,
        response=WriteResult,
        operation=lambda s: s.attach_transcript,
        read_only=False,
        idempotent=True,
    ),
    ToolSpec(
        name="book_appointment",
        title="Book an appointment",
        description=(
            "Book an appointment for a patient: preferably a slot_id from search_slots (start "
            "and end are taken from it), or a start and end. It is in the world model at once "
            "with status booked, so you can confirm to the caller; the clinic's EHR receives "
            "it after review. A slot that is no longer free is refused: search again." + _VOICE
        ),
        request=AppointmentBooking,
        response=BookingConfirmation,
        operation=lambda s: s.book_appointment,
        read_only=False,
        idempotent=False,
    ),
)

#: the error classes a tool reports, most specific first, with the prefix of their text
_ERRORS: Final[tuple[tuple[type[Exception], str], ...]] = (
    (Unauthenticated, "unauthenticated"),
    (PermissionDenied, "permission denied"),
    (NotFound, "not found"),
    (IdempotencyConflict, "idempotency conflict"),
    (ConcurrencyError, "conflict"),
    (SlotUnavailable, "slot unavailable"),
    (InvalidInput, "invalid input"),
)

_KNOWN: Final = tuple(kind for kind, _ in _ERRORS)

#: Finds the principal of a tool call (None: nobody authenticated).
PrincipalOf = Callable[[ServerRequestContext[Any, Any]], Awaitable[Principal | None]]
#: The request id a transport gives a call, e.g. its HTTP request's (None: a new one).
RequestIdOf = Callable[[ServerRequestContext[Any, Any]], str | None]


def _new_request_id(ctx: ServerRequestContext[Any, Any]) -> str | None:
    return None


def validation_message(exc: ValidationError) -> str:
    """A request model's refusal as ``field.path: problem`` items, without the values given.

    pydantic's own text quotes the input, and an error's location quotes a refused dict key
    (``fields.<key>.[key]``): both are submitted data, which may be patient data, so the text
    keeps the constraint and the location without the key (as the HTTP API's problems do).

    >>> from ehrbridge.api.models import ObservationWrite
    >>> try:
    ...     ObservationWrite.model_validate(
    ...         {"entity_type": "Patient", "fields": {"Maria Santos": 1}, "level": "sure"}
    ...     )
    ... except ValidationError as exc:
    ...     print(validation_message(exc))
    fields.[key]: String should match pattern '^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)*$'; \
level: Input should be 'confirmed', 'mentioned' or 'inferred'
    """
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        kept = redacted_location(error["loc"], error["type"])
        problems.append(f"{'.'.join(kept) or '(arguments)'}: {error['msg']}")
    return "; ".join(problems)


def error_text(exc: Exception, request_id: str) -> str:
    """What the agent reads for a refused call: the same message as the HTTP problem detail."""
    for kind, prefix in _ERRORS:
        if isinstance(exc, kind):
            return f"{prefix}: {exc}"
    # nothing of the exception itself, whose text may quote data
    return (
        "internal error: the request failed unexpectedly; quote the request id when reporting "
        f"it ({request_id})"
    )


class McpTools:
    """The ``tools/list`` and ``tools/call`` handlers over one :class:`AgentService`."""

    def __init__(
        self,
        service: AgentService,
        principal_of: PrincipalOf,
        request_id_of: RequestIdOf = _new_request_id,
    ) -> None:
        self.service = service
        self._principal_of = principal_of
        self._request_id_of = request_id_of
        self._specs = {spec.name: spec for spec in TOOLS}
        # the schemas never change: built once, handed out as one listing
        self._listing = types.ListToolsResult(tools=[spec.tool() for spec in TOOLS])

    async def list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        """Every tool, with its input and output schemas."""
        return self._listing

    async def call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        """Run one tool through the service; refusals come back as tool errors."""
        spec = self._specs.get(params.name)
        if spec is None:
            raise MCPError(code=INVALID_PARAMS, message=f"unknown tool: {params.name}")
        request_id = self._request_id_of(ctx) or uuid4().hex
        try:
            principal = await self._principal_of(ctx)
            if principal is None:
                raise Unauthenticated("the API key is missing, unknown or revoked")
            try:
                request = spec.request.model_validate(params.arguments or {})
            except ValidationError as exc:
                raise InvalidInput(validation_message(exc)) from None
            operation = spec.operation(self.service)
            response = await operation(principal, request, request_id=request_id, channel=CHANNEL)
        except Exception as exc:
            if not isinstance(exc, _KNOWN):
                # a storage failure, a bug: the class names no patient data, its text may
                logger.error("tool %s failed: %s (request %s)", spec.name, type(exc).__name__,
                             request_id)  # fmt: skip
            return _error_result(error_text(exc, request_id), request_id)
        data = response.model_dump(mode="json")
        return types.CallToolResult(
            content=[types.TextContent(text=orjson.dumps(data).decode())],
            structured_content=data,
            _meta={REQUEST_ID_META_KEY: request_id},
        )


def _error_result(text: str, request_id: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)],
        is_error=True,
        _meta={REQUEST_ID_META_KEY: request_id},
    )


def mcp_server(
    service: AgentService,
    principal_of: PrincipalOf,
    request_id_of: RequestIdOf = _new_request_id,
) -> Server[Any]:
    """The SDK's low-level server with the agent API's tools.

    The low-level server (not ``MCPServer``) because the tools' schemas are the request and
    response models as they are: ``MCPServer`` would derive them from function signatures.
    """
    tools = McpTools(service, principal_of, request_id_of)
    return Server(
        "ehrbridge",
        version=__version__,
        title="ehrbridge agent API",
        instructions=INSTRUCTIONS,
        on_list_tools=tools.list_tools,
        on_call_tool=tools.call_tool,
    )
