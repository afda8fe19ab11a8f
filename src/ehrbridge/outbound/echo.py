"""The echo of a write: the sink's record, as the sink answered it, recorded as that sink's
snapshot (docs/design.md §5.3 example 4, §9).

After a write lands, the sink holds the value the world model already has; recording the sink's
answer as a snapshot of the record now makes the sink's own source say so (the entity's field is
then the sink's, at its confidence), and the next poll reads content it has seen: no event, no
conflict. A created record is linked to the entity it was created for, never resolved again.

A FHIR sink's answer (a resource) is imported as the poller would import it. A sink whose answers
are not records of a known shape (a REST sink) has a created record linked to its entity with an
empty snapshot: its next poll then asserts the record's fields as the sink's own (the same values:
no conflict), and never takes it for a new record of another entity.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ehrbridge.fhir.importer import Importer
from ehrbridge.fhir.reader import Unit, resource_entry
from ehrbridge.outbound.outbox import OutboxItem
from ehrbridge.outbound.sinks import Delivered
from ehrbridge.worldmodel.events import Observation, RecordKey
from ehrbridge.worldmodel.model import WorldModel

log = logging.getLogger("ehrbridge.outbound")


class SinkEcho:
    """Records a sink's answer to a write as the sink's snapshot of the record."""

    def __init__(self, model: WorldModel) -> None:
        self.model = model

    async def __call__(self, sink: str, item: OutboxItem, delivered: Delivered) -> None:
        record = delivered.record
        resource_type, _, external_id = delivered.ref.partition("/")
        key = RecordKey(data_source=sink, resource_type=resource_type, external_id=external_id)
        if not record or not isinstance(record.get("resourceType"), str):
            if delivered.created:  # link it; its next poll fills the snapshot in
                link = Observation(
                    workspace=self.model.workspace,
                    record=key,
                    entity_type=item.entity_type,
                    entity_id=item.entity_id,
                    data={},
                    effective_at=datetime.now(UTC),
                )
                await self.model.ingest([link], resolve=False)
            return
        # linked, so never resolved: no resolution lock (on PostgreSQL it holds a pooled
        # connection while its waiters hold others, and a sink's concurrent deliveries emptied
        # the pool that way)
        importer = Importer(self.model, source=sink, resolve=False)
        importer.link(key, (item.entity_type, item.entity_id))
        unit = Unit(
            file=f"{sink} write {item.id}",
            kind="searchset",
            entries=[resource_entry("entry[0]", dict(record))],
        )
        report = await importer.import_units([unit])
        for error in report.errors:  # the next poll records it instead; paths only, no values
            log.warning("echo of item %s not recorded: %s", item.id, error.reason)
