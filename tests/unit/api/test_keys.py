"""API keys as strings: format, hashing, verification, and authentication through the cache."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrbridge.api import keys
from ehrbridge.api.store import Principal
from ehrbridge.errors import InvalidInput
from ehrbridge.storage.security import KeyCache, StoredKey, authenticate

ISSUED = [keys.new_key() for _ in range(3)]
KEY_SHAPE = re.compile(r"ehb_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stored(issued: keys.IssuedKey, *, revoked: bool = False) -> StoredKey:
    principal = Principal(workspace="ws", key_id=issued.key_id, role="agent")
    return StoredKey(secret_hash=issued.secret_hash, principal=principal, revoked=revoked)


class Table:
    """An in-memory key table that counts its reads."""

    def __init__(self, *rows: StoredKey) -> None:
        self.rows = {row.principal.key_id: row for row in rows}
        self.reads = 0

    async def read(self, key_id: str) -> StoredKey | None:
        self.reads += 1
        return self.rows.get(key_id)


def test_a_new_key_has_the_documented_shape_and_256_bits() -> None:
    key = keys.new_key()
    assert KEY_SHAPE.fullmatch(key.secret)
    assert key.secret.startswith(f"ehb_{key.key_id}_")
    assert keys.parse_key(key.secret) == key.key_id
    assert keys.is_key_id(key.key_id)
    assert len({k.secret for k in (keys.new_key() for _ in range(200))}) == 200
    assert len({k.key_id for k in (keys.new_key() for _ in range(200))}) == 200


def test_only_the_hash_is_kept_and_the_secret_never_shows_in_a_repr() -> None:
    key = keys.new_key()
    assert key.secret_hash == keys.hash_key(key.secret)
    assert re.fullmatch(r"[0-9a-f]{64}", key.secret_hash)
    assert key.secret not in repr(key) and key.secret.rsplit("_", 1)[1] not in repr(key)
    assert key.key_id in repr(key)


def test_verify_accepts_the_key_and_nothing_else() -> None:
    key, other = ISSUED[0], ISSUED[1]
    assert keys.verify(key.secret, key.secret_hash)
    assert not keys.verify(other.secret, key.secret_hash)
    assert not keys.verify(key.secret[:-1], key.secret_hash)
    assert not keys.verify("", key.secret_hash)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ehb",
        "ehb_0123456789ab",
        "ehb_0123456789ab_",
        "ehb_0123456789AB_" + "A" * 43,  # upper-case key id
        "ehb_0123456789a_" + "A" * 43,  # short key id
        "ehb_0123456789ab_" + "A" * 42,
        "ehb_0123456789ab_" + "A" * 44,
        "ehb_0123456789ab_" + "A" * 42 + "=",
        "ehb_0123456789ab_" + "A" * 42 + "é",
        "xyz_0123456789ab_" + "A" * 43,
        "ehb-0123456789ab-" + "A" * 43,
        "ehb_0123456789ab_" + "A" * 43 + "\n",
    ],
)
def test_malformed_keys_have_no_key_id(text: str) -> None:
    assert keys.parse_key(text) is None


def test_roles_and_write_scopes_are_checked() -> None:
    assert keys.check_role("operator") == "operator"
    with pytest.raises(InvalidInput, match="agent, operator, admin"):
        keys.check_role("root")
    assert keys.parse_write_types("Patient,Appointment") == {"Patient", "Appointment"}
    assert keys.parse_write_types("") == frozenset()
    with pytest.raises(InvalidInput, match="'patient'"):
        keys.parse_write_types("Patient,patient")
    with pytest.raises(InvalidInput, match="printable"):
        keys.check_key_fields("ws", "x" * 201, frozenset())


async def test_authentication_reads_once_per_ttl_and_refuses_revoked_keys() -> None:
    ticks = Ticks()
    cache = KeyCache(timedelta(seconds=5), clock=ticks)
    key = ISSUED[0]
    table = Table(stored(key))
    for _ in range(10):
        principal = await authenticate(key.secret, cache, table.read)
        assert principal is not None and principal.key_id == key.key_id
    assert table.reads == 1
    table.rows[key.key_id] = stored(key, revoked=True)
    ticks.now = 5.0
    assert await authenticate(key.secret, cache, table.read) is None
    assert table.reads == 2
    # a revoked key stays refused from the cache too
    assert await authenticate(key.secret, cache, table.read) is None
    assert table.reads == 2


async def test_unknown_and_malformed_keys_are_not_cached_and_malformed_ones_not_read() -> None:
    cache = KeyCache()
    table = Table()
    unknown = ISSUED[1].secret
    for _ in range(3):
        assert await authenticate(unknown, cache, table.read) is None
    assert table.reads == 3
    assert await authenticate("not a key", cache, table.read) is None
    assert table.reads == 3
    # a key created after a miss authenticates at once
    table.rows[ISSUED[1].key_id] = stored(ISSUED[1])
    assert await authenticate(unknown, cache, table.read) is not None


def test_the_cache_is_bounded_oldest_first() -> None:
    cache = KeyCache(size=2)
    for key in ISSUED:
        cache.put(key.key_id, stored(key))
    assert cache.get(ISSUED[0].key_id) is None
    assert cache.get(ISSUED[1].key_id) is not None
    assert cache.get(ISSUED[2].key_id) is not None
    cache.drop(ISSUED[2].key_id)
    assert cache.get(ISSUED[2].key_id) is None
    # a zero TTL caches nothing
    none = KeyCache(timedelta(0))
    none.put(ISSUED[0].key_id, stored(ISSUED[0]))
    assert none.get(ISSUED[0].key_id) is None


_KEY_ALPHABET = "ehb_0123456789abcdefABCDEF-xyz="
_TABLE = Table(*(stored(k) for k in ISSUED))
_ISSUED_SECRETS = {k.secret for k in ISSUED}


def _near_misses() -> st.SearchStrategy[str]:
    """Issued keys with one character changed, dropped or added."""

    def mutate(data: tuple[int, int, str, int]) -> str:
        which, position, char, how = data
        secret = ISSUED[which % len(ISSUED)].secret
        i = position % len(secret)
        if how == 0:
            return secret[:i] + char + secret[i + 1 :]
        if how == 1:
            return secret[:i] + secret[i + 1 :]
        return secret[:i] + char + secret[i:]

    return st.tuples(
        st.integers(0, 2), st.integers(0, 100), st.sampled_from(_KEY_ALPHABET), st.integers(0, 2)
    ).map(mutate)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(), st.text(alphabet=_KEY_ALPHABET, min_size=60, max_size=62), _near_misses())
)
def test_any_string_that_is_not_an_issued_key_authenticates_as_nobody(text: str) -> None:
    principal = asyncio.run(authenticate(text, KeyCache(), _TABLE.read))
    if text in _ISSUED_SECRETS:
        assert principal is not None
    else:
        assert principal is None
