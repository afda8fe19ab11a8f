"""What the CLI shows while FHIR files are imported or pushed (a progress bar over the bytes of
the files, and at the end a summary table per resource type and the entries that failed), and
while the connector runner syncs a data source (a bar per resource type)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ehrbridge.connectors.source import PollOutcome
from ehrbridge.fhir.reader import Unit

#: Errors listed on the terminal; the rest go to the ``--errors`` file.
SHOWN_ERRORS = 20
COLUMNS = ("created", "updated", "unchanged", "failed")


class FileProgress:
    """A progress bar over the total size of the files, moved by each unit read."""

    def __init__(self, progress: Progress, files: Sequence[Path]) -> None:
        self.progress = progress
        self.sizes = {str(p): _size(p) for p in files}
        self.before: dict[str, int] = {}
        offset = 0
        for name, size in self.sizes.items():
            self.before[name] = offset
            offset += size
        self.task = progress.add_task("reading", total=max(offset, 1), resources=0)

    def advance(self, unit: Unit, resources: int) -> None:
        done = self.before.get(unit.file, 0) + int(unit.done * self.sizes.get(unit.file, 0))
        self.progress.update(
            self.task,
            completed=done,
            description=Path(unit.file).name[-40:],
            resources=resources,
        )


@contextmanager
def file_progress(console: Console, files: Sequence[Path]) -> Iterator[FileProgress]:
    """A live progress bar (only on a terminal) for reading ``files``."""
    columns = (
        TextColumn("{task.description:<40}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[resources]:>9,} resources"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        yield FileProgress(progress, files)


def summary_table(counts: Mapping[str, Counter[str]]) -> Table:
    """Created / updated / unchanged / failed per resource type, with a total row."""
    table = Table()
    table.add_column("resource type")
    for column in COLUMNS:
        table.add_column(column, justify="right")
    total: Counter[str] = Counter()
    for resource_type, c in sorted(counts.items()):
        total.update(c)
        table.add_row(resource_type, *(_cell(c[k], k) for k in COLUMNS))
    table.add_section()
    table.add_row("total", *(_cell(total[k], k) for k in COLUMNS))
    return table


def show_errors(console: Console, errors: Sequence[object]) -> None:
    """The first :data:`SHOWN_ERRORS` errors, then how many more there are."""
    for error in errors[:SHOWN_ERRORS]:
        console.print(f"[red]failed[/red] {escape(str(error))}")
    if len(errors) > SHOWN_ERRORS:
        console.print(f"... and {len(errors) - SHOWN_ERRORS} more (--errors FILE lists them all)")


def _cell(n: int, column: str) -> str:
    if column == "failed" and n:
        return f"[red]{n:,}[/red]"
    return f"{n:,}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@contextmanager
def sync_progress(
    console: Console, totals: Mapping[str, int]
) -> Iterator[Callable[[PollOutcome], None]]:
    """A bar per resource type, filled by each poll's outcome; yields the outcome callback.

    ``totals`` is how many resources of each type the source holds. A poll that failed (e.g. its
    entries refer to records not polled yet) shows as a retry until one succeeds.
    """
    columns = (
        TextColumn("{task.description:<18}"),
        BarColumn(),
        TextColumn("{task.completed:>5.0f}/{task.total:<5.0f}"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks = {
            name: progress.add_task(name, total=max(total, 1), status="waiting")
            for name, total in totals.items()
        }

        def report(outcome: PollOutcome) -> None:
            task = tasks.get(outcome.resource_type)
            if task is None:
                return
            if outcome.ok:
                total = max(totals.get(outcome.resource_type, 0), outcome.fetched, 1)
                progress.update(task, completed=total, total=total, status="[green]in sync")
            else:
                progress.update(task, status="[yellow]retrying: references not stored yet")

        yield report
