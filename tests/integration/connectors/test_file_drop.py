"""The file-drop connector on a real folder and each store backend: each file imported once,
moved to done/ or failed/ with a report; partial files left alone; a crash before the move is
harmless."""

from __future__ import annotations

import asyncio
import gzip
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from ehrbridge.connectors.file_drop import FileDropPoller
from ehrbridge.connectors.source import DataSourceConfig, ResourceConfig
from ehrbridge.runner.configfile import FILES, parse_config
from ehrbridge.runner.polling import poll_once
from ehrbridge.runner.service import Runner
from ehrbridge.storage import Backend
from ehrbridge.worldmodel.model import WorldModel
from ehrbridge.worldmodel.store import Store

EVERY = ResourceConfig(type=FILES, every=timedelta(seconds=30))


class Crash(Exception):
    """The process dying between a file's import and its move."""


def patient(pid: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "name": [{"family": family, "given": ["Ana"]}],
        "birthDate": "1980-01-02",
        "gender": "female",
    }


def bundle(kind: str, entries: list[Any]) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": entries})


def ndjson(*resources: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


def source(folder: Path) -> DataSourceConfig:
    return DataSourceConfig(
        id="drop", kind="file_drop", base_url="", path=folder, resources=(EVERY,)
    )


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def report(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = orjson.loads(path.read_bytes())
    return found


async def test_each_file_is_imported_once_and_moved_with_a_report(
    store: Store, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a-bundle.json").write_bytes(
        bundle(
            "collection",
            [{"resource": patient("p1", "Santos")}, {"resource": patient("p2", "Okafor")}],
        )
    )
    (inbox / "b-patients.ndjson.gz").write_bytes(
        gzip.compress(ndjson(patient("p3", "Lee"), patient("p4", "Diaz")))
    )
    (inbox / "c-broken.json").write_bytes(b"this is not JSON")
    (inbox / "d-batch.json").write_bytes(
        bundle("batch", [{"resource": patient("p5", "Kim")}, "oops"])
    )
    (inbox / "e-late.ndjson.part").write_bytes(ndjson(patient("p6", "Ng"))[:20])
    (inbox / ".f-hidden.ndjson").write_bytes(ndjson(patient("p7", "Roy")))
    poller = FileDropPoller(WorldModel(store, "clinic"))

    first = await poll_once(
        poller, source(inbox), EVERY, workspace=poller.model.workspace, clock=poller.clock
    )
    assert not first.ok and first.error is not None
    assert first.resource_type == FILES and first.fetched == 6 and first.events > 0
    assert names(inbox / "done") == [
        "a-bundle.json",
        "a-bundle.json.report.json",
        "b-patients.ndjson.gz",
        "b-patients.ndjson.gz.report.json",
    ]
    assert names(inbox / "failed") == [
        "c-broken.json",
        "c-broken.json.report.json",
        "d-batch.json",
        "d-batch.json.report.json",
    ]
    assert names(inbox) == [".f-hidden.ndjson", "done", "e-late.ndjson.part", "failed"]
    assert (await store.counts("clinic")).entities == {"Patient": 5}

    good = report(inbox / "done" / "b-patients.ndjson.gz.report.json")
    assert good["outcome"] == "done" and good["source"] == "drop" and good["errors"] == []
    assert good["counts"] == {"Patient": {"created": 2}} and good["events"] > 0
    assert good["started_at"] <= good["finished_at"]
    broken = report(inbox / "failed" / "c-broken.json.report.json")
    assert [e["position"] for e in broken["errors"]] == ["file"]
    assert broken["errors"][0]["reason"].startswith("not JSON")
    batch = report(inbox / "failed" / "d-batch.json.report.json")
    assert batch["counts"]["Patient"] == {"created": 1}
    assert [(e["position"], e["reason"]) for e in batch["errors"]] == [
        ("entry[1]", "not a JSON object")
    ]

    again = await poll_once(
        poller, source(inbox), EVERY, workspace=poller.model.workspace, clock=poller.clock
    )
    assert again.ok and again.fetched == 0 and again.events == 0
    assert len(names(inbox / "done")) == len(names(inbox / "failed")) == 4

    # The writer finishes the partial file and renames it: now it is picked up; so is a file
    # dropped later.
    (inbox / "e-late.ndjson.part").write_bytes(ndjson(patient("p6", "Ng")))
    (inbox / "e-late.ndjson.part").rename(inbox / "e-late.ndjson")
    (inbox / "g-later.json").write_bytes(bundle("collection", [{"resource": patient("p8", "Fox")}]))
    later = await poll_once(
        poller, source(inbox), EVERY, workspace=poller.model.workspace, clock=poller.clock
    )
    assert later.ok and later.fetched == 2 and later.events > 0
    assert "e-late.ndjson" in names(inbox / "done") and "g-later.json" in names(inbox / "done")
    assert (await store.counts("clinic")).entities == {"Patient": 7}


async def test_a_crash_between_import_and_move_reimports_nothing(
    store: Store, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "p.ndjson").write_bytes(ndjson(patient("p1", "Santos"), patient("p2", "Lee")))

    def crash(path: Path) -> None:
        raise Crash(path.name)

    crashing = FileDropPoller(WorldModel(store, "clinic"), after_import=crash)
    with pytest.raises(Crash):
        await poll_once(
            crashing, source(inbox), EVERY, workspace=crashing.model.workspace, clock=crashing.clock
        )
    assert names(inbox) == ["p.ndjson"]
    assert (await store.counts("clinic")).entities == {"Patient": 2}
    events = (await store.counts("clinic")).events

    restarted_poller = FileDropPoller(WorldModel(store, "clinic"))
    restarted = await poll_once(
        restarted_poller, source(inbox), EVERY, workspace="clinic", clock=restarted_poller.clock
    )
    assert restarted.ok and restarted.fetched == 2 and restarted.events == 0
    assert (await store.counts("clinic")).events == events
    assert names(inbox / "done") == ["p.ndjson", "p.ndjson.report.json"]
    assert report(inbox / "done" / "p.ndjson.report.json")["counts"] == {
        "Patient": {"unchanged": 2}
    }


async def test_a_file_of_a_name_already_done_keeps_both(store: Store, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    poller = FileDropPoller(WorldModel(store, "clinic"))
    for family in ("Santos", "Lee"):
        (inbox / "p.ndjson").write_bytes(ndjson(patient(family.lower(), family)))
        assert (
            await poll_once(
                poller, source(inbox), EVERY, workspace=poller.model.workspace, clock=poller.clock
            )
        ).ok
    assert names(inbox / "done") == [
        "p.ndjson",
        "p.ndjson.1",
        "p.ndjson.1.report.json",
        "p.ndjson.report.json",
    ]
    assert (await store.counts("clinic")).entities == {"Patient": 2}


async def test_the_runner_polls_a_file_drop_source(
    store: Store, backend: Backend, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "p.ndjson").write_bytes(ndjson(patient("p1", "Santos")))
    config = parse_config(
        "workspace: clinic\ndatabase: sqlite:///x.db\ndata_sources:\n"
        f"  - {{id: drop, kind: file_drop, path: '{inbox}', every: 1s}}\n"
    )
    runner_store = backend.runner
    runner = Runner(
        config,
        pollers={"file_drop": FileDropPoller(WorldModel(store, "clinic"))},
        outcomes=runner_store,
        leases=runner_store,
    )
    task = asyncio.create_task(runner.run())
    for _ in range(200):
        if await runner_store.recent_outcomes("clinic", "drop"):
            break
        await asyncio.sleep(0.025)
    runner.stop()
    await task
    outcomes = await runner_store.recent_outcomes("clinic", "drop")
    assert outcomes and outcomes[-1].ok and outcomes[-1].resource_type == FILES
    assert sum(o.fetched for o in outcomes) == 1
    assert names(inbox / "done") == ["p.ndjson", "p.ndjson.report.json"]
