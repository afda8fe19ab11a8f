"""Importing FHIR Bundles and NDJSON into the world model (docs/design.md §6).

Each resource becomes a source record ``(data source, resource type, id)`` observed by the world
model: unchanged content writes nothing, so importing the same files again writes zero events.
References between resources (``Patient/123``, ``urn:uuid:…``) become references between
entities; a reference to a record that is neither in the input nor already in the world model
points nowhere and fails its entry.

Units come from :mod:`ehrbridge.fhir.reader`. A transaction Bundle is written in one store
transaction, all or nothing; any other unit keeps its good entries and reports the bad ones, each
with its file and position. New Patients and Practitioners are resolved against the entities
already known (a certain match links, an uncertain one is recorded for review), before any
reference to them is translated, so every reference lands on the entity the record ends up in.

Memory stays bounded: the importer holds one unit at a time, plus a bounded cache of record ->
entity; what falls out of the cache is looked up in the store again.

Units are imported strictly one after another. Reading, parsing and mapping the next unit in a
worker thread while this one is written was tried and measured (Synthea, 10,307 resources, two
cores): no gain on SQLite and 7 % slower on PostgreSQL, because that work holds the GIL that the
store's Python (and, on PostgreSQL, the event loop between round trips) is waiting for.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from ehrbridge.errors import InvalidInput, RecordClaimed
from ehrbridge.fhir.mapping import Mapped, reference_paths, to_entity
from ehrbridge.fhir.reader import CHUNK, Entry, Unit, entry_id, expand, is_ndjson, read_units
from ehrbridge.fhir.references import (
    RELATIVE,
    Location,
    generic_references,
    json_references,
    path_text,
    replaced,
)
from ehrbridge.fhir.report import EntryError, ImportReport, Status
from ehrbridge.worldmodel.entities import spec_for
from ehrbridge.worldmodel.events import Observation, RecordKey, new_id, validate_observation
from ehrbridge.worldmodel.matching import MatchDecision
from ehrbridge.worldmodel.model import RESOLVED_TYPES, WorldModel, candidate_keys

#: Records remembered between units; beyond this the cache starts again from the store.
CACHE_SIZE = 200_000
#: Attempts at a unit whose new records concurrent writers keep linking first (each attempt
#: after the first follows a commit of theirs, so this is only reached by a livelock).
CLAIM_ATTEMPTS = 10
#: Resource types in reference order (a type refers to types before it), so NDJSON and Bulk
#: Data export files (one per type) are imported with their references pointing backwards.
TYPE_ORDER = (
    "Organization",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "RelatedPerson",
    "Coverage",
    "Appointment",
    "Encounter",
    "CareTeam",
    "Condition",
    "Procedure",
    "Immunization",
    "AllergyIntolerance",
    "Medication",
    "MedicationRequest",
    "Observation",
    "DiagnosticReport",
    "ImagingStudy",
    "Goal",
    "CarePlan",
    "Claim",
    "ExplanationOfBenefit",
)
_TYPE_ORDER = {t: i for i, t in enumerate(TYPE_ORDER)}


_STATUS: dict[str, Status] = {
    "created": "created",
    "unchanged": "unchanged",
    "duplicate": "unchanged",
}


class _Dangling(InvalidInput):
    """A reference to a record that is nowhere (yet: ``pending`` when it may still arrive)."""

    def __init__(self, message: str, *, pending: bool = False) -> None:
        super().__init__(message)
        self.pending = pending


@dataclass(kw_only=True)
class _Item:
    entry: Entry
    resource_type: str
    key: RecordKey
    mapped: Mapped
    entity: tuple[str, str] | None = None
    decision: MatchDecision | None = None
    observation: Observation | None = None
    #: a generic resource's references with where they are, found once (see _assign)
    refs: list[tuple[str, Location]] | None = None


class Importer:
    """Imports FHIR files into one workspace of the world model, as one data source."""

    def __init__(
        self,
        model: WorldModel,
        *,
        source: str = "import",
        unmapped: Literal["keep", "refuse"] = "keep",
        resolve: bool = True,
        chunk: int = CHUNK,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.model = model
        self.source = source
        self.unmapped: Literal["keep", "refuse"] = unmapped
        self.resolve = resolve
        self.chunk = chunk
        self.clock = clock
        self._cache: dict[RecordKey, tuple[str, str]] = {}
        #: records of the current unit that will not be written -> deferred (not failed)
        self._bad: dict[RecordKey, bool] = {}
        #: entries whose references point at records not imported yet, for a later pass
        self._deferred = _Deferred()
        self._deferring = True
        #: the current unit's entries to defer once it is imported (not at each attempt)
        self._to_defer: list[Entry] = []

    def link(self, key: RecordKey, entity: tuple[str, str]) -> None:
        """Import the record ``key``, when it is new, into ``entity`` (``(type, id)``) instead
        of resolving it: a record ehrbridge itself created at the source for an entity it knows
        (the outbound echo of a create)."""
        self._cache[key] = entity

    # --- the whole import --------------------------------------------------------------------

    async def import_paths(
        self,
        paths: Iterable[Path],
        *,
        on_unit: Callable[[Unit, ImportReport], None] | None = None,
    ) -> ImportReport:
        """Import every Bundle and NDJSON file under ``paths``; ``on_unit`` after each unit.

        An entry that refers to a record not imported yet (an Encounter file read before the
        Patient file) is set aside on disk and retried after the last file, pass after pass while
        passes make progress; what still points nowhere then fails."""
        report = ImportReport()
        files = order_files(expand(paths))
        report.files = len(files)
        with self._deferred:
            for unit in read_units(files, chunk=self.chunk):
                await self.import_unit(unit, report)
                if on_unit is not None:
                    on_unit(unit, report)
            await self._retry_deferred(report)
        return report

    async def import_units(self, units: Iterable[Unit]) -> ImportReport:
        """Import units made by the caller (pages of a FHIR search, say), with the same
        deferral of forward references as :meth:`import_paths`."""
        report = ImportReport()
        with self._deferred:
            for unit in units:
                await self.import_unit(unit, report)
            await self._retry_deferred(report)
        return report

    async def import_stream(
        self,
        units: AsyncIterable[Unit],
        report: ImportReport,
        on_unit: Callable[[Unit, ImportReport], None] | None = None,
    ) -> ImportReport:
        """Import units as they arrive (a file being downloaded, say) into ``report``, with the
        same deferral of forward references as :meth:`import_paths`: references to later units
        of the stream are settled (or failed) once it ends."""
        with self._deferred:
            async for unit in units:
                await self.import_unit(unit, report)
                if on_unit is not None:
                    on_unit(unit, report)
            await self._retry_deferred(report)
        return report

    async def _retry_deferred(self, report: ImportReport) -> None:
        before: int | None = None
        while self._deferred.count:
            waiting = self._deferred.count
            # A pass that imported nothing more ends it: the last pass fails what is left.
            self._deferring = before is None or waiting < before
            before = waiting
            for unit in self._deferred.drain(self.chunk):
                await self.import_unit(unit, report)
        self._deferring = True

    async def import_unit(self, unit: Unit, report: ImportReport) -> None:
        """Import one unit into ``report``.

        Another writer (an importer, a runner) may link a record that is new to this one while
        it translates references to the entity it chose: the store refuses the unit
        (:class:`RecordClaimed`) and it is imported again from the start against what that
        writer stored, its counts and deferrals kept only from the attempt that succeeded."""
        if unit.error is not None:
            report.errors.append(
                EntryError(file=unit.file, position="file", resource_type="", reason=unit.error)
            )
            report.count("(file)", "failed")
            return
        for attempt in range(1, CLAIM_ATTEMPTS + 1):
            trial = ImportReport()
            self._to_defer = []
            try:
                async with self._resolution(unit):
                    await self._import_once(unit, trial)
            except RecordClaimed:
                if attempt == CLAIM_ATTEMPTS:
                    raise
                continue
            for entry in self._to_defer:
                self._deferred.add(unit, entry)
            report.add(trial)
            return

    def _resolution(self, unit: Unit) -> AbstractAsyncContextManager[None]:
        """The store's resolution lock for a unit that may resolve new Patients or
        Practitioners against those known, so that a concurrent writer's new ones are either
        seen by the matching or see this unit's (docs/design.md, "Concurrent writers")."""
        if self.resolve and any(
            entry.resource is not None and entry.resource.get("resourceType") in RESOLVED_TYPES
            for entry in unit.entries
        ):
            return self.model.store.resolving(self.model.workspace)
        return nullcontext()

    async def _import_once(self, unit: Unit, report: ImportReport) -> None:
        self._bad = {}
        items, failures = self._map(unit)
        if unit.atomic and failures:
            self._fail_transaction(unit, items, failures, report)
            return
        items = self._once_each_record(items, failures, report)
        assigned: list[RecordKey] = []
        written = False
        try:
            items = await self._assign(unit, items, failures, assigned)
            items = self._observe(unit, items, failures)
            if unit.atomic and failures:
                self._fail_transaction(unit, items, failures, report)
                return
            try:
                written = await self._write(unit, items, failures, report)
            except InvalidInput as exc:
                if not unit.atomic:
                    raise
                failures.append((items[0].entry, "Bundle", str(exc)))
                self._fail_transaction(unit, items, failures, report)
                return
        finally:
            # Forget the new entities of records that were not written, so no later reference
            # is translated to an entity that does not exist.
            kept = {item.key for item in items} if written else set()
            for key in assigned:
                if key not in kept:
                    self._cache.pop(key, None)
        for entry, resource_type, reason in failures:
            self._fail(unit, entry, resource_type, reason, report)

    # --- steps -------------------------------------------------------------------------------

    def _map(self, unit: Unit) -> tuple[list[_Item], list[tuple[Entry, str, str]]]:
        items: list[_Item] = []
        failures: list[tuple[Entry, str, str]] = []
        for entry in unit.entries:
            if entry.resource is None:
                failures.append((entry, entry.resource_type, entry.error or "no resource"))
                continue
            resource_type = str(entry.resource["resourceType"])
            external_id = entry_id(entry)
            if not external_id:
                failures.append((entry, resource_type, "id: missing, and no fullUrl to name it"))
                continue
            key = RecordKey(
                data_source=self.source, resource_type=resource_type, external_id=external_id
            )
            try:
                mapped = to_entity(entry.resource, unmapped=self.unmapped)
            except InvalidInput as exc:
                failures.append((entry, resource_type, str(exc)))
                self._bad[key] = False
                continue
            items.append(_Item(entry=entry, resource_type=resource_type, key=key, mapped=mapped))
        return items, failures

    @staticmethod
    def _once_each_record(
        items: list[_Item], failures: list[tuple[Entry, str, str]], report: ImportReport
    ) -> list[_Item]:
        """A record twice in one unit: an identical copy counts as unchanged; a copy with other
        content fails, naming the first copy's position (which one is right is never chosen
        silently), and in a transaction that fails the whole unit. The reader does the same
        across the units of a file (:mod:`ehrbridge.fhir.reader`); this covers units made
        elsewhere (pages of a FHIR search)."""
        first: dict[RecordKey, _Item] = {}
        for item in items:
            first.setdefault(item.key, item)
        if len(first) == len(items):
            return items
        for item in items:
            kept = first[item.key]
            if kept is item:
                continue
            if kept.entry.resource == item.entry.resource:
                report.count(item.resource_type, "unchanged")
                continue
            reason = (
                f"{item.key.ref} is also at {kept.entry.position}, with different content: "
                "only the first copy is taken"
            )
            failures.append((item.entry, item.resource_type, reason))
        return list(first.values())

    async def _assign(
        self,
        unit: Unit,
        items: list[_Item],
        failures: list[tuple[Entry, str, str]],
        assigned: list[RecordKey],
    ) -> list[_Item]:
        """Give every item its entity: the record's, or (new) the one it belongs to, a certain
        match, or a new id. Then prefetch the entities of every record referenced."""
        wanted = [item.key for item in items if item.key not in self._cache]
        self._remember(await self.model.store.record_entities(self.model.workspace, wanted))
        await self._prefetch(unit, {i.mapped.belongs_to for i in items if i.mapped.belongs_to})
        ready: list[_Item] = []
        # New records of this unit by candidate key, so copies of one person in one unit (every
        # Synthea bundle carries its practitioners) resolve to each other, not only to the store.
        fresh: dict[str, dict[str, Mapping[str, Any]]] = {}
        # Records that belong to another entity go last: their owner may be new in this unit.
        for item in sorted(items, key=lambda i: i.mapped.belongs_to is not None):
            item.entity = self._cache.get(item.key)
            if item.entity is None and item.mapped.belongs_to is not None:
                try:
                    item.entity = self._entity_of(unit, item.mapped.belongs_to)
                except _Dangling as exc:
                    why = _Dangling(f"belongs to: {exc}", pending=exc.pending)
                    self._set_aside(unit, item, why, failures)
                    continue
            elif item.entity is None:
                item.entity = await self._resolve(item, fresh)
            if item.key not in self._cache:
                self._cache[item.key] = item.entity
                assigned.append(item.key)
            ready.append(item)
        refs: set[str] = set()
        for item in ready:
            item.refs = generic_references(item.mapped)
            refs.update(ref for ref, _ in item.refs)
            for value in reference_paths(item.mapped).values():
                refs.update(value if isinstance(value, list) else [value])
        await self._prefetch(unit, refs)
        return ready

    async def _resolve(
        self, item: _Item, fresh: dict[str, dict[str, Mapping[str, Any]]]
    ) -> tuple[str, str]:
        """The entity of a record seen for the first time: a certain match, or a new one."""
        entity_type, data = item.mapped.entity_type, item.mapped.data
        if not self.resolve or entity_type not in RESOLVED_TYPES:
            return entity_type, new_id()
        keys = candidate_keys(entity_type, data)
        also = {eid: fields for key in keys for eid, fields in fresh.get(key, {}).items()}
        item.decision = await self.model.match(entity_type, data, also=also)
        certain = item.decision is not None and item.decision.kind == "certain"
        entity_id = str(item.decision.entity_id) if certain and item.decision else new_id()
        for key in keys:
            fresh.setdefault(key, {})[entity_id] = data
        return entity_type, entity_id

    def _observe(
        self, unit: Unit, items: list[_Item], failures: list[tuple[Entry, str, str]]
    ) -> list[_Item]:
        """Translate references and build each item's observation. Failures and deferrals are
        moved out, and so are the items that refer to them, until none is left."""
        now = self.clock()
        while True:
            ready: list[_Item] = []
            for item in items:
                reason = self._observation(unit, item, now)
                if reason is None:
                    ready.append(item)
                    continue
                self._set_aside(unit, item, reason, failures)
            if len(ready) == len(items):
                return ready
            items = ready

    def _set_aside(
        self,
        unit: Unit,
        item: _Item,
        reason: InvalidInput,
        failures: list[tuple[Entry, str, str]],
    ) -> None:
        """Defer an item whose reference may still arrive; fail it otherwise."""
        pending = isinstance(reason, _Dangling) and reason.pending
        if pending and self._deferring and not unit.atomic:
            self._to_defer.append(item.entry)
            self._bad[item.key] = True
        else:
            failures.append((item.entry, item.resource_type, str(reason)))
            self._bad[item.key] = False

    def _observation(self, unit: Unit, item: _Item, now: datetime) -> InvalidInput | None:
        """Build ``item.observation``; or the reason it cannot be built."""
        assert item.entity is not None and item.entry.resource is not None
        try:
            data = self._translate(unit, item)
            observation = Observation(
                workspace=self.model.workspace,
                record=item.key,
                entity_type=item.entity[0],
                entity_id=item.entity[1],
                data=data,
                effective_at=last_updated(item.entry.resource) or now,
            )
            # Kinds and paths only: the data is JSON (it was parsed), and the store makes it
            # canonical once when it hashes it.
            validate_observation(observation, self.model.workspace, json_checked=True)
        except InvalidInput as exc:
            return exc
        item.observation = observation
        return None

    async def _write(
        self,
        unit: Unit,
        items: list[_Item],
        failures: list[tuple[Entry, str, str]],
        report: ImportReport,
    ) -> bool:
        """Write the items' observations in one store transaction; True when written. A batch
        the store refuses is written entry by entry to find the culprits (not a transaction)."""
        if not items:
            return False
        observations = [item.observation for item in items if item.observation is not None]
        try:
            results = await self.model.ingest(
                observations, decisions=[item.decision for item in items]
            )
        except InvalidInput:
            if unit.atomic or len(items) == 1:
                raise
            for item in items:
                try:
                    await self._write(unit, [item], failures, report)
                except InvalidInput as exc:
                    failures.append((item.entry, item.resource_type, str(exc)))
                    self._cache.pop(item.key, None)
            return True
        for item, result in zip(items, results, strict=True):
            status = result.result.status
            report.count(item.resource_type, _STATUS.get(status, "updated"))
            report.events += len(result.result.events)
        return True

    # --- references --------------------------------------------------------------------------

    def _remember(self, found: Mapping[RecordKey, tuple[str, str]]) -> None:
        if len(self._cache) + len(found) > CACHE_SIZE:
            self._cache.clear()
        self._cache.update(found)

    def _key_of(self, unit: Unit, ref: str) -> RecordKey | None:
        """The record a reference names; None for references kept as they are (contained
        ``#id``, absolute URLs). Raises :class:`_Dangling` for a ``urn:`` not in the Bundle."""
        if ref in unit.full_urls:
            resource_type, external_id = unit.full_urls[ref]
        elif match := RELATIVE.match(ref):
            resource_type, external_id = match.group(1), match.group(2)
        elif ref.startswith("urn:"):
            raise _Dangling(f"reference {ref!r} is not a fullUrl of this Bundle")
        else:
            return None
        return RecordKey(
            data_source=self.source, resource_type=resource_type, external_id=external_id
        )

    async def _prefetch(self, unit: Unit, refs: Iterable[str]) -> None:
        wanted: list[RecordKey] = []
        for ref in refs:
            try:
                key = self._key_of(unit, ref)
            except _Dangling:
                continue
            if key is not None and key not in self._cache:
                wanted.append(key)
        if wanted:
            self._remember(await self.model.store.record_entities(self.model.workspace, wanted))

    def _entity_of(self, unit: Unit, ref: str) -> tuple[str, str]:
        key = self._key_of(unit, ref)
        if key is None:
            raise _Dangling(f"reference {ref!r} is not to a record (contained or absolute)")
        if key in self._bad:
            raise _Dangling(
                f"reference {ref!r} points to an entry that was not imported",
                pending=self._bad[key],
            )
        found = self._cache.get(key)
        if found is None:
            raise _Dangling(f"reference {ref!r} points nowhere", pending=True)
        return found

    def _translate(self, unit: Unit, item: _Item) -> dict[str, Any]:
        mapped = item.mapped
        data = dict(mapped.data)
        for path, value in reference_paths(mapped).items():
            try:
                data[path] = (
                    [self._entity_ref(unit, r) for r in value]
                    if isinstance(value, list)
                    else self._entity_ref(unit, value)
                )
            except _Dangling as exc:
                raise _Dangling(
                    f"{mapped.entity_type}.{path}: {exc}", pending=exc.pending
                ) from None
        if spec_for(mapped.entity_type) is None and isinstance(data.get("resource"), dict):
            refs = item.refs if item.refs is not None else generic_references(mapped)
            data["resource"] = self._translate_json(unit, data["resource"], refs)
        return data

    def _entity_ref(self, unit: Unit, ref: str) -> str:
        entity_type, entity_id = self._entity_of(unit, ref)
        return f"{entity_type}/{entity_id}"

    def _translate_json(
        self, unit: Unit, resource: dict[str, Any], refs: list[tuple[str, Location]]
    ) -> dict[str, Any]:
        """``resource`` with every reference in ``refs`` (all of its own, see
        :func:`json_references`) translated; contained and absolute ones are left as they are.
        Only the objects and lists on the way to a changed reference are copied."""
        changes: list[tuple[Location, str]] = []
        for ref, where in refs:
            try:
                key = self._key_of(unit, ref)
                if key is not None:
                    changes.append((where, self._entity_ref(unit, ref)))
            except _Dangling as exc:
                raise _Dangling(f"{path_text(where)}: {exc}", pending=exc.pending) from None
        return replaced(resource, changes)

    # --- failures ----------------------------------------------------------------------------

    @staticmethod
    def _fail(
        unit: Unit, entry: Entry, resource_type: str, reason: str, report: ImportReport
    ) -> None:
        report.errors.append(
            EntryError(
                file=unit.file, position=entry.position, resource_type=resource_type, reason=reason
            )
        )
        report.count(resource_type or "(unreadable)", "failed")

    def _fail_transaction(
        self,
        unit: Unit,
        items: list[_Item],
        failures: list[tuple[Entry, str, str]],
        report: ImportReport,
    ) -> None:
        """A transaction with errors imports nothing: every entry counts as failed, the bad ones
        with their reasons."""
        for entry, resource_type, reason in failures:
            self._fail(unit, entry, resource_type, reason, report)
        bad = {id(entry) for entry, _, _ in failures}
        rest = [item for item in items if id(item.entry) not in bad]
        for item in rest:
            report.count(item.resource_type, "failed")
        report.errors.append(
            EntryError(
                file=unit.file,
                position="transaction",
                resource_type="Bundle",
                reason=f"not imported: {len(failures)} of {len(failures) + len(rest)} entries "
                "have errors, and a transaction is all or nothing",
            )
        )


class _Deferred:
    """Entries set aside on disk (a temporary NDJSON file) until the end of an import."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self.count = 0

    def __enter__(self) -> _Deferred:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
        self._file, self.count = None, 0

    def add(self, unit: Unit, entry: Entry) -> None:
        assert entry.resource is not None
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="ehrbridge-deferred-")  # noqa: SIM115 (closed by drain or __exit__)
        refs = {ref for ref, _ in json_references(entry.resource)}
        line = {
            "file": unit.file,
            "kind": unit.kind,
            "position": entry.position,
            "fullUrl": entry.full_url,
            "resource": entry.resource,
            "fullUrls": {u: unit.full_urls[u] for u in refs if u in unit.full_urls},
        }
        self._file.write(orjson.dumps(line) + b"\n")
        self.count += 1

    def drain(self, chunk: int) -> Iterator[Unit]:
        """The deferred entries as units (consecutive entries of one file together), and an
        empty store for what is deferred again meanwhile."""
        file, self._file, self.count = self._file, None, 0
        if file is None:
            return
        with file:
            file.seek(0)
            group: list[dict[str, Any]] = []
            for raw in file:
                line = orjson.loads(raw)
                if group and (line["file"] != group[0]["file"] or len(group) >= chunk):
                    yield _unit_of(group)
                    group = []
                group.append(line)
            if group:
                yield _unit_of(group)


def _unit_of(lines: list[dict[str, Any]]) -> Unit:
    full_urls: dict[str, tuple[str, str]] = {}
    for line in lines:
        full_urls.update({u: (t, i) for u, (t, i) in line["fullUrls"].items()})
    return Unit(
        file=lines[0]["file"],
        kind=lines[0]["kind"],
        entries=[
            Entry(position=line["position"], resource=line["resource"], full_url=line["fullUrl"])
            for line in lines
        ],
        full_urls=full_urls,
    )


def last_updated(resource: Mapping[str, Any]) -> datetime | None:
    """A resource's ``meta.lastUpdated`` as an aware datetime; None when absent or malformed."""
    meta = resource.get("meta")
    raw = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def order_files(files: list[Path]) -> list[Path]:
    """Bundles first as given, then NDJSON files by the resource type of their first line:
    referenced types before the types that refer to them (organizations and practitioners, then
    patients, encounters, clinical data, claims; types not listed last), else as given."""

    def rank(indexed: tuple[int, Path]) -> tuple[int, int]:
        position, path = indexed
        if not is_ndjson(path):
            return (-1, position)
        return (_TYPE_ORDER.get(_first_type(path), len(_TYPE_ORDER)), position)

    return [path for _, path in sorted(enumerate(files), key=rank)]


def _first_type(path: Path) -> str:
    try:
        unit = next(read_units([path], chunk=1), None)
    except OSError:
        return ""
    if unit is None or not unit.entries or unit.entries[0].resource is None:
        return ""
    return str(unit.entries[0].resource.get("resourceType", ""))
