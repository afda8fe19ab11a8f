"""Workflows: a fact whose delivery is several writes, done in order, each recorded as it
completes (docs/workflows.md, docs/design.md §9).

A workflow is a named list of steps; each step is an item kind a sink performs (``create``,
``upsert``, ``notify``). The feed asks :class:`Workflows` whether an eligible fact starts one;
if it does, the fact is queued as the workflow's step items instead of a plain ``upsert``:

- all in the lane of the entity the workflow writes first (``Appointment/<id>``), so they run
  one at a time in step order, and a later fact of that entity (a reschedule) waits behind them
  rather than writing an Appointment the sink does not have yet;
- keyed ``item_key(sink, workflow id, step name)``: deciding the fact again finds them queued;
- queued in one :meth:`~.outbox.Outbox.enqueue`, with the feed's cursor: all steps or none.

A step is an item: a done step is synced, which is final, so a retry (the dispatcher's, or an
operator's of the parked step) resumes at the failed step and never repeats a done one; a step
that fails for good parks the lane (dead), and :func:`workflow_status` shows the workflow
stopped, with the steps done, the one that failed and those not started.

What a later step needs from an earlier one (the Appointment's record at the sink) is not known
when the steps are queued: their payloads name entities, and :mod:`.steps` resolves them when
the step is sent, from the stored results of the workflow's items and the entities' records.

**Book** (``book/<appointment id>``): started by the first assertion of an ``Appointment`` an
agent booked on a call (a voice source), eligible, with no record at the sink yet (decided again
later, it is still the workflow's: never a plain upsert too):

1. ``create-appointment`` (``create``): the Appointment, its participants as the sink's records;
2. ``update-patient`` (``upsert``), only if the call changed the patient: the call's facts of the
   booked Patient that the gate lets through when the booking is queued and that have no item
   of their own at the sink (the workflow carries them: the feed queues no plain item for them,
   then or later, :meth:`Workflows.carries`);
3. ``notify-practitioner`` (``notify``), only if a practitioner is booked: a ``Communication``
   to the practitioner about the created Appointment.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ehrbridge.outbound.gates import SinkPolicy, candidate, decide
from ehrbridge.outbound.outbox import (
    PARKED,
    ItemQuery,
    ItemStatus,
    NewItem,
    Outbox,
    OutboxItem,
)
from ehrbridge.outbound.outbox import item_key as _item_key
from ehrbridge.worldmodel.events import ASSERTING, Event
from ehrbridge.worldmodel.projection import EntityState
from ehrbridge.worldmodel.store import Store

#: the step kinds: a conditional create of the entity (references resolved at send time), an
#: update of its record (the feed's ``upsert``), a ``Communication`` create
CREATE, UPSERT, NOTIFY = "create", "upsert", "notify"


@dataclass(frozen=True, kw_only=True)
class Step:
    """One step of a workflow: a name (unique in it) and the item kind that performs it."""

    name: str
    kind: str


@dataclass(frozen=True, kw_only=True)
class Workflow:
    """A named list of steps, performed in order."""

    name: str
    steps: tuple[Step, ...]

    def step(self, name: str) -> tuple[int, Step]:
        """The step called ``name`` and its place; KeyError for a step it does not have."""
        for index, step in enumerate(self.steps):
            if step.name == name:
                return index, step
        raise KeyError(name)


CREATE_APPOINTMENT = Step(name="create-appointment", kind=CREATE)
UPDATE_PATIENT = Step(name="update-patient", kind=UPSERT)
NOTIFY_PRACTITIONER = Step(name="notify-practitioner", kind=NOTIFY)
#: the entity type the Patient update writes (its items are of that entity)
UPDATE_PATIENT_TYPE = "Patient"
#: booking an appointment from a call
BOOK = Workflow(name="book", steps=(CREATE_APPOINTMENT, UPDATE_PATIENT, NOTIFY_PRACTITIONER))
#: every workflow, by name
WORKFLOWS = {BOOK.name: BOOK}


def workflow_of(workflow_id: str) -> Workflow:
    """The definition of a workflow instance (``book/<id>``); KeyError for an unknown one.

    >>> workflow_of("book/0193e1c0").name
    'book'
    """
    return WORKFLOWS[workflow_id.partition("/")[0]]


def step_key(sink: str, workflow_id: str, step: Step) -> str:
    """The key of a workflow's step item at ``sink``: derived, never random.

    >>> step_key("ehr", "book/a", UPDATE_PATIENT) == step_key("ehr", "book/a", UPDATE_PATIENT)
    True
    """
    return _item_key(sink, workflow_id, step.name)


@dataclass(frozen=True, kw_only=True)
class Expansion:
    """What a fact that starts a workflow is queued as."""

    workflow: str
    items: tuple[NewItem, ...]
    #: the other facts the workflow delivers (the feed queues no plain item for them)
    carried: frozenset[str]


class Workflows:
    """Which eligible facts start a workflow, and their step items (the feed's hook)."""

    def __init__(
        self,
        store: Store,
        outbox: Outbox,
        *,
        workspace: str,
        sinks: Collection[str] | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.workspace = workspace
        #: the sinks that perform workflow steps (None: every sink); at the others a booking
        #: is a plain upsert
        self.sinks = None if sinks is None else frozenset(sinks)

    async def expand(
        self,
        fact: Event,
        events: Sequence[Event],
        policy: SinkPolicy,
        payload: Mapping[str, Any],
    ) -> Expansion | None:
        """The workflow ``fact`` starts at ``policy``'s sink, as its step items; None when it
        starts none (it is queued as a plain upsert). ``payload`` is the plain upsert's (the
        first step creates the record of it)."""
        if self.sinks is not None and policy.sink not in self.sinks:
            return None
        if not _books(fact, events):
            return None
        # decided again once the Appointment is at the sink (the trailing feed, a re-grade):
        # still the workflow's, never a plain upsert of what the create did not write
        again = await self._queued(fact.id, policy.sink)
        if payload.get("ref") is not None and not again:
            return None
        return await self._book(fact, policy, payload, again=again)

    async def _queued(self, event_id: str, sink: str) -> bool:
        items = (await self.outbox.of_events(self.workspace, [event_id])).get(event_id, [])
        return any(i.workflow is not None and i.sink == sink for i in items)

    async def carries(self, fact: Event, sink: str) -> bool:
        """Whether a queued workflow step at ``sink`` carries ``fact`` (a call's Patient fact
        its Patient update writes): the feed then queues no plain item of it, whenever it
        decides the fact again (a re-grade, the trailing feed)."""
        if fact.correlation_id is None or fact.entity_type != UPDATE_PATIENT_TYPE:
            return False
        query = ItemQuery(sink=sink, entity_type=fact.entity_type, entity_id=fact.entity_id)
        return any(
            i.workflow is not None and fact.id in (i.payload.get("facts") or ())
            for i in await self.outbox.items(self.workspace, query)
        )

    async def begun(self, event_id: str) -> bool:
        """Whether ``event_id`` started a workflow whose first step has synced at some sink."""
        items = (await self.outbox.of_events(self.workspace, [event_id])).get(event_id, [])
        return any(
            i.workflow is not None and i.step == 0 and i.status is ItemStatus.SYNCED for i in items
        )

    async def _book(
        self, fact: Event, policy: SinkPolicy, payload: Mapping[str, Any], *, again: bool
    ) -> Expansion:
        """The steps of a booking; ``again`` (its steps are queued already): the same keys, and
        no fact carried now (a fact of the call judged since goes as a plain item)."""
        sink, appointment = policy.sink, fact.entity_id
        workflow = f"{BOOK.name}/{appointment}"
        values = {**payload.get("entity", {}), **payload.get("fields", {})}
        patient = _entity_ref(values.get("patient"), "Patient")
        practitioner = _entity_ref(values.get("practitioner"), "Practitioner")
        carried = [] if patient is None or again else await self._call_facts(fact, patient, policy)
        steps: list[tuple[Step, str, str, dict[str, Any]]] = [
            (CREATE_APPOINTMENT, "Appointment", appointment, dict(payload))
        ]
        if patient is not None and carried:
            steps.append((UPDATE_PATIENT, UPDATE_PATIENT_TYPE, patient, {"facts": carried}))
        if practitioner is not None:
            notice = {
                "appointment": f"Appointment/{appointment}",
                "recipient": f"Practitioner/{practitioner}",
                "subject": None if patient is None else f"Patient/{patient}",
            }
            steps.append((NOTIFY_PRACTITIONER, "Communication", appointment, notice))
        items = tuple(
            NewItem(
                sink=sink,
                key=step_key(sink, workflow, step),
                lane=f"Appointment/{appointment}",
                entity_type=entity_type,
                entity_id=entity_id,
                event_id=fact.id,
                operation=step.kind,
                payload=step_payload,
                workflow=workflow,
                step=BOOK.step(step.name)[0],
            )
            for step, entity_type, entity_id, step_payload in steps
        )
        return Expansion(workflow=workflow, items=items, carried=frozenset(carried))

    async def _call_facts(self, booking: Event, patient: str, policy: SinkPolicy) -> list[str]:
        """The booking call's facts of the patient that the gate lets through now and that no
        item of their own delivers to the sink: the workflow's Patient update."""
        if booking.correlation_id is None:
            return []
        ws = self.workspace
        events = await self.store.read_entity(ws, UPDATE_PATIENT_TYPE, patient)
        state = await self.store.get_state(ws, UPDATE_PATIENT_TYPE, patient)
        facts = [
            e.id
            for e in events
            if e.event_type in ASSERTING
            and e.correlation_id == booking.correlation_id
            and _eligible(events, e.id, state, policy)
        ]
        if not facts:
            return []
        own = await self.outbox.of_events(ws, facts)
        return [
            f
            for f in facts
            if not any(i.sink == policy.sink and i.workflow is None for i in own.get(f, []))
        ]


def _eligible(
    events: Sequence[Event], event_id: str, state: EntityState | None, policy: SinkPolicy
) -> bool:
    try:
        return decide(candidate(events, event_id, state), policy).eligible
    except KeyError:
        return False


def _books(fact: Event, events: Sequence[Event]) -> bool:
    """An Appointment's first assertion, by an agent (voice): the booking."""
    if fact.entity_type != "Appointment" or fact.source.kind != "voice":
        return False
    first = next((e for e in events if e.event_type in ASSERTING), None)
    return first is not None and first.id == fact.id


def _entity_ref(value: object, entity_type: str) -> str | None:
    """The entity id in a reference field's value ``Patient/<id>``, or None."""
    if not isinstance(value, str):
        return None
    kind, _, entity_id = value.partition("/")
    return entity_id if kind == entity_type and entity_id else None


def cancelled_before(item: OutboxItem, steps: Iterable[OutboxItem]) -> OutboxItem | None:
    """The earlier step of ``item``'s workflow that was cancelled (its fact refused before it
    was sent), if one was: the later steps are then cancelled too, never sent on their own."""
    return next(
        (
            s
            for s in steps
            if s.workflow == item.workflow
            and s.sink == item.sink
            and s.step < item.step
            and s.status is ItemStatus.CANCELLED
        ),
        None,
    )


# --- status ---------------------------------------------------------------------------------


class WorkflowState(StrEnum):
    """Where a workflow stands."""

    RUNNING = "running"  #: steps left to do, none parked
    STOPPED = "stopped"  #: a step is parked (dead or conflict): it waits for an operator
    DONE = "done"  #: every step synced, or skipped by an operator (see ``skipped``)
    ABANDONED = "abandoned"  #: its steps were cancelled (the booking refused before it was sent)


@dataclass(frozen=True, kw_only=True)
class WorkflowStatus:
    """One workflow at one sink, from its items: what succeeded and what did not."""

    workflow: str
    sink: str
    state: WorkflowState
    #: the steps synced, in order
    done: tuple[str, ...]
    #: the step that stopped it (parked, or the first cancelled), with its status and reason
    failed: str | None
    failed_status: ItemStatus | None
    failed_error: str | None
    #: the step being worked or waiting its turn (pending or processing), if any
    current: str | None
    #: the steps not started, in order
    not_started: tuple[str, ...]
    #: the steps an operator gave up on (the lane went on with the rest)
    skipped: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "sink": self.sink,
            "state": self.state.value,
            "done": list(self.done),
            "failed": self.failed,
            "failed_status": None if self.failed_status is None else self.failed_status.value,
            "failed_error": self.failed_error,
            "current": self.current,
            "not_started": list(self.not_started),
            "skipped": list(self.skipped),
        }


def workflow_status(items: Iterable[OutboxItem]) -> list[WorkflowStatus]:
    """The status of each (workflow, sink) among ``items`` (items of no workflow are left
    out), in order of first appearance."""
    groups: dict[tuple[str, str], list[OutboxItem]] = {}
    for item in items:
        if item.workflow is not None:
            groups.setdefault((item.workflow, item.sink), []).append(item)
    return [_status(workflow, sink, steps) for (workflow, sink), steps in groups.items()]


def _status(workflow: str, sink: str, items: list[OutboxItem]) -> WorkflowStatus:
    try:
        names = [s.name for s in workflow_of(workflow).steps]
    except KeyError:
        names = []
    ordered = sorted(items, key=lambda i: i.step)

    def name(item: OutboxItem) -> str:
        return names[item.step] if item.step < len(names) else f"step {item.step}"

    stop = next((i for i in ordered if i.status in PARKED), None) or next(
        (i for i in ordered if i.status is ItemStatus.CANCELLED), None
    )
    # the step being worked: claimed, or back in the lane after a failed attempt
    current = next(
        (
            i
            for i in ordered
            if i.status is ItemStatus.PROCESSING or (i.status is ItemStatus.PENDING and i.attempts)
        ),
        None,
    )
    waiting = [
        i
        for i in ordered
        if i is not stop
        and i is not current
        and (
            i.status is ItemStatus.CANCELLED or (i.status is ItemStatus.PENDING and not i.attempts)
        )
    ]
    if stop is not None:
        state = WorkflowState.STOPPED if stop.status in PARKED else WorkflowState.ABANDONED
    elif current is None and not waiting:
        state = WorkflowState.DONE
    else:
        state = WorkflowState.RUNNING
    return WorkflowStatus(
        workflow=workflow,
        sink=sink,
        state=state,
        done=tuple(name(i) for i in ordered if i.status is ItemStatus.SYNCED),
        failed=None if stop is None else name(stop),
        failed_status=None if stop is None else stop.status,
        failed_error=None if stop is None else stop.last_error,
        current=None if current is None else name(current),
        not_started=tuple(name(i) for i in waiting),
        skipped=tuple(name(i) for i in ordered if i.status is ItemStatus.SKIPPED),
    )
