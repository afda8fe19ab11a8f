"""The echo of a write on both backends (docs/design.md §5.3 example 4, §9): a created record is
linked to the entity it was created for, with or without the sink's answer as a record."""

from __future__ import annotations

from datetime import UTC, datetime

from ehrbridge.confidence import Level
from ehrbridge.outbound.echo import SinkEcho
from ehrbridge.outbound.outbox import ItemStatus, OutboxItem
from ehrbridge.outbound.sinks import Delivered
from ehrbridge.storage import Backend
from ehrbridge.testing import outbox_item
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.model import WorldModel

WS = "clinic"
NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def item(entity_id: str) -> OutboxItem:
    return outbox_item(
        workspace=WS,
        sink="clinic",
        key="ob-clinic-1",
        lane=f"Patient/{entity_id}",
        entity_id=entity_id,
        event_id="e1",
        status=ItemStatus.SYNCED,
        attempts=1,
    )


async def test_a_record_created_without_an_answer_is_linked_to_its_entity(
    backend: Backend,
) -> None:
    model = WorldModel(backend.worldmodel, WS)
    await model.write_voice(
        "Patient", "e1", {"phone.mobile": "+16175550199"}, level=Level.VOICE_CONFIRMED, agent="a"
    )
    echo = SinkEcho(model)
    await echo("clinic", item("e1"), Delivered(ref="Patient/P1", version=None, created=True))
    key = RecordKey(data_source="clinic", resource_type="Patient", external_id="P1")
    row = await backend.worldmodel.get_record(WS, key)
    assert row is not None and (row.entity_type, row.entity_id) == ("Patient", "e1")
    assert len(await model.events("Patient", "e1")) == 1  # linked, nothing asserted


async def test_a_fhir_answer_is_imported_as_the_sinks_snapshot(backend: Backend) -> None:
    model = WorldModel(backend.worldmodel, WS)
    await model.write_voice(
        "Patient", "e2", {"phone.mobile": "+16175550199"}, level=Level.VOICE_CONFIRMED, agent="a"
    )
    resource = {
        "resourceType": "Patient",
        "id": "f1",
        "meta": {"versionId": "1", "lastUpdated": "2026-12-04T09:00:00Z"},
        "telecom": [{"system": "phone", "value": "+16175550199", "use": "mobile"}],
    }
    delivered = Delivered(ref="Patient/f1", version="1", created=True, record=resource)
    await SinkEcho(model)("ehr", item("e2"), delivered)
    state = await model.state("Patient", "e2")
    assert state is not None
    phone = state.fields["phone.mobile"]
    assert (phone.value, phone.source.kind, phone.source.id) == ("+16175550199", "ehr", "ehr")
