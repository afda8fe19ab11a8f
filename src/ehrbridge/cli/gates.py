"""``ehrbridge gates explain EVENT_ID``: why a fact may or may not go to a sink (docs/design.md §8).

It reads the event, its entity's events and state, and prints every check of the gate
(:mod:`ehrbridge.outbound.gates`) with its reason; the first that failed blocks the fact. Sinks
are not configured yet (the outbound issue reads them from the runner config): ``--sink`` names
the data source it would go to, and the policy's threshold and human-review rules are options.
Only ids, field names and reasons are printed, never a value.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from ehrbridge.cli.errors import cli_errors
from ehrbridge.cli.options import DbOption, WorkspaceOption
from ehrbridge.errors import NotFound
from ehrbridge.outbound.gates import DEFAULT_THRESHOLD, Decision, SinkPolicy, candidate, decide
from ehrbridge.storage import DEFAULT_URL, open_backend

gates_app = typer.Typer(help="Why a fact may or may not go to a sink.", no_args_is_help=True)
console = Console()


async def _decide(db: str, workspace: str, event_id: str, policy: SinkPolicy) -> Decision:
    async with await open_backend(db, create=False) as backend:
        store = backend.worldmodel
        event = await store.get_event(workspace, event_id)
        if event is None:
            raise NotFound(f"no event {event_id} in workspace {workspace}")
        events = await store.read_entity(workspace, event.entity_type, event.entity_id)
        state = await store.get_state(workspace, event.entity_type, event.entity_id)
        return decide(candidate(events, event_id, state), policy)


@gates_app.command("explain")
def explain(
    event_id: Annotated[str, typer.Argument(help="the event's id (ehrbridge events Type/id)")],
    sink: Annotated[str, typer.Option("--sink", help="the data source it would go to")] = "ehr",
    threshold: Annotated[
        float, typer.Option("--threshold", min=0.0, max=1.0, help="the sink's threshold")
    ] = DEFAULT_THRESHOLD,
    review_required: Annotated[
        bool, typer.Option("--review-required", help="every voice fact needs a human")
    ] = False,
    human_types: Annotated[
        list[str] | None,
        typer.Option("--human-type", help="an entity type that always needs a human (repeat)"),
    ] = None,
    human_fields: Annotated[
        list[str] | None,
        typer.Option("--human-field", help="Type.field that always needs a human (repeat)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the decision as JSON")] = False,
    db: DbOption = DEFAULT_URL,
    workspace: WorkspaceOption = "default",
) -> None:
    """Every check of the gate for one event and one sink; exit 0 if eligible, 1 if blocked."""
    policy = SinkPolicy(
        sink=sink,
        threshold=threshold,
        review_required=review_required,
        human_types=frozenset(human_types or ()),
        human_fields=frozenset(human_fields or ()),
    )
    with cli_errors(console, escaped=True, interrupted=None):
        decision = asyncio.run(_decide(db, workspace, event_id, policy))
    if as_json:
        checks = [
            {"layer": c.layer.value, "passed": c.passed, "reason": c.reason}
            for c in decision.checks
        ]
        blocked = decision.blocked_by
        typer.echo(
            orjson.dumps(
                {
                    "event_id": decision.event_id,
                    "sink": decision.sink,
                    "eligible": decision.eligible,
                    "blocked_by": None if blocked is None else blocked.layer.value,
                    "checks": checks,
                }
            ).decode()
        )
    else:
        for check in decision.checks:
            mark = "[green]pass[/green]" if check.passed else "[red]fail[/red]"
            console.print(f"{mark}  {check.layer.value:<11} {escape(check.reason)}")
        blocked = decision.blocked_by
        if blocked is None:
            console.print(f"[green]eligible[/green] for {escape(sink)}")
        else:
            console.print(f"[red]blocked[/red] for {escape(sink)} at {blocked.layer.value}")
    if not decision.eligible:
        raise typer.Exit(1)
