"""The bundled sample clinic: FHIR R4 transaction Bundles of fictional records.

``clinic.json``: six patients with their practitioners, locations, appointments, encounters,
medication orders, lab results and coverage, as the sandbox EHR would hold them.
``schedule.json``: each practitioner's Schedule and its Slots, 30-minute visits on fixed days for
the four weeks Monday 2026-11-23 to Friday 2026-12-18, free except the three that the clinic's
booked appointments hold (``busy``). Every name, phone number (555-01xx) and email address
(example.com) is made up.

The sample is a snapshot taken on 2026-11-20 (its newest ``meta.lastUpdated``): its dates are
fixed, not relative to today. Nothing that reads it moves them either: ``ehrbridge demo`` imports
them as they are, and the agent API's slot search takes an explicit window (``start``, ``end``)
and does not hide slots in the past, so ``docs/agent-api.md``'s example (the week from
2026-12-01) answers the same on the demo's database whenever it runs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The data source the sample's records are keyed under: the sandbox EHR they come from.
SAMPLE_SOURCE = "sandbox-ehr"


def _path(name: str) -> Path:
    return Path(str(resources.files("ehrbridge.sample") / name))


def sample_bundle() -> Path:
    """The path of the sample clinic's records (``clinic.json``) inside the installed package."""
    return _path("clinic.json")


def schedule_bundle() -> Path:
    """The path of the sample clinic's Schedules and Slots (``schedule.json``)."""
    return _path("schedule.json")


def sample_bundles() -> list[Path]:
    """Every sample Bundle, in the order they load (the schedules refer to the clinic's
    practitioners and locations)."""
    return [sample_bundle(), schedule_bundle()]
