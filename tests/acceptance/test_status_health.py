"""``ehrbridge status`` shows health per resource type: one failing type degrades its source and
is named, instead of showing the whole source as down."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from ehrbridge.cli.main import app
from ehrbridge.connectors.source import PollOutcome
from ehrbridge.storage import open_backend

GOOD = ["Patient", "Practitioner", "Location", "Appointment"]


async def record(path: Path) -> None:
    backend = await open_backend(f"sqlite:///{path}")
    store = backend.worldmodel
    try:
        runner = backend.runner
        now = datetime.now(UTC)
        for n in range(3):
            at = now - timedelta(seconds=30 - n)
            for kind in [*GOOD, "Encounter"]:
                ok = kind != "Encounter"
                await runner.record_outcome(
                    PollOutcome(
                        workspace="clinic",
                        source="ehr",
                        resource_type=kind,
                        started_at=at,
                        finished_at=at,
                        ok=ok,
                        error=None
                        if ok
                        else "1 entries not imported, first: entry[0]: "
                        "Patient/p1 is not in the world model",
                    )
                )
    finally:
        await store.close()


def test_status_names_the_failing_type_and_keeps_the_source_up(tmp_path: Path) -> None:
    db = tmp_path / "wm.db"
    asyncio.run(record(db))
    result = CliRunner().invoke(
        app,
        ["status", "--db", f"sqlite:///{db}", "--workspace", "clinic"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"ehr\s+│\s+degraded\s+│\s+Encounter\s+│", result.output), result.output
    assert "down" not in result.output.split("failing resource types")[0]
    # The per-type table: only the failing type, down, with its error.
    per_type = result.output.split("failing resource types")[1]
    assert re.search(r"ehr\s+│\s+Encounter\s+│\s+down\s+│", per_type), result.output
    assert "is not in the world model" in per_type
    assert not any(re.search(rf"│\s+{kind}\s+│", per_type) for kind in GOOD), per_type
