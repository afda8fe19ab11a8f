"""The slot-booking session of ``docs/agent-api.md`` ("A session with curl"), reproduced on the
database ``ehrbridge demo`` leaves: the sample clinic's schedules (``sample/schedule.json``) are
synced from the sandbox EHR, so the documented week has free slots, and booking the first one
answers 201 and takes it."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from ehrbridge.api.http import create_app
from ehrbridge.api.service import AgentService
from ehrbridge.cli.main import app
from ehrbridge.storage import open_backend
from ehrbridge.storage.security import KeyCache

runner = CliRunner()
KEY = re.compile(r"^ehb_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$", re.MULTILINE)
#: the window docs/agent-api.md searches
WEEK = {"start": "2026-12-01T00:00:00Z", "end": "2026-12-08T00:00:00Z"}


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


async def session(db: str, secret: str) -> dict[str, Any]:
    backend = await open_backend(db, key_cache=KeyCache(timedelta(0)))
    store, security = backend.worldmodel, backend.security
    try:
        api = create_app(AgentService.on_store(store, security), security)
        auth = {"Authorization": f"Bearer {secret}"}
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            context = await http.post(
                "/v1/ambient/context", json={"phone": "(617) 555-0199"}, headers=auth
            )
            assert context.status_code == 200, context.text
            found = await http.post("/v1/slots/search", json=WEEK, headers=auth)
            assert found.status_code == 200, found.text
            first = found.json()["items"][0]
            booking = {
                "patient_id": context.json()["context"]["patient"]["entity_id"],
                "slot_id": first["slot_id"],
                "call_id": "call-7f2",
            }
            headers = {**auth, "Idempotency-Key": "call-7f2:booking"}
            booked = await http.post("/v1/appointments", json=booking, headers=headers)
            again = await http.post("/v1/slots/search", json=WEEK, headers=auth)
        return {
            "match": context.json()["match"],
            "slots": found.json()["items"],
            "first": first,
            "booked": booked,
            "after": again.json()["items"],
        }
    finally:
        await store.close()


def test_the_documented_slot_booking_works_on_the_demo_database(tmp_path: Path) -> None:
    file = tmp_path / "clinic.db"
    invoke("demo", "--file", str(file))
    db = f"sqlite:///{file}"
    out = invoke(
        "keys", "create", "--db", db, "--workspace", "default", "--role", "agent",
        "--name", "phone-bot",
    )  # fmt: skip
    [secret] = KEY.findall(out)
    result = asyncio.run(session(db, secret))
    assert result["match"] == "matched"
    # Dr Chen's 09:00 on Tuesday 2026-12-01, the first free slot of the documented week
    first = result["first"]
    assert first["start"].startswith("2026-12-01T09:00:00")
    assert first["service_types"] == ["Family medicine"]
    assert len(first["practitioners"]) == 1 and len(first["locations"]) == 1
    assert len(result["slots"]) == 18  # Chen 8, Adeyemi 4, Nair 6
    booked = result["booked"]
    assert booked.status_code == 201, booked.text
    assert booked.headers["location"].startswith("/v1/entities/Appointment/")
    assert first["slot_id"] not in {s["slot_id"] for s in result["after"]}
