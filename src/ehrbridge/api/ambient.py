"""The ambient channel (docs/design.md §10): who is calling, and their context, while the phone
rings.

The caller is identified by phone through the world model's lookup index. One patient gets a
compact context (:class:`~ehrbridge.api.models.PatientContextView`); several patients sharing
the number get candidates with just enough to ask who is calling (first given name, birth year),
never their context; nobody gets ``no_match``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ehrbridge.api.models import (
    CallerCandidate,
    PatientContextView,
    SyncMap,
    entity_data,
    field_data,
)
from ehrbridge.api.sync import sync_of
from ehrbridge.errors import InvalidInput
from ehrbridge.outbound.outbox import Outbox
from ehrbridge.worldmodel.context import PatientContext, patient_context
from ehrbridge.worldmodel.matching import normalize_phone
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.projection import EntityState

#: Fields of referenced entities whose display name the context carries.
_LABELLED = ("practitioner", "location")


@dataclass(frozen=True, kw_only=True)
class Identified:
    """The E.164 number and the patients who have it (survivors of merges)."""

    phone: str
    patients: list[EntityState]


async def identify(model: WorldModel, phone: str, region: str = "US") -> Identified:
    """The patients with ``phone`` (E.164 or as dialled from ``region``), in entity id order.

    Raises :class:`InvalidInput` when ``phone`` is not a possible phone number."""
    e164 = normalize_phone(phone, region)
    if e164 is None:
        raise InvalidInput("phone: not a phone number")
    patients = await model.identify_caller(e164, region=region)
    return Identified(phone=e164, patients=sorted(patients, key=lambda s: s.entity_id))


def candidate(state: EntityState) -> CallerCandidate:
    """What a candidate shows: the first given name and the birth year, nothing more."""
    given = state.values.get("name.given")
    first = given[0] if isinstance(given, list) and given else given
    birth = state.values.get("birth_date")
    return CallerCandidate(
        entity_id=state.entity_id,
        given_name=str(first) if first else None,
        birth_year=str(birth)[:4] if birth else None,
    )


@dataclass(frozen=True, kw_only=True)
class Context:
    """The context view, and every entity read to build it (for the audit trail)."""

    view: PatientContextView
    read: list[EntityState]


async def context(
    model: WorldModel,
    patient_id: str,
    *,
    now: datetime,
    recent: int = 3,
    outbox: Outbox | None = None,
) -> Context | None:
    """The context of ``Patient/patient_id``; None when there is no such patient. With
    ``outbox``, every voice or operator value carries its sync status (one more query, only
    when the context holds such a value)."""
    ctx = await patient_context(model, patient_id, now=now, recent=recent)
    if ctx is None:
        return None
    related = [
        *ctx.upcoming_appointments,
        *ctx.recent_encounters,
        *ctx.active_medications,
        *ctx.coverage,
    ]
    labels, labelled = await _labels(model, related)
    sync = await sync_of(outbox, model.workspace, [ctx.patient, *related])
    # One validation of the whole document: building each nested view on its own cost more
    view = PatientContextView.model_validate(
        {
            "patient": entity_data(ctx.patient, sync),
            "upcoming_appointments": [entity_data(s, sync) for s in ctx.upcoming_appointments],
            "recent_encounters": [entity_data(s, sync) for s in ctx.recent_encounters],
            "active_medications": [entity_data(s, sync) for s in ctx.active_medications],
            "coverage": [entity_data(s, sync) for s in ctx.coverage],
            "pending": _pending(ctx, sync),
            "labels": labels,
        }
    )
    return Context(view=view, read=[ctx.patient, *related, *labelled])


def _pending(ctx: PatientContext, sync: SyncMap | None) -> list[dict[str, Any]]:
    """The context's :class:`~ehrbridge.api.models.PendingFact` items, as plain data."""
    facts = []
    for state in (
        ctx.patient,
        *ctx.upcoming_appointments,
        *ctx.active_medications,
        *ctx.coverage,
    ):
        ref = f"{state.entity_type}/{state.entity_id}"
        for path, values in sorted(state.pending.items()):
            facts += [{"entity": ref, "field": path, "value": field_data(v, sync)} for v in values]
    return facts


async def _labels(
    model: WorldModel, states: list[EntityState]
) -> tuple[dict[str, str], list[EntityState]]:
    refs = sorted(
        {
            str(value)
            for s in states
            for name in _LABELLED
            if isinstance(value := s.values.get(name), str) and "/" in value
        }
    )
    labels: dict[str, str] = {}
    read: list[EntityState] = []
    for ref in refs:
        entity_type, _, entity_id = ref.partition("/")
        state = await model.state(entity_type, entity_id)
        if state is None:
            continue
        read.append(state)
        if label := display_name(state):
            labels[ref] = label
    return labels, read


def display_name(state: EntityState) -> str:
    """A person's or place's name as people say it: ``Dr Emily Chen``, ``Larkspur Clinic``."""
    values = state.values
    if isinstance(values.get("name"), str):
        return str(values["name"])
    given = values.get("name.given")
    parts = [
        values.get("name.prefix"),
        *(given if isinstance(given, list) else [given]),
        values.get("name.family"),
    ]
    return " ".join(str(p) for p in parts if p)
