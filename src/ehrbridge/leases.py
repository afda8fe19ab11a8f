"""Leases: a named piece of work done by one holder at a time, until the lease expires.

The runner leases each (data source, resource type) it polls, the Bulk Data backfill leases its
export, and the agent API leases a slot while it books it. The port lives here, below all of
them; each storage backend implements it beside its other tables.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class Lease:
    """A named lease held by one holder until it expires (or is released)."""

    name: str
    #: who holds it, e.g. ``runner-<host>-<pid>-<random>``
    holder: str
    expires_at: datetime


class Leases(Protocol):
    """Leases that let exactly one runner do a piece of work at a time."""

    async def acquire(self, workspace: str, name: str, holder: str, ttl: timedelta) -> Lease | None:
        """Take the lease, or renew it when ``holder`` has it, for ``ttl``; None when another
        holder has an unexpired lease. Atomic."""

    async def release(self, workspace: str, name: str, holder: str) -> bool:
        """Give the lease up; False when ``holder`` did not hold it."""

    async def holder(self, workspace: str, name: str) -> Lease | None:
        """The unexpired lease of that name, if any."""


def new_holder() -> str:
    """A name for this runner process, unique across hosts and restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
