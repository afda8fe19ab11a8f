"""What the benchmark prints: one JSON object per line, per metric.

Every metric line has the same six keys, so the output can be read with ``jq`` or loaded into a
table without knowing which metric is which. ``ratio`` is always ``value / baseline``: for a
throughput higher is better (the target is a floor), for a latency lower is better.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson


@dataclass(frozen=True, kw_only=True)
class Metric:
    """One measured number and the raw-driver number it is compared with."""

    metric: str  #: e.g. ``append_throughput``
    value: float  #: what the world model achieved
    unit: str  #: ``events/s`` or ``ms``
    baseline: float | None  #: the raw driver doing the same work in the same run
    backend: str  #: ``sqlite`` or ``postgres``

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return round(self.value / self.baseline, 3)

    def as_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": _round(self.value),
            "unit": self.unit,
            "baseline": _round(self.baseline) if self.baseline is not None else None,
            "ratio": self.ratio,
            "backend": self.backend,
        }


def _round(number: float) -> float:
    """Four significant digits: enough to compare runs, few enough to read."""
    if number == 0 or not math.isfinite(number):
        return number
    digits = 3 - math.floor(math.log10(abs(number)))
    return round(number, max(digits, 0))


def machine() -> dict[str, Any]:
    """The first line: what the numbers were measured on."""
    return {
        "metric": "machine",
        "value": os.cpu_count(),
        "unit": "cpus",
        "baseline": None,
        "ratio": None,
        "backend": None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def emit(line: Metric | dict[str, Any], out: TextIO = sys.stdout) -> None:
    """Print one JSON line and flush, so a long run shows its numbers as they come."""
    body = line.as_json() if isinstance(line, Metric) else line
    out.write(orjson.dumps(body).decode() + "\n")
    out.flush()


def progress(message: str) -> None:
    """Human progress on stderr; stdout carries only the JSON lines."""
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


def percentile(samples: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of ``samples`` (no interpolation).

    >>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50)
    3.0
    >>> percentile([float(i) for i in range(1, 101)], 99)
    99.0
    """
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(math.ceil(pct / 100 * len(ordered)), 1)
    return ordered[rank - 1]
