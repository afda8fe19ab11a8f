"""Where the Synthea R4 bundles are (Apache-2.0; see the data set's README).

Tests and benchmarks read them from ``$EHRBRIDGE_SYNTHEA``, else ``../shared/data/synthea-r4``
beside the repository, else ``/work/shared/data/synthea-r4``. A few small bundles are copied into
``tests/fixtures/synthea`` so the unit tests never depend on the shared folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.paths import REPO

_CANDIDATES = (
    os.environ.get("EHRBRIDGE_SYNTHEA", ""),
    str(REPO.parent / "shared" / "data" / "synthea-r4"),
    "/work/shared/data/synthea-r4",
)


def synthea_dir() -> Path:
    """The folder of the 60 patient bundles (plus the hospital and practitioner bundles)."""
    for candidate in _CANDIDATES:
        if candidate and (Path(candidate) / "SHA256SUMS").is_file():
            return Path(candidate)
    pytest.fail("the Synthea R4 bundles are missing; set EHRBRIDGE_SYNTHEA to their folder")


def patient_bundles() -> list[Path]:
    """The 60 patient bundles, in name order."""
    return sorted(
        p
        for p in synthea_dir().glob("*.json")
        if not p.name.startswith(("hospitalInformation", "practitionerInformation"))
    )
