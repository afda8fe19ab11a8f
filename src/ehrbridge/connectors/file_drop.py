"""Polling a drop folder: each Bundle or NDJSON file imported once, then moved with a report.

A file is ready when it sits directly in the folder under a FHIR name (``.json``, ``.ndjson``,
``.jsonl``, each optionally ``.gz``) that does not start with a dot. A writer therefore writes
``name.ndjson.part`` (or ``.name.ndjson``) and renames it when complete: a rename within a folder
is atomic, so a half-written file is never read.

Each ready file is imported with the FHIR importer as the data source, then moved to ``done/``
(every entry imported) or ``failed/`` (any entry failed, or the file could not be read), with
``<name>.report.json`` beside it. The move is the marker of a file handled; the report is written
first and the move comes last. A crash after the import committed and before the move leaves the
file where it was: the next poll imports it again, which writes zero events (unchanged records
write nothing), and then moves it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ehrbridge.connectors.source import DataSourceConfig, Polled, ResourceConfig
from ehrbridge.errors import EhrbridgeError
from ehrbridge.fhir.importer import Importer, order_files
from ehrbridge.fhir.reader import is_fhir_file
from ehrbridge.fhir.report import ImportReport, dumps_errors
from ehrbridge.times import utc
from ehrbridge.worldmodel.model import WorldModel

DONE, FAILED = "done", "failed"
REPORT_SUFFIX = ".report.json"


def ready_files(folder: Path) -> list[Path]:
    """The files of ``folder`` to import now, in import order (Bundles, then NDJSON by type)."""
    found = sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and is_fhir_file(p) and p.is_file()
    )
    return order_files(found)


class FileDropPoller:
    """Imports the files dropped in ``file_drop`` data sources' folders."""

    def __init__(
        self,
        model: WorldModel,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        after_import: Callable[[Path], None] | None = None,
    ) -> None:
        self.model = model
        self.clock = clock
        #: called between a file's import and its move (tests use it to stage a crash)
        self.after_import = after_import

    async def aclose(self) -> None:
        """Nothing to release: no connections are kept."""

    async def poll(
        self, source: DataSourceConfig, resource: ResourceConfig, polled: Polled
    ) -> None:
        """Import every ready file of ``source.path`` once, counting into ``polled``; the files
        that failed are its ``problem``."""
        problems: list[str] = []
        assert source.path is not None, "a file_drop source has a path"
        try:
            files = ready_files(source.path)
        except OSError as exc:
            files = []
            problems.append(f"cannot list {source.path}: {exc.strerror}")
        for path in files:
            try:
                report, moved_to = await self._handle(source, path)
            except (OSError, EhrbridgeError) as exc:
                problems.append(f"{path.name}: {type(exc).__name__}: {exc}")
                continue
            # A file that could not be read counts as a failure, not as a resource read.
            polled.fetched += sum(
                sum(c.values()) for t, c in report.counts.items() if t != "(file)"
            )
            polled.events += report.events
            if moved_to.parent.name == FAILED:
                problems.append(f"{path.name}: {len(report.errors)} errors, moved to {FAILED}/")
        if problems:
            polled.problem = f"{len(problems)} files failed, first: {problems[0]}"

    async def _handle(self, source: DataSourceConfig, path: Path) -> tuple[ImportReport, Path]:
        started = self.clock()
        importer = Importer(self.model, source=source.id, clock=self.clock)
        report = await importer.import_paths([path])
        if self.after_import is not None:
            self.after_import(path)
        outcome = FAILED if report.errors else DONE
        target = _free_name(path.parent / outcome, path.name)
        document = _report(path, source, report, outcome, started, self.clock())
        _write_atomically(target.with_name(target.name + REPORT_SUFFIX), document)
        os.replace(path, target)
        return report, target


def _report(
    path: Path,
    source: DataSourceConfig,
    report: ImportReport,
    outcome: str,
    started: datetime,
    finished: datetime,
) -> bytes:
    errors = [orjson.loads(line) for line in dumps_errors(report.errors).splitlines()]
    document: dict[str, Any] = {
        "file": path.name,
        "source": source.id,
        "outcome": outcome,
        "started_at": utc(started),
        "finished_at": utc(finished),
        "events": report.events,
        "counts": {t: dict(sorted(c.items())) for t, c in sorted(report.counts.items())},
        "errors": errors,
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2)


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/name.1``, ``.2``, ... when a file of that name was there."""
    folder.mkdir(exist_ok=True)
    target, n = folder / name, 0
    while target.exists():
        n += 1
        target = folder / f"{name}.{n}"
    return target


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.part")
    partial.write_bytes(data)
    os.replace(partial, path)
