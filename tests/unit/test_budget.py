"""A request budget under an HTTP client: seats, slots and 429 pauses (on a real SQLite pace)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from ehrbridge.budget import (
    DEFAULT_PAUSE,
    MAX_PAUSE,
    BudgetRegistry,
    RequestBudget,
    source_budget,
)
from ehrbridge.storage.sqlite.database import SQLiteDatabase
from ehrbridge.storage.sqlite.runner import SQLiteRunnerStore

FAST = RequestBudget(rate=1000, concurrency=2)


@pytest.fixture
async def pace() -> AsyncIterator[SQLiteRunnerStore]:
    database = await SQLiteDatabase.open(":memory:")
    try:
        yield SQLiteRunnerStore(database)
    finally:
        await database.close()


class Server:
    """An in-process server that counts requests in flight."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status, self.headers = status, headers or {}
        self.in_flight = self.most = self.seen = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.release.wait()
            await asyncio.sleep(0.01)
        finally:
            self.in_flight -= 1
        return httpx.Response(self.status, headers=self.headers, json={"ok": True})


async def test_concurrency_holds_across_clients_of_one_source(pace: SQLiteRunnerStore) -> None:
    server = Server()
    budgets = BudgetRegistry(pace, "ws")
    # Two clients (two poll tasks' worth), one source: one budget.
    clients = [
        httpx.AsyncClient(transport=budgets.transport("ehr", FAST, httpx.MockTransport(server)))
        for _ in range(2)
    ]
    try:
        await asyncio.gather(*(c.get("http://ehr.test/x") for c in clients for _ in range(5)))
    finally:
        for client in clients:
            await client.aclose()
    assert server.seen == 10 and server.most == 2


async def test_a_429_pauses_the_whole_budget_for_its_retry_after(pace: SQLiteRunnerStore) -> None:
    server = Server(429, {"Retry-After": "120"})
    budgets = BudgetRegistry(pace, "ws")
    transport = budgets.transport("ehr", FAST, httpx.MockTransport(server))
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("http://ehr.test/x")).status_code == 429
    # Every taker of that budget (any task, any runner) now waits out the Retry-After.
    wait = await pace.take_slot("ws", source_budget("ehr"), FAST.interval)
    assert timedelta(seconds=110) < wait <= timedelta(seconds=120)
    assert await pace.take_slot("ws", source_budget("lab"), FAST.interval) == timedelta(0)


@pytest.mark.parametrize(
    ("retry_after", "longest"),
    [(None, DEFAULT_PAUSE), ("soon", DEFAULT_PAUSE), ("9" * 40, MAX_PAUSE)],
)
async def test_a_429_without_a_usable_retry_after_pauses_a_while(
    pace: SQLiteRunnerStore, retry_after: str | None, longest: timedelta
) -> None:
    server = Server(429, {} if retry_after is None else {"Retry-After": retry_after})
    transport = BudgetRegistry(pace, "ws").transport("ehr", FAST, httpx.MockTransport(server))
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("http://ehr.test/x")).status_code == 429
    wait = await pace.take_slot("ws", source_budget("ehr"), FAST.interval)
    assert timedelta(0) < wait <= longest


async def test_a_seat_is_given_back_when_the_request_fails(pace: SQLiteRunnerStore) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    one = RequestBudget(rate=1000, concurrency=1)
    transport = BudgetRegistry(pace, "ws").transport("ehr", one, httpx.MockTransport(refuse))
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                await asyncio.wait_for(client.get("http://ehr.test/x"), timeout=10)


async def test_a_seat_is_held_until_the_body_is_read(pace: SQLiteRunnerStore) -> None:
    server = Server()
    one = RequestBudget(rate=1000, concurrency=1)
    transport = BudgetRegistry(pace, "ws").transport("ehr", one, httpx.MockTransport(server))
    async with httpx.AsyncClient(transport=transport) as client:
        async with client.stream("GET", "http://ehr.test/x") as response:
            second = asyncio.create_task(client.get("http://ehr.test/y"))
            await asyncio.sleep(0.05)
            assert server.seen == 1 and not second.done()  # the first body is still open
            await response.aread()
        assert (await second).status_code == 200
    assert server.seen == 2


async def test_a_new_limit_takes_effect_for_the_same_budget(pace: SQLiteRunnerStore) -> None:
    budgets = BudgetRegistry(pace, "ws")
    first = budgets.budget("source:ehr", FAST)
    wider = RequestBudget(rate=5, concurrency=8)
    assert budgets.budget("source:ehr", wider) is first and first.limit == wider
