"""What no store can hold is refused by the world model itself, the same way on every backend
(issue 10, defect 4): a NUL character (PostgreSQL text and ``jsonb`` cannot hold one), a lone
surrogate, an integer beyond 64 bits, nesting deeper than ``MAX_DEPTH``. The refusal is bad input
(``InvalidInput``, a 4xx on the API) naming the field, never the value, and never a
``StorageError`` (503, "retry later"); nothing of the batch is written.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehrbridge.errors import InvalidEvent, InvalidInput, StorageError
from ehrbridge.worldmodel.canonical import MAX_DEPTH
from ehrbridge.worldmodel.events import NewEvent, Observation, RecordKey, Source
from ehrbridge.worldmodel.store import START, Store

WS = "clinic"
T9 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NUL = "Nul\x00Name"


def say(**changes: Any) -> NewEvent:
    event = NewEvent(
        workspace=WS,
        entity_type="Patient",
        entity_id="p1",
        data={"name.family": "Reyes"},
        source=Source(kind="voice", id="agent-1"),
        confidence=0.5,
        effective_at=T9,
    )
    return replace(event, **changes)


def observe(data: dict[str, Any], **record: str) -> Observation:
    key = {"data_source": "ehr", "resource_type": "Basic", "external_id": "b1", **record}
    return Observation(
        workspace=WS,
        record=RecordKey(**key),
        entity_type="Basic",
        data=data,
        effective_at=T9,
    )


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


async def assert_refused(store: Store, item: NewEvent | Observation, field: str) -> None:
    """Refused as bad input naming ``field``; the good event beside it is not written either."""
    with pytest.raises(InvalidEvent) as caught:
        await store.append(WS, [say(entity_id="good"), item])
    assert not isinstance(caught.value, StorageError)
    assert caught.value.field == field, str(caught.value)
    assert "Nul" not in str(caught.value)  # the value is never echoed
    assert (await store.read_log(WS, START, limit=10)).events == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"data": {"name.family": NUL}}, "data.name.family"),
        ({"data": {"name.given": ["Ana", NUL]}}, "data.name.given[1]"),
        ({"evidence": {"transcript_span": NUL}}, "evidence.transcript_span"),
        ({"evidence": {"words": [{"w": NUL}]}}, "evidence.words[0].w"),
        ({"source": Source(kind="voice", id=NUL)}, "source.id"),
        ({"source": Source(kind="voice", id="a", ref=NUL)}, "source.ref"),
        ({"correlation_id": NUL}, "correlation_id"),
        ({"idempotency_key": NUL}, "idempotency_key"),
        ({"data": {"name.family": "\ud800"}}, "data.name.family"),
        ({"data": {"name.family": "x"}, "evidence": {"n": 2**64}}, "evidence.n"),
        (
            {"evidence": {"deep": nested(MAX_DEPTH)}},
            "evidence.deep" + "[0]" * 11 + "...",
        ),
    ],
)
async def test_an_event_no_store_can_hold_is_bad_input_naming_the_field(
    store: Store, changes: dict[str, Any], field: str
) -> None:
    await assert_refused(store, say(**changes), field)


@pytest.mark.parametrize(
    ("observation", "field"),
    [
        (observe({"resource": {"name": [{"family": NUL}]}}), "data.resource.name[0].family"),
        (observe({"resource": {"a": 1}}, external_id=NUL), "record.external_id"),
        (observe({"resource": {"a": 1}}, data_source=NUL), "record.data_source"),
        (
            observe({"resource": nested(MAX_DEPTH)}),
            "data.resource" + "[0]" * 11 + "...",
        ),
    ],
)
async def test_an_observation_no_store_can_hold_is_bad_input_naming_the_field(
    store: Store, observation: Observation, field: str
) -> None:
    await assert_refused(store, observation, field)


async def test_the_deepest_document_allowed_is_stored_and_read_back(store: Store) -> None:
    # the limit counts the document itself: data {"resource": ...} holds MAX_DEPTH - 1 levels
    deep = nested(MAX_DEPTH - 1)
    (result,) = await store.append(WS, [observe({"resource": deep})])
    state = await store.get_state(WS, result.entity_type, result.entity_id)
    assert state is not None and state.values["resource"] == deep
    assert await store.rebuild(WS) == 1


async def test_a_float_beyond_64_bits_reads_back_as_the_float_it_was(store: Store) -> None:
    # PostgreSQL's jsonb prints 1e20 as 100000000000000000000, which Python's own JSON parser
    # reads as an int no encoder of ours can write again (found by the API fuzz tests)
    data = {"name.family": "Reyes", "weight": 1e20, "evidence": [-1.5e300]}
    (result,) = await store.append(WS, [say(data=data, evidence={"span": 1e19})])
    (event,) = await store.read_entity(WS, "Patient", result.entity_id)
    assert event.data == data and event.evidence == {"span": 1e19}
    assert isinstance(event.data["weight"], float)
    state = await store.get_state(WS, "Patient", result.entity_id)
    assert state is not None and state.values["weight"] == 1e20
    orjson.dumps([event.data, state.values])  # and they can be written again


async def test_a_read_with_a_nul_is_bad_input_not_a_storage_failure(store: Store) -> None:
    # PostgreSQL refuses a NUL in a query parameter too: the read's safety net says bad input
    try:
        events = await store.read_entity(WS, "Patient", NUL)
    except StorageError:
        pytest.fail("a NUL in a read is bad input, not a database failure")
    except InvalidInput:
        return
    assert events == []


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.text(max_size=5),
    suffix=st.text(max_size=5),
    where=st.sampled_from(["data", "evidence", "key", "correlation_id"]),
)
async def test_a_nul_anywhere_in_an_event_is_refused_on_every_backend(
    store: Store, prefix: str, suffix: str, where: str
) -> None:
    bad = f"{prefix}\x00{suffix}"
    options: dict[str, dict[str, Any]] = {
        "data": {"data": {"name.family": bad}},
        "evidence": {"evidence": {"said": [bad]}},
        "key": {"evidence": {bad: 1}},
        "correlation_id": {"correlation_id": bad},
    }
    with pytest.raises(InvalidEvent):
        await store.append(WS, [say(**options[where])])
    assert (await store.read_log(WS, START, limit=10)).events == []
