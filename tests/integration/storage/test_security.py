"""API keys and the audit trail, one contract on both backends (docs/design.md §11)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ehrbridge.api.keys import parse_key
from ehrbridge.api.store import (
    DEFAULT_AGENT_WRITE_TYPES,
    ApiKey,
    AuditEntry,
    Outcome,
    SecurityStore,
)
from ehrbridge.errors import InvalidInput, StorageError
from ehrbridge.storage import Backend
from ehrbridge.storage.security import KeyCache
from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from ehrbridge.testing import FakeClock
from ehrbridge.worldmodel.store import Store
from tests.conftest import MakeBackend

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NO_CACHE = KeyCache(timedelta(0))


class Ticks:
    """A monotonic clock moved by hand, for the key cache."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def security(backend: Backend) -> SecurityStore:
    return backend.security


# --- keys -----------------------------------------------------------------------------------


async def test_a_created_key_authenticates_as_its_workspace_and_role(
    security: SecurityStore, clock: FakeClock
) -> None:
    secret, key = await security.create_key("clinic-a", "agent", name="front desk bot")
    assert parse_key(secret) == key.key_id
    assert key.workspace == "clinic-a" and key.role == "agent" and key.name == "front desk bot"
    assert key.write_types == DEFAULT_AGENT_WRITE_TYPES
    assert key.created_at == clock.now and key.revoked_at is None
    principal = await security.authenticate(secret)
    assert principal is not None
    assert (principal.workspace, principal.key_id, principal.role) == (
        "clinic-a",
        key.key_id,
        "agent",
    )
    assert principal.name == "front desk bot"
    assert principal.write_types == DEFAULT_AGENT_WRITE_TYPES
    # the key's secret is not part of what is stored or listed
    assert secret not in repr(await security.list_keys("clinic-a"))


async def test_write_scope_and_roles_are_kept(security: SecurityStore) -> None:
    secret, key = await security.create_key("ws", "agent", write_types=frozenset({"Appointment"}))
    principal = await security.authenticate(secret)
    assert principal is not None and principal.write_types == {"Appointment"}
    assert key.write_types == {"Appointment"}
    for role in ("operator", "admin"):
        secret, _ = await security.create_key("ws", role, write_types=frozenset())
        principal = await security.authenticate(secret)
        assert principal is not None and principal.role == role
        assert principal.write_types == frozenset()


async def test_list_keys_oldest_first_with_revoked_ones(
    security: SecurityStore, clock: FakeClock
) -> None:
    created = []
    for n in range(3):
        _, key = await security.create_key("ws", "agent", name=f"k{n}")
        created.append(key.key_id)
        clock.advance()
    # same creation time: still in creation order
    for n in range(3, 5):
        _, key = await security.create_key("ws", "operator", name=f"k{n}")
        created.append(key.key_id)
    assert await security.revoke_key("ws", created[1])
    listed = await security.list_keys("ws")
    assert [k.key_id for k in listed] == created
    assert [k.name for k in listed] == ["k0", "k1", "k2", "k3", "k4"]
    assert [k.revoked_at is not None for k in listed] == [False, True, False, False, False]
    assert listed[1].revoked_at == clock.now
    assert await security.list_keys("other") == []


async def test_revoked_keys_stop_authenticating_at_once_and_revoking_twice_keeps_the_time(
    security: SecurityStore, clock: FakeClock
) -> None:
    secret, key = await security.create_key("ws", "admin")
    other_secret, _ = await security.create_key("ws", "admin")
    assert await security.authenticate(secret) is not None  # now in the cache
    revoked_at = clock.now
    assert await security.revoke_key("ws", key.key_id)
    assert await security.authenticate(secret) is None
    clock.advance()
    assert await security.revoke_key("ws", key.key_id)
    [stored, _] = await security.list_keys("ws")
    assert stored.revoked_at == revoked_at
    assert await security.authenticate(other_secret) is not None
    assert not await security.revoke_key("ws", "0123456789ab")


async def test_a_workspace_never_sees_or_revokes_another_workspaces_keys(
    security: SecurityStore,
) -> None:
    secret_a, key_a = await security.create_key("a", "admin")
    secret_b, _ = await security.create_key("b", "admin")
    principal = await security.authenticate(secret_a)
    assert principal is not None and principal.workspace == "a"
    principal = await security.authenticate(secret_b)
    assert principal is not None and principal.workspace == "b"
    assert [k.workspace for k in await security.list_keys("b")] == ["b"]
    assert not await security.revoke_key("b", key_a.key_id)
    assert await security.authenticate(secret_a) is not None
    [listed] = await security.list_keys("a")
    assert listed.revoked_at is None


async def test_anything_but_an_issued_key_authenticates_as_nobody(security: SecurityStore) -> None:
    secret, key = await security.create_key("ws", "admin")
    body = secret.rsplit("_", 1)[1]
    flipped = ("B" if body[0] == "A" else "A") + body[1:]
    other_id = "0123456789ab" if key.key_id != "0123456789ab" else "ba9876543210"
    presented = [
        "",
        " ",
        "ehb_",
        "ehb__",
        secret[:-1],
        secret + "A",
        f"ehb_{key.key_id}_{flipped}",  # tampered secret, right key id
        f"ehb_{other_id}_{body}",  # right secret, unknown key id
        secret.upper(),
        f"Bearer {secret}",
        f"{secret}\n",
        f" {secret}",
        secret.replace("ehb_", "EHB_"),
        key.key_id,
        "x" * 10_000,
        "ehb_' OR 1=1 --_" + "A" * 43,
    ]
    for attempt in presented:
        assert await security.authenticate(attempt) is None, attempt
    # a cached key's wrong secret is refused too
    assert await security.authenticate(secret) is not None
    assert await security.authenticate(f"ehb_{key.key_id}_{flipped}") is None


async def test_revocation_by_another_process_takes_effect_within_the_cache_ttl(
    make_backend: MakeBackend,
) -> None:
    ticks = Ticks()
    cache = KeyCache(timedelta(seconds=5), clock=ticks)
    server = (await make_backend(key_cache=cache)).security
    admin = (await make_backend()).security
    secret, key = await admin.create_key("ws", "agent")
    assert await server.authenticate(secret) is not None
    assert await admin.revoke_key("ws", key.key_id)
    ticks.now = 4.9  # the server still uses what it read
    assert await server.authenticate(secret) is not None
    ticks.now = 5.0
    assert await server.authenticate(secret) is None
    # without a cache, every authentication reads the key
    uncached = (await make_backend(key_cache=NO_CACHE)).security
    fresh, fresh_key = await admin.create_key("ws", "agent")
    assert await uncached.authenticate(fresh) is not None
    await admin.revoke_key("ws", fresh_key.key_id)
    assert await uncached.authenticate(fresh) is None


async def test_keys_created_on_separate_connections_are_distinct(make_backend: MakeBackend) -> None:
    stores = [(await make_backend()).security for _ in range(3)]
    created = await asyncio.gather(
        *(s.create_key("ws", "agent", name=f"n{i}") for i, s in enumerate(stores) for _ in range(5))
    )
    assert len({key.key_id for _, key in created}) == 15
    for secret, key in created:
        principal = await stores[0].authenticate(secret)
        assert principal is not None and principal.key_id == key.key_id
    assert len(await stores[1].list_keys("ws")) == 15


async def test_a_key_with_bad_fields_is_refused(security: SecurityStore) -> None:
    with pytest.raises(InvalidInput, match="role"):
        await security.create_key("ws", "owner")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="write scope"):
        await security.create_key("ws", "agent", write_types=frozenset({"patient; drop"}))
    with pytest.raises(InvalidInput, match="workspace"):
        await security.create_key("", "agent")
    with pytest.raises(InvalidInput, match="name"):
        await security.create_key("ws", "agent", name="a\nb")
    assert await security.list_keys("ws") == []


async def test_key_changes_and_their_audit_entries_are_one_transaction(
    security: SecurityStore, clock: FakeClock
) -> None:
    def created(key: ApiKey) -> list[AuditEntry]:
        return [key_entry("keys.create", key.key_id, "ok", clock.now)]

    def revoked(found: bool) -> list[AuditEntry]:
        return [key_entry("keys.revoke", "k", "ok" if found else "not_found", clock.now)]

    _, key = await security.create_key("ws", "agent", audit=created)
    assert await security.revoke_key("ws", key.key_id, audit=revoked)
    assert not await security.revoke_key("ws", "000000000000", audit=revoked)
    trail = [(e.action, e.outcome, e.entity_id) for e in await security.query_audit("ws")]
    assert trail == [
        ("keys.revoke", "not_found", "k"),
        ("keys.revoke", "ok", "k"),
        ("keys.create", "ok", key.key_id),
    ]
    # an entry that cannot be stored takes the change with it
    zoneless = clock.now.replace(tzinfo=None)
    with pytest.raises(InvalidInput):
        await security.create_key(
            "ws2", "agent", audit=lambda k: [key_entry("keys.create", k.key_id, "ok", zoneless)]
        )
    assert await security.list_keys("ws2") == []
    secret, other = await security.create_key("ws2", "agent")
    with pytest.raises(InvalidInput):
        await security.revoke_key(
            "ws2", other.key_id, audit=lambda _: [key_entry("keys.revoke", "k", "ok", zoneless)]
        )
    assert [k.revoked_at for k in await security.list_keys("ws2")] == [None]
    assert await security.authenticate(secret) is not None
    assert await security.query_audit("ws2") == []


def key_entry(action: str, key_id: str, outcome: Outcome, at: datetime) -> AuditEntry:
    return AuditEntry(
        workspace="ws",
        at=at,
        key_id="cli",
        role="admin",
        action=action,
        outcome=outcome,
        entity_type="ApiKey",
        entity_id=key_id,
        phi=False,
    )


# --- audit ----------------------------------------------------------------------------------


def entry(minute: int, **fields: object) -> AuditEntry:
    values: dict[str, object] = {
        "workspace": "ws",
        "at": T0 + timedelta(minutes=minute),
        "key_id": "k1",
        "role": "agent",
        "action": "patients.search",
    }
    values.update(fields)
    return AuditEntry(**values)  # type: ignore[arg-type]


TRAIL = [
    entry(0, action="ambient.context", entity_type="Patient", entity_id="p1", request_id="r1"),
    entry(0, action="ambient.context", entity_type="Appointment", entity_id="a1", request_id="r1"),
    entry(
        1,
        key_id="k2",
        role="operator",
        action="review.approve",
        entity_type="Patient",
        entity_id="p1",
        details={"channel": "mcp", "fields": "2"},
    ),
    entry(2, action="observations.write", entity_type="Patient", entity_id="p2", outcome="denied"),
    entry(
        3,
        key_id="cli",
        role="admin",
        action="keys.create",
        phi=False,
        entity_type="ApiKey",
        entity_id="k3",
    ),
    entry(4, workspace="other", action="ambient.context", entity_type="Patient", entity_id="p1"),
]


async def test_audit_entries_come_back_newest_first_as_written(security: SecurityStore) -> None:
    await security.record_audit(TRAIL)
    got = await security.query_audit("ws")
    # entries of one moment come back in reverse order of writing, like the rest
    assert got == list(reversed(TRAIL[:5]))
    assert got[2].details == {"channel": "mcp", "fields": "2"}
    assert got[1].outcome == "denied" and got[0].phi is False and got[4].request_id == "r1"
    assert await security.query_audit("other") == [TRAIL[5]]
    assert await security.query_audit("nobody") == []


async def test_every_audit_filter(security: SecurityStore) -> None:
    await security.record_audit(TRAIL)

    async def actions(**filters: object) -> list[str]:
        got = await security.query_audit("ws", **filters)  # type: ignore[arg-type]
        return [f"{e.action}:{e.entity_id}" for e in got]

    assert await actions(key_id="k2") == ["review.approve:p1"]
    assert await actions(action="ambient.context") == ["ambient.context:a1", "ambient.context:p1"]
    assert await actions(entity_type="Patient") == [
        "observations.write:p2",
        "review.approve:p1",
        "ambient.context:p1",
    ]
    assert await actions(entity_type="Patient", entity_id="p1") == [
        "review.approve:p1",
        "ambient.context:p1",
    ]
    assert await actions(entity_id="k3") == ["keys.create:k3"]
    # since is inclusive, until exclusive
    window = {"since": T0 + timedelta(minutes=1), "until": T0 + timedelta(minutes=3)}
    assert await actions(**window) == ["observations.write:p2", "review.approve:p1"]
    assert await actions(since=T0 + timedelta(minutes=3)) == ["keys.create:k3"]
    assert await actions(until=T0 + timedelta(minutes=1)) == [
        "ambient.context:a1",
        "ambient.context:p1",
    ]
    # a bound in another zone is the same instant
    karachi = (T0 + timedelta(minutes=3)).astimezone(ZoneInfo("Asia/Karachi"))
    assert await actions(until=karachi) == await actions(until=T0 + timedelta(minutes=3))
    assert len(await actions(until=karachi)) == 4
    assert await actions(key_id="k1", action="ambient.context", entity_id="a1") == [
        "ambient.context:a1"
    ]
    assert await actions(key_id="nobody") == []
    assert await actions(limit=2) == ["keys.create:k3", "observations.write:p2"]


async def test_bad_audit_queries_and_entries_are_refused(security: SecurityStore) -> None:
    with pytest.raises(InvalidInput, match="limit"):
        await security.query_audit("ws", limit=0)
    with pytest.raises(InvalidInput, match="time zone"):
        await security.query_audit("ws", since=datetime(2026, 1, 1))
    with pytest.raises(InvalidInput, match="time zone"):
        await security.record_audit([entry(0), entry(1, at=datetime(2026, 1, 1))])
    assert await security.query_audit("ws") == []
    await security.record_audit([])


async def test_a_large_batch_is_one_transaction(security: SecurityStore) -> None:
    batch = [
        entry(n // 100, entity_type="Patient", entity_id=f"p{n}", request_id="bulk")
        for n in range(5_000)
    ]
    await security.record_audit(batch)
    got = await security.query_audit("ws", limit=10_000)
    assert got == list(reversed(batch))
    assert len(await security.query_audit("ws", entity_id="p4321")) == 1
    # a batch that fails part-way leaves nothing behind
    broken = [entry(90, entity_id=f"q{n}") for n in range(10)]
    broken[7] = entry(90, action=None)
    with pytest.raises(StorageError):
        await security.record_audit(broken)
    assert await security.query_audit("ws", since=T0 + timedelta(minutes=90)) == []


async def test_concurrent_audit_calls_each_commit_whole_and_a_bad_one_fails_alone(
    security: SecurityStore,
) -> None:
    calls = [
        [
            entry(n, entity_type="Patient", entity_id=f"p{n}-{i}", request_id=f"r{n}")
            for i in range(7)
        ]
        for n in range(30)
    ]
    calls[11] = [entry(11, entity_id="bad"), entry(11, action=None)]
    results = await asyncio.gather(
        *(security.record_audit(c) for c in calls), return_exceptions=True
    )
    assert isinstance(results[11], StorageError)
    assert [r for n, r in enumerate(results) if n != 11] == [None] * 29
    for n, call in enumerate(calls):
        stored = await security.query_audit(
            "ws", since=call[0].at, until=call[0].at + timedelta(seconds=1)
        )
        # a call that returned has all its entries; the one that failed has none
        assert len(stored) == (0 if n == 11 else 7)


async def test_the_audit_trail_cannot_be_changed_in_the_database(
    store: Store, backend: Backend
) -> None:
    security = backend.security
    await security.record_audit([entry(0)])
    for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(Exception, match="append-only"):
            await _execute(store, statement)
    assert await security.query_audit("ws") == [entry(0)]


async def _execute(store: Store, statement: str) -> None:
    if isinstance(store, SQLiteStore):
        await store.database.call(lambda conn: conn.execute(statement))
        return
    from ehrbridge.storage.postgres.worldmodel import PostgresStore

    assert isinstance(store, PostgresStore)
    async with store.pool.connection() as conn:
        await conn.execute(statement.encode())
