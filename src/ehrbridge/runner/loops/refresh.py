"""The ``config-refresh`` loop: reloads the config file on change and periodically
(docs/design.md §7).

An invalid file keeps the running config (and the log says why); a new database, workspace or
metrics address takes effect on restart. The other loops read the running config from
:class:`LiveConfig` and wake on its ``changed`` event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from ehrbridge.errors import ConfigError
from ehrbridge.runner.config import RunnerConfig, Timing
from ehrbridge.runner.configfile import load_config
from ehrbridge.times import pause

log = logging.getLogger("ehrbridge.runner")


class LiveConfig:
    """The running config: replaced by the refresh loop, followed by the others."""

    def __init__(self, config: RunnerConfig) -> None:
        self.current = config
        #: set when :attr:`current` was replaced; the poll loop clears it when it follows
        self.changed = asyncio.Event()

    def replace(self, fresh: RunnerConfig) -> None:
        self.current = fresh
        self.changed.set()


class ConfigRefresh:
    """Rereads the file when it changed (checked every ``watch_every``) or ``refresh_every``."""

    name = "config-refresh"

    def __init__(
        self,
        live: LiveConfig,
        path: Path | None,
        *,
        timing: Timing,
        clock: Callable[[], datetime],
    ) -> None:
        self.live = live
        self.config_path = path
        self.timing = timing
        self.clock = clock

    @property
    def config(self) -> RunnerConfig:
        return self.live.current

    async def run(self, stop: asyncio.Event) -> None:
        if self.config_path is None:
            await stop.wait()
            return
        seen = _mtime(self.config_path)
        last_read = self.clock()
        while not await pause(self.timing.watch_every, stop):
            mtime = _mtime(self.config_path)
            due = self.clock() - last_read >= self.timing.refresh_every
            if mtime == seen and not due:
                continue
            seen, last_read = mtime, self.clock()
            await self._reload(self.config_path)

    async def _reload(self, path: Path) -> None:
        try:
            # Reading is bounded (runner.yamlfile), and off the event loop, so no file can hold
            # up the poll loops while it is read.
            fresh = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            # The problems name file, line and key, never a value.
            log.error("config %s is not valid; keeping the running config:\n%s", path, exc)
            return
        if fresh == self.config:
            return
        if (fresh.database, fresh.workspace, fresh.metrics) != (
            self.config.database,
            self.config.workspace,
            self.config.metrics,
        ):
            log.warning(
                "config %s: a new database, workspace or metrics address takes effect on restart",
                path,
            )
            fresh = replace(
                fresh,
                workspace=self.config.workspace,
                database=self.config.database,
                metrics=self.config.metrics,
            )
        log.info("config %s reloaded: %d data sources", path, len(fresh.data_sources))
        self.live.replace(fresh)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
