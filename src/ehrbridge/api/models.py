"""The agent API's requests and responses (docs/design.md §10): pydantic models at the edge.

The HTTP routes and MCP tools use these directly as their schemas, so each field says what it
means and what it accepts. Entity states and events of the world model are turned into views
here (:meth:`EntityView.of`, :meth:`EventView.of`); nothing in the world model depends on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
)

from ehrbridge.confidence import Level
from ehrbridge.review.queue import ReviewItem
from ehrbridge.worldmodel.events import Event, Source
from ehrbridge.worldmodel.projection import EntityState, FieldValue

#: ``Patient``, ``Appointment``, ``Slot``: a CamelCase entity type, as the world model spells it.
ENTITY_TYPE_PATTERN = r"^[A-Z][A-Za-z0-9]{0,63}$"
#: An entity id as the world model accepts it.
ENTITY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
#: A field path such as ``phone.mobile``.
FIELD_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"

EntityType = Annotated[
    str, Field(pattern=ENTITY_TYPE_PATTERN, description="Entity type, e.g. Patient")
]
EntityId = Annotated[str, Field(pattern=ENTITY_ID_PATTERN, description="Entity id in its type")]
CallId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=ENTITY_ID_PATTERN,
        description="The call this belongs to, as the voice platform names it",
    ),
]
IdempotencyKey = Annotated[
    str,
    Field(
        min_length=8,
        max_length=128,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Send the same key again to retry safely: the write is recorded once",
    ),
]


def is_partial_date(value: str) -> bool:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` naming a real year, month or day.

    >>> [is_partial_date(v) for v in ("1984", "1984-02", "1984-02-29", "1984-02-30", "1984-13")]
    [True, True, True, False, False]
    """
    parts = value.split("-")
    if not 1 <= len(parts) <= 3 or not all(p.isascii() and p.isdigit() for p in parts):
        return False
    if [len(p) for p in parts] != [4, 2, 2][: len(parts)]:
        return False
    try:
        date(
            int(parts[0]),
            int(parts[1]) if len(parts) > 1 else 1,
            int(parts[2]) if len(parts) > 2 else 1,
        )
    except ValueError:
        return False
    return True


#: The voice levels by name: confirmed 0.5, mentioned 0.3, inferred 0.2 (docs/design.md §5.2).
VoiceLevelName = Literal["confirmed", "mentioned", "inferred"]
SourceKind = Literal["ehr", "voice", "operator", "review", "browser", "system"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: the largest integer a request may hold: what every JSON reader can represent (2^53 - 1)
MAX_INT = 2**53 - 1
#: how deep a value in a request may nest (lists and objects)
MAX_DEPTH = 32


def _problem_in(value: object, depth: int = 0) -> str | None:
    """What makes a request value unstorable, or None: a NUL character in a string or key
    (PostgreSQL cannot store one), an integer past :data:`MAX_INT`, nesting past
    :data:`MAX_DEPTH`.

    >>> _problem_in({"a": ["x", 1]}), _problem_in(["a" + chr(0)]), _problem_in(2**64)
    (None, 'must not contain a NUL character (\\\\u0000)', 'must be at most 9007199254740991')
    """
    if isinstance(value, str):
        return "must not contain a NUL character (\\u0000)" if "\x00" in value else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"must be at most {MAX_INT}" if abs(value) > MAX_INT else None
    if isinstance(value, list | tuple | dict):
        if depth >= MAX_DEPTH:
            return f"must not nest deeper than {MAX_DEPTH} levels"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            problem = _problem_in(key, depth + 1) if isinstance(key, str) else None
            if (problem := problem or _problem_in(item, depth + 1)) is not None:
                return problem
    return None


class _Request(_Model):
    """A request: every value is storable on every backend (no NUL character, no integer past
    :data:`MAX_INT`, no deep nesting), refused at the edge as a validation error naming the
    field, never deep in a database as a 5xx."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        problem = _problem_in(value)
        if problem is not None:
            raise ValueError(problem)
        return value


def _after(start: Any, end: Any, *, strictly: bool, start_name: str) -> None:
    """Refuse a range whose ``end`` is before its ``start`` (or at it, ``strictly``)."""
    if start is None or end is None:
        return
    if end < start or (strictly and end == start):
        raise ValueError(f"must be {'after' if strictly else 'at or after'} {start_name}")


# --- provenance ------------------------------------------------------------------------------


class SourceView(_Model):
    """Where a fact came from."""

    kind: SourceKind = Field(description="ehr, voice, operator, review, browser or system")
    id: str = Field(description="The data source, agent, operator or judge")
    ref: str | None = Field(default=None, description="The record at that source, if any")

    @classmethod
    def of(cls, source: Source) -> SourceView:
        return cls(kind=source.kind, id=source.id, ref=source.ref)


#: where a value the agent heard stands in review
ReviewStatus = Literal["pending review", "verified", "approved", "corrected"]
#: where a value the agent heard or an operator set stands at one sink
#: (:class:`~ehrbridge.outbound.outbox.SyncStatus`)
SyncStatusName = Literal["pending", "processing", "synced", "failed", "conflict", "not applicable"]
#: the source kinds whose values go out through the outbox: only theirs have a sync status
OUTBOUND_KINDS = frozenset({"voice", "operator"})
#: the sync status of each fact, by event id: per sink (a fact without an item has none)
SyncMap = Mapping[str, Mapping[str, str]]


class FieldView(_Model):
    """A field's value with its provenance."""

    value: JsonValue = Field(description="The value (JSON)")
    confidence: float = Field(ge=0.0, le=1.0, description="0.0-1.0; voice facts are 0.5 or less")
    source: SourceView
    effective_at: datetime = Field(description="When it became true at the source")
    event_id: str = Field(description="The event that asserted it")
    review: ReviewStatus | None = Field(
        default=None,
        description="For a value the agent heard: pending review, verified (by the judge), "
        "approved (by a human); corrected: an operator's value. None: not reviewed (EHR data)",
    )
    sync: dict[str, SyncStatusName] | None = Field(
        default=None,
        description="For a value the agent heard or an operator set: where it stands at each "
        "sink it is written to (pending, processing, synced, failed, conflict, not "
        "applicable); {} while it goes to none (not yet let through, say). None: EHR data, "
        "or not looked up",
    )

    @classmethod
    def of(cls, value: FieldValue, sync: SyncMap | None = None) -> FieldView:
        return cls.model_validate(field_data(value, sync))


class EntityView(_Model):
    """An entity's projected state: every field with its provenance, and what is pending."""

    entity_type: str
    entity_id: str
    version: int = Field(ge=0, description="Events in the entity's own log")
    fields: dict[str, FieldView] = Field(description="Field path -> projected value")
    pending: dict[str, list[FieldView]] = Field(
        default_factory=dict,
        description="Lower-confidence values that differ from the projected one (unverified)",
    )
    conflicts: list[str] = Field(
        default_factory=list, description="Fields with an open conflict between trusted sources"
    )
    members: list[str] = Field(default_factory=list, description="Entity ids merged into this")
    updated_at: datetime | None = None

    @property
    def ref(self) -> str:
        return f"{self.entity_type}/{self.entity_id}"

    @classmethod
    def of(cls, state: EntityState, sync: SyncMap | None = None) -> EntityView:
        """The view of ``state``; with ``sync`` (the outbox's answer for the state's outbound
        facts, :func:`ehrbridge.api.sync.sync_of`), each voice or operator value says where it
        stands at each sink."""
        return cls.model_validate(entity_data(state, sync))


def review_status(value: FieldValue) -> ReviewStatus | None:
    """Where a value stands in review, from its source and confidence (docs/design.md §8): a
    voice value below 0.8 is pending, at 0.8 the judge verified it, at 0.95 a human approved
    it; an operator's value is a correction. Rejected values are in no projection."""
    kind = value.source.kind
    if kind == "operator":
        return "corrected"
    if kind != "voice":
        return None
    if value.confidence >= Level.HUMAN_APPROVED.value:
        return "approved"
    if value.confidence >= Level.VERIFIED.value:
        return "verified"
    return "pending review"


def field_data(value: FieldValue, sync: SyncMap | None = None) -> dict[str, Any]:
    """A :class:`FieldView`'s fields as plain data, for validating many views in one call;
    ``sync`` gives a voice or operator value its sync status (None: not looked up)."""
    source = value.source
    return {
        "value": value.value,
        "confidence": value.confidence,
        "source": {"kind": source.kind, "id": source.id, "ref": source.ref},
        "effective_at": value.effective_at,
        "event_id": value.event_id,
        "review": review_status(value),
        "sync": None
        if sync is None or source.kind not in OUTBOUND_KINDS
        else dict(sync.get(value.event_id, {})),
    }


def entity_data(state: EntityState, sync: SyncMap | None = None) -> dict[str, Any]:
    """An :class:`EntityView`'s fields as plain data: pydantic validates a nested document in
    one call faster than it builds each nested view on its own (:meth:`EntityView.of`)."""
    return {
        "entity_type": state.entity_type,
        "entity_id": state.entity_id,
        "version": state.version,
        "fields": {path: field_data(fv, sync) for path, fv in sorted(state.fields.items())},
        "pending": {
            path: [field_data(fv, sync) for fv in values]
            for path, values in sorted(state.pending.items())
        },
        "conflicts": sorted({c.field for c in state.conflicts}),
        "members": list(state.members),
        "updated_at": state.updated_at,
    }


class EventView(_Model):
    """One event of an entity's timeline, with its provenance."""

    id: str
    version: int = Field(description="The entity's version after this event")
    event_type: str = Field(description="recorded, regraded, corrected, conflict_recorded, ...")
    fields: list[str] = Field(description="The fields this event asserts")
    data: dict[str, JsonValue] = Field(description="Field values, or the event's own document")
    source: SourceView
    confidence: float = Field(ge=0.0, le=1.0)
    effective_at: datetime
    recorded_at: datetime
    supersedes: str | None = None
    correlation_id: str | None = Field(default=None, description="The call, for voice events")
    evidence: dict[str, JsonValue] | None = Field(
        default=None, description="What supports it, e.g. the transcript span"
    )

    @classmethod
    def of(cls, event: Event) -> EventView:
        return cls(
            id=event.id,
            version=event.version,
            event_type=event.event_type.value,
            fields=list(event.fields),
            data=dict(event.data),
            source=SourceView.of(event.source),
            confidence=event.confidence,
            effective_at=event.effective_at,
            recorded_at=event.recorded_at,
            supersedes=event.supersedes,
            correlation_id=event.correlation_id,
            evidence=dict(event.evidence) if event.evidence is not None else None,
        )


# --- ambient ---------------------------------------------------------------------------------


class AmbientRequest(_Request):
    """Who is calling: the number as it reached the phone system."""

    phone: str = Field(
        min_length=3, max_length=32, description="E.164 (+16175550142) or as dialled"
    )
    region: str = Field(
        default="US",
        pattern=r"^[A-Z]{2}$",
        description="Where a number without a country code was dialled (ISO 3166-1 alpha-2)",
    )
    prompt_budget: int | None = Field(
        default=None,
        ge=200,
        le=50_000,
        description="Characters of prompt-ready text; the service's default when absent",
    )


class PendingFact(_Model):
    """An unverified value that differs from what the record says (it is being verified)."""

    entity: str = Field(description="EntityType/entity_id")
    field: str
    value: FieldView


class PatientContextView(_Model):
    """What an agent needs at call start, every value with confidence and source."""

    patient: EntityView = Field(description="Demographics and contact details")
    upcoming_appointments: list[EntityView] = Field(description="Soonest first")
    recent_encounters: list[EntityView] = Field(description="Latest first")
    active_medications: list[EntityView]
    coverage: list[EntityView] = Field(description="Active coverage")
    pending: list[PendingFact] = Field(description="Unverified facts about the patient, et al.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Display names of referenced practitioners and locations, by reference",
    )


class CallerCandidate(_Model):
    """One of several patients a number belongs to: just enough to ask who is calling."""

    entity_id: str
    given_name: str | None = Field(default=None, description="First given name")
    birth_year: str | None = Field(default=None, description="Year of birth")


class AmbientResponse(_Model):
    """The caller's context, or why there is none."""

    match: Literal["matched", "no_match", "ambiguous"] = Field(
        description="matched: one patient; ambiguous: several share the number (see "
        "candidates); no_match: no patient has it"
    )
    phone: str = Field(description="The number in E.164")
    context: PatientContextView | None = None
    candidates: list[CallerCandidate] = Field(default_factory=list)
    prompt: str = Field(description="The context as prompt-ready text, within the budget")
    truncated: bool = Field(default=False, description="Whether the prompt left something out")


# --- queried ---------------------------------------------------------------------------------


class EntitySearch(_Request):
    """Find entities through the lookup index; every criterion given must match.

    ``text`` matches whole family or given names (case and accents folded), not parts of words
    or other fields; ``identifier`` is ``system|value`` or a bare MRN or NPI."""

    entity_type: EntityType | None = None
    text: str | None = Field(default=None, min_length=1, max_length=200)
    identifier: str | None = Field(default=None, min_length=1, max_length=256)
    phone: str | None = Field(default=None, min_length=3, max_length=32)
    email: str | None = Field(default=None, min_length=3, max_length=256)
    limit: int = Field(default=20, ge=1, le=100)


class PatientSearch(_Request):
    """Patient search (the world model's PatientQuery); at least a name, a full birth date, an
    identifier or a phone, which gender and address narrow down."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    birth_date: str | None = Field(
        default=None, pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$", description="YYYY[-MM[-DD]]"
    )
    identifier: str | None = Field(default=None, min_length=1, max_length=256)
    phone: str | None = Field(default=None, min_length=3, max_length=32)
    gender: Literal["male", "female", "other", "unknown"] | None = None
    address: str | None = Field(default=None, min_length=1, max_length=200)
    limit: int = Field(default=20, ge=1, le=50)

    @field_validator("birth_date")
    @classmethod
    def _real_date(cls, value: str | None) -> str | None:
        if value is not None and not is_partial_date(value):
            raise ValueError("not a calendar date (YYYY, YYYY-MM or YYYY-MM-DD)")
        return value


class EntityList(_Model):
    """Entities found, in entity id order."""

    items: list[EntityView]
    truncated: bool = Field(description="More matched than the limit")


class StateRequest(_Request):
    """One entity's state, now or as the world model knew it at a past time."""

    entity_type: EntityType
    entity_id: EntityId
    as_of: AwareDatetime | None = Field(default=None, description="Replay to this time")


class TimelineRequest(_Request):
    """An entity's events, oldest first."""

    entity_type: EntityType
    entity_id: EntityId
    after_version: int = Field(default=0, ge=0, description="Only events after this version")
    limit: int = Field(default=200, ge=1, le=1000)


class Timeline(_Model):
    """An entity's log with provenance."""

    entity_type: str
    entity_id: str
    events: list[EventView]
    next_version: int | None = Field(description="Pass as after_version for more; None at end")


class SlotSearch(_Request):
    """Free appointment slots starting in a window."""

    start: AwareDatetime = Field(description="Window start (slots starting at or after)")
    end: AwareDatetime = Field(description="Window end (slots starting before)")
    practitioner_id: EntityId | None = Field(default=None, description="Practitioner entity id")
    location_id: EntityId | None = Field(default=None, description="Location entity id")
    service_type: str | None = Field(
        default=None, min_length=1, max_length=200, description="Service type text or code"
    )
    limit: int = Field(default=20, ge=1, le=200)

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        _after(info.data.get("start"), value, strictly=True, start_name="start")
        return value


class SlotView(_Model):
    """A free slot, from FHIR Slot and Schedule data."""

    slot_id: str = Field(description="Slot entity id; pass it when booking")
    schedule: str | None = Field(description="Schedule/<entity id>")
    start: datetime
    end: datetime
    service_types: list[str] = Field(description="Service types (text, else code)")
    practitioners: list[str] = Field(description="Practitioner/<id> of the schedule's actors")
    locations: list[str] = Field(description="Location/<id> of the schedule's actors")
    confidence: float = Field(ge=0.0, le=1.0)


class SlotList(_Model):
    """Free slots, soonest first."""

    items: list[SlotView]
    truncated: bool


# --- extracted -------------------------------------------------------------------------------


class Evidence(_Request):
    """The part of the call that supports a fact."""

    transcript_span: str = Field(
        min_length=1, max_length=4000, description="The words, as transcribed"
    )
    start_ms: int | None = Field(
        default=None, ge=0, le=MAX_INT, description="Offset into the call, in milliseconds"
    )
    end_ms: int | None = Field(default=None, ge=0, le=MAX_INT, description="Not before start_ms")
    speaker: Literal["caller", "agent"] | None = None

    @field_validator("end_ms")
    @classmethod
    def _end_not_before_start(cls, value: int | None, info: ValidationInfo) -> int | None:
        _after(info.data.get("start_ms"), value, strictly=False, start_name="start_ms")
        return value


def _field_map_schema(schema: dict[str, Any]) -> None:
    """``fields`` as a map whose keys match :data:`FIELD_PATTERN` (``propertyNames``)."""
    schema.pop("patternProperties", None)
    schema["additionalProperties"] = True
    schema["propertyNames"] = {"type": "string", "pattern": FIELD_PATTERN, "maxLength": 128}


class ObservationWrite(_Request):
    """A fact heard on a call, about an existing entity or a new one."""

    entity_type: EntityType
    entity_id: EntityId | None = Field(
        default=None, description="An existing entity; absent: a new entity is created"
    )
    fields: dict[Annotated[str, Field(pattern=FIELD_PATTERN, max_length=128)], JsonValue] = Field(
        min_length=1,
        max_length=50,
        description="Field path -> value (docs/entities.md), e.g. "
        '{"phone.mobile": "+16175550199"}; paths match ' + FIELD_PATTERN,
        # pydantic states the key pattern as patternProperties; client generators make an
        # object with patternProperties (and no properties) an empty model that always sends
        # {} (openapi-python-client does). The schema says it as JSON Schema 2020-12 and
        # OpenAPI 3.1 do: a map of any values whose keys (propertyNames) match the pattern.
        json_schema_extra=_field_map_schema,
    )
    level: VoiceLevelName = Field(
        description="confirmed (0.5): the caller confirmed it; mentioned (0.3); inferred (0.2)"
    )
    call_id: CallId | None = None
    evidence: Evidence | None = None
    idempotency_key: IdempotencyKey | None = None


class WriteResult(_Model):
    """What was recorded, and the entity's state right after."""

    status: Literal["recorded", "duplicate"] = Field(
        description="duplicate: the idempotency key was seen; nothing new was written"
    )
    event_id: str | None = Field(description="The event written (or found, for a duplicate)")
    entity: EntityView


class TranscriptBody(_Request):
    """A call's transcript (the call is named by the path), kept as a Call entity at voice
    level."""

    transcript: str = Field(min_length=1, description="The whole transcript text")
    patient_id: EntityId | None = Field(default=None, description="The caller, if identified")
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = Field(default=None, description="Not before started_at")
    direction: Literal["inbound", "outbound"] | None = None
    caller_phone: str | None = Field(default=None, min_length=3, max_length=32)
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")

    @field_validator("ended_at")
    @classmethod
    def _ended_after_start(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        _after(info.data.get("started_at"), value, strictly=False, start_name="started_at")
        return value


class TranscriptAttach(TranscriptBody):
    """A call's transcript, kept as a Call entity at voice level."""

    call_id: CallId


class AppointmentBooking(_Request):
    """Book an appointment from a call: recorded at once, at voice confidence."""

    patient_id: EntityId
    start: AwareDatetime | None = Field(default=None, description="Taken from the slot if absent")
    end: AwareDatetime | None = Field(default=None, description="Taken from the slot if absent")
    slot_id: EntityId | None = Field(default=None, description="A free slot to book")
    service_type: str | None = Field(default=None, min_length=1, max_length=200)
    practitioner_id: EntityId | None = None
    location_id: EntityId | None = None
    reason: str | None = Field(default=None, min_length=1, max_length=500)
    level: VoiceLevelName = "confirmed"
    call_id: CallId | None = None
    evidence: Evidence | None = None
    idempotency_key: IdempotencyKey | None = None

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        _after(info.data.get("start"), value, strictly=True, start_name="start")
        return value


class BookingConfirmation(_Model):
    """The booked appointment, before any EHR has seen it."""

    status: Literal["recorded", "duplicate"]
    appointment_id: str
    appointment: EntityView


# --- review (operators) -------------------------------------------------------------------------


class ReviewDecisionView(_Model):
    """What an operator decided for a review item."""

    operator: str = Field(description="The key id of the operator who decided")
    outcome: Literal["approved", "rejected", "corrected"]
    at: datetime
    note: str = ""


class ReviewItemView(_Model):
    """One entity's question for a human: its flagged events, why, and who holds or decided it."""

    item_id: str
    entity_type: str
    entity_id: str
    status: Literal["open", "decided"]
    priority: int = Field(description="1 is the most urgent")
    reason: str = Field(description="Why it was first flagged")
    reasons: list[str] = Field(description="Every flag's reason, in order")
    events: list[str] = Field(description="The flagged events, in the order they were flagged")
    created_at: datetime
    updated_at: datetime
    claimed_by: str | None = Field(default=None, description="Who holds the claim now")
    claim_expires_at: datetime | None = None
    decision: ReviewDecisionView | None = None

    @classmethod
    def of(cls, item: ReviewItem, now: datetime) -> ReviewItemView:
        holder = item.holder(now)
        decision = item.decision
        return cls(
            item_id=item.item_id,
            entity_type=item.entity_type,
            entity_id=item.entity_id,
            status=item.status,
            priority=item.priority,
            reason=item.reason,
            reasons=list(item.reasons),
            events=list(item.events),
            created_at=item.created_at,
            updated_at=item.updated_at,
            claimed_by=holder,
            claim_expires_at=item.claim.expires_at if holder and item.claim else None,
            decision=None
            if decision is None
            else ReviewDecisionView(
                operator=decision.operator,
                outcome=decision.outcome,
                at=decision.at,
                note=decision.note,
            ),
        )


class ReviewItemList(_Model):
    """Review items, most urgent first, then oldest first."""

    items: list[ReviewItemView]


class ReviewItemDetail(_Model):
    """A review item with what a reviewer reads: the entity, the flagged events, the verdicts."""

    item: ReviewItemView
    entity: EntityView | None = Field(description="The entity's state now")
    flagged: list[EventView] = Field(description="The flagged events")
    grades: list[EventView] = Field(
        description="The re-grades of the flagged events (the judges' verdicts), in order"
    )


class ReviewNote(_Request):
    """An approval (or a claim), with an optional note."""

    note: str = Field(default="", max_length=2000)


class ReviewRejection(_Request):
    """A rejection: the reason is required."""

    reason: str = Field(min_length=1, max_length=2000)


class ReviewCorrection(_Request):
    """The operator's values for the flagged fields, written at 1.0."""

    values: dict[str, JsonValue] = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=2000)


class ReviewBatch(_Request):
    """Approve or reject several items at once."""

    item_ids: list[str] = Field(min_length=1, max_length=100)
    decision: Literal["approve", "reject"]
    note: str = Field(default="", max_length=2000, description="Required to reject")


class ReviewBatchAnswer(_Model):
    """One item's answer in a batch."""

    item_id: str
    ok: bool
    item: ReviewItemView | None = None
    error: str | None = Field(default=None, description="Why this item was not decided")


class ReviewBatchResult(_Model):
    answers: list[ReviewBatchAnswer]


class ReviewDepth(_Model):
    priority: int
    count: int
    oldest: datetime


class ReviewDay(_Model):
    day: date
    decided: int


class ReviewStats(_Model):
    """The open queue by priority, and the decisions of the last 14 days."""

    open: int
    depth: list[ReviewDepth]
    decided_per_day: list[ReviewDay] = Field(description="UTC days with decisions, oldest first")
