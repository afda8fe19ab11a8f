"""Reference fields of REST records: from a lookup value to ``EntityType/entity_id``.

Two ways, both what the world model already keeps (no table of our own):

- ``by: record``: the value is the source's own id of the record pointed to (an appointment's
  ``patient_id`` naming a record of the same source's ``Patient`` resource): the store's record
  keys (:meth:`~ehrbridge.worldmodel.store.StateStore.record_entities`).
- ``by: mrn | phone | email | identifier``: the value is an identity key, looked up in the
  store's lookup-key index (:func:`~ehrbridge.worldmodel.matching.lookup_keys`), so it finds the
  entity whichever source it came from. Exactly one entity (a merged one counts as its
  survivor) links; none, or more than one, does not: we never guess.

An unresolved link leaves the field out, unless the field is ``required``: then the record fails
and, having failed, holds the cursor, so it is read again once its patient has arrived.
"""

from __future__ import annotations

from collections.abc import Iterable

from ehrbridge.connectors.rest.spec import Link
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.matching import normalize_email, normalize_phone
from ehrbridge.worldmodel.store import Store


class Linker:
    """Resolves links for one poll, remembering what it found."""

    def __init__(self, store: Store, workspace: str, source: str, phone_region: str) -> None:
        self.store, self.workspace, self.source = store, workspace, source
        self.phone_region = phone_region
        self._found: dict[tuple[str, str, str], str | None] = {}
        #: why the last lookups failed: (type, by, value) -> reason (no values in reasons)
        self.reasons: dict[tuple[str, str, str], str] = {}

    async def prefetch(self, wanted: Iterable[tuple[Link, str]]) -> None:
        """Resolve every ``(link, value)`` not resolved yet (records in one round trip)."""
        records: dict[RecordKey, tuple[str, str, str]] = {}
        key: tuple[str, str, str]
        for link, value in wanted:
            key = (link.type, link.by, value)
            if key in self._found:
                continue
            if link.by == "record":
                record = RecordKey(
                    data_source=self.source, resource_type=link.type, external_id=value
                )
                records[record] = key
            else:
                self._found[key] = await self._by_key(link, value)
        if records:
            known = await self.store.record_entities(self.workspace, list(records))
            for record, key in records.items():
                entity = known.get(record)
                self._found[key] = f"{entity[0]}/{entity[1]}" if entity else None
                if entity is None:
                    self.reasons[key] = f"no {key[0]} record with that id at this source yet"

    def resolved(self, link: Link, value: str) -> str | None:
        """The reference found for ``(link, value)`` (after :meth:`prefetch`), or None."""
        return self._found.get((link.type, link.by, value))

    def reason(self, link: Link, value: str) -> str:
        """Why ``(link, value)`` did not resolve (never the value)."""
        return self.reasons.get((link.type, link.by, value), f"no {link.type} found")

    async def _by_key(self, link: Link, value: str) -> str | None:
        where = (link.type, link.by, value)
        lookup = self._lookup_key(link, value)
        if lookup is None:
            self.reasons[where] = f"not a valid {link.by} to look a {link.type} up by"
            return None
        entities: set[str] = set()
        for state in await self.store.find(self.workspace, lookup, link.type):
            entities.add(state.merged_into or state.entity_id)
        if len(entities) == 1:
            return f"{link.type}/{entities.pop()}"
        self.reasons[where] = (
            f"no {link.type} with that {link.by}"
            if not entities
            else f"{len(entities)} {link.type} entities share that {link.by}; not linked"
        )
        return None

    def _lookup_key(self, link: Link, value: str) -> str | None:
        if link.by == "phone":
            phone = normalize_phone(value, self.phone_region)
            return f"phone:{phone}" if phone else None
        if link.by == "email":
            email = normalize_email(value)
            return f"email:{email}" if email else None
        if link.by == "mrn":
            return f"mrn:{value.strip()}" if value.strip() else None
        return f"id:{value.strip()}" if value.strip() else None  # identifier: system|value
