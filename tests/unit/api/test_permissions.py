"""The role table, the write scope and the voice-level rule."""

from __future__ import annotations

import pytest

from ehrbridge.api.permissions import (
    PERMISSIONS,
    allowed,
    may_write_type,
    require,
    require_voice_write,
)
from ehrbridge.api.store import ROLES, Principal, Role
from ehrbridge.confidence import Level
from ehrbridge.errors import AuthError, PermissionDenied


def key(role: Role, write_types: frozenset[str] | None = None) -> Principal:
    if write_types is None:
        return Principal(workspace="clinic", key_id="k", role=role)
    return Principal(workspace="clinic", key_id="k", role=role, write_types=write_types)


def test_operator_and_admin_may_do_all_an_agent_may() -> None:
    for roles in PERMISSIONS.values():
        if "agent" in roles:
            assert {"operator", "admin"} <= roles
        if "operator" in roles:
            assert "admin" in roles


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("agent", {"read", "write.voice"}),
        ("operator", {"read", "write.voice", "review", "outbox"}),
        ("admin", {"read", "write.voice", "review", "outbox", "keys.manage", "audit.read"}),
    ],
)
def test_permissions_per_role(role: Role, expected: set[str]) -> None:
    assert {p for p in PERMISSIONS if allowed(key(role), p)} == expected


def test_an_agent_cannot_review() -> None:
    with pytest.raises(PermissionDenied) as caught:
        require(key("agent"), "review")
    assert caught.value.permission == "review"
    assert isinstance(caught.value, AuthError)


def test_write_scope_binds_agents_only() -> None:
    narrow = frozenset({"Call"})
    assert not may_write_type(key("agent", narrow), "Appointment")
    assert may_write_type(key("agent", narrow), "Call")
    assert may_write_type(key("operator", narrow), "Appointment")
    with pytest.raises(PermissionDenied, match="outside its write scope") as caught:
        require_voice_write(key("agent"), "MedicationOrder", Level.VOICE_CONFIRMED)
    assert caught.value.entity_type == "MedicationOrder"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("level", [Level.VERIFIED, Level.HUMAN_APPROVED, Level.AUTHORITATIVE])
def test_no_role_writes_above_voice_levels(role: Role, level: Level) -> None:
    with pytest.raises(PermissionDenied, match="voice levels only"):
        require_voice_write(key(role), "Patient", level)


@pytest.mark.parametrize(
    "level", [Level.VOICE_CONFIRMED, Level.VOICE_MENTIONED, Level.VOICE_INFERRED]
)
def test_voice_levels_within_scope_pass(level: Level) -> None:
    require_voice_write(key("agent"), "Patient", level)
