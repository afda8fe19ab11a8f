"""What each role may do (docs/design.md §11): a small table, and the checks every operation makes.

>>> from ehrbridge.api.store import Principal
>>> agent = Principal(workspace="clinic", key_id="k1", role="agent")
>>> allowed(agent, "read"), allowed(agent, "review")
(True, False)
>>> may_write_type(agent, "Appointment"), may_write_type(agent, "MedicationOrder")
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from ehrbridge.api.store import Principal, Role
from ehrbridge.confidence import VOICE_LEVELS, Level
from ehrbridge.errors import PermissionDenied
from ehrbridge.worldmodel.entities import ENTITY_TYPES

Permission = Literal["read", "write.voice", "review", "outbox", "keys.manage", "audit.read"]

#: The roles that hold each permission. operator and admin may do all an agent may.
PERMISSIONS: Mapping[Permission, frozenset[Role]] = MappingProxyType(
    {
        "read": frozenset({"agent", "operator", "admin"}),
        "write.voice": frozenset({"agent", "operator", "admin"}),
        "review": frozenset({"operator", "admin"}),
        #: the outbox's items and sinks: list, show, retry, skip, stats
        "outbox": frozenset({"operator", "admin"}),
        "keys.manage": frozenset({"admin"}),
        "audit.read": frozenset({"admin"}),
    }
)


def allowed(principal: Principal, permission: Permission) -> bool:
    """Whether ``principal``'s role holds ``permission``."""
    return principal.role in PERMISSIONS[permission]


def require(principal: Principal, permission: Permission) -> None:
    """Raise :class:`PermissionDenied` unless ``principal``'s role holds ``permission``."""
    if not allowed(principal, permission):
        raise PermissionDenied(permission)


def type_named(entity_type: str, unknown: str = "entity") -> str:
    """``entity_type`` to name back in a message: a type the world model knows, else ``unknown``
    (a type it does not know is the caller's own text).

    >>> type_named("Patient"), type_named("Qz00xW")
    ('Patient', 'entity')
    """
    return entity_type if entity_type in ENTITY_TYPES else unknown


def may_write_type(principal: Principal, entity_type: str) -> bool:
    """Whether ``principal`` may write entities of ``entity_type``: an agent key within its
    write scope (``principal.write_types``); operator and admin keys any type."""
    return principal.role != "agent" or entity_type in principal.write_types


def require_voice_write(principal: Principal, entity_type: str, level: Level) -> None:
    """Raise :class:`PermissionDenied` unless ``principal`` may write ``entity_type`` at
    ``level``: the agent API writes at voice levels only, whatever the role."""
    require(principal, "write.voice")
    if level not in VOICE_LEVELS:
        raise PermissionDenied(
            "write.voice", f"the agent API writes at voice levels only, not {level.name.lower()}"
        )
    if not may_write_type(principal, entity_type):
        # a type the world model does not know is not named back: it is the caller's text
        named = type_named(entity_type, "this entity type")
        named = f"{named} entities" if named != "this entity type" else named
        raise PermissionDenied(
            "write.voice",
            f"this key may not write {named} (outside its write scope)",
            entity_type=entity_type,
        )
