"""``ehrbridge keys …`` and ``ehrbridge audit``: API keys and the audit trail from the command line.

Whoever can run these commands can open the database, so they act as the workspace's admin; what
they change is audited all the same, under the key id ``cli``. A key's secret is printed once, by
``keys create``, and never again: only its hash is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ehrbridge.api.keys import is_key_id, parse_write_types
from ehrbridge.api.store import (
    DEFAULT_AGENT_WRITE_TYPES,
    MAX_AUDIT_LIMIT,
    ApiKey,
    AuditEntry,
    Outcome,
    SecurityStore,
)
from ehrbridge.cli.errors import cli_errors
from ehrbridge.cli.options import DbOption, WorkspaceOption
from ehrbridge.errors import InvalidInput
from ehrbridge.storage import DEFAULT_URL, open_backend
from ehrbridge.storage.security import DEFAULT_CACHE_TTL, KeyCache

T = TypeVar("T")
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="Read the audit trail.")
console = Console()

#: the key id the command line's own audit records carry
CLI_KEY_ID = "cli"

# the same options as the other commands (mirrored: cli.py imports this module)


class RoleChoice(StrEnum):
    AGENT = "agent"
    OPERATOR = "operator"
    ADMIN = "admin"


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _run(db: str, work: Callable[[SecurityStore], Awaitable[T]], *, create: bool = False) -> T:
    async def main() -> T:
        # only a key's creation may create the database; reads never do
        # a command reads what is stored now, never a cached key
        cache = KeyCache(timedelta(0))
        async with await open_backend(db, create=create, key_cache=cache) as backend:
            return await work(backend.security)

    with cli_errors(console, escaped=True, interrupted=None):
        return asyncio.run(main())


def _cli_entry(
    workspace: str, action: str, key_id: str, outcome: Outcome, details: dict[str, str]
) -> AuditEntry:
    return AuditEntry(
        workspace=workspace,
        at=datetime.now(UTC),
        key_id=CLI_KEY_ID,
        role="admin",
        action=action,
        outcome=outcome,
        entity_type="ApiKey",
        entity_id=key_id,
        phi=False,
        details={"channel": "cli", **details},
    )


def _scope(types: frozenset[str]) -> str:
    return ", ".join(sorted(types)) or "(none)"


# --- keys ---------------------------------------------------------------------------------------


@keys_app.command("create")
def create(
    role: Annotated[
        RoleChoice,
        typer.Option(
            "--role",
            help="agent: reads, writes at voice levels within its write scope; operator: also "
            "reviews; admin: also manages keys and reads the audit trail",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="who or what holds the key")] = "",
    write_types: Annotated[
        str | None,
        typer.Option(
            "--write-types",
            help="comma-separated entity types the key may write "
            f"[default: {','.join(sorted(DEFAULT_AGENT_WRITE_TYPES))}]",
        ),
    ] = None,
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Create an API key and print its secret, once."""
    try:
        scope = DEFAULT_AGENT_WRITE_TYPES if write_types is None else parse_write_types(write_types)
    except InvalidInput as exc:
        raise _fail(f"--write-types: {exc}") from None

    def audit(key: ApiKey) -> list[AuditEntry]:
        return [_cli_entry(workspace, "keys.create", key.key_id, "ok", {"role": key.role})]

    async def work(security: SecurityStore) -> tuple[str, ApiKey]:
        return await security.create_key(
            workspace, role.value, name=name, write_types=scope, audit=audit
        )

    secret, key = _run(db, work, create=True)
    named = f" ({escape(key.name)})" if key.name else ""
    console.print(
        f"created {key.role} key [bold]{key.key_id}[/bold]{named} in workspace "
        f"{escape(workspace)}; write scope: {escape(_scope(key.write_types))}"
    )
    console.print("[bold yellow]Store it now; it cannot be shown again:[/bold yellow]")
    # plain output, never wrapped or styled, so it can be copied or piped exactly
    typer.echo(secret)


@keys_app.command("list")
def list_(db: DbOption = DEFAULT_URL, workspace: WorkspaceOption = "default") -> None:
    """The workspace's keys, revoked ones included (never a secret)."""
    listed = _run(db, lambda security: security.list_keys(workspace))
    table = Table(title=f"API keys of workspace {escape(workspace)}")
    for column in ("id", "name", "role", "write scope", "created", "revoked"):
        table.add_column(column)
    for key in listed:
        table.add_row(
            key.key_id,
            escape(key.name),
            key.role,
            escape(_scope(key.write_types)),
            key.created_at.astimezone(UTC).isoformat(timespec="seconds"),
            ""
            if key.revoked_at is None
            else key.revoked_at.astimezone(UTC).isoformat(timespec="seconds"),
        )
    console.print(table)
    if not listed:
        console.print("no keys yet: ehrbridge keys create --role agent --name NAME")


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (12 hex digits)")],
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Revoke a key: servers refuse it within seconds."""
    if not is_key_id(key_id):
        raise _fail(f"{key_id!r} is not a key id (12 lowercase hex digits, see `keys list`)")

    def audit(revoked: bool) -> list[AuditEntry]:
        outcome: Outcome = "ok" if revoked else "not_found"
        return [_cli_entry(workspace, "keys.revoke", key_id, outcome, {})]

    async def work(security: SecurityStore) -> bool:
        return await security.revoke_key(workspace, key_id, audit=audit)

    if not _run(db, work):
        raise _fail(f"no key {key_id} in workspace {workspace}", 1)
    seconds = int(DEFAULT_CACHE_TTL.total_seconds())
    console.print(f"revoked key {key_id}; running servers refuse it within {seconds} s")


# --- audit --------------------------------------------------------------------------------------


def _moment(option: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"{option}: {text!r} is not an ISO date or time (2026-11-20T09:00Z)") from None
    # a time without a zone is read as UTC, like every time the trail shows
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _entity(text: str | None) -> tuple[str | None, str | None]:
    if text is None:
        return None, None
    entity_type, _, entity_id = text.partition("/")
    if not entity_type or ("/" in text and not entity_id):
        raise _fail(f"--entity: {text!r} is not like 'Patient/<id>' or 'Patient'")
    return entity_type, entity_id or None


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry as a JSON object (one NDJSON line of ``ehrbridge audit --json``)."""
    return {
        "at": entry.at.astimezone(UTC).isoformat(),
        "workspace": entry.workspace,
        "key_id": entry.key_id,
        "role": entry.role,
        "action": entry.action,
        "outcome": entry.outcome,
        "entity_type": entry.entity_type,
        "entity_id": entry.entity_id,
        "phi": entry.phi,
        "request_id": entry.request_id,
        "details": entry.details,
    }


@audit_app.callback(invoke_without_command=True)
def audit(
    since: Annotated[
        str | None, typer.Option("--since", help="from this time (ISO, UTC if no zone)")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="before this time (ISO)")] = None,
    key: Annotated[str | None, typer.Option("--key", help="only this key id (or 'cli')")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="only this action, e.g. ambient.context")
    ] = None,
    entity: Annotated[
        str | None, typer.Option("--entity", help="only this entity: Type/id, or Type")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_AUDIT_LIMIT, help="at most this many")
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="NDJSON, one entry a line")] = False,
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Who did what to which entity, newest first (never a patient data value)."""
    start, end = _moment("--since", since), _moment("--until", until)
    entity_type, entity_id = _entity(entity)
    entries = _run(
        db,
        lambda security: security.query_audit(
            workspace,
            since=start,
            until=end,
            key_id=key,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            limit=limit,
        ),
    )
    if as_json:
        for entry in entries:
            typer.echo(orjson.dumps(entry_json(entry)).decode())
        return
    table = Table(title=f"audit trail of workspace {escape(workspace)}, newest first")
    table.add_column("at", no_wrap=True)
    for column in ("key", "role", "action", "outcome", "entity", "phi", "request", "details"):
        table.add_column(column)
    for entry in entries:
        ref = "/".join(p for p in (entry.entity_type, entry.entity_id) if p)
        table.add_row(
            entry.at.astimezone(UTC).isoformat(timespec="seconds"),
            entry.key_id,
            entry.role,
            escape(entry.action),
            entry.outcome,
            escape(ref),
            "yes" if entry.phi else "no",
            escape(entry.request_id or ""),
            escape(" ".join(f"{k}={v}" for k, v in sorted(entry.details.items()))),
        )
    console.print(table)
    shown = f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}"
    console.print(shown + (f" (--limit {limit})" if len(entries) == limit else ""))
