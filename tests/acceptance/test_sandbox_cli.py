"""``ehrbridge sandbox``: a real process serving the seeded sample clinic from a SQLite file."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx


def test_sandbox_serves_the_seeded_clinic_and_keeps_its_file(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    command = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()"]
    args = ["sandbox", "--port", "0", "--db", str(db)]
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening http://127.0.0.1:"), line
        base_url = line.removeprefix("listening ").strip()
        patient = httpx.get(f"{base_url}/Patient/pat-1001", timeout=10)
        assert patient.status_code == 200
        assert patient.json()["meta"]["versionId"] == "1"
        throttle = httpx.post(f"{base_url.removesuffix('/fhir/R4')}/$faults", json={"throttle": 1})
        assert throttle.status_code == 200
        assert httpx.get(f"{base_url}/Patient/pat-1001").status_code == 429
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    # uvicorn stops gracefully, then re-raises the SIGTERM it caught.
    assert process.returncode in (0, -signal.SIGTERM)
    assert db.exists()
