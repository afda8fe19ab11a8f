"""The bundled sample clinic: a FHIR R4 transaction Bundle of fictional records.

Six patients with their practitioners, locations, appointments, encounters, medication orders,
lab results and coverage, as the sandbox EHR would hold them. Every name, phone number (555-01xx)
and email address (example.com) is made up.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The data source the sample's records are keyed under: the sandbox EHR they come from.
SAMPLE_SOURCE = "sandbox-ehr"


def sample_bundle() -> Path:
    """The path of the sample Bundle (``clinic.json``) inside the installed package."""
    return Path(str(resources.files("ehrbridge.sample") / "clinic.json"))
