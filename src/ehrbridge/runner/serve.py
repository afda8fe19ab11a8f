"""``ehrbridge run``: the runner service wired to its config, database and pollers."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from ehrbridge.budget import BudgetRegistry
from ehrbridge.connectors.fhir.backfill import ExportFirst
from ehrbridge.connectors.fhir.poller import FhirPoller
from ehrbridge.connectors.file_drop import FileDropPoller
from ehrbridge.connectors.rest.poller import RestPoller
from ehrbridge.connectors.source import SecretRef
from ehrbridge.errors import EhrbridgeError, InvalidInput, LoopFailed
from ehrbridge.leases import new_holder
from ehrbridge.review.judges import judge_named
from ehrbridge.review.llm import LlmSettings
from ehrbridge.review.loop import ReviewLoop
from ehrbridge.runner.config import LlmConfig, Timing
from ehrbridge.runner.configfile import load_config
from ehrbridge.runner.loops import Loop
from ehrbridge.runner.service import Runner
from ehrbridge.runner.sinks import outbound_loops
from ehrbridge.storage import open_backend
from ehrbridge.worldmodel.model import WorldModel

log = logging.getLogger("ehrbridge.runner")

#: exit codes of ``ehrbridge run``
STOPPED, LOOP_DIED, NOT_STARTED = 0, 1, 2


async def serve(config_path: Path, *, timing: Timing | None = None) -> int:
    """Run until SIGTERM/SIGINT (0), a loop dies (1), or it cannot start (2)."""
    try:
        config = load_config(config_path)
        url = config.database
        backend = await open_backend(url.resolve() if isinstance(url, SecretRef) else url)
    except EhrbridgeError as exc:
        log.error("cannot start: %s", exc)
        return NOT_STARTED
    runner_store = backend.runner
    holder = new_holder()
    loops: list[Loop] = []
    if config.review is not None:  # the review loop: the judge it names, with its policy
        try:
            judge = judge_named(config.review.judge, llm_settings(config.review.llm))
        except EhrbridgeError as exc:
            log.error("cannot start: %s", exc)
            await backend.close()
            return NOT_STARTED
        loops.append(
            ReviewLoop(
                backend.worldmodel,
                backend.review,
                runner_store,
                judge,
                workspace=config.workspace,
                policy=config.review.policy,
                leases=runner_store,
                holder=holder,
            )
        )
    model = WorldModel(backend.worldmodel, config.workspace)
    # One budget per data source (and sink) for the whole process; its pace is shared through
    # the database.
    budgets = BudgetRegistry(runner_store, config.workspace)
    try:
        outbound = outbound_loops(
            backend.worldmodel,
            backend.outbox,
            config,
            budgets=budgets,
            leases=runner_store,
            holder=holder,
            reconcile_every=(timing or config.timing).reconcile_every,
        )
    except EhrbridgeError as exc:
        log.error("cannot start: %s", exc)
        await backend.close()
        return NOT_STARTED
    loops += outbound.loops
    backfill = ExportFirst(model, runner_store, budgets=budgets)
    poller = FhirPoller(model, runner_store, budgets=budgets, backfill=backfill)
    drops = FileDropPoller(model)
    rest = RestPoller(model, runner_store, budgets=budgets)
    runner = Runner(
        config,
        pollers={"fhir": poller, "file_drop": drops, "rest": rest},
        outcomes=runner_store,
        leases=runner_store,
        config_path=config_path,
        timing=timing or config.timing,
        holder=holder,
        loops=loops,
        outbox=backend.outbox,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stopper(runner, signum))
    try:
        await runner.run()
    except LoopFailed:
        return LOOP_DIED
    except InvalidInput as exc:  # the metrics address cannot be served
        log.error("cannot start: %s", exc)
        return NOT_STARTED
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await poller.aclose()
        await drops.aclose()
        await rest.aclose()
        await outbound.aclose()
        await backend.close()
    return STOPPED


def llm_settings(wanted: LlmConfig | None) -> LlmSettings | None:
    """The LLM judge's settings from the ``review.llm`` section, its key resolved."""
    if wanted is None:
        return None
    return LlmSettings(
        base_url=wanted.base_url,
        model=wanted.model,
        api_key=None if wanted.api_key is None else wanted.api_key.resolve(),
        timeout=wanted.timeout.total_seconds(),
        response_format="json_object" if wanted.response_format == "json_object" else "json_schema",
    )


def _stopper(runner: Runner, signum: int) -> Callable[[], None]:
    def stop() -> None:
        log.info("%s: stopping after the current step", signal.Signals(signum).name)
        runner.stop()

    return stop
