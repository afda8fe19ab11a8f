"""``ehrbridge run`` as a process: SIGTERM stops it cleanly; a bad config stops it at start."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehrbridge.cli.main import app
from ehrbridge.logs import QUIET_LOGGERS, configure_logging

CONFIG = """\
workspace: clinic
database: sqlite:///{db}
data_sources:
  - id: ehr
    kind: fhir
    base_url: http://127.0.0.1:9/fhir
    resources:
      - {{type: Patient, every: 1s}}
"""
COMMAND = [sys.executable, "-c", "from ehrbridge.cli.main import main; main()", "run", "--config"]


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 (fixed arguments)
        [*COMMAND, str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_runner_after_its_step(tmp_path: Path, signum: signal.Signals) -> None:
    config = tmp_path / "runner.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "wm.db"))
    process = start(config)
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 60
    # The source is unreachable: a failed poll is an outcome, and the runner keeps going.
    while not any("poll ehr Patient: ok=False" in line for line in seen):
        line = process.stdout.readline()
        assert line and time.monotonic() < deadline, "".join(seen)
        seen.append(line)
    process.send_signal(signum)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, "".join(seen) + out
    assert f"{signum.name}: stopping after the current step" in out
    assert "stopped" in out
    # ehrbridge status shows the source's health from the polls the runner recorded
    result = CliRunner().invoke(
        app,
        ["status", "--db", f"sqlite:///{tmp_path / 'wm.db'}", "--workspace", "clinic"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "data sources" in result.output
    assert re.search(r"ehr\s+│\s+(degraded|down)\s+│", result.output), result.output
    assert "FhirUnavailable" in result.output


def test_an_invalid_config_is_refused_at_start_naming_key_and_line(tmp_path: Path) -> None:
    config = tmp_path / "runner.yaml"
    text = CONFIG.format(db=tmp_path / "wm.db").replace("kind: fhir", "kind: fhir\n    token: x")
    config.write_text(text)
    process = start(config)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert f"{config}:6: data_sources[0].token: unknown key 'token'" in out


def _alias_bomb() -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # refused before expanding: a5 is the first anchor past 100,000 values (of 9^9)
        (_alias_bomb(), ":14: more than 100,000 values once its aliases are expanded"),
        ("deep: " + "[" * 50_000 + "]" * 50_000 + "\n", ":9: nested more than 40 levels deep"),
    ],
    ids=["alias-bomb", "50000-deep"],
)
def test_a_hostile_config_exits_2_with_where_not_a_traceback(
    tmp_path: Path, extra: str, expected: str
) -> None:
    config = tmp_path / "runner.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "wm.db") + extra)
    process = start(config)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 2, out
    assert f"cannot start: {config}{expected}" in out
    assert "Traceback" not in out and "lol" not in out


def test_an_unusable_value_exits_2_naming_each_key(tmp_path: Path) -> None:
    config = tmp_path / "runner.yaml"
    text = CONFIG.format(db=tmp_path / "wm.db").replace("every: 1s", "every: 99999999999999999999h")
    text = text.replace("http://127.0.0.1:9/fhir", "file:///etc/passwd")
    config.write_text(text.replace("type: Patient", "type: NotAType"))
    process = start(config)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 2, out
    assert "Traceback" not in out
    assert f"{config}:6: data_sources[0].base_url: expected an absolute http or https URL" in out
    assert f"{config}:8: data_sources[0].resources[0].type: not a FHIR R4 resource type" in out
    assert f"{config}:8: data_sources[0].resources[0].every: longer than the longest" in out


def test_the_runner_keeps_request_urls_out_of_its_logs() -> None:
    # httpx logs every request URL at INFO, search parameters (names, birth dates) included.
    loggers = [logging.getLogger(name) for name in (*QUIET_LOGGERS, "ehrbridge")]
    root = logging.getLogger()
    before = [lg.level for lg in loggers], root.level, list(root.handlers)
    try:
        configure_logging()
        assert "httpx" in QUIET_LOGGERS
        assert not any(logging.getLogger(n).isEnabledFor(logging.INFO) for n in QUIET_LOGGERS)
        assert logging.getLogger("ehrbridge.runner").isEnabledFor(logging.INFO)
    finally:
        for lg, level in zip(loggers, before[0], strict=True):
            lg.setLevel(level)
        root.setLevel(before[1])
        root.handlers[:] = before[2]
