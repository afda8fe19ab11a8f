"""The audit trail's record (docs/design.md §11); the storage adapters keep it in ``audit_log``.

An :class:`AuditEntry` says who did what to which entity, when, and whether it touched patient
data, never the values. The API's security stores append entries on their own; a write to the
world model takes a :data:`WriteAudit` instead, and the store inserts the entries it returns in
the write's own transaction, so a write is never stored without its audit record (nor the
record without the write).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from ehrbridge.errors import InvalidInput

if TYPE_CHECKING:
    from ehrbridge.worldmodel.planner import AppendResult

#: agent: reads patient data and writes at voice levels only (its write scope); operator: also
#: reviews (approves, rejects, resolves); admin: also manages keys and reads the audit trail
Role = Literal["agent", "operator", "admin"]
#: what an audited operation ended as
Outcome = Literal["ok", "denied", "not_found", "invalid", "error"]


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """Who did what to which entity, when, and whether it touched patient data (no values)."""

    workspace: str
    at: datetime
    #: the key that acted (``cli`` for the command line)
    key_id: str
    role: Role
    #: the operation, e.g. ``ambient.context``, ``patients.search``, ``observations.write``
    action: str
    outcome: Outcome = "ok"
    entity_type: str | None = None
    entity_id: str | None = None
    #: whether the operation read or wrote patient data (PHI)
    phi: bool = True
    #: ties the records of one request together
    request_id: str | None = None
    #: a few non-PHI details (counts, the channel: ``http`` or ``mcp``)
    details: dict[str, str] = field(default_factory=dict)


#: Given what an append wrote, the audit entries to store in its transaction. The store calls it
#: inside the transaction, once per attempt (an append retried after a lost race calls it again).
WriteAudit = Callable[[Sequence["AppendResult"]], Sequence[AuditEntry]]


def check_audit_entries(entries: Sequence[AuditEntry]) -> None:
    """Refuse entries whose time has no zone (it would be stored as the wrong instant)."""
    for entry in entries:
        if entry.at.tzinfo is None:
            raise InvalidInput("an audit entry's time must carry a time zone")
