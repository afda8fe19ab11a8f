"""Who is asking, what they may do, and what is written down about it (docs/design.md §11).

A request carries an API key; :class:`ApiKeys` turns it into a :class:`Principal` (its workspace
and role). Every operation on patient data, read or write, leaves :class:`AuditEntry` records in
the :class:`AuditLog`, one per entity touched. Both ports have an adapter per
backend in :mod:`ehrbridge.storage`, proven by one contract suite
(``tests/integration/storage/test_security.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ehrbridge.audit import AuditEntry, Outcome, Role

__all__ = [
    "DEFAULT_AGENT_WRITE_TYPES",
    "DEFAULT_MAX_BODY",
    "MAX_AUDIT_LIMIT",
    "ROLES",
    "ApiKey",
    "ApiKeys",
    "AuditEntry",
    "AuditLog",
    "Outcome",
    "Principal",
    "Role",
    "SecurityStore",
]

ROLES: tuple[Role, ...] = ("agent", "operator", "admin")
#: entity types an agent key may write unless its write scope says otherwise
DEFAULT_AGENT_WRITE_TYPES = frozenset({"Patient", "Appointment", "Call"})
#: most audit entries one query returns
MAX_AUDIT_LIMIT = 10_000
#: the largest request body the API accepts, by default (a 200,000-character transcript fits)
DEFAULT_MAX_BODY = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Principal:
    """An authenticated caller: every query it makes is scoped to its workspace."""

    workspace: str
    #: the key's public id (never the secret)
    key_id: str
    role: Role
    #: the key's name, for people reading the audit trail
    name: str = ""
    #: entity types this key may write (the agent role's write scope)
    write_types: frozenset[str] = DEFAULT_AGENT_WRITE_TYPES


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """A key as stored: its id, workspace, role and scope; the secret only as a hash."""

    key_id: str
    workspace: str
    role: Role
    name: str
    write_types: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeys(Protocol):
    """API keys per workspace, stored hashed; the secret is shown once, at creation."""

    async def create_key(
        self,
        workspace: str,
        role: Role,
        *,
        name: str = "",
        write_types: frozenset[str] = DEFAULT_AGENT_WRITE_TYPES,
        audit: Callable[[ApiKey], Sequence[AuditEntry]] | None = None,
    ) -> tuple[str, ApiKey]:
        """A new key: ``(the secret to hand over, the stored key)``; ``audit``'s entries for
        it are stored in the same transaction."""

    async def authenticate(self, secret: str) -> Principal | None:
        """The principal of a presented key; None when unknown, malformed or revoked."""

    async def revoke_key(
        self,
        workspace: str,
        key_id: str,
        *,
        audit: Callable[[bool], Sequence[AuditEntry]] | None = None,
    ) -> bool:
        """Revoke a key of ``workspace``; False when it has no such key. ``audit``'s entries
        for the answer are stored in the same transaction."""

    async def list_keys(self, workspace: str) -> list[ApiKey]:
        """The workspace's keys, revoked ones included, oldest first."""


class AuditLog(Protocol):
    """The audit trail: appended to, never changed."""

    async def record_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append ``entries`` (one transaction)."""

    async def query_audit(
        self,
        workspace: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        key_id: str | None = None,
        action: str | None = None,
        entity_type: str | None = None,
        entity_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Entries of ``workspace`` matching every filter given, newest first."""


class SecurityStore(ApiKeys, AuditLog, Protocol):
    """API keys and the audit trail, on one database."""
