"""``ehrbridge mcp``: the MCP tools over stdio in a real process, driven by the SDK's client.

The command is started as a desktop client would start it (``python -m ehrbridge.cli.mcp``
with ``--db`` and the key in ``EHRBRIDGE_API_KEY``); without a valid key it refuses to start.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from ehrbridge.api.mcp import REQUEST_ID_META_KEY
from ehrbridge.fhir.importer import Importer
from ehrbridge.sample import SAMPLE_SOURCE, sample_bundle
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.events import RecordKey
from ehrbridge.worldmodel.model import WorldModel

WS = "clinic"
COMMAND = [sys.executable, "-m", "ehrbridge.cli.mcp"]
MARIA_PHONE = "+16175550142"


async def _clinic(db: Path) -> tuple[str, str, str]:
    """The sample clinic in ``db``: (an agent key's secret, its key id, Maria's entity id)."""
    backend = await open_backend(f"sqlite:///{db}")
    store = backend.worldmodel
    try:
        model = WorldModel(store, WS)
        report = await Importer(model, source=SAMPLE_SOURCE).import_paths([sample_bundle()])
        assert not report.errors
        key = RecordKey(data_source=SAMPLE_SOURCE, resource_type="Patient", external_id="pat-1001")
        found = await store.record_entities(WS, [key])
        secret, stored = await backend.security.create_key(WS, "agent", name="desktop")
        return secret, stored.key_id, found[key][1]
    finally:
        await store.close()


async def test_stdio_serves_a_read_and_a_write_as_the_keys_principal(tmp_path: Path) -> None:
    db = tmp_path / "wm.db"
    secret, key_id, maria = await _clinic(db)
    params = StdioServerParameters(
        command=COMMAND[0],
        args=[*COMMAND[1:], "--db", f"sqlite:///{db}"],
        env={"EHRBRIDGE_API_KEY": secret},
    )
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listing = await session.list_tools()
            ambient = await session.call_tool("ambient_context", {"phone": "(617) 555-0142"})
            wrote = await session.call_tool(
                "write_observation",
                {
                    "entity_type": "Patient",
                    "entity_id": maria,
                    "fields": {"language": "pt"},
                    "level": "mentioned",
                    "call_id": "call-stdio-1",
                    "evidence": {"transcript_span": "I'd rather speak Portuguese"},
                },
            )
            scoped = await session.call_tool(
                "write_observation",
                {"entity_type": "MedicationOrder", "fields": {"status": "stopped"},
                 "level": "confirmed"},
            )  # fmt: skip
    assert len(listing.tools) == 9
    assert isinstance(ambient, types.CallToolResult) and not ambient.is_error
    context: Any = ambient.structured_content
    assert context["match"] == "matched"
    assert context["context"]["patient"]["entity_id"] == maria
    assert isinstance(wrote, types.CallToolResult) and not wrote.is_error
    result: Any = wrote.structured_content
    assert result["status"] == "recorded"
    (pending,) = result["entity"]["pending"]["language"]
    assert (pending["value"], pending["confidence"]) == ("pt", 0.3)
    assert pending["source"] == {"kind": "voice", "id": key_id, "ref": None}
    assert isinstance(scoped, types.CallToolResult) and scoped.is_error
    assert scoped.meta is not None

    backend = await open_backend(f"sqlite:///{db}")
    store = backend.worldmodel
    try:
        audit = await backend.security.query_audit(WS, limit=1000)
    finally:
        await store.close()
    assert {e.action for e in audit} == {"ambient.context", "observations.write"}
    assert all(e.details["channel"] == "mcp" and e.key_id == key_id for e in audit)
    denied = [e for e in audit if e.outcome == "denied"]
    assert [e.request_id for e in denied] == [scoped.meta[REQUEST_ID_META_KEY]]
    logged = stderr.read_text()
    assert all(value not in logged for value in ["Santos", "Maria", "0142", "Portuguese"])


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "set EHRBRIDGE_API_KEY"),
        ("", "set EHRBRIDGE_API_KEY"),
        ("ehr_not_a_real_key", "not a valid API key"),
    ],
)
def test_stdio_refuses_to_start_without_a_valid_key(
    tmp_path: Path, key: str | None, message: str
) -> None:
    db = tmp_path / "wm.db"
    asyncio.run(_clinic(db))
    env = {k: v for k, v in os.environ.items() if k != "EHRBRIDGE_API_KEY"}
    if key is not None:
        env["EHRBRIDGE_API_KEY"] = key
    done = subprocess.run(  # noqa: S603 (fixed arguments)
        [*COMMAND, "--db", f"sqlite:///{db}"],
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""  # nothing on the protocol's channel
