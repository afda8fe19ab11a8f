"""What the two security adapters (:mod:`ehrbridge.storage.sqlite.security`,
:mod:`ehrbridge.storage.postgres.security`) share: the key cache, authentication through it, and
the checks of a new key and an audit query (docs/design.md §4, §11).

Authentication runs on every request, so each adapter keeps a small in-process cache of what it
read per key id (:class:`KeyCache`): a hit costs one SHA-256 and no database round trip. An entry
lives ``cache_ttl`` (5 s by default), so a key revoked by another process (or the command line)
stops authenticating within that time; a revocation through the same object takes effect at once.
Unknown key ids are not cached: a flood of made-up keys costs reads, never memory.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ehrbridge.api import keys
from ehrbridge.api.store import MAX_AUDIT_LIMIT, ApiKey, Principal
from ehrbridge.errors import InvalidInput

#: how long an authentication result is reused before the key is read again
DEFAULT_CACHE_TTL = timedelta(seconds=5)
#: most keys an adapter remembers (oldest read dropped first)
CACHE_SIZE = 1024


@dataclass(frozen=True, kw_only=True)
class StoredKey:
    """What authentication needs of a stored key."""

    secret_hash: str
    principal: Principal
    revoked: bool


class KeyCache:
    """key id -> :class:`StoredKey` for ``ttl``, bounded to ``size`` entries."""

    def __init__(
        self,
        ttl: timedelta = DEFAULT_CACHE_TTL,
        *,
        size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl.total_seconds()
        self.size = size
        self.clock = clock
        self._entries: dict[str, tuple[float, StoredKey]] = {}

    def get(self, key_id: str) -> StoredKey | None:
        """The entry for ``key_id`` if it was read less than ``ttl`` ago."""
        hit = self._entries.get(key_id)
        if hit is None:
            return None
        if self.clock() - hit[0] >= self.ttl:
            del self._entries[key_id]
            return None
        return hit[1]

    def put(self, key_id: str, stored: StoredKey) -> None:
        if self.ttl <= 0:
            return
        self._entries.pop(key_id, None)
        while len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        self._entries[key_id] = (self.clock(), stored)

    def drop(self, key_id: str) -> None:
        self._entries.pop(key_id, None)


async def authenticate(
    secret: str, cache: KeyCache, read: Callable[[str], Awaitable[StoredKey | None]]
) -> Principal | None:
    """The principal of ``secret``, reading its key through ``cache`` (shared by the adapters).

    Malformed, unknown, wrong and revoked keys all give None, so a caller learns nothing about
    which it was.
    """
    key_id = keys.parse_key(secret)
    if key_id is None:
        return None
    stored = cache.get(key_id)
    if stored is None:
        stored = await read(key_id)
        if stored is None:
            return None
        cache.put(key_id, stored)
    if stored.revoked or not keys.verify(secret, stored.secret_hash):
        return None
    return stored.principal


def new_stored_key(
    workspace: str, role: str, name: str, write_types: frozenset[str], created_at: datetime
) -> tuple[keys.IssuedKey, ApiKey]:
    """A new key for ``create_key``, after checking its fields (InvalidInput): the issued
    secret, and the key as it is stored."""
    checked = keys.check_role(role)
    keys.check_key_fields(workspace, name, write_types)
    issued = keys.new_key()
    key = ApiKey(
        key_id=issued.key_id,
        workspace=workspace,
        role=checked,
        name=name,
        write_types=write_types,
        created_at=created_at,
    )
    return issued, key


def check_query(since: datetime | None, until: datetime | None, limit: int) -> None:
    """Refuse an audit query with a zoneless bound or a limit out of range (InvalidInput)."""
    if any(moment is not None and moment.tzinfo is None for moment in (since, until)):
        raise InvalidInput("since and until must carry a time zone")
    if not 1 <= limit <= MAX_AUDIT_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_AUDIT_LIMIT}")
