"""The queried channel (docs/design.md §10): search and read entities while the call goes on.

Everything is found through the world model's lookup index (``matching.lookup_keys``), so a
search answers in index lookups rather than scans. That decides what can be searched:

- ``text`` matches whole family or given names (``name:`` / ``given:`` keys; case and accents
  folded), every word of it; not the start of a name, not other fields (a Location's name, a
  medication), not free text inside generic resources;
- ``identifier`` matches ``system|value`` exactly (``id:``), or a bare MRN or NPI (``mrn:``,
  ``npi:``);
- ``phone`` (any dialled form, normalised to E.164) and ``email`` (case-folded) match exactly.

At least one of them is needed: an entity type alone lists nothing (there is no type index).
"""

from __future__ import annotations

from dataclasses import dataclass

from ehrbridge.api.models import EntitySearch, EventView, PatientSearch, Timeline
from ehrbridge.api.permissions import type_named
from ehrbridge.errors import InvalidInput, NotFound
from ehrbridge.worldmodel.events import Event
from ehrbridge.worldmodel.matching import normalize_email, normalize_name, normalize_phone
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.projection import EntityState
from ehrbridge.worldmodel.queries import PatientQuery, search_patients


@dataclass(frozen=True, kw_only=True)
class Found:
    """Entities found (at most the limit) and whether more matched."""

    states: list[EntityState]
    truncated: bool


def search_keys(search: EntitySearch) -> list[set[str]]:
    """Lookup-key alternatives per criterion: an entity must hold one key of every set.

    >>> [sorted(keys) for keys in search_keys(EntitySearch(text="María", phone="617 555 0142"))]
    [['given:maria', 'name:maria'], ['phone:+16175550142']]
    """
    keyed: list[set[str]] = []
    if search.text is not None:
        words = [w for w in (normalize_name(p) for p in search.text.split()) if w]
        if not words:
            raise InvalidInput("text: no letters to search for")
        keyed += [{f"name:{w}", f"given:{w}"} for w in words]
    if search.identifier is not None:
        ident = search.identifier.strip()
        keyed.append({f"id:{ident}"} if "|" in ident else {f"mrn:{ident}", f"npi:{ident}"})
    if search.phone is not None:
        phone = normalize_phone(search.phone)
        if phone is None:
            raise InvalidInput("phone: not a phone number")
        keyed.append({f"phone:{phone}"})
    if search.email is not None:
        email = normalize_email(search.email)
        if email is None:
            raise InvalidInput("email: not an email address")
        keyed.append({f"email:{email}"})
    if not keyed:
        raise InvalidInput("an entity search needs text, an identifier, a phone or an email")
    return keyed


async def search_entities(model: WorldModel, search: EntitySearch) -> Found:
    """Entities holding a key of every criterion of ``search``, merged ones as survivors."""
    matched: dict[tuple[str, str], EntityState] | None = None
    for alternatives in search_keys(search):
        found: dict[tuple[str, str], EntityState] = {}
        for key in sorted(alternatives):
            for state in await model.store.find(model.workspace, key, search.entity_type):
                found[(state.entity_type, state.entity_id)] = state
        matched = found if matched is None else {k: v for k, v in found.items() if k in matched}
        if not matched:
            return Found(states=[], truncated=False)
    assert matched is not None
    results: dict[tuple[str, str], EntityState] = {}
    for state in matched.values():
        if state.merged_into:
            survivor = await model.state(state.entity_type, state.merged_into)
            if survivor is None:
                continue
            state = survivor
        results[(state.entity_type, state.entity_id)] = state
    ordered = [results[k] for k in sorted(results)]
    return Found(states=ordered[: search.limit], truncated=len(ordered) > search.limit)


async def find_patients(model: WorldModel, search: PatientSearch) -> Found:
    """Patients matching ``search`` (see :mod:`ehrbridge.worldmodel.queries`)."""
    query = PatientQuery(
        name=search.name,
        birth_date=search.birth_date,
        identifier=search.identifier,
        phone=search.phone,
        gender=search.gender,
        address=search.address,
    )
    states = await search_patients(model, query, limit=search.limit + 1)
    return Found(states=states[: search.limit], truncated=len(states) > search.limit)


async def require_state(model: WorldModel, entity_type: str, entity_id: str) -> EntityState:
    """The entity's current state; :class:`NotFound` when this workspace has no such entity
    (the same whether it exists in another workspace or nowhere)."""
    state = await model.state(entity_type, entity_id)
    if state is None:
        raise NotFound(f"no such {type_named(entity_type)} in this workspace")
    return state


async def timeline(
    model: WorldModel, entity_type: str, entity_id: str, *, after_version: int, limit: int
) -> Timeline:
    """The entity's own events after ``after_version``, oldest first, at most ``limit``."""
    events: list[Event] = await model.events(entity_type, entity_id)
    if not events:
        raise NotFound(f"no such {type_named(entity_type)} in this workspace")
    page = [e for e in events if e.version > after_version][:limit]
    more = bool(page) and page[-1].version < events[-1].version
    return Timeline(
        entity_type=entity_type,
        entity_id=entity_id,
        events=[EventView.of(e) for e in page],
        next_version=page[-1].version if more else None,
    )
