"""``python -m bench.slot_search [--patients N] [--slots S] [--searches K]``.

Free-slot search (``AgentService.search_slots``) on SQLite in a world model of N patients
(default 100,000; seven entities each, as in ``bench.agent_api``) plus S Slots (default 2,000) on
20 Schedules. The slot index follows the event log, so its cost is the log's size:

- ``slot_index_first_refresh`` (s): the first search of a process, which builds the index from
  the Slot, Schedule and Appointment events. Baseline: the raw driver reading every event row of
  the workspace (``SELECT * FROM events``, no decoding), the least a whole-log follower costs.
- ``slot_search_p50`` / ``_p99`` (ms): later searches (a week's window, one at a time, the index
  refreshed on each, audited). Baseline: the same search on the built index in memory
  (``SlotIndex.search``), so the ratio is what the refresh and the audit add.

JSON lines on stdout (``bench/report.py``), progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.agent_api import NOW, load
from bench.patients import DATA_SOURCE, WORKSPACE
from bench.report import Metric, emit, machine, percentile, progress
from ehrbridge.api.models import SlotSearch
from ehrbridge.api.service import AgentService
from ehrbridge.api.slots import SlotIndex
from ehrbridge.api.store import Principal
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.events import Observation, RecordKey
from ehrbridge.worldmodel.model import WorldModel

SCHEDULES = 20


def schedules_and_slots(slots: int) -> list[Observation]:
    """Schedules, then Slots of 15 minutes over the next weeks, as the importer keeps them."""

    def generic(resource_type: str, external_id: str, resource: dict[str, object]) -> Observation:
        return Observation(
            workspace=WORKSPACE,
            record=RecordKey(
                data_source=DATA_SOURCE, resource_type=resource_type, external_id=external_id
            ),
            entity_type=resource_type,
            data={"resource": {"resourceType": resource_type, "id": external_id, **resource}},
            effective_at=NOW,
        )

    out = [
        generic("Schedule", f"sched-{n}", {"active": True, "serviceType": [{"text": "Checkup"}]})
        for n in range(SCHEDULES)
    ]
    for n in range(slots):
        start = NOW + timedelta(days=1 + n // 200, minutes=15 * (n % 32))
        out.append(
            generic(
                "Slot",
                f"slot-{n}",
                {
                    "schedule": {"reference": f"Schedule/sched-{n % SCHEDULES}"},
                    "status": "busy" if n % 5 == 0 else "free",
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=15)).isoformat(),
                },
            )
        )
    return out


def raw_log_read(path: Path) -> float:
    """Seconds for the raw driver to fetch every event row of the workspace."""
    conn = sqlite3.connect(path)
    try:
        started = time.perf_counter()
        for _ in conn.execute("SELECT * FROM events WHERE workspace = ?", (WORKSPACE,)):
            pass
        return time.perf_counter() - started
    finally:
        conn.close()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slot_search")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--slots", type=int, default=2_000)
    parser.add_argument("--searches", type=int, default=500)
    args = parser.parse_args(argv)
    emit(machine())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "slots.db"
        backend = await open_backend(f"sqlite:///{path}")
        store = backend.worldmodel
        try:
            await load(store, args.patients)
            model = WorldModel(store, WORKSPACE)
            await model.ingest(schedules_and_slots(args.slots), resolve=False)
            events = (await store.counts(WORKSPACE)).events
            progress(f"{events:,} events; building the slot index")
            service = AgentService.on_store(store, backend.security)
            agent = Principal(workspace=WORKSPACE, key_id="bench", role="agent")
            rng = random.Random(7)

            def week() -> SlotSearch:
                start = NOW + timedelta(days=rng.randrange(1, max(2, args.slots // 200)))
                return SlotSearch(start=start, end=start + timedelta(days=7), limit=20)

            started = time.perf_counter()
            first = await service.search_slots(agent, week())
            first_refresh = time.perf_counter() - started
            assert first.items, "no free slot found"
            emit(
                Metric(
                    metric="slot_index_first_refresh",
                    value=first_refresh,
                    unit="s",
                    baseline=raw_log_read(path),
                    backend="sqlite",
                )
            )
            index = SlotIndex()
            await index.refresh(model)
            searches = [week() for _ in range(args.searches)]
            served, bare = [], []
            for query in searches:
                started = time.perf_counter()
                await service.search_slots(agent, query)
                served.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                index.search(query)
                bare.append((time.perf_counter() - started) * 1000)
            for pct in (50, 99):
                emit(
                    Metric(
                        metric=f"slot_search_p{pct}",
                        value=percentile(served, pct),
                        unit="ms",
                        baseline=percentile(bare, pct),
                        backend="sqlite",
                    )
                )
        finally:
            await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
