"""Placeholder."""

from __future__ import annotations

from ehrbridge.review.grounding.finding import Finding, unsure
from ehrbridge.review.verdicts import Case


def judge(case: Case) -> Finding:
    """Placeholder."""
    del case
    return unsure("not read yet")
