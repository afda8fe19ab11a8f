"""``ehrbridge run --config`` with REST sources, configured only in the config file, pulls
their records into the world model."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ehrbridge.storage.sqlite.worldmodel import SQLiteStore
from tests.rest_sources import (  # the fixtures are used by name
    APPOINTMENTS,
    CONFIG,
    PATIENTS,
    SECRETS,
    RestServer,
    rest_server,  # noqa: F401
    rest_sources,  # noqa: F401
)

COMMAND = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()", "run", "--config"]
WANTED = {("alpha", "Patient"), ("alpha", "Appointment"), ("beta", "Appointment")}
WANTED |= {("gamma", "Appointment")}


async def counts(db: Path) -> dict[str, int]:
    store = await SQLiteStore.open(db)
    try:
        return dict((await store.counts("clinic")).entities)
    finally:
        await store.close()


def test_the_runner_polls_rest_sources_from_a_config_file(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server: RestServer = request.getfixturevalue("rest_sources")
    db = tmp_path / "wm.db"
    config = tmp_path / "runner.yaml"
    text = CONFIG.format(origin=server.origin, database=f"sqlite:///{db}")
    config.write_text(text.replace("every: 1m", "every: 1s"))
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [*COMMAND, str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ | SECRETS,
    )
    assert process.stdout is not None
    seen: list[str] = []
    ok: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 60
    try:
        while ok != WANTED:
            line = process.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(seen)
            seen.append(line)
            if match := re.search(r"poll (\w+) (\w+): ok=True fetched=(\d+)", line):
                ok.add((match.group(1), match.group(2)))
    finally:
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, "".join(seen) + out
    log = "".join(seen) + out
    # no secret and no patient data in the log
    assert not any(secret in log for secret in SECRETS.values())
    # the patients' phones are 617-555-01xx in every form the sources send; a bare "555" could
    # be a log timestamp's milliseconds
    assert "Santos" not in log and not re.search(r"555\D{0,2}01", log)
    assert asyncio.run(counts(db)) == {
        "Patient": len(PATIENTS),
        "Appointment": 3 * len(APPOINTMENTS),
    }
