"""``ehrbridge keys`` and ``ehrbridge audit``, end to end on a real SQLite file."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from typer.testing import CliRunner

from ehrbridge.api.keys import hash_key
from ehrbridge.api.store import AuditEntry, Principal, SecurityStore
from ehrbridge.cli.main import app
from ehrbridge.storage import open_backend
from ehrbridge.storage.security import KeyCache

T = TypeVar("T")
runner = CliRunner()
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
KEY = re.compile(r"^ehb_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$", re.MULTILINE)


def invoke(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'keys.db'}"


def with_security(db: str, work: Callable[[SecurityStore], Awaitable[T]]) -> T:
    async def main() -> T:
        async with await open_backend(db, key_cache=KeyCache(timedelta(0))) as backend:
            return await work(backend.security)

    return asyncio.run(main())


def authenticate(db: str, secret: str) -> Principal | None:
    return with_security(db, lambda security: security.authenticate(secret))


def create(db: str, *args: str) -> tuple[str, str]:
    """(the printed secret, its key id)."""
    out = invoke("keys", "create", "--db", db, *args)
    [secret] = KEY.findall(out)
    return secret, secret.split("_")[1]


def audit_json(db: str, *args: str) -> list[dict[str, Any]]:
    out = invoke("audit", "--db", db, "--json", *args)
    return [orjson.loads(line) for line in out.splitlines()]


def test_create_prints_the_secret_once_and_it_authenticates(db: str) -> None:
    out = invoke("keys", "create", "--role", "agent", "--name", "front desk bot", "--db", db)
    assert "Store it now; it cannot be shown again" in out
    [secret] = KEY.findall(out)
    key_id = secret.split("_")[1]
    assert f"created agent key {key_id} (front desk bot)" in out
    assert "write scope: Appointment, Call, Patient" in out
    principal = authenticate(db, secret)
    assert principal is not None
    assert (principal.workspace, principal.key_id, principal.role) == ("default", key_id, "agent")
    listed = invoke("keys", "list", "--db", db)
    assert re.search(rf"{key_id}\s+│\s+front desk bot\s+│\s+agent\s+│\s+Appointment, Call", listed)
    # the secret and its hash are never shown again
    assert secret not in listed and secret.split("_", 2)[2] not in listed
    assert hash_key(secret) not in listed
    assert not KEY.findall(invoke("audit", "--db", db))


def test_roles_scopes_and_workspaces(db: str) -> None:
    secret, key_id = create(db, "--role", "operator", "--write-types", "Appointment", "-w", "b")
    principal = authenticate(db, secret)
    assert principal is not None
    assert principal.workspace == "b" and principal.role == "operator"
    assert principal.write_types == {"Appointment"}
    admin, _ = create(db, "--role", "admin", "--write-types", "")
    principal = authenticate(db, admin)
    assert principal is not None and principal.write_types == frozenset()
    assert key_id not in invoke("keys", "list", "--db", db)
    assert key_id in invoke("keys", "list", "--db", db, "--workspace", "b")
    # another workspace cannot revoke it
    out = invoke("keys", "revoke", key_id, "--db", db, code=1)
    assert f"no key {key_id} in workspace default" in out
    assert authenticate(db, secret) is not None


def test_revoke_stops_the_key_and_management_is_audited(db: str) -> None:
    secret, key_id = create(db, "--role", "agent")
    other, _ = create(db, "--role", "agent")
    out = invoke("keys", "revoke", key_id, "--db", db)
    assert f"revoked key {key_id}" in out
    assert authenticate(db, secret) is None
    assert authenticate(db, other) is not None
    listed = invoke("keys", "list", "--db", db)
    assert re.search(rf"{key_id}.*│ \d{{4}}-\d\d-\d\dT[\d:]+\+00:00\s+│\s*$", listed, re.M)
    invoke("keys", "revoke", "0123456789ab", "--db", db, code=1)
    trail = audit_json(db)
    assert [(e["action"], e["outcome"]) for e in trail] == [
        ("keys.revoke", "not_found"),
        ("keys.revoke", "ok"),
        ("keys.create", "ok"),
        ("keys.create", "ok"),
    ]
    assert {(e["key_id"], e["role"], e["phi"]) for e in trail} == {("cli", "admin", False)}
    assert trail[1]["entity_type"] == "ApiKey" and trail[1]["entity_id"] == key_id
    assert trail[3]["details"] == {"channel": "cli", "role": "agent"}
    assert secret not in orjson.dumps(trail).decode()


TRAIL = [
    AuditEntry(
        workspace="default",
        at=T0 + timedelta(minutes=n),
        key_id=f"k{n % 2}",
        role="agent",
        action=action,
        entity_type="Patient",
        entity_id=f"p{n % 3}",
        request_id=f"r{n}",
        details={"channel": "http"},
    )
    for n, action in enumerate(["ambient.context", "patients.search", "observations.write"] * 3)
]


def test_audit_filters_and_formats(db: str) -> None:
    with_security(db, lambda security: security.record_audit(TRAIL))
    every = audit_json(db)
    assert [e["request_id"] for e in every] == [f"r{n}" for n in range(8, -1, -1)]
    assert every[0]["at"] == "2026-11-20T09:08:00+00:00"
    assert [e["request_id"] for e in audit_json(db, "--key", "k1")] == ["r7", "r5", "r3", "r1"]
    assert [e["request_id"] for e in audit_json(db, "--action", "patients.search")] == [
        "r7",
        "r4",
        "r1",
    ]
    assert [e["request_id"] for e in audit_json(db, "--entity", "Patient/p2")] == ["r8", "r5", "r2"]
    assert len(audit_json(db, "--entity", "Patient")) == 9
    assert audit_json(db, "--entity", "Appointment") == []
    window = audit_json(db, "--since", "2026-11-20T09:02:00Z", "--until", "2026-11-20T09:04")
    assert [e["request_id"] for e in window] == ["r3", "r2"]
    # a time with a zone is the same instant
    assert audit_json(db, "--since", "2026-11-20T04:07:00-05:00")[-1]["request_id"] == "r7"
    assert [e["request_id"] for e in audit_json(db, "--limit", "2")] == ["r8", "r7"]
    assert audit_json(db, "-w", "other") == []
    table = invoke("audit", "--db", db, "--limit", "3")
    assert re.search(
        r"2026-11-20T09:08:00\+00:00\s+│\s+k0\s+│\s+agent\s+│\s+observations\.write\s+│\s+ok\s+│"
        r"\s+Patient/p2\s+│\s+yes\s+│\s+r8\s+│\s+channel=http",
        table,
    ), table
    assert "3 entries (--limit 3)" in table


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "create", "--role", "root"),
        ("keys", "create"),
        ("keys", "create", "--role", "agent", "--write-types", "Patient,lab result"),
        ("keys", "create", "--role", "agent", "--name", "two\nlines"),
        ("keys", "revoke", "KEY-1"),
        ("audit", "--since", "yesterday"),
        ("audit", "--until", "2026-13-01"),
        ("audit", "--entity", "/p1"),
        ("audit", "--entity", "Patient/"),
        ("audit", "--limit", "0"),
        ("audit", "--limit", "10001"),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_2(db: str, args: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*args, "--db", db], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert "error" in result.output.lower() or "invalid value" in result.output.lower()
    assert "Traceback" not in result.output


def test_a_bad_database_url_is_exit_2() -> None:
    out = invoke("keys", "list", "--db", "mysql://localhost/x", code=2)
    assert "unknown database URL scheme" in out
